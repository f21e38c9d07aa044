"""Notebook 04 headless with small parameters: it trains every method on a short sequence,
asserts its exact checks (zero forgetting for the masked methods) and its reports' sanity checks;
its estimated headline checks (fine-tuning's forgetting, the adversarial learners' robustness) are
reported at these sizes and writes the tables checked here."""
import os
from pathlib import Path

import pandas as pd
import pytest

from lib.studies import continual as S
from lib.workbook import notebooks, run_notebook

pytestmark = pytest.mark.notebooks

# 3 tasks: on synsigns, fine-tuning on task 2 *improves* task 1 (shared shapes, colours, glyphs: R[1, 0] > R[0, 0]
# in the smoke run too); forgetting shows from the third task on. The recipe's 64 images per class and 6 epochs.
SMALL = {"cl_n_tasks": 3, "cl_per_class_test": 10, "cl_retrain_epochs": 1,
         "cl_sparsities": [0.5], "cl_prune_epochs": 1, "cl_train_steps": 2, "cl_pgd_steps": [7, 10],
         "cl_eps_list": [2 / 255, 8 / 255], "cl_n_eval": 20,  # APGD: the recipe's 20 steps (5 lose to PGD)
         # at these sizes the estimated headline checks flip between seeds: fine-tuning's forgetting and the
         # worst-case gaps predict failures in several runs of a hundred, and adversarial PackNet's robustness area
         # tied PackNet's at one seed of seven (docs/reproducibility.md), so all are reported here and asserted at
         # smoke; the exact checks and the reports' sanity checks stay asserted
         "cl_asserted": []}


def test_params_are_prefixed_recipe_keys():
    cfg = S.recipe()
    assert all(p.startswith("cl_") and k in cfg for p, k in S.PARAMS.items())
    assert set(SMALL) <= set(S.PARAMS)


def test_04_continual_adversarial(tmp_path):
    run_notebook(notebooks(["04"])[0], SMALL, tmp_path)
    figures = Path(os.environ["WORKBOOK_OUTPUTS"])
    summary = pd.read_csv(figures / "04_continual_summary.csv").set_index("method")
    assert set(summary.index) == set(S.METHODS)
    for m in ("packnet", "packnet_adv", "cpg", "cmat"):
        assert summary.loc[m, "forgetting"] == 0 and summary.loc[m, "earlier_evals_changed"] == 0
    assert summary.loc["finetune", "earlier_evals_changed"] > 0  # its forgetting is reported at these sizes
    matrix = pd.read_csv(figures / "04_accuracy_matrix.csv")
    assert len(matrix) == len(S.METHODS) * 6  # 3 tasks: the lower triangle of R
    f1 = pd.read_csv(figures / "04_f1_per_task.csv")
    assert (f1["n"] == 50).all() and f1["macro_f1"].between(0, 1).all()
    head = pd.read_csv(figures / "04_headline_check.csv").set_index("name")
    assert {"finetune_forgets", "finetune_changes", "packnet_adv_area", "packnet_adv_worst", "cmat_area",
            "cmat_worst"} <= set(head.index)
    assert head.loc["finetune_forgets", "value"] == summary.loc["finetune", "forgetting"]
    assert (head["margin"] == head["value"] - head["threshold"]).all()
    assert set(head["kind"]) == {"forgetting", "area", "worst"} and not head["asserted"].astype(bool).any()
    checks = pd.read_csv(figures / "04_sanity_checks.csv")
    assert checks["passed"].astype(bool).all()
    assert len(pd.read_csv(figures / "04_cmat_vs_packnet_adv.csv")) == 1
    for name in ("04_accuracy_matrices.png", "04_pgd_bars.png", "04_parameter_use.png", "04_adversarial_matrices.png",
                 "04_cmat_vs_packnet.png"):
        assert (figures / name).stat().st_size > 5000, name
