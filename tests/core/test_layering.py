"""The house keeps its floor plan: arrows point down, no import cycles, light start-up.

Layers of clara_core, bottom to top (see clara_core/__init__.py):

    0  vocabulary   errors, names, dtypes, records, lazy (the facades' lazy loading)
    1  shm          clara_core.shm.*  (the kernel: segments, mmap, header, locks, /proc)
    2  object model context, contexts, allocation, mapping, pool, warm_segments, members,
                 lifecycle, publishing, freeing, registry, reference, removal, waiting,
                 leaks, inspect, doctor
    3  pipeline     clara_core.pipeline.*

A module may import from its own layer or below. Imports under `if TYPE_CHECKING:` are
types only and do not count; the package facade (`clara_core/__init__.py`) loads the
public names lazily and is not part of the graph.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

from tests.helpers import run_python

PACKAGE = Path(__file__).resolve().parents[2] / "clara_core"
VOCABULARY = {"errors", "names", "dtypes", "records", "lazy"}


def layer_of(module: str) -> int:
    parts = module.split(".")[1:]  # without the leading "clara_core"
    if not parts:
        return 99  # the facade
    if parts[0] in VOCABULARY:
        return 0
    if parts[0] == "shm":
        return 1
    if parts[0] == "pipeline":
        return 3
    return 2


def module_name(path: Path, root: Path) -> str:
    relative = path.relative_to(root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package modules it imports at run time (facade excluded)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    package = root.name
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if name == package:
            continue
        is_package = path.name == "__init__.py"
        base = name.split(".") if is_package else name.split(".")[:-1]
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                if node.level:
                    anchor = base[: len(base) - node.level + 1]
                    start = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    start = node.module or ""
                # `from pkg import sub` imports the submodule when there is one
                candidates = [
                    f"{start}.{alias.name}" if f"{start}.{alias.name}" in modules else start
                    for alias in node.names
                ]
            for target in candidates:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != package and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def upward_arrows(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(source)
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def private_imports(root: Path) -> list[str]:
    """`from X import _name` of another module's private name."""
    found = []
    for path in root.rglob("*.py"):
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.relative_to(root.parent)}: {alias.name}")
    return found


def test_clara_core_has_no_import_cycle():
    assert cycles(import_graph(PACKAGE)) == []


def test_arrows_point_down_only():
    assert upward_arrows(import_graph(PACKAGE)) == []


# A private C extension is imported by the one module that wraps it, and by no other.
_WRAPPERS = ["clara_core/shm/native.py: _calls"]


def test_no_module_imports_another_modules_private_names():
    assert private_imports(PACKAGE) == _WRAPPERS


def test_the_checker_sees_cycles_upward_arrows_and_private_imports(tmp_path):
    """The three checks above catch what they are for (on a small package made here)."""
    root = tmp_path / "clara_core"
    (root / "shm").mkdir(parents=True)
    (root / "pipeline").mkdir()
    files = {
        "__init__.py": "from .context import Context\n",
        "errors.py": "",
        "context.py": "from .allocation import Allocation\nfrom .errors import ClaraError\n",
        "allocation.py": "from . import context\n"  # cycle within the model
        "if TYPE_CHECKING:\n    from .pipeline.runner import run\n",  # types only: fine
        "shm/__init__.py": "",
        "shm/segment.py": "from ..context import Context\n"  # upward: shm -> model
        "from .locks import _private\n",  # private name
        "shm/locks.py": "",
        "pipeline/__init__.py": "",
        "pipeline/runner.py": "def run():\n    from ..context import Context\n",  # fine
    }
    for name, text in files.items():
        (root / name).write_text(text)
    graph = import_graph(root)
    assert cycles(graph) == [["clara_core.allocation", "clara_core.context"]]
    assert upward_arrows(graph) == ["clara_core.shm.segment -> clara_core.context"]
    assert graph["clara_core.pipeline.runner"] == {"clara_core.context"}
    assert "clara_core.pipeline.runner" not in graph["clara_core.allocation"]
    assert private_imports(root) == ["clara_core/shm/segment.py: _private"]


def loaded_after(code: str) -> set[str]:
    script = textwrap.dedent(code) + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


# "No module over ~400 lines; split by job, not by size": a room that grows past this
# has taken on a second job.
MODULE_LINES = 430


def test_no_module_of_the_core_outgrows_one_job():
    sizes = {
        str(path.relative_to(PACKAGE.parent)): len(path.read_text().splitlines())
        for pattern in ("*.py", "*.c", "*.h")  # (the C extension's files too)
        for path in PACKAGE.rglob(pattern)
    }
    assert len(sizes) > 40  # the walk found the package
    assert "clara_core/shm/c/holder.c" in sizes  # and the C sources
    assert {path: n for path, n in sizes.items() if n > MODULE_LINES} == {}


def test_importing_the_core_loads_no_click_rich_yaml_or_numpy():
    modules = loaded_after("import clara_core")
    assert not {"click", "rich", "yaml", "numpy"} & modules
    assert "clara_core.context" not in modules  # loaded on first use
    assert "clara_core.context" in loaded_after("import clara_core; clara_core.Context")


def test_the_operator_side_loads_no_click_or_rich():
    modules = loaded_after("from clara_core.pipeline import Driver, Variable, load, run")
    assert not {"click", "rich"} & modules
    assert "clara_core.pipeline.driver" in modules


def test_create_publish_map_and_copy_raw_bytes_without_numpy():
    modules = loaded_after(
        """
        from clara_core import Context
        ctx = Context.create("job")
        a = ctx.create(16)
        w = a.map("w")
        w.buffer[:] = bytes(range(16))
        w.unmap()
        a.publish("x")
        m = ctx.get("x").map("r")
        assert bytes(m.buffer) == bytes(range(16))
        m.unmap()
        Context.destroy("job")
        """
    )
    assert "numpy" not in modules
