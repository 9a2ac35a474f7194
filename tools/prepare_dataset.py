"""Prepares a training dataset: every level of detail 4x4 .. RxR, stored for fast random access. The same program
as the console script `pggan-prepare` (pggan/cli/prepare.py); run it with --help.
"""

from pggan.cli.prepare import entry_point, main  # noqa: F401  (main: for tests that run it in-process)

if __name__ == "__main__":
    entry_point()
