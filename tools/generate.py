"""Samples a trained run: image grids, one image per seed, latent interpolation videos, progress videos. The same
program as the console script `pggan-generate` (pggan/cli/generate.py); run it with --help.
"""

from pggan.cli.generate import entry_point, main  # noqa: F401  (main: for tests that run it in-process)

if __name__ == "__main__":
    entry_point()
