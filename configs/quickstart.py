"""Quickstart: handwritten digits (shipped with pggan, no download), 4x4 -> 32x32 on a laptop CPU. Defined in
pggan/recipes/quickstart.py (so that `--config=quickstart` works from any folder once pggan is installed);
this file lets tools that take a recipe path use it.
"""

from pggan.recipes.quickstart import get_config  # noqa: F401
