"""The study layer: recipes reject unknown keys, and lib/ keeps its three floors (arrows down only)."""
import ast
from pathlib import Path

import pytest

from lib.studies import adversarial, bases, datasets, recipe, transfer

LIB = Path(__file__).resolve().parent.parent / "lib"
INFRASTRUCTURE = {"data", "models", "train", "store", "metrics", "plots", "paths"}
METHODS = {"attacks", "evaluate", "robustness", "adversarial_training", "transfer", "widgets"}


def test_recipes_have_smoke_and_full_and_reject_unknown_keys():
    for module in (datasets, bases, transfer, adversarial):
        assert {"smoke", "full"} <= set(module.RECIPE), module.__name__
    cfg = transfer.recipe("smoke", n_attack=None, asr_gap=0.2)
    assert cfg["n_attack"] == transfer.RECIPE["smoke"]["n_attack"] and cfg["asr_gap"] == 0.2
    with pytest.raises(KeyError, match="unknown recipe keys \\['n_atack'\\]; known: .*n_attack"):
        transfer.recipe("smoke", n_atack=100)
    with pytest.raises(ValueError, match="profile must be one of"):
        recipe(adversarial.RECIPE, "huge")
    assert transfer.RECIPE["smoke"]["seed"] == 0 and transfer.recipe("smoke") is not transfer.RECIPE["smoke"]
    # a recipe is copied: changing what a notebook got does not change the recipe
    transfer.recipe("smoke")["method_kw"]["fine_tune"]["epochs"] = 99
    assert transfer.RECIPE["smoke"]["method_kw"]["fine_tune"]["epochs"] == 8


def test_full_method_kw_are_the_seed_budgets_in_epochs():
    cfg = transfer.recipe("full")
    assert transfer.method_kw("retrain", cfg, 6400)["epochs"] == 900  # 90,000 iterations at batch 64
    assert transfer.method_kw("retrain", transfer.recipe("smoke"), 6400) == {"epochs": 12, "lr": 0.1}


def _floor(module: str) -> str | None:
    top = module.split(".")[0]
    if top == "studies":
        return "studies"
    return "methods" if top in METHODS else "infrastructure" if top in INFRASTRUCTURE else None


def _lib_imports(path: Path) -> set[str]:
    """Modules of lib/ that ``path`` imports (relative and absolute), as dotted names under lib."""
    rel = path.relative_to(LIB).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                names = [".".join(base + ([node.module] if node.module else []))]
                if not node.module:
                    names = [".".join(base + [a.name]) for a in node.names]
            elif node.module and node.module.startswith("lib."):
                names = [node.module[4:]]
            else:
                continue
            out.update(n for n in names if n)
        elif isinstance(node, ast.Import):
            out.update(a.name[4:] for a in node.names if a.name.startswith("lib."))
    return out


def test_imports_point_down_only():
    order = {"infrastructure": 0, "methods": 1, "studies": 2}
    bad = []
    for path in LIB.rglob("*.py"):
        rel = path.relative_to(LIB)
        own = _floor(".".join(rel.with_suffix("").parts))
        if own is None:
            continue
        for target in _lib_imports(path):
            floor = _floor(target)
            if floor is not None and order[floor] > order[own]:
                bad.append(f"{rel} ({own}) imports lib.{target} ({floor})")
    assert not bad, "\n".join(bad)
