"""Notebook asserts that are reported, not enforced: for a dry run (:mod:`lib.dryrun`), whose
random weights make every headline check meaningless while the code that computes it must run.

:func:`install` adds an AST transformer to the running IPython kernel: every ``assert test, msg``
at the top level of a later cell becomes a call of :func:`report`, which prints the assert's
source and message when ``test`` is false and appends them to ``log`` (JSON lines) instead of
raising. Asserts inside ``lib`` (library invariants) are untouched. Python's ``-O`` would
drop the asserts silently; this keeps each one's verdict on the record.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

_LOG: list[Path | None] = [None]
NAME = "__report_assert__"  # what a transformed assert calls, put in the kernel's namespace by install()


def report(passed, source: str, message=lambda: None) -> None:
    """What a transformed ``assert`` calls: a line for a failed one (printed and logged).
    ``message``: the assert's message as a function, evaluated only on failure like an assert's."""
    if passed:
        return
    try:
        message = message()
    except Exception as err:  # a message that cannot be built still leaves the verdict on record
        message = f"(its message raised {type(err).__name__}: {err})"
    text = f"[dry run] assert not enforced: {source}" + (f" -- {message}" if message is not None else "")
    print(text.splitlines()[0][:400], flush=True)
    if _LOG[0] is not None:
        with open(_LOG[0], "a") as f:
            f.write(json.dumps({"assert": source, "message": str(message)[:2000]}) + "\n")


_NO_ARGS = ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[])


class _AssertToReport(ast.NodeTransformer):
    """``assert t, m`` -> ``__report_assert__(t, "<source>", lambda: m)`` (:func:`report`)."""

    def __init__(self, text: str):
        self.text = text

    def visit_Assert(self, node: ast.Assert):
        source = (self.text and ast.get_source_segment(self.text, node)) or ast.unparse(node)
        call = ast.Call(func=ast.Name(NAME, ast.Load()),
                        args=[node.test, ast.Constant(source), ast.Lambda(_NO_ARGS, node.msg or ast.Constant(None))],
                        keywords=[])
        return ast.copy_location(ast.Expr(call), node)

    def visit_FunctionDef(self, node):  # a function defined in a cell keeps its asserts
        return node


def transform(tree: ast.Module, text: str = "") -> ast.Module:
    """``tree`` with its asserts (outside function definitions) turned into :func:`report` calls."""
    return ast.fix_missing_locations(_AssertToReport(text).visit(tree))


class _Transformer(ast.NodeTransformer):
    def visit_Module(self, node):
        return transform(node)


def install(log: Path | None = None) -> bool:
    """Report instead of raising in every later cell of this IPython kernel; ``False`` outside one."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    _LOG[0] = Path(log) if log else None
    shell.user_ns[NAME] = report
    if not any(isinstance(t, _Transformer) for t in shell.ast_transformers):
        shell.ast_transformers.append(_Transformer())
    return True
