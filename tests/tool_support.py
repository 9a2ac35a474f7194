"""Running several tools/*.py main() functions in one pytest process.

Each tool defines its absl flags on the process-wide FLAGS when imported, and tools share flag names
(--data_dir, --seeds, --config). `run_main` imports a tool once, keeps the flags it defined itself
(`pggan.cli.checkpoint_flags`'s shared flags stay registered), and before every run registers exactly
that tool's flags (removing those of the others and ml_collections' --config.<field> override flags
left by an earlier parse), so each tool parses its own command line.
"""

from __future__ import annotations

import sys

from absl import flags

import pggan.cli.checkpoint_flags  # noqa: F401  (defines the flags tools share: they stay registered)
from tests.run_support import load_module

_TOOLS: dict[str, tuple[object, dict[str, flags.Flag]]] = {}


def _release_tool_flags() -> None:
    owned = {name for _, tool_flags in _TOOLS.values() for name in tool_flags}
    for name in list(flags.FLAGS):
        if name in owned or name.startswith("config."):
            delattr(flags.FLAGS, name)


def load_tool(name: str):
    """tools/<name>.py as a module (imported once per process)."""
    if name not in _TOOLS:
        _release_tool_flags()
        before = set(flags.FLAGS)
        module = load_module(f"tools/{name}.py", f"{name}_tool")
        _TOOLS[name] = (module, {n: flags.FLAGS[n] for n in set(flags.FLAGS) - before})
    return _TOOLS[name][0]


def run_main(name: str, *args: str, monkeypatch=None):
    """tools/<name>.py's main() with these command-line arguments; returns what main returns.

    With `monkeypatch`, sys.argv is set too (ml_collections reads --config.<field> overrides from it).
    """
    module = load_tool(name)
    _release_tool_flags()
    for flag_name, flag in _TOOLS[name][1].items():
        flags.FLAGS[flag_name] = flag
    argv = [f"{name}.py", *args]
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "argv", argv)
    flags.FLAGS.unparse_flags()
    return module.main(flags.FLAGS(argv))
