"""lib.backdoor.metrics: the backdoor rates and the defence scores (DER) against hand-computed cases."""
import math

import pytest
import torch

from lib.backdoor.metrics import backdoor_rates, defence_effect, der, flat


def test_rates_by_hand():
    # 6 images, target 0; labels 0,1,1,2,2,2
    y = torch.tensor([0, 1, 1, 2, 2, 2])
    clean = torch.tensor([0, 1, 0, 2, 2, 1])       # 4 right
    trig = torch.tensor([0, 0, 1, 0, 2, 0])        # non-target images: 1,1,2,2,2 -> 0,1,0,2,0
    r = backdoor_rates(clean, trig, y, 0)
    assert r["clean_acc"]["value"] == pytest.approx(4 / 6)
    assert (r["asr_bb"]["k"], r["asr_bb"]["n"]) == (3, 5)      # target excluded
    assert (r["ra"]["k"], r["ra"]["n"]) == (2, 5)              # still their true label
    assert (r["asr"]["k"], r["asr"]["n"]) == (3, 4)            # among clean-correct, target included
    assert r["asr_bb"]["low"] < 0.6 < r["asr_bb"]["high"]


def test_der_by_hand():
    # FT-SAM eq. 7: ASR 0.95 -> 0.05, ACC 0.91 -> 0.89: [0.90 - 0.02 + 1] / 2 = 0.94
    assert der(0.95, 0.05, 0.91, 0.89) == pytest.approx(0.94)
    assert der(0.95, 0.95, 0.91, 0.91) == 0.5                  # nothing changed
    assert der(0.5, 0.7, 0.8, 0.9) == 0.5                      # rises count 0 on both sides
    assert der(1.0, 0.0, 1.0, 1.0) == 1.0 and der(0.0, 0.0, 1.0, 0.0) == 0.0


def _row(acc_k, asr_k, n=100):
    y = torch.zeros(n, dtype=torch.long) + 1
    clean = torch.where(torch.arange(n) < acc_k, 1, 2)
    trig = torch.where(torch.arange(n) < asr_k, 0, 1)
    return flat(backdoor_rates(clean, trig, y, 0))


def test_defence_effect_intervals_bracket_the_point():
    before, after = _row(90, 95), _row(85, 10)
    e = defence_effect(before, after)
    assert e["d_asr"] == pytest.approx(0.85) and e["d_acc"] == pytest.approx(0.05)
    assert e["der"] == pytest.approx(der(0.95, 0.10, 0.90, 0.85)) == pytest.approx(0.9)
    for k in ("d_asr", "d_acc", "der"):
        assert e[f"{k}_low"] < e[k] < e[f"{k}_high"], k
    # the DER box: the lower end takes the smaller ASR drop and the larger accuracy drop
    assert e["der_low"] == pytest.approx((e["d_asr_low"] - e["d_acc_high"] + 1) / 2)
    # a defence that changes nothing: DER 0.5 inside its interval, drops' intervals straddle 0
    same = defence_effect(before, before)
    assert same["der"] == 0.5 and same["d_asr_low"] < 0 < same["d_asr_high"] and same["der_low"] < 0.5
    assert not math.isnan(same["der_high"])
