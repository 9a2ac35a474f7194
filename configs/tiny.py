"""A tiny recipe for tests: 16x16 synthetic images, very narrow networks, a few hundred images per phase. Defined
in pggan/recipes/tiny.py (so that `--config=tiny` works from any folder once pggan is installed); this file
lets tools that take a recipe path use it.
"""

from pggan.recipes.tiny import get_config  # noqa: F401
