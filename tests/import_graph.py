"""The import graph of ``willis/`` and ``stages/``, read with ``ast`` (nothing is imported or run).

Every ``import`` / ``from ... import`` counts, at module level or inside a function (a lazy import
still runs when the function does). Relative imports are resolved; names that are not modules of
this checkout (numpy, torch, ...) are dropped. ``from willis.x import y`` is an edge to
``willis.x.y`` when that is a module, else to ``willis.x``.

    python tests/import_graph.py            # prints the package graph, upward imports and cycles
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module under willis/ (packages by their __init__.py)."""
    out = {}
    for f in sorted((root / "willis").rglob("*.py")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _resolve(node: ast.ImportFrom, module: str, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, module: str, known: dict[str, Path]) -> set[str]:
    """Modules of ``known`` that the file imports (anywhere in it)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def add(name: str) -> None:
        while name and name not in known:  # willis.x.y.Name -> willis.x.y
            name = name.rpartition(".")[0]
        if name:
            found.add(name)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_pkg)
            for a in node.names:
                add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    found.discard(module)
    return found


@lru_cache(maxsize=None)
def graph(root: Path = ROOT) -> dict[str, frozenset[str]]:
    """Module -> modules it imports, over willis/."""
    known = module_files(root)
    return {m: frozenset(imports_of(f, m, known)) for m, f in known.items()}


def package_of(module: str) -> str:
    """'willis.train.loop' -> 'train'; 'willis.metrics' -> 'metrics'; 'willis' -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def cycles(g: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def package_graph(g: dict[str, frozenset[str]]) -> dict[str, set[str]]:
    """Package -> packages its modules import (itself left out)."""
    out: dict[str, set[str]] = {}
    for m, deps in g.items():
        p = package_of(m)
        out.setdefault(p, set()).update(package_of(d) for d in deps if package_of(d) != p)
    return out


def closure(entry: Path, root: Path = ROOT) -> set[Path]:
    """Files of willis/ a script runs when started: its imports, theirs, and every parent
    package's ``__init__.py`` (Python executes those first)."""
    known = module_files(root)
    g = graph(root)
    todo = list(imports_of(entry, "__main__", known))
    seen: set[str] = set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages
        todo += list(g[m])
    return {known[m] for m in seen}


if __name__ == "__main__":
    g = graph()
    for p, deps in sorted(package_graph(g).items()):
        print(f"{p or 'willis'}: {', '.join(sorted(deps)) or '-'}")
    print("module cycles:", cycles(g) or "none")
    print("package cycles:", cycles({p: frozenset(d) for p, d in package_graph(g).items()}) or "none")
