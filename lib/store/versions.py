"""Code versions computed from a module and the ``lib`` modules it imports, for store keys.

A model's store key must change when the code that trained it changes. Listing that code by hand
(a ``CODE`` tuple per artifact) goes stale the moment a helper moves, so the version is computed:
:func:`module_version` follows every ``import`` of a module (at the top and inside functions) to
the ``lib`` modules it reaches, transitively, and hashes their code with
:func:`lib.store.code_version` (docstrings, comments and formatting do not count). Importing
``lib.a.b`` runs the package ``lib.a`` first, so ``lib.a``'s own code counts too, but what
``lib.a/__init__.py`` imports counts only where a module imports ``lib.a`` itself (``from lib.a
import x``): a package's re-exports cannot change the numbers of a module that reaches past them,
and following them made every transfer model's key depend on the attack code that
``lib.evaluate``'s report imports. Modules that
cannot change a number (where files go, the run's configuration, figures, run folders) are left out:
:data:`NOT_NUMERIC`.
"""
from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
from pathlib import Path

from .keys import code_version

# infrastructure that decides where and how results are kept, never what they are
NOT_NUMERIC = ("lib.store", "lib.paths", "lib.config", "lib.plots", "lib.runs", "lib.stall", "lib.workbook",
               "lib.sweep", "lib.studies")


def _origin(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _imports(name: str) -> set[str]:
    """The ``lib`` modules that module ``name`` imports anywhere in its file, by name (the
    packages that hold them are not in it: :func:`_parents`)."""
    path = _origin(name)
    if path is None:
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return lib_imports(ast.parse(path.read_text()), package, parents=False)


def _parents(modules: set[str]) -> set[str]:
    """The ``lib`` packages above ``modules`` (``lib.a`` for ``lib.a.b.c``, and ``lib.a.b``)."""
    return {".".join(m.split(".")[:i]) for m in modules for i in range(2, m.count(".") + 1)}


def lib_imports(tree: ast.AST, package: str = "", parents: bool = True) -> set[str]:
    """The ``lib`` modules that the code ``tree`` imports anywhere (``package``: the package its
    relative imports start from; a notebook's cells have none), with the packages that hold them
    unless ``parents`` is false."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if _is_module(f"{base}.{alias.name}")}
    if parents:
        found |= _parents(found)
    return {m for m in found if m == "lib" or m.startswith("lib.")}


def _counted(name: str, leave_out: tuple[str, ...]) -> bool:
    return name != "lib" and not any(name == m or name.startswith(m + ".") for m in leave_out)


@functools.lru_cache(maxsize=None)
def module_closure(name: str, leave_out: tuple[str, ...] = NOT_NUMERIC) -> tuple[str, ...]:
    """``name`` and every ``lib`` module it reaches through imports, sorted, with the packages that
    hold them (their own code; their imports are followed only where they are imported by name).
    The modules it reaches in ``leave_out``, by default :data:`NOT_NUMERIC`, and their imports are
    left out; ``name`` itself always counts."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in seen or (current != name and not _counted(current, leave_out)):
            continue
        seen.add(current)
        todo += sorted(_imports(current) - seen)
    held = {p for p in _parents(seen) if _counted(p, leave_out)}
    return tuple(sorted(seen | held))


@functools.lru_cache(maxsize=None)
def module_version(name: str) -> str:
    """12 hex digits over the code of module ``name`` and the ``lib`` modules it imports
    (:func:`module_closure`): the code version of what an artifact module trains."""
    return code_version(*(importlib.import_module(m) for m in module_closure(name)))
