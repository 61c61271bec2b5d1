"""The package's layering (drawn in singax/__init__.py) and its import cycles, read from the source.

Every `import` and `from ... import` under singax/ counts, at module level or inside a
function. A module may import from its own layer or below; an import pointing up
needs a `# layering: <why>` comment on its line. The one import cycle is Tensor's
`creator` edge to the tape.
"""
from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "singax"

# (layer, rank inside the layer); a module takes the entry of its longest dotted prefix
LAYERS = {
    "singax._args": (0, 0), "singax._handle": (0, 0), "singax._fork": (0, 0), "singax._safe_npz": (0, 0), "singax._messages": (0, 0),
    "singax._version": (0, 0), "singax._mesh": (0, 0), "singax.device": (0, 1),
    "singax.tensor._engine": (1, 0), "singax._ctensor": (1, 0), "singax.tensor._tensor": (1, 1),
    "singax.tensor._functions": (1, 2), "singax.tensor": (1, 3),
    "singax.autograd._tape": (2, 0), "singax.autograd._op": (2, 1), "singax.autograd": (2, 3),
    "singax.initializer": (3, 0), "singax._mixed": (3, 0), "singax.layer": (3, 1), "singax.opt": (3, 1),
    "singax._compile": (4, 0), "singax.model": (4, 1),
    "singax.dist": (5, 0), "singax._launch": (5, 0), "singax.sonnx": (5, 0), "singax.snapshot": (5, 0),
    "singax.data": (5, 0), "singax.image_tool": (5, 0), "singax.utils": (5, 0),
    "singax": (6, 1), "singax.compat": (6, 0), "singax.singa_wrap": (6, 0), "singax._as_singa": (6, 0),
    "singax.cli": (6, 0), "singax.__main__": (6, 1),
}
# inside autograd/ and the other packages: private modules below public ones, the face on top
PUBLIC_SUBMODULE_RANK = 2
ALLOWED_CYCLE = {"singax.tensor._tensor", "singax.autograd._tape"}


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


MODULES = _modules()


def _layer(module: str) -> tuple[int, int]:
    if module in LAYERS:
        return LAYERS[module]
    parent = module.rsplit(".", 1)[0]
    layer, rank = _layer(parent)
    if parent in MODULES and MODULES[parent][1]:   # a submodule of a package face
        private = module.rsplit(".", 1)[1].startswith("_")
        return layer, (0 if private else min(rank, PUBLIC_SUBMODULE_RANK))
    return layer, rank


def _comments(source: str) -> dict[int, str]:
    return {tok.start[0]: tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT}


def _imports(module: str) -> list[tuple[str, int, str]]:
    """(imported singax module, line, comments on the statement's lines) for each import in `module`."""
    path, is_package = MODULES[module]
    source = path.read_text()
    comments = _comments(source)
    package = module if is_package else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            targets = [f"{base_name}.{a.name}" if f"{base_name}.{a.name}" in MODULES else base_name
                       for a in node.names]
        else:
            continue
        note = " ".join(comments.get(line, "") for line in range(node.lineno, node.end_lineno + 1))
        found += [(t, node.lineno, note) for t in dict.fromkeys(targets) if t in MODULES and t != module]
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _cycles() -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _, _ in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in GRAPH:
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read():
    assert any(t == "singax.tensor._tensor" for t, _, _ in GRAPH["singax.autograd._tape"])
    assert any(t == "singax.autograd._tape" for t, _, _ in GRAPH["singax.tensor._tensor"])  # inside a function
    assert len(MODULES) > 40


def test_no_import_points_up_a_layer_without_saying_why():
    bad = [f"{MODULES[m][0].relative_to(ROOT)}:{line}: {m} {_layer(m)} imports {t} {_layer(t)}"
           for m, edges in GRAPH.items() for t, line, note in edges
           if _layer(t) > _layer(m) and "layering:" not in note]
    assert not bad, "imports pointing up a layer:\n" + "\n".join(bad)


def test_the_only_import_cycle_is_tensor_and_the_tape():
    cycles = _cycles()
    assert max(map(len, cycles), default=0) <= 2, cycles
    assert all(c == ALLOWED_CYCLE for c in cycles), cycles



def test_every_top_level_module_has_its_layer():
    missing = sorted(m for m in MODULES if m.count(".") == 1 and m not in LAYERS)
    assert not missing, f"place these in LAYERS (and in singax/__init__.py's picture): {missing}"
