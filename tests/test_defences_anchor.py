"""Notebook 08's comparison with BackdoorBench in its own setting (lib.studies.defences_anchor):
which defences move ASR the way BackdoorBench's do, on a hand-made anchors table."""
import pandas as pd

from lib.studies.defences_anchor import ANCHORS, anchor_direction


def _anchors(ours: dict) -> pd.DataFrame:
    rows = []
    for name, (acc, asr, _) in ANCHORS.items():
        row = {"defence": name, "bb_clean_acc": acc, "bb_asr": asr}
        if name in ours:
            a, low, high = ours[name]
            row.update(anchor_clean_acc=80.0, anchor_asr=a, anchor_asr_low=low, anchor_asr_high=high)
        rows.append(row)
    return pd.DataFrame(rows)


def test_a_removal_is_judged_by_our_interval_and_their_published_value():
    table = _anchors({"none": (90.0, 88.0, 92.0), "nad": (5.0, 3.0, 7.0),  # both remove
                      "anp": (60.0, 50.0, 71.0),  # the interval reaches 71 > 90 - 20: not shown here
                      "activation_clustering": (10.0, 8.0, 12.0)})  # theirs stays at 86.2
    text = anchor_direction(table, 0.2)
    assert "**both remove it**: nad (ASR 5.0% here, 2.1% there" in text
    assert "**only theirs removes it**: anp" in text and "**only ours removes it**: activation_clustering" in text
    assert "neural_cleanse" not in text  # no number of ours
    assert anchor_direction(table.drop(columns=[c for c in table if c.startswith("anchor_")]), 0.2) == ""
