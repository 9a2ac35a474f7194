"""Frozen settings dataclasses, one per section of a training config, each field defined once.

A field is declared with `setting(default, help)`: its default, its one-line meaning (shown by
`pggan.main --show_config`) and, in the dataclass's `__post_init__`, its checks all live in the
dataclass. `from_section` builds one from a mapping (an ml_collections section or saved JSON).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def setting(default: Any, help: str) -> Any:
    """A dataclass field with a default (dicts are copied per instance) and a one-line help text."""
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def help_of(cls: type, name: str) -> str:
    """The help text of field `name` of a settings dataclass ('' if it has none)."""
    return next(f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name)


def from_section(cls: type[T], config: Mapping[str, Any], section: str) -> T:
    """cls(**config) for a dataclass `cls`; unknown keys raise a ValueError naming `section` and the valid fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - names)
    if unknown:
        raise ValueError(f"unknown {section} config field(s) {unknown}; valid fields: {sorted(names)}")
    return cls(**dict(config))


def is_number_at_least(x: Any, low: float) -> bool:
    """x is a finite int or float >= low (False for NaN, infinities, booleans and non-numbers)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= low


def is_int_at_least(x: Any, low: int) -> bool:
    """x is an int (not a bool) >= low."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= low


def is_power_of_two(x: Any) -> bool:
    return is_int_at_least(x, 1) and x & (x - 1) == 0


def require(condition: bool, message: str) -> None:
    """Raises ValueError(message) unless `condition` (the checks of a section's __post_init__)."""
    if not condition:
        raise ValueError(message)


def resolution_table(table: Mapping[Any, Any] | None, name: str) -> dict[int, Any]:
    """{resolution: value} with int keys (JSON and the command line give strings); keys must be 4, 8, ...

    `name` is the field's dotted name for the error message.
    """
    result = {}
    for key, value in dict(table or {}).items():
        try:
            resolution = int(key)
        except (TypeError, ValueError):
            resolution = 0
        require(
            is_power_of_two(resolution) and resolution >= 4,
            f"config.{name} has key {key!r}; keys must be resolutions 4, 8, 16, ...",
        )
        result[resolution] = value
    return result
