"""The budget of the loss comparison: the quickstart digits and networks, 4x4 -> 16x16 in 8 kimg. Defined in
pggan/recipes/loss_comparison.py (so that `--config=loss_comparison` works from any folder once pggan is
installed); this file lets tools that take a recipe path use it.
"""

from pggan.recipes.loss_comparison import get_config  # noqa: F401
