"""Notebook 05 runs headless with small parameters in the session store, after notebook 01's test (the
order and the xdist group of tests/conftest.py), so it plants in the base A that test trained with notebook
01's recipe instead of training it again (21 s), and writes the tables and figures it says; its own
asserts (planted teacher fires, the recipe's findings) must hold."""
import os
from pathlib import Path

import pandas as pd
import pytest

from lib.workbook import notebooks, run_notebook

pytestmark = pytest.mark.notebooks

# the smoke data (10 classes, 60 images each: planting needs its ~100 iterations), notebook 01's base A
# (with a 6-epoch base and 200 test images the planted teacher's clean-accuracy drop, 6.0 points against
# the 5-point check, depended on the thread count: the fresh-clone CI failed where one thread passed),
# two update ratios, one extra poison rate, fewer methods at every ratio (Renofeation keeps the recipe's
# epochs: at 4 + 1 it is under-trained, 44% clean, and the notebook's renofeation_removes check fails;
# re-training keeps the recipe's 12 epochs too: at 6, retrain_removes held at all 5 planting seeds but by
# about two seed standard deviations, a failure near one clean clone in 60; benchmarks/results/notebook_flips.json)
SMALL = {"bd_update_ratios": [0.0, 0.9], "bd_rates": [0.05, 0.2],
         "bd_mag_ratios": [0.5], "bd_ratio_methods": ["fine_tune"], "bd_flip_methods": ["fine_tune"],
         # asserted here: the planted teacher fires, and the backdoor survives transfer to a new task. Over 10
         # planting seeds at these sizes survives_targeted, retrain_removes and renofeation_removes held at every
         # seed but by margins whose spread predicts a failure in several runs of a hundred (docs/
         # reproducibility.md): reported, as at smoke (the smoke recipe asserts the same; kept explicit here)
         "bd_asserted": ["survives_new_task"]}


def test_05_backdoor_poison(tmp_path):
    run_notebook(notebooks(["05"])[0], SMALL, tmp_path)
    figures = Path(os.environ["WORKBOOK_OUTPUTS"])
    for name in ("05_triggers.png", "05_transfer.png", "05_poison_rate.png", "05_examples.png", "05_tradeoff.png"):
        assert (figures / name).stat().st_size > 5000, name
    teachers = pd.read_csv(figures / "05_teachers.csv")
    assert list(teachers["update_ratio"].fillna(-1)) == [-1, 0.0, 0.9] and (teachers["clean_acc_n"] == 300).all()
    transfer = pd.read_csv(figures / "05_transfer.csv")
    assert {"fine_tune", "mag", "divmag", "retrain", "renofeation", "fine_pruning"} <= set(transfer["method"])
    assert set(transfer["task"]) == {"same", "new"} and transfer["asr_bb_n"].min() > 0
    rates = pd.read_csv(figures / "05_poison_rate.csv")
    assert sorted(rates["rate"].unique()) == [0.05, 0.2]
    found = pd.read_csv(figures / "05_findings.csv").set_index("finding")
    assert found.loc["planted", "held"]  # planted_clean is reported, not asserted: its flip rate (notebook 05's checks)
    clean = found.loc["planted_clean"]
    assert clean["low"] <= clean["value"] <= clean["high"]
    flips = pd.read_csv(figures / "05_label_flip.csv")
    assert list(flips["teacher"]) == ["clean", "clean", "flip", "flip"]
