"""Tests of lib.backdoor.strip (STRIP, Gao et al. 2019): entropy, AUC, ROC and threshold on
hand-made cases, and detection on the shared planted model (tests/backdoor_planted.py).

Measured when written (N = 20 blends from p.clean_small's 60 images, unit weights, clipped;
blend seeds 0, 1, 2): AUC triggered-vs-clean 0.929 / 0.935 / 0.940 on the planted model and
0.476 / 0.468 / 0.471 on the clean model; at the 1%-FRR threshold set on p.clean_small's own
entropies, FRR on clean test 0.037 / 0.025 / 0.017 and FAR on triggered test 0.415 / 0.445 /
0.560 (planted) vs FAR 0.98-0.99 on the clean model (there on every second test image, to keep the
file under a minute). The bars below keep a margin over these; under 2 threads (conftest) the
fixture trains to a slightly different model: AUC 0.935 / 0.941 / 0.946 (planted) vs 0.461 / 0.488 /
0.482 (clean, half the test set), FAR 0.455 / 0.520 / 0.600 vs 1.000, FRR 0.037 / 0.021 / 0.017.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lib.backdoor import triggered
from lib.backdoor.strip import (auc, prediction_entropy, roc, strip_entropy, strip_rates, strip_roc,
                                strip_threshold, superimpose)

SEEDS = (0, 1, 2)
N_BLEND = 20
AUC_PLANTED_MIN = 0.85   # measured >= 0.929
AUC_CLEAN_MAX = 0.65     # measured <= 0.476
AUC_GAP_MIN = 0.30       # measured >= 0.45
FAR_PLANTED_MAX = 0.75   # measured <= 0.56 at the 1% FRR threshold


# ---------------------------------------------------------------- hand-made cases

def test_entropy_one_hot_is_zero_and_uniform_is_log2_c():
    inf = float("inf")
    logits = torch.tensor([[0.0, -inf, -inf, -inf], [100.0, 0.0, 0.0, 0.0], [1.5, 1.5, 1.5, 1.5]])
    h = prediction_entropy(logits)
    assert h[0].item() == 0.0
    assert h[1].item() < 1e-30
    assert h[2].item() == pytest.approx(2.0, abs=1e-6)   # log2 4
    two = prediction_entropy(torch.tensor([[0.0, 0.0]]))
    assert two.item() == pytest.approx(1.0, abs=1e-6)


def test_superimpose_unit_weights_clipped():
    x = torch.tensor([0.2, 0.7, 1.0])
    o = torch.tensor([0.3, 0.6, 0.0])
    assert torch.allclose(superimpose(x, o), torch.tensor([0.5, 1.0, 1.0]))
    assert torch.allclose(superimpose(x, o, clip=False), torch.tensor([0.5, 1.3, 1.0]))
    assert torch.allclose(superimpose(x, o, weights=(0.5, 0.5)), torch.tensor([0.25, 0.65, 0.5]))


def test_auc_hand_computed():
    # negatives [0.1, 0.4], positives [0.35, 0.8]: pairs won 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3/4
    r = auc([0.1, 0.4], [0.35, 0.8])
    assert r["auc"] == pytest.approx(0.75)
    assert r["low"] <= 0.75 <= r["high"] and 0 <= r["low"] and r["high"] <= 1
    assert auc([0.5], [0.5])["auc"] == pytest.approx(0.5)          # a tie counts half
    assert auc([0.0, 1.0], [2.0, 3.0])["auc"] == 1.0
    # Hanley-McNeil SE at A = 0.75, n_pos = n_neg = 2, by hand
    q1, q2 = 0.75 / 1.25, 2 * 0.5625 / 1.75
    se = math.sqrt((0.75 * 0.25 + (q1 - 0.5625) + (q2 - 0.5625)) / 4)
    assert r["se"] == pytest.approx(se)


def test_roc_hand_computed():
    fpr, tpr, t = roc([0.1, 0.4], [0.35, 0.8])
    assert np.allclose(fpr, [0, 0, 0.5, 0.5, 1])
    assert np.allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert np.allclose(t[1:], [0.8, 0.4, 0.35, 0.1]) and t[0] == np.inf
    # STRIP's orientation: low entropy = triggered = positive
    fpr, tpr, a = strip_roc(clean_entropy=[1.0, 2.0], triggered_entropy=[0.1, 1.5])
    assert a["auc"] == pytest.approx(0.75)
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.75)


def test_auc_and_roc_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    g = np.random.default_rng(0)
    neg, pos = g.normal(0, 1, 70).round(1), g.normal(0.8, 1, 50).round(1)   # rounded: ties
    y, s = np.r_[np.zeros(70), np.ones(50)], np.r_[neg, pos]
    assert auc(neg, pos)["auc"] == pytest.approx(metrics.roc_auc_score(y, s))
    fpr, tpr, t = roc(neg, pos)
    f2, t2, th2 = metrics.roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(fpr, f2) and np.allclose(tpr, t2) and np.allclose(t[1:], th2[1:])


def test_threshold_and_rates_on_hand_made_list():
    clean = np.arange(1, 101, dtype=float)           # 1 .. 100
    t = strip_threshold(clean, frr=0.05)              # numpy linear quantile: 1 + 0.05 * 99
    assert t == pytest.approx(5.95)
    r = strip_rates(clean, [0.5, 3.0, 6.0, 50.0], t)
    assert (r["frr"]["k"], r["frr"]["n"], r["frr"]["value"]) == (5, 100, 0.05)
    assert (r["far"]["k"], r["far"]["n"], r["far"]["value"]) == (2, 4, 0.5)
    assert r["frr"]["low"] < 0.05 < r["frr"]["high"]
    tn = strip_threshold(clean, frr=0.05, method="normal")   # mean 50.5, sd 29.01
    assert tn == pytest.approx(50.5 - 1.6448536 * clean.std(ddof=1), rel=1e-6)
    with pytest.raises(ValueError):
        strip_threshold(clean, frr=0.0)


def test_entropy_is_seeded_and_batch_independent():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    g = torch.Generator().manual_seed(0)
    x, pool = torch.rand(5, 3, 2, 2, generator=g), torch.rand(8, 3, 2, 2, generator=g)
    a = strip_entropy(model, x, pool, n_blend=4, seed=1, batch_size=4)
    b = strip_entropy(model, x, pool, n_blend=4, seed=1, batch_size=400)
    assert a.shape == (5,) and torch.allclose(a, b)
    assert not torch.allclose(a, strip_entropy(model, x, pool, n_blend=4, seed=2))
    assert (a >= 0).all() and (a <= math.log2(3) + 1e-6).all()
    with pytest.raises(ValueError):
        strip_entropy(model, x, pool, n_blend=9)


# ---------------------------------------------------------------- the planted model

@pytest.fixture(scope="module")
def scores():
    from tests.backdoor_planted import planted

    p = planted()
    trig = triggered(p.test, p.trigger).images[p.test.labels != p.target]   # non-target classes only
    # the clean model on every second test image only (time: the gap to the planted model is ~10 SE)
    sets = {"planted": (p.model, p.test.images, trig), "clean": (p.clean_model, p.test.images[::2], trig[::2])}
    out = {}
    for name, (model, clean_x, trig_x) in sets.items():
        for seed in SEEDS:
            h = {k: strip_entropy(model, x, p.clean_small, n_blend=N_BLEND, seed=seed + off)
                 for k, x, off in (("clean", clean_x, 0), ("trig", trig_x, 100), ("defender", p.clean_small, 200))}
            _, _, a = strip_roc(h["clean"], h["trig"])
            rates = strip_rates(h["clean"], h["trig"], strip_threshold(h["defender"], frr=0.01))
            out[name, seed] = {"auc": a, **rates}
    for (name, seed), r in out.items():
        print(f"{name} seed {seed}: AUC {r['auc']['auc']:.3f} [{r['auc']['low']:.3f}, {r['auc']['high']:.3f}]"
              f" FRR {r['frr']['value']:.3f} FAR {r['far']['value']:.3f}")
    return out


def test_strip_separates_triggered_inputs_on_the_planted_model(scores):
    for seed in SEEDS:
        a = scores["planted", seed]["auc"]
        assert a["auc"] >= AUC_PLANTED_MIN, (seed, a)
        assert a["low"] > 0.5, (seed, a)


def test_strip_does_not_separate_on_the_clean_model(scores):
    for seed in SEEDS:
        planted, clean = scores["planted", seed]["auc"]["auc"], scores["clean", seed]["auc"]["auc"]
        assert clean <= AUC_CLEAN_MAX, (seed, clean)
        assert planted - clean >= AUC_GAP_MIN, (seed, planted, clean)


def test_far_at_one_percent_frr(scores):
    for seed in SEEDS:
        planted, clean = scores["planted", seed], scores["clean", seed]
        assert planted["far"]["value"] <= FAR_PLANTED_MAX, (seed, planted["far"])
        assert planted["far"]["high"] < clean["far"]["low"], (seed, planted["far"], clean["far"])
        # the threshold comes from 60 defender images, so the FRR on the 240 test images is loose
        assert planted["frr"]["value"] <= 0.10, (seed, planted["frr"])
