"""Converts a network pickle of the official PGGAN code into a pggan checkpoint. The same program as the console
script `pggan-import` (pggan/cli/import_official.py); run it with --help.
"""

from pggan.cli.import_official import entry_point, main  # noqa: F401  (main: for tests that run it in-process)

if __name__ == "__main__":
    entry_point()
