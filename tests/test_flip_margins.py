"""The flip-rate benchmarks' margins (benchmarks/bench_notebook_flips.py, benchmarks/flip_margins.py):
a margin recomputed from a notebook's tables is on the passing side exactly when the notebook's own
rule passes, and the predicted failure rate reads the margins as documented."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib.metrics import binomial_interval
from lib.studies import adversarial_report, backdoor, transfer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_notebook_flips import check_margins  # noqa: E402
from flip_margins import doc_block, one_in, predicted_flip  # noqa: E402


@pytest.mark.parametrize("seed", range(4))
def test_02_margins_pass_exactly_when_the_notebooks_checks_do(tmp_path, seed):
    rng = np.random.default_rng(seed)
    methods = ["fine_tune", "retrain", "renofeation"]
    attack = pd.DataFrame({"method": methods, "feature_asr": rng.uniform(0, 0.6, 3),
                           "clean_acc": rng.uniform(0.5, 0.9, 3)})
    cfg = {"asr_gap": 0.1, "clean_margin": 0.1}
    head = transfer.headline_check(attack, asr_gap=cfg["asr_gap"], clean_margin=cfg["clean_margin"])
    anb = pd.DataFrame([{"variant": v, "n": n, "seed": s, "pgd_acc": rng.uniform(0, 0.8), "attack_n": 100}
                        for v in ("AnB", "AnB+", "BnB") for n in (1, 4) for s in (0, 1)])
    claims = transfer.anb_check(anb, margin=0.1)
    head.to_csv(tmp_path / "02_headline_check.csv", index=False)
    claims.to_csv(tmp_path / "02_anb_check.csv", index=False)
    got = check_margins("02", tmp_path, cfg)
    for _, r in head.iterrows():
        assert (got[f"headline_{r['method']}"] >= 0) == r["passed"], r["method"]
    for i, r in claims.iterrows():
        assert (got[f"anb_{i + 1}"] >= 0) == r["passed"], r["claim"]


@pytest.mark.parametrize("pgd_correct", [20, 40, 41, 60])
def test_03_margins_pass_exactly_when_the_headline_asserts_do(tmp_path, pgd_correct):
    n, cfg = 200, {"eps": 8 / 255, "min_pgd_at_gain": 0.15, "methods": ["standard", "pgd_at"],
                   "pgd_steps": [10, 20]}
    rows = []
    for method, k in (("standard", 10), ("pgd_at", pgd_correct)):
        low, high = binomial_interval(k, n)
        rows.append({"method": method, "attack": "worst case", "eps_255": 8.0, "acc": k / n, "low": low,
                     "high": high, "n": n, "seeds": 1, "interval": "Wilson, test images"})
    compact = pd.DataFrame(rows)
    compact.round(4).to_csv(tmp_path / "03_compact.csv", index=False)
    head = adversarial_report.headline(compact, cfg)
    got = check_margins("03", tmp_path, cfg)
    assert (got["pgd_at_gain"] >= 0) == (head["gain"] >= head["floor"] - head["slack"])
    assert (got["intervals_disjoint"] > 0) == bool(head["pgd_at"].low > head["standard"].high)


def test_a_failed_run_without_tables_records_why(tmp_path):
    assert "FileNotFoundError" in check_margins("02", tmp_path, {"asr_gap": 0.1, "clean_margin": 0.1})["error"]


def test_predicted_failure_reads_the_margins():
    far = predicted_flip([0.30, 0.31, 0.29, 0.30, 0.30])
    near = predicted_flip([0.02, -0.01, 0.03, 0.00, 0.01])
    assert far["p_flip_t"] < 1e-4 < near["p_flip_t"] and near["p_flip_t"] > 0.2
    assert far["p_flip_normal"] < far["p_flip_t"]  # the t's tails are heavier with 5 seeds
    assert predicted_flip([0.1, 0.1, 0.1])["p_flip_t"] < 1e-12  # no spread: it never fails
    assert one_in(0.027) == "1 in 37" and one_in(1e-6) == "under 1 in 10,000"
    row = {"notebook": "06", "size": "test", "check": "trigger", "asserted": False, **near}
    line = doc_block([row]).splitlines()[4]
    # -0.01 and 0.00 are at or below 0
    assert line.startswith("| 06 | test | trigger | 5 | 2 |") and line.endswith("reported, not asserted |")


def test_the_checks_a_notebook_test_reports_follow_its_overrides_and_the_recorded_kinds(tmp_path):
    """Notebook 04's checks count as reported at the test size by the kind its headline table gave
    them (not by their names), 05's findings by the test's bd_asserted, 03's gain by the floor its
    test sets; at smoke only notebook 05's findings its smoke recipe leaves unasserted."""
    from bench_notebook_flips import check_kinds, test_overrides
    from flip_margins import reported_by_tests

    pd.DataFrame({"name": ["finetune_forgets", "cmat_area"], "kind": ["forgetting", "area"]}).to_csv(
        tmp_path / "04_headline_check.csv", index=False)
    kinds = check_kinds("04", tmp_path)
    assert kinds == {"finetune_forgets": "forgetting", "cmat_area": "area"} and check_kinds("05", tmp_path) == {}
    keys = [("04", "test", "finetune_forgets"), ("04", "test", "cmat_area"), ("04", "smoke", "cmat_area"),
            ("05", "test", "survives_new_task"), ("05", "test", "retrain_removes"), ("05", "test", "planted"),
            ("03", "test", "pgd_at_gain"), ("03", "test", "intervals_disjoint"), ("03", "smoke", "pgd_at_gain"),
            ("05", "smoke", "retrain_removes"), ("05", "smoke", "survives_new_task"), ("05", "smoke", "planted")]
    reported = reported_by_tests(keys, kinds)
    asserted_04, asserted_05 = test_overrides("04")["cl_asserted"], test_overrides("05")["bd_asserted"]
    assert {k for k in reported if k[0] == "04"} == {k for k in keys[:2] if kinds[k[2]] not in asserted_04}
    assert ("05", "test", "retrain_removes") in reported and ("05", "test", "planted") not in reported
    assert (("05", "test", "survives_new_task") in reported) == ("survives_new_task" not in asserted_05)
    # at smoke only notebook 05's findings that today's smoke recipe leaves unasserted are reported
    smoke_05 = backdoor.recipe("smoke")["asserted"]
    assert {k for k in reported if k[1] == "smoke"} == {k for k in keys[-3:-1] if k[2] not in smoke_05}
    floor = test_overrides("03").get("adv_min_pgd_at_gain")  # the test that sets the gain's floor to 0 reports it
    assert (("03", "test", "pgd_at_gain") in reported) == (floor == 0)
    assert ("03", "test", "intervals_disjoint") not in reported
