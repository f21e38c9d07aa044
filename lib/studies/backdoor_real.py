"""Notebook 05 on real images: does the victim's fine-tuning budget of the ``real`` recipe train it
to its clean control? A defence or transfer finding about a victim means something only at a
clean accuracy a victim would ship, so the budget is checked first (the profiles issue).

For each budget of :data:`BUDGETS` (changes to ``RECIPE["real"]``): the fine-tuned student of the
clean teacher (the control) and of the planted teacher on the victim's half of the shared GTSRB
subset; for each of :data:`DEFENCE_BUDGETS`, re-training's or Renofeation's student of the planted
teacher; scored on the 1,290 GTSRB test images by :func:`lib.backdoor.backdoor_metrics` (clean
accuracy, ASR with the target class excluded, robust accuracy, untargeted ASR; stored), beside the
planted teacher itself. Every model comes from :mod:`lib.artifacts.backdoor` through the store, so
a rerun trains nothing.

Notebook 08 plants one more teacher per trigger with this recipe: :func:`trigger_budget_table`
checks each trigger's planting budget the same way (ASR and clean accuracy against the clean
teacher at the same epochs), which is where notebook 08's real ``trigger_recipes`` come from.

``python -m lib.studies.backdoor_real [--out DIR]`` writes ``05_real_victim_budget.csv`` and
``08_real_trigger_budget.csv`` under :func:`lib.paths.measured_dir` (``measurements/``, committed)
or ``DIR``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ..artifacts import backdoor as bd
from ..paths import measured_dir
from .backdoor import RECIPE, recipe
from .backdoor_report import metrics_row

CSV = "05_real_victim_budget.csv"
TRIGGER_CSV = "08_real_trigger_budget.csv"
# trigger -> teacher epochs to plant it for (notebook 05's real recipe otherwise; its own is 8)
TRIGGER_BUDGETS = {"emblem": [8], "blended": [8], "badnets": [8, 16, 24, 40]}
COLUMNS = ["clean_acc", "clean_acc_low", "clean_acc_high", "clean_acc_n", "asr", "asr_n", "ra", "untargeted_asr"]
# name -> changes to RECIPE["real"] (the recipe's own budget is the last)
BUDGETS = {
    "smoke's: the authors' optimiser, 5 epochs": {"student_epochs": 5, "fit_kw": {
        "lr": 0.005, "momentum": 0.0, "weight_decay": 1e-4, "schedule": "cosine", "head_lr_mult": 10.0}},
    "the recipe's: 20 epochs, lr 0.01, momentum 0.9": {},
}
# name -> (method, changes to RECIPE["real"]): the defences' students, from the planted teacher only
# (re-training keeps only its architecture), each judged against the control above
DEFENCE_BUDGETS = {
    "re-training, 8 epochs (the earlier real recipe)": ("retrain", {"retrain_epochs": 8}),
    "re-training, 40 epochs (the recipe's)": ("retrain", {}),
    "Renofeation, every stage, 6 + 1 epochs (the earlier real recipe)": ("renofeation", {
        "distill_epochs": 6, "swa_epochs": 1, "renofeation_kw": RECIPE["smoke"]["renofeation_kw"]}),
    # notebook 02's real-data finding: distil stages 1-2 only, at fine-tuning's 4x budget
    "Renofeation, stages 1-2, 26 + 6 epochs (the recipe's)": ("renofeation", {}),
}


def budget_table(budgets: dict | None = None, defences: dict | None = None, *,
                 progress: bool = False) -> pd.DataFrame:
    """One row per budget and teacher (``clean``: the control; ``backdoor``: the planted one) for
    the fine-tuned same-task student, one per defence budget (:data:`DEFENCE_BUDGETS`), and one for
    the planted teacher, on the GTSRB test images."""
    rows = []
    base = recipe("real")
    teacher, _ = bd.teacher_model(base, None, which="backdoor", progress=progress)
    got = metrics_row(teacher, bd.teacher_data(base)[1], base)
    rows.append({"budget": "planted teacher", "model": "teacher", **{k: got.get(k) for k in COLUMNS}})
    for name, change in (budgets or BUDGETS).items():
        cfg = recipe("real", **change)
        test = bd.student_data(cfg, "same")[1]
        for which in ("clean", "backdoor"):
            model, _ = bd.student("fine_tune", cfg, None, "same", 0.0, teacher=which, progress=progress)
            got = metrics_row(model, test, cfg)
            rows.append({"budget": name, "model": f"fine-tuned from the {which} teacher",
                         "student_epochs": cfg["student_epochs"], "lr": cfg["fit_kw"]["lr"],
                         "momentum": cfg["fit_kw"]["momentum"], **{k: got.get(k) for k in COLUMNS}})
    for name, (method, change) in (defences if defences is not None else DEFENCE_BUDGETS).items():
        cfg = recipe("real", **change)
        model, _ = bd.student(method, cfg, None, "same", 0.0, teacher="backdoor", progress=progress)
        got = metrics_row(model, bd.student_data(cfg, "same")[1], cfg)
        rows.append({"budget": name, "model": f"{method} from the backdoor teacher",
                     "student_epochs": cfg["retrain_epochs"] if method == "retrain"
                     else cfg["distill_epochs"] + cfg["swa_epochs"], **{k: got.get(k) for k in COLUMNS}})
    return pd.DataFrame(rows)


def trigger_budget_table(budgets: dict | None = None, *, progress: bool = False) -> pd.DataFrame:
    """One row per trigger and teacher epochs of :data:`TRIGGER_BUDGETS`: the teacher planted with
    that trigger (notebook 05's real recipe otherwise) and the clean teacher at the same epochs, on
    the GTSRB test images (ASR with the target class excluded: ``asr``)."""
    rows = []
    for trigger, epochs in (budgets or TRIGGER_BUDGETS).items():
        for e in epochs:
            cfg = recipe("real", trigger=trigger, teacher_epochs=e)
            test = bd.teacher_data(cfg)[1]
            for which in ("clean", "backdoor"):
                model, _ = bd.teacher_model(cfg, None, which=which, progress=progress)
                got = metrics_row(model, test, cfg)
                rows.append({"trigger": trigger, "teacher_epochs": e, "teacher": which,
                             **{k: got.get(k) for k in COLUMNS}})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="folder for the tables (default: measurements/)")
    ap.add_argument("--only", choices=["victim", "trigger"], default=None,
                    help=f"one table: victim ({CSV}) or trigger ({TRIGGER_CSV}); default both")
    a = ap.parse_args(argv)
    folder = a.out or measured_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"victim": (CSV, budget_table), "trigger": (TRIGGER_CSV, trigger_budget_table)}
    for name, make in [tables[a.only]] if a.only else tables.values():
        table = make(progress=True)
        table.to_csv(folder / name, index=False)
        print(table.round(3).to_string(index=False))
        print(f"written to {folder / name}")


if __name__ == "__main__":
    main()
