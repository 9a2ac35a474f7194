"""CIFAR-10 32x32, unconditional (the paper's inception-score experiment setting at 32 px). Defined in
pggan/recipes/cifar10_32.py (so that `--config=cifar10_32` works from any folder once pggan is installed);
this file lets tools that take a recipe path use it.
"""

from pggan.recipes.cifar10_32 import get_config  # noqa: F401
