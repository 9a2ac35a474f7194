"""Explores a trained generator in a web page on 127.0.0.1. The same program as the console script `pggan-explore`
(pggan/cli/explore.py); run it with --help. Needs the explore extra: pip install -e '.[explore]'.
"""

from pggan.cli.explore import entry_point, main  # noqa: F401  (main: for tests that run it in-process)

if __name__ == "__main__":
    entry_point()
