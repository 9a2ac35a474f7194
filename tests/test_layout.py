"""The package layout shows the design: each folder imports only the layers below it, and no module
imports itself back through others (every import statement counts, also those inside functions)."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "pggan"

# Lower layers first; a module may import its own layer and the layers before it.
LAYERS = [
    {
        "pggan.errors",
        "pggan.config_section",
        "pggan.safe_unpickling",
        "pggan.parallel",
        "pggan.disk",
        "pggan.checksums",
        "pggan.dependencies",
    },
    # The official pickle's reading and conversion sit low, so that every loader of networks can use them.
    {
        "pggan.model",
        "pggan.data",
        "pggan.metrics",
        "pggan.official.errors",
        "pggan.official.unpickler",
        "pggan.official.snapshot",
        "pggan.official.convert",
    },
    {"pggan.checkpoint", "pggan.portable", "pggan.network_sources"},
    {"pggan.sampling"},
    {"pggan.image_sets", "pggan.trained_generator", "pggan.projection"},
    {"pggan.evaluation", "pggan.explore"},
    {"pggan.training"},
    {"pggan.official", "pggan.cli", "pggan.benchmarks", "pggan.recipes"},
    {"pggan.main"},
]


def _modules() -> dict[str, pathlib.Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(path: pathlib.Path, modules: dict) -> set[str]:
    """The pggan modules that `path` imports (a name imported from a package counts as its module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pggan"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("pggan"))
    return {name for name in found if name in modules and name != "pggan"}


def _layer(module: str) -> int:
    for rank, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return rank
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py: add it to one")


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items() if name != "pggan"}


def test_no_import_runs_back_up_a_layer():
    graph = _graph()
    upward = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_module_imports_itself_back():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(module, path):
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circles.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []
