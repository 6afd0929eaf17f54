"""The package's shape, read from its source with ast: core imports go downward only, the built-in world is a
client (nothing in the core imports it), and no two modules or folders import each other, even through a third.

Every import counts, including those inside functions: a lazy import is still a dependency.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "scorerl"
# Who may import `scorerl.world`: the world itself and the command line that plugs it in.
WORLD_CLIENTS = ("scorerl.world", "scorerl.cli", "scorerl.__main__")
# The floors, bottom up; a module may import its own floor and the ones below. rl and eval share a floor but
# neither imports the other (the folder-cycle test would also catch a two-way pair).
FLOORS = [
    {"scorerl.types", "scorerl.errors", "scorerl.paths", "scorerl.rng", "scorerl.version", "scorerl.budget"},
    {"scorerl.config"},
    {"scorerl.io"},
    {"scorerl.data"},
    {"scorerl.envs"},
    {"scorerl.compress"},
    {"scorerl.export"},
    {"scorerl.rl", "scorerl.eval", "scorerl.integrations"},
    {"scorerl.world"},
    {"scorerl.cli", "scorerl.__main__"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """scorerl modules `path` imports (file level: `from a.b import c` is a.b.c when c is a module, else a.b)."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != this}


# The package root is the public face (`from scorerl import ScoreCompressor`): it sits above every floor, and
# imports lazily (inside functions) so that importing any module does not import the rest of the package.
ROOT_MODULE = "scorerl"


def floor_of(module: str) -> int:
    if module == ROOT_MODULE:
        return len(FLOORS)
    for i, floor in enumerate(FLOORS):
        if any(module == f or module.startswith(f + ".") for f in floor):
            return i
    raise AssertionError(f"{module}: on no floor; add it to FLOORS")


def folder_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read(graph):
    # The checks below mean something only if imports are found: these edges exist by design.
    assert "scorerl.types" in graph["scorerl.envs.base"]
    assert "scorerl.io.checkpoint" in graph["scorerl.rl.resume"]
    assert "scorerl.world" in graph["scorerl.cli"]


def test_no_core_module_imports_the_world(graph):
    bad = sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        if not m.startswith(WORLD_CLIENTS)
        for d in deps
        if d == "scorerl.world" or d.startswith("scorerl.world.")
    )
    assert bad == []


def test_imports_go_downward_only(graph):
    bad = sorted(
        f"{m} (floor {floor_of(m)}) -> {d} (floor {floor_of(d)})"
        for m, deps in graph.items()
        for d in deps
        if floor_of(d) > floor_of(m)
    )
    assert bad == []


def test_the_package_root_imports_lazily():
    tree = ast.parse((ROOT / "__init__.py").read_text())
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [n.module for n in top_level if isinstance(n, ast.ImportFrom)] == ["scorerl.version"]


def test_no_import_cycle_between_modules(graph):
    assert cycles(graph) == []


def test_no_import_cycle_between_folders(graph):
    folders: dict[str, set[str]] = {}
    for m, deps in graph.items():
        folders.setdefault(folder_of(m), set()).update(folder_of(d) for d in deps if folder_of(d) != folder_of(m))
    assert cycles(folders) == []


def test_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
