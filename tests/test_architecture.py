"""The architecture, as a test: the layers of `src/vaekit`, from the ground up, and the rules
that keep them so. A change that adds an import cycle, an upward import, a module outside a
layer, a file over 400 lines or a package without its opening paragraph fails here, with the
offending import named.

The layers (this list is the one place they are stated; each package's `__init__` says which
it is and what it may import). A module may import from its own layer and those below:
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation: errors, atomic files, devices, compilation",
     ("vaekit._version", "vaekit.errors", "vaekit.io", "vaekit.device", "vaekit.compiling")),
    ("data: datasets as in-memory tensors, tables' schemas", ("vaekit.data",)),
    ("distributions, networks, flows", ("vaekit.distributions", "vaekit.nets", "vaekit.flows")),
    ("priors, posteriors and quantizers",
     ("vaekit.priors", "vaekit.posteriors", "vaekit.quantizers")),
    ("the log-weight terms and the objectives over them", ("vaekit.objectives",)),
    ("the typed configuration", ("vaekit.config",)),
    ("models: the one contract and its implementations", ("vaekit.models",)),
    ("the run directory: config.json and the weights", ("vaekit.run",)),
    ("evaluation and sample quality", ("vaekit.evaluate", "vaekit.quality")),
    ("views of a run: plots, the report, the explorer", ("vaekit.views",)),
    ("training: the loop, checkpoints, fitting a prior", ("vaekit.train",)),
    ("the Python API, scikit-learn and the command line",
     ("vaekit.api", "vaekit.sklearn", "vaekit.cli", "vaekit.__main__", "vaekit")),
]
MAX_LINES = 400


def _modules(src: Path = SRC) -> dict[str, Path]:
    modules = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The module that `name` (a module, or a name inside one) lives in."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the vaekit modules it imports, at the top or inside functions."""
    modules = _modules(src)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(_resolve(a.name, modules) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    imported.add(_resolve(full if full in modules else base, modules))
        graph[name] = {m for m in imported if m.startswith("vaekit") and m != name}
    return graph


def layer_of(module: str) -> int:
    """The index in LAYERS of the layer that holds `module` (the longest matching prefix)."""
    best, found = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    if found < 0:
        raise LookupError(f"{module} is in no layer of tests/test_architecture.py")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), and self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a module from a layer above its own, in words."""
    bad = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            if layer_of(target) > layer_of(module):
                bad.append(f"{module} (layer '{LAYERS[layer_of(module)][0]}') imports {target} "
                           f"(layer '{LAYERS[layer_of(target)][0]}')")
    return bad


# ------------------------------------------------------------------ the rules


def test_there_is_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    assert upward_imports(import_graph()) == []


def test_nothing_outside_the_cli_imports_the_cli() -> None:
    graph = import_graph()
    assert [m for m, imported in graph.items() if not m.startswith("vaekit.cli")
            and m != "vaekit.__main__" and any(i.startswith("vaekit.cli") for i in imported)] \
        == []


def test_every_module_is_in_a_layer() -> None:
    for module in _modules():
        layer_of(module)


def test_no_source_file_is_over_400_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_package_opens_with_a_paragraph_saying_what_it_is_and_may_import() -> None:
    for init in SRC.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 15, f"{init.relative_to(SRC)} has no opening paragraph"
        assert "import" in doc, f"{init.relative_to(SRC)}'s paragraph does not say what it imports"


# ------------------------------------------------------------------ the checks catch breakage


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_deliberate_cycle_is_found(tmp_path: Path) -> None:
    src = _tree(tmp_path, {"vaekit/__init__.py": "", "vaekit/data/__init__.py": "",
                           "vaekit/data/a.py": "from vaekit.data.b import x\n",
                           "vaekit/data/b.py": "def f():\n    from vaekit.data import a\n"})
    assert cycles(import_graph(src)) == [["vaekit.data.a", "vaekit.data.b"]]


@pytest.mark.parametrize("statement", ["from vaekit.train.loop import Trainer",
                                       "import vaekit.cli", "from ..views import plots"])
def test_a_deliberate_upward_import_is_found(tmp_path: Path, statement: str) -> None:
    src = _tree(tmp_path, {"vaekit/__init__.py": "", "vaekit/models/__init__.py": "",
                           "vaekit/models/x.py": f"def f():\n    {statement}\n",
                           "vaekit/train/__init__.py": "", "vaekit/train/loop.py": "",
                           "vaekit/cli/__init__.py": "", "vaekit/views/__init__.py": "",
                           "vaekit/views/plots.py": ""})
    bad = upward_imports(import_graph(src))
    assert len(bad) == 1 and bad[0].startswith("vaekit.models.x (layer 'models")
