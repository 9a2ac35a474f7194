"""Exports a trained generator into one portable .pggan file. The same program as the console script
`pggan-export` (pggan/cli/export.py); run it with --help.
"""

from pggan.cli.export import entry_point, main  # noqa: F401  (main: for tests that run it in-process)

if __name__ == "__main__":
    entry_point()
