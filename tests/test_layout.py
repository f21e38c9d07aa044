"""Three rules of lib/'s layout, read from the source with ``ast`` (nothing here imports lib):

- no module imports another module's ``_private`` name (``from lib.x import _name``, or
  ``x._name`` on an imported lib module): a helper that another module needs gets a public name
  in the module that owns it;
- no import circle among lib's modules, counting the imports inside functions;
- arrows point down the floors of ``../shared/DESIGN.md``: infrastructure and methods import no
  artifact or study, artifacts import no study (the runners above every floor excepted).

Graph rule: a module has an edge to every lib module it imports anywhere in its file. ``import
a.b`` and ``from a.b import name`` are edges to ``a.b`` (not to the package ``a``);
``from a import b`` is an edge to ``a.b`` when ``a.b`` is a module, else to ``a``. A package's
``__init__`` that re-exports its submodules therefore has edges ``pkg -> pkg.sub``, and a
submodule that imports a sibling (``from . import x``, ``from .x import f``) has an edge to
``pkg.x``, not to ``pkg``. (Dynamic imports, ``importlib.import_module``, are not seen.)
"""
from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib"


def _modules() -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is_package)}`` of every module under lib/."""
    out = {}
    for path in sorted(LIB.rglob("*.py")):
        parts = list(path.relative_to(LIB.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


MODULES = _modules()


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(LIB.parent)}:{node.lineno}"


def _from_target(module: str, package: bool, node: ast.ImportFrom) -> str | None:
    """The absolute module that ``from ... import`` reads from (relative imports resolved)."""
    if node.level == 0:
        return node.module
    base = module.split(".") if package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_lib(name: str | None) -> bool:
    return name is not None and (name == "lib" or name.startswith("lib."))


def _imports(module: str) -> list[tuple[str, str | None, ast.AST]]:
    """Every lib import of ``module``, anywhere in its file: ``(target module, name or None, node)``;
    ``name`` is the imported name of a ``from`` import whose ``target.name`` is not a module."""
    path, package = MODULES[module]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node) for a in node.names if _is_lib(a.name)]
        elif isinstance(node, ast.ImportFrom):
            target = _from_target(module, package, node)
            if not _is_lib(target):
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((sub, None, node) if sub in MODULES else (target, a.name, node))
    return out


def _module_names(module: str) -> dict[str, str]:
    """Names bound to a lib module by ``module``'s imports (``import lib.x`` binds ``lib``)."""
    path, package = MODULES[module]
    bound = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _is_lib(a.name):
                    bound[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            target = _from_target(module, package, node)
            if _is_lib(target):
                bound.update({a.asname or a.name: f"{target}.{a.name}" for a in node.names
                              if f"{target}.{a.name}" in MODULES})
    return bound


def _dotted(node: ast.AST, bound: dict[str, str]) -> str | None:
    """The lib module an expression like ``x`` or ``lib.x`` names, if any."""
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, bound)
        name = f"{base}.{node.attr}" if base else None
        return name if name in MODULES else None
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_imports():
    assert len(MODULES) > 20, f"found only {len(MODULES)} modules under {LIB}"
    bad = []
    for module, (path, _) in MODULES.items():
        for target, name, node in _imports(module):
            if name is not None and _private(name) and target != module:
                bad.append(f"{_where(path, node)}: from {target} import {name}")
        bound = _module_names(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                owner = _dotted(node.value, bound)
                if owner is not None and owner != module:
                    bad.append(f"{_where(path, node)}: {owner}.{node.attr}")
    assert not bad, ("lib modules use other modules' private names; give each helper a public name in the "
                     "module that owns it:\n  " + "\n  ".join(sorted(set(bad))))


def _graph() -> dict[str, dict[str, str]]:
    """``{module: {imported lib module: where (file:line of the first such import)}}``."""
    graph = {}
    for module, (path, _) in MODULES.items():
        edges = graph.setdefault(module, {})
        for target, _, node in _imports(module):
            if target in MODULES and target != module:
                edges.setdefault(target, _where(path, node))
    return graph


def _cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph[w])))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return found


def test_no_import_cycles():
    graph = _graph()
    assert sum(map(len, graph.values())) > len(graph) // 2, "the import graph of lib/ is implausibly sparse"
    cycles = _cycles(graph)
    lines = []
    for component in cycles:
        members = set(component)
        lines.append(" <-> ".join(component) + ":")
        lines += [f"    {a} -> {b} ({where})" for a in component for b, where in sorted(graph[a].items())
                  if b in members]
    assert not cycles, ("import circles among lib modules (imports inside functions count); cut each one "
                        "by moving what both sides use into a module that imports neither:\n  "
                        + "\n  ".join(lines))


# the runners above the four floors: they read every study's recipe to check and schedule a run
RUNNERS = {"lib.workbook", "lib.sweep", "lib.dryrun"}


def _floor(module: str) -> int:
    """1 infrastructure and methods, 2 artifacts, 3 studies."""
    return 3 if module.startswith("lib.studies") else 2 if module.startswith("lib.artifacts") else 1


def test_imports_point_down_the_floors():
    up = sorted({f"{m} -> {target} ({_where(MODULES[m][0], node)})" for m in MODULES if m not in RUNNERS
                 for target, _, node in _imports(m) if _floor(target) > _floor(m)})
    assert not up, ("imports up the floors (a method may not know a study's objects: take what it needs as "
                    "arguments, or put the study's widget in lib/studies/):\n  " + "\n  ".join(up))
