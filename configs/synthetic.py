"""Procedural synthetic images at any resolution (no data to download), for benchmarks and smoke runs. Defined in
pggan/recipes/synthetic.py (so that `--config=synthetic` works from any folder once pggan is installed); this
file lets tools that take a recipe path use it.
"""

from pggan.recipes.synthetic import get_config  # noqa: F401
