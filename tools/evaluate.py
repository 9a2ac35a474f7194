"""Scores image sets: a training run's generator, or any folder of images, against reals or published statistics.
The same program as the console script `pggan-evaluate` (pggan/cli/evaluate.py); run it with --help.
"""

from pggan.cli.evaluate import entry_point, main  # noqa: F401  (main: for tests that run it in-process)

if __name__ == "__main__":
    entry_point()
