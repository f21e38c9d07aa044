"""The summary of notebook 08's ANP seed measurement (lib.studies.defences_real) on a hand-made
table: per teacher the undefended row, the mean over the seeds with its t interval, the range and
the recipe's seed's value."""
import math

import pandas as pd
import pytest

from lib.studies.defences_real import anp_seed_paragraph, anp_seed_summary, load_anp_seeds


def _table():
    rows = [{"trigger": "emblem", "seed": None, "recipe_seed": False, "asr_bb": 0.99, "clean_acc": 0.8}]
    for seed, asr, acc in ((0, 0.5, 0.7), (1, 0.2, 0.75), (2, 0.3, 0.72)):
        rows.append({"trigger": "emblem", "seed": seed, "recipe_seed": seed == 0, "asr_bb": asr, "clean_acc": acc})
    rows += [{"trigger": "blended", "seed": None, "recipe_seed": False, "asr_bb": 0.9, "clean_acc": 0.85},
             {"trigger": "blended", "seed": 0, "recipe_seed": True, "asr_bb": 0.9, "clean_acc": 0.8},
             {"trigger": "blended", "seed": 1, "recipe_seed": False, "asr_bb": 0.9, "clean_acc": 0.8}]
    return pd.DataFrame(rows)


def test_the_seed_summary_is_the_mean_with_its_t_interval_per_teacher(tmp_path):
    s = anp_seed_summary(_table()).set_index("trigger")
    assert list(s.index) == ["emblem", "blended"] and s.loc["emblem", "seeds"] == 3
    e = s.loc["emblem"]
    assert (e["asr_before"], e["asr_bb_recipe_seed"], e["asr_bb_min"], e["asr_bb_max"]) == (0.99, 0.5, 0.2, 0.5)
    sd = math.sqrt(((0.5 - 1 / 3) ** 2 + (0.2 - 1 / 3) ** 2 + (0.3 - 1 / 3) ** 2) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert e["asr_bb_mean"] == pytest.approx(1 / 3) and e["asr_bb_high"] == pytest.approx(1 / 3 + half)
    b = s.loc["blended"]  # equal seeds: a zero-width interval
    assert b["asr_bb_low"] == pytest.approx(0.9) == b["asr_bb_high"]
    text = anp_seed_paragraph(s.reset_index())
    assert "ANP over 3 mask seeds" in text and "emblem: ASR 99.0% before, 33.3%" in text
    assert load_anp_seeds(tmp_path) is None
