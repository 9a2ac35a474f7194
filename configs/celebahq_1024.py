"""CelebA-HQ 1024x1024: the official v2 recipe (12,000 kimg), with the official 1/2/4/8-GPU presets. Defined in
pggan/recipes/celebahq_1024.py (so that `--config=celebahq_1024` works from any folder once pggan is
installed); this file lets tools that take a recipe path use it.
"""

from pggan.recipes.celebahq_1024 import get_config  # noqa: F401
