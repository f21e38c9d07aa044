"""lib.backdoor.neural_cleanse (Wang et al. 2019) on the shared tiny planted model: the target's
reverse-engineered mask is the smallest and sits on the true trigger, the clean twin's class 0 is
unremarkable, the model is left untouched; the MAD rule and the lambda schedule on hand cases.

Measured at STEPS = 60 (one mini-batch of 32 a step, the authors' 60 // 32), method seeds 0, 100,
200 (fixture fixed), while other jobs shared the CPU:
  planted: norms [16.1, 102.9, 37.9, 36.6, 60.0, 68.3], [15.4, 95.0, 38.1, 27.8, 78.0, 63.2],
           [20.9, 97.1, 42.6, 45.2, 65.6, 58.4]; class 0 / next smallest 0.44, 0.55, 0.49;
           class 0 mask share in the bottom-right 8x8 0.44, 0.54, 0.40 (uniform: 0.0625);
           class 0 anomaly index 1.40, 0.95, 1.81: NOT flagged at the paper's 2 (six classes with
           a wide natural spread of norms, 28-110, make the MAD large); nothing flagged.
  clean:   class 0 norm 97.1, 103.2, 83.5 against medians 59.2, 54.6, 63.0 (ratio >= 1.33);
           nothing flagged.
"""
from __future__ import annotations

import copy

import pytest
import torch

from lib.backdoor.neural_cleanse import CostSchedule, anomaly_index, flag, neural_cleanse, reverse_engineer
from tests.backdoor_planted import planted

STEPS = 60
K = 6


@pytest.fixture(scope="module")
def p():
    # one thread while this module runs (conftest asks for 2; on a shared core two threads thrash),
    # restored after
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield planted()
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def planted_nc(p):
    before = copy.deepcopy(p.model.state_dict()), [None if q.grad is None else q.grad.clone()
                                                    for q in p.model.parameters()]
    res = neural_cleanse(p.model, p.clean_small, K, steps=STEPS, seed=0)
    return res, before


@pytest.fixture(scope="module")
def clean_nc(p):
    return neural_cleanse(p.clean_model, p.clean_small, K, steps=STEPS, seed=0)


# ----------------------------------------------------------------------------- MAD rule by hand
def test_anomaly_index_by_hand():
    # norms [10, 11, 12, 13, 2]: median 11; |x - 11| = [1, 0, 1, 2, 9], their median 1;
    # 1.4826 * 1 = 1.4826; indices [1, 0, 1, 2, 9] / 1.4826 = [0.6745, 0, 0.6745, 1.3490, 6.0704].
    ai = anomaly_index([10, 11, 12, 13, 2])
    assert torch.allclose(ai, torch.tensor([0.6745, 0, 0.6745, 1.3490, 6.0704], dtype=torch.float64), atol=1e-4)
    assert flag([10, 11, 12, 13, 2]).tolist() == [False, False, False, False, True]  # 2 < 11 and 6.07 > 2


def test_anomaly_index_even_count_and_large_outlier_not_flagged():
    # norms [1, 2, 3, 4, 5, 20]: median (3 + 4) / 2 = 3.5 (numpy's median, as the authors');
    # |x - 3.5| = [2.5, 1.5, 0.5, 0.5, 1.5, 16.5], median (1.5 + 1.5) / 2 = 1.5; 1.4826 * 1.5 = 2.2239;
    # indices: 2.5 / 2.2239 = 1.1242, ..., 16.5 / 2.2239 = 7.4194 — but 20 is ABOVE the median.
    ai = anomaly_index([1, 2, 3, 4, 5, 20])
    assert ai[0] == pytest.approx(2.5 / 2.2239, abs=1e-4) and ai[5] == pytest.approx(7.4194, abs=1e-4)
    assert not flag([1, 2, 3, 4, 5, 20]).any()
    assert anomaly_index([3, 3, 3, 1]).tolist() == [0, 0, 0, float("inf")]  # zero MAD


def test_cost_schedule_up_by_1_5_down_by_1_5_pow_1_5():
    s = CostSchedule(1e-3, 1.5, 0.99, patience=5, early_stop_patience=25)
    for _ in range(5):
        s.update(1.0, 10.0)
    assert s.cost == pytest.approx(1.5e-3) and s.reg_best == 10.0
    for _ in range(5):
        best, _ = s.update(0.5, 1.0)  # below the threshold: never the best, however small
        assert not best
    assert s.cost == pytest.approx(1.5e-3 / 1.5 ** 1.5) and s.reg_best == 10.0


# ----------------------------------------------------------------------------- planted vs clean
def test_planted_target_has_smallest_mask_on_the_trigger(planted_nc, p):
    res, _ = planted_nc
    t = res["table"]
    norms = t["mask_l1"].sort_values()
    assert norms.index[0] == p.target
    assert norms.iloc[0] < 0.65 * norms.iloc[1]  # measured 0.44-0.55 over 3 seeds
    mask = res["masks"][p.target, 0]
    share = float(mask[-8:, -8:].sum() / mask.sum())
    assert share > 0.3  # measured 0.40-0.54; a uniform mask would give 64 / 1024 = 0.0625
    assert t.loc[p.target, "success"] >= 0.95  # measured 0.98-1.0
    assert res["flagged"] in ([], [p.target])  # no wrong class; the target itself not flagged at 2 here
    assert res["masks"].shape == (K, 1, 32, 32) and res["patterns"].shape == (K, 3, 32, 32)
    assert 0 <= float(res["patterns"].min()) and float(res["patterns"].max()) <= 1


def test_clean_model_class0_unremarkable(clean_nc, p):
    t = clean_nc["table"]
    assert p.target not in clean_nc["flagged"]
    assert t.loc[p.target, "mask_l1"] > 1.15 * t["mask_l1"].median()  # measured ratio >= 1.33


def test_model_left_untouched(planted_nc, p):
    _, (state, grads) = planted_nc
    after = p.model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    # gradients left as training left them (only mask and pattern are differentiated)
    assert all((g is None and q.grad is None) or torch.equal(g, q.grad) for g, q in zip(grads, p.model.parameters()))
    assert not p.model.training


def test_reverse_engineer_restores_training_mode(p):
    m = copy.deepcopy(p.model).train()
    mask, pattern, succ = reverse_engineer(m, p.clean_small.images[:8], 0, steps=2, seed=0)
    assert m.training and mask.shape == (1, 32, 32) and pattern.shape == (3, 32, 32) and 0 <= succ <= 1
