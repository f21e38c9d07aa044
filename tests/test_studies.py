"""The study layer: recipes reject unknown keys, and lib/ keeps its four floors (arrows down only): a
study imports no other study, nothing below the entry points reads the environment, and no store key
depends on a hand-kept list of code or training keys."""
import ast
from pathlib import Path

import pytest

from lib.studies import adversarial, bases, datasets, recipe, transfer

LIB = Path(__file__).resolve().parent.parent / "lib"
INFRASTRUCTURE = {"config", "data", "models", "train", "store", "metrics", "findings", "plots", "paths"}
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
    from lib.artifacts.transfer import method_kw

    assert method_kw("retrain", cfg, 6400)["epochs"] == 900  # 90,000 iterations at batch 64
    assert method_kw("retrain", transfer.recipe("smoke"), 6400) == {"epochs": 12, "lr": 0.1}


def _floor(module: str) -> str | None:
    top = module.split(".")[0]
    if top in ("studies", "artifacts"):
        return top
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
    order = {"infrastructure": 0, "methods": 1, "artifacts": 2, "studies": 3}
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


def _family(name: str) -> str:
    """A study module's family: its notebook's main module (``attention_figures`` -> ``attention``)."""
    from lib.studies import STUDIES

    return next((s for s in STUDIES.values() if name == s or name.startswith(s + "_")), name)


def test_a_study_imports_no_other_study():
    bad = []
    for path in (LIB / "studies").glob("*.py"):
        if path.name == "__init__.py":
            continue
        for target in _lib_imports(path):
            parts = target.split(".")
            is_module = len(parts) > 1 and (LIB / "studies" / f"{parts[1]}.py").is_file()
            if parts[0] == "studies" and is_module and _family(parts[1]) != _family(path.stem):
                bad.append(f"{path.name} imports lib.{target}")
    assert not bad, "\n".join(bad)


def test_no_environment_and_no_hand_kept_code_lists():
    """The run's settings reach studies and artifacts as values (lib.config), and store keys carry
    computed code versions (lib.store.versions), not lists of code or training keys kept by hand."""
    import re

    env = [f"{p.relative_to(LIB)}" for d in ("studies", "artifacts") for p in (LIB / d).glob("*.py")
           if "os.environ" in p.read_text()]
    assert not env, env
    lists = [f"{p.relative_to(LIB)}: {m.group(0)}" for p in LIB.rglob("*.py")
             for m in re.finditer(r"^\w*(CODE|TRAIN_KEYS) *=", p.read_text(), re.M)]
    assert not lists, lists


def test_code_versions_follow_imports():
    from lib.store.versions import module_closure

    closure = module_closure("lib.artifacts.robust")
    assert {"lib.artifacts.robust", "lib.adversarial_training", "lib.attacks.core", "lib.train", "lib.models.archs",
            "lib.data.synsigns", "lib.artifacts.bases"} <= set(closure)
    assert not any(m.startswith(("lib.studies", "lib.store", "lib.plots", "lib.config")) for m in closure)
    assert "lib.studies.attention" in module_closure("lib.studies.attention")  # the module itself always counts


def test_a_package_counts_its_own_code_where_a_module_reaches_past_it():
    """lib.artifacts.transfer reaches lib.evaluate.crafted through lib.transfer.anb: lib.evaluate's
    own code counts, the report it re-exports (and the attacks under it) does not; a notebook that
    imports lib.evaluate by name gets everything it re-exports."""
    import ast

    from lib.store.versions import lib_imports, module_closure

    closure = set(module_closure("lib.artifacts.transfer"))
    assert {"lib.transfer", "lib.transfer.anb", "lib.evaluate", "lib.evaluate.crafted"} <= closure
    assert not {"lib.evaluate.checkpoint_report", "lib.robustness"} & closure
    by_name = set().union(*(module_closure(m) for m in lib_imports(ast.parse("from lib.evaluate import craft"))))
    assert {"lib.evaluate.checkpoint_report", "lib.robustness"} <= by_name
