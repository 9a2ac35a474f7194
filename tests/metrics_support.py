"""Test support for the metrics tests, shared with `golden/make_inception_goldens.py`.

NumPy only (the golden script runs in a venv with torch but without jax). Nothing here is part of
the library: these are independent reference transcriptions and seeded test data.
"""

from __future__ import annotations

import zlib

import numpy as np

GOLDEN_SEED = 2015


def random_inception_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = GOLDEN_SEED) -> dict[str, np.ndarray]:
    """Seeded random FID-Inception weights that keep features input-dependent (a naive init does not).

    Keyed by pytorch-fid state-dict names; each tensor's values depend only on (seed, name, shape),
    so the torch side and the JAX side get identical weights whatever order they list names in.
    Convs: He-normal; BN: gamma U(0.8, 1.2), beta N(0, 0.1), running mean N(0, 0.1), running var
    U(0.8, 1.2); fc: N(0, 1 / fan_in), fc bias N(0, 0.1).
    """
    weights = {}
    for name, shape in sorted(shapes.items()):
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        if name.endswith("conv.weight"):
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif name.endswith(("bn.weight", "bn.running_var")):
            value = rng.uniform(0.8, 1.2, shape)
        elif name.endswith(("bn.bias", "bn.running_mean", "fc.bias")):
            value = rng.normal(0.0, 0.1, shape)
        elif name == "fc.weight":
            value = rng.normal(0.0, np.sqrt(1.0 / shape[1]), shape)
        else:
            raise KeyError(f"no init recipe for {name}")
        weights[name] = value.astype(np.float32)
    return weights


def golden_images(count: int = 3, size: int = 32, seed: int = GOLDEN_SEED) -> np.ndarray:
    """Varied test images: uint8 [count, size, size, 3] (smooth colour fields plus noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(count):
        freq, phase = rng.uniform(1, 6, (3, 2)), rng.uniform(0, 2 * np.pi, (3, 1, 1))
        field = np.sin(2 * np.pi * (freq[:, :1, None] * yy + freq[:, 1:, None] * xx) + phase)
        image = 127.5 + 100 * field.transpose(1, 2, 0) + rng.normal(0, 20, (size, size, 3))
        images.append(np.clip(image, 0, 255))
    return np.stack(images).astype(np.uint8)


def tf1_resize_loops(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """TF1 resize_bilinear (align_corners=False, half_pixel_centers=False), written as plain loops.

    Transcribed from the TF1 kernel: `in = out * (in_size / out_size)` in float32, lower = floor,
    upper = min(lower + 1, in_size - 1), lerp = in - lower; top/bottom rows blended along x first.
    images: [N, H, W, C] -> float32 [N, height, width, C].
    """
    n, in_h, in_w, c = images.shape
    src = images.astype(np.float32)
    out = np.zeros((n, height, width, c), np.float32)
    h_scale, w_scale = np.float32(in_h) / np.float32(height), np.float32(in_w) / np.float32(width)
    for y in range(height):
        in_y = np.float32(y) * h_scale
        top_y = int(np.floor(in_y))
        bottom_y = min(top_y + 1, in_h - 1)
        y_lerp = np.float32(in_y - np.float32(top_y))
        for x in range(width):
            in_x = np.float32(x) * w_scale
            left_x = int(np.floor(in_x))
            right_x = min(left_x + 1, in_w - 1)
            x_lerp = np.float32(in_x - np.float32(left_x))
            top_left, top_right = src[:, top_y, left_x], src[:, top_y, right_x]
            bottom_left, bottom_right = src[:, bottom_y, left_x], src[:, bottom_y, right_x]
            top = top_left + (top_right - top_left) * x_lerp
            bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
            out[:, y, x] = top + (bottom - top) * y_lerp
    return out


def random_vgg16_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = GOLDEN_SEED) -> dict[str, np.ndarray]:
    """Seeded random VGG16 weights that keep the fc2 features input-dependent, torchvision's names.

    Per tensor, values depend only on (seed, name, shape). Weights (conv and linear): He-normal,
    N(0, 2 / fan_in); biases N(0, 0.1). Drawn in float32 (138 M values in about a second).
    """
    weights = {}
    for name, shape in sorted(shapes.items()):
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        value = rng.standard_normal(shape, dtype=np.float32)
        if name.endswith(".weight"):
            value *= np.float32(np.sqrt(2.0 / np.prod(shape[1:])))
        elif name.endswith(".bias"):
            value *= np.float32(0.1)
        else:
            raise KeyError(f"no init recipe for {name}")
        weights[name] = value
    return weights


def pixel_samples(size: int, count: int = 1024, seed: int = GOLDEN_SEED) -> tuple[np.ndarray, ...]:
    """Seeded (row, column, channel) int64 positions [count] in a size x size x 3 image (golden probes)."""
    rng = np.random.default_rng([seed, size])
    return rng.integers(0, size, count), rng.integers(0, size, count), rng.integers(0, 3, count)


def tiny_float_tensors() -> dict[str, np.ndarray]:
    """A few small float32 tensors (golden/tiny_state_dict_legacy_v1.pth holds them)."""
    return {
        "features.0.weight": np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 2, 2),
        "features.0.bias": np.float32([0.5, -0.25]),
        "classifier.0.weight": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    }


def random_features(count: int, dim: int, shift: float, seed: int) -> np.ndarray:
    """Non-negative, correlated, Inception-like features: float64 [count, dim]."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(0, 1, (dim, dim)) / np.sqrt(dim)
    return np.abs(rng.normal(shift, 1.0, (count, dim)) @ mixing)


def _pickle_str(text: str) -> bytes:
    data = text.encode()
    return b"X" + len(data).to_bytes(4, "little") + data  # BINUNICODE


def _pickle_int(value: int) -> bytes:
    if -(2**31) <= value < 2**31:
        return b"J" + int(value).to_bytes(4, "little", signed=True)  # BININT
    data = int(value).to_bytes(int(value).bit_length() // 8 + 1, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data  # LONG1


def _pickle_int_tuple(values) -> bytes:
    return b"(" + b"".join(_pickle_int(v) for v in values) + b"t"  # MARK ... TUPLE


def torch_state_dict_pickle(
    tensors: dict[str, np.ndarray],
    layouts: dict | None = None,
    rebuild: str = "torch._utils._rebuild_tensor_v2",
    legacy: bool = False,
) -> bytes:
    """The object pickle (protocol 2) of a state dict of float32 tensors, as torch.save emits it, without torch.

    The pickle is assembled from opcodes with the same globals and persistent ids that torch.save
    emits: the `rebuild` function, `torch.FloatStorage`, `collections.OrderedDict`. Tensor i views
    storage str(i), holding the tensor's elements.
    layouts: {name: (storage offset, size, stride)} replacing a tensor's own (contiguous) layout, as a
      hostile file would.
    rebuild: 'torch._utils._rebuild_tensor_v2' (torch >= 0.4: storage, offset, size, stride,
      requires_grad, backward hooks) or 'torch._utils._rebuild_tensor' (older files, e.g. torchvision's
      vgg16-397923af.pth: storage, offset, size, stride).
    legacy: the pre-1.6 sequential format, whose persistent ids have a sixth element (the view, None).
    """
    module, name = rebuild.rsplit(".", 1)
    body = [b"\x80\x02", b"}", b"("]  # PROTO 2, EMPTY_DICT, MARK
    for i, (key, array) in enumerate(tensors.items()):
        strides = [s // array.itemsize for s in np.ascontiguousarray(array).strides]
        offset, size, stride = (layouts or {}).get(key, (0, array.shape, strides))
        body += [
            _pickle_str(key),
            f"c{module}\n{name}\n".encode(),
            b"(",
            b"(",
            _pickle_str("storage"),
            b"ctorch\nFloatStorage\n",
            _pickle_str(str(i)),
            _pickle_str("cpu"),
            _pickle_int(array.size),
            b"N" if legacy else b"",
            b"t",
            b"Q",  # TUPLE, BINPERSID
            _pickle_int(offset),
            _pickle_int_tuple(size),
            _pickle_int_tuple(stride),
        ]
        if name == "_rebuild_tensor_v2":
            body += [b"\x89", b"ccollections\nOrderedDict\n", b")", b"R"]  # False, OrderedDict()
        body += [b"t", b"R"]  # TUPLE, REDUCE -> tensor
    body += [b"u", b"."]  # SETITEMS, STOP
    return b"".join(body)


def write_torch_zip(path, data_pkl: bytes, storages: list[bytes]) -> None:
    """Writes torch's zip format: `archive/data.pkl` and storage i as `archive/data/i` (stored, as torch does)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/version", b"3\n")
        for i, storage in enumerate(storages):
            archive.writestr(f"archive/data/{i}", storage)


def torch_storages(tensors: dict[str, np.ndarray]) -> list[bytes]:
    """The storages of `torch_state_dict_pickle(tensors)`: each tensor's float32 little-endian bytes."""
    return [np.ascontiguousarray(array, "<f4").tobytes() for array in tensors.values()]


def write_torch_zip_state_dict(path, tensors: dict[str, np.ndarray], layouts: dict | None = None) -> None:
    """Writes float32 tensors in torch's zip format (what torch.save writes), without torch.

    Agreement with real torch output is covered by the torch-written fixtures in golden/.
    """
    write_torch_zip(path, torch_state_dict_pickle(tensors, layouts), torch_storages(tensors))


def write_torch_legacy_state_dict(path, tensors: dict[str, np.ndarray], rebuild: str) -> None:
    """Writes float32 tensors in torch's pre-1.6 sequential format, without torch.

    Magic number, protocol 1001 and system info (each a pickle), the object pickle
    (`torch_state_dict_pickle`), the pickled list of storage keys, then per storage its int64 element
    count and raw little-endian bytes. golden/make_protocol_goldens.py checks that torch.load reads it.
    """
    import pickle

    with open(path, "wb") as f:
        f.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
        f.write(pickle.dumps(1001, protocol=2))
        f.write(
            pickle.dumps(
                {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
                protocol=2,
            )
        )
        f.write(torch_state_dict_pickle(tensors, rebuild=rebuild, legacy=True))
        f.write(pickle.dumps([str(i) for i in range(len(tensors))], protocol=2))
        for array in tensors.values():
            f.write(np.int64(array.size).tobytes())
            f.write(np.ascontiguousarray(array, "<f4").tobytes())
