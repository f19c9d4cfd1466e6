"""The package's shape: its modules' imports form no cycle, whether they run on import or
inside a function on first use (`TYPE_CHECKING` blocks do not count); no module is much
over 400 lines."""

import ast
from pathlib import Path

import siit

PACKAGE = Path(siit.__file__).parent


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules that `path` imports, at the top or inside functions."""
    name = _name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target in modules:
                found.add(target)
            # `from package import submodule` imports the submodule too
            found |= {f"{target}.{a.name}" for a in node.names} & modules
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_name(p) for p in paths}
    return {_name(p): _imports(p, modules) for p in paths}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_sees_real_edges():
    graph = _graph()
    assert "siit.data.dataset" in graph["siit.data"]
    assert "siit.data.tables" in graph["siit.data.dataset"]  # inside a constructor
    assert "siit.data.dataset" not in graph["siit.data.tables"]  # for type checking only
    assert "siit.models" in graph["siit.decoding"]
    # a hand-made circle is found
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_module_imports_in_a_circle():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


# "About 400 lines": a module past this has more than one concept in it. OVER may name a
# module allowed past it for now, with its size then, which it may not exceed.
LIMIT = 420
OVER: dict[str, int] = {}


def test_no_module_is_much_over_400_lines():
    sizes = {_name(p): len(p.read_text().splitlines()) for p in sorted(PACKAGE.rglob("*.py"))}
    over = {n: s for n, s in sizes.items() if s > LIMIT and s > OVER.get(n, 0)}
    assert not over, f"modules over {LIMIT} lines: {over}"
