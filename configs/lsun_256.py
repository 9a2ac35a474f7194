"""LSUN 256x256 (e.g. bedroom): the official v2 recipe at 256 px, mirror augmentation on. Defined in
pggan/recipes/lsun_256.py (so that `--config=lsun_256` works from any folder once pggan is installed); this
file lets tools that take a recipe path use it.
"""

from pggan.recipes.lsun_256 import get_config  # noqa: F401
