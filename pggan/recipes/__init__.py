"""The training recipes, by name: `pggan-train --config=quickstart` works from any folder.

Each module here has `get_config()` (an ml_collections ConfigDict starting from
`pggan.training.defaults.default_config()`); configs/<name>.py in the checkout re-exports it.
`recipe_path` turns a `--config` value (a recipe name or a path) into the file ml_collections loads.
"""

from __future__ import annotations

import os

from pggan.errors import UserError

_HERE = os.path.dirname(os.path.abspath(__file__))


def names() -> list[str]:
    """The names of the recipes, sorted: celebahq_1024, cifar10_32, ..., quickstart, synthetic, tiny."""
    return sorted(name[:-3] for name in os.listdir(_HERE) if name.endswith(".py") and not name.startswith("_"))


def recipe_path(value: str) -> str:
    """The recipe file of a --config value: an existing path (maybe with ml_collections' ':args') as is, a
    recipe name as its file here. UserError (one line) for a bare name that is no recipe."""
    path = value.split(":", 1)[0]
    if os.path.exists(path) or os.sep in path or path.endswith(".py"):
        return value
    if path in names():
        return os.path.join(_HERE, f"{path}.py") + value[len(path) :]
    raise UserError(
        f"--config={value}: no such recipe file or recipe name; give a recipe file or one of {', '.join(names())}"
    )
