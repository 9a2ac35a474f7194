"""Projects a real image into a trained generator: finds the latent whose image is closest to it. The same
program as the console script `pggan-project` (pggan/cli/project.py); run it with --help.
"""

from pggan.cli.project import entry_point, main  # noqa: F401  (main: for tests that run it in-process)

if __name__ == "__main__":
    entry_point()
