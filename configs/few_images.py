"""A folder of 100 to 1,000 images, with adaptive differentiable augmentation. Defined in
pggan/recipes/few_images.py (so that `--config=few_images` works from any folder once pggan is installed);
this file lets tools that take a recipe path use it.
"""

from pggan.recipes.few_images import get_config  # noqa: F401
