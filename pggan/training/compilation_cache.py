"""JAX's persistent compilation cache: compiled training rounds kept on disk between runs.

A run compiles one training call per resolution (seconds on a GPU, tens of seconds on a CPU, more
for the full-width networks); resuming a run or starting another one with the same shapes then loads
the programs instead of compiling them again. The cache is keyed by the program, the JAX/XLA
versions and the devices, so a stale entry is never used.
"""

from __future__ import annotations

import os

import jax

# Programs that compile faster than this are not worth a disk entry (JAX's default is 1 s).
MIN_COMPILE_SECONDS = 1.0
ENV_VARIABLE = "JAX_COMPILATION_CACHE_DIR"


def enable(directory: str) -> str | None:
    """Keeps compiled programs in `directory` (created on first write; '~' expanded).

    '' leaves JAX's own setting alone (off, unless $JAX_COMPILATION_CACHE_DIR is set). A set
    $JAX_COMPILATION_CACHE_DIR wins over `directory` too: whoever exported it chose the cache of every
    JAX program (the tests point it at their temporary directories). Must be called before the first
    compile of the process. Returns the directory in use, or None.
    """
    if directory and not os.environ.get(ENV_VARIABLE):
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(directory))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return jax.config.jax_compilation_cache_dir
