"""Frozen settings dataclasses built from one section of a training config (e.g. `config.model`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def from_section(cls: type[T], config: Mapping[str, Any], section: str) -> T:
    """cls(**config) for a dataclass `cls`; unknown keys raise a ValueError naming `section` and the valid fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - names)
    if unknown:
        raise ValueError(f"unknown {section} config field(s) {unknown}; valid fields: {sorted(names)}")
    return cls(**dict(config))
