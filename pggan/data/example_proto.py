"""A minimal reader of serialized `tf.train.Example` protos: the records of a prepared dataset, no tfds.

The records are written by tensorflow-datasets (builder.py), but reading them needs only this: a
tf.train.Example is `Features features = 1`, Features is `map<string, Feature> feature = 1`, and a
Feature holds one of `BytesList bytes_list = 1`, `FloatList float_list = 2`, `Int64List int64_list
= 3`, each a `repeated ... value = 1` (numbers packed or not). tfds stores a uint8 tensor feature
`image` of dynamic shape as two entries, `image/value` (the raw bytes) and `image/shape` (int64s), and
a scalar `label` as a one-element int64 list.
"""

from __future__ import annotations

import struct

import numpy as np

from pggan.data.errors import DataError

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the base-128 varint at data[pos]."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise DataError("truncated or malformed tf.train.Example record; prepare the dataset again")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes):
    """Yields (field number, wire type, value) of a message: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(data, pos)
        elif wire == _LENGTH:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
            if pos > len(data):
                raise DataError("truncated tf.train.Example record; prepare the dataset again")
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            value, pos = data[pos : pos + width], pos + width
        else:
            raise DataError(f"tf.train.Example record with wire type {wire}; prepare the dataset again")
        yield number, wire, value


def _int64s(wire: int, value) -> list[int]:
    """The int64s of one Int64List `value` field, packed (bytes) or not (an int); two's complement."""
    if wire == _VARINT:
        raw = [value]
    else:
        raw, pos = [], 0
        while pos < len(value):
            number, pos = _varint(value, pos)
            raw.append(number)
    return [v - (1 << 64) if v >= 1 << 63 else v for v in raw]


def _floats(value: bytes) -> list[float]:
    """The floats of one FloatList `value` field, packed (4n bytes) or not (4 bytes)."""
    return list(struct.unpack(f"<{len(value) // 4}f", value))


def _feature(data: bytes) -> list:
    """A Feature's values: list of bytes, of floats or of ints (empty when the feature is empty)."""
    for kind, _, payload in _fields(data):
        values = []
        for number, wire, value in _fields(payload):
            if number != 1:
                continue
            if kind == 1:
                values.append(bytes(value))
            elif kind == 2:
                values += _floats(value)
            elif kind == 3:
                values += _int64s(wire, value)
        return values
    return []


def parse_example(record: bytes) -> dict[str, list]:
    """A serialized tf.train.Example -> {feature name: list of bytes | floats | ints}."""
    features = {}
    for number, _, payload in _fields(record):
        if number != 1:
            continue
        for entry_number, _, entry in _fields(payload):
            if entry_number != 1:
                continue
            key, value = "", b""
            for field, _, content in _fields(entry):
                if field == 1:
                    key = bytes(content).decode()
                elif field == 2:
                    value = content
            features[key] = _feature(value)
    return features


def decode_image_example(record: bytes) -> tuple[np.ndarray, int]:
    """A prepared dataset's record -> (image uint8 [r, r, C], label int; -1 when unlabeled)."""
    features = parse_example(record)
    try:
        (pixels,), shape, (label,) = features["image/value"], features["image/shape"], features["label"]
    except (KeyError, ValueError):
        raise DataError(
            f"a record has features {sorted(features)}, not image/value, image/shape and label; "
            f"was it written by tools/prepare_dataset.py?"
        ) from None
    if len(pixels) != int(np.prod(shape)):
        raise DataError(f"a record's image has {len(pixels)} bytes for shape {shape}; prepare the dataset again")
    return np.frombuffer(pixels, np.uint8).reshape(shape), int(label)
