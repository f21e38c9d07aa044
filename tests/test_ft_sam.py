"""lib.backdoor.ft_sam (FT-SAM, Zhu et al. ICCV 2023): the (A)SAM step on a quadratic computed by
hand, BatchNorm statistics untouched by the perturbed pass, determinism, the input model
untouched, and on the shared planted model (tests/backdoor_planted.py) FT-SAM lowers
BackdoorBench's ASR by a stated margin at a stated clean-accuracy cost, beats plain fine-tuning
at the same budget, and leaves a clean model usable.

Smoke recipe (BackdoorBench's configs scaled to 60 clean images of traffic signs): rho 2 and
adaptive (cifar10.yaml), no label smoothing (gtsrb.yaml, the traffic-sign config; cifar10.yaml's
0.1 left ASR at 0.305-0.345 here instead of 0.20-0.23), SGD lr 0.01 momentum 0.9 weight decay
5e-4, cosine (both configs); batch 10 (configs: 256 on 2,500 images, about 10 steps an epoch;
10 gives 6 steps an epoch on 60 images) and 40 epochs (configs: 100 / 50; 240 SAM steps here
against 500-1,000 there). gtsrb.yaml's radius rho 8 (20 epochs) cost 0.26-0.28 of clean
accuracy here; rho 4 (40 epochs) cost 0.08-0.15 for the same ASR as rho 2.

Measured, one thread, seeds 0 / 1 / 2 / 3 / 4 (clean acc / BackdoorBench ASR on 240 test images):
planted 0.842 / 0.975 -> FT-SAM 0.775/0.225, 0.779/0.230, 0.792/0.200, 0.787/0.310, 0.792/0.235;
plain fine-tuning (lib.train.fit, same epochs, lr, batch, optimiser, schedule and 3-px shifts;
identical to ft_sam with rho = 0) 0.829/0.395, 0.825/0.425, 0.846/0.295, 0.825/0.385,
0.850/0.470: FT-SAM's ASR is 0.075-0.235 lower, for 0.05-0.07 more clean accuracy lost.
Clean twin 0.858 / 0.010 -> FT-SAM 0.792/0.045, 0.779/0.045, 0.804/0.045 (seeds 0-2). The
asserted margins hold for seeds 0-2 of FT-SAM (``FT_SAM_TEST_SEED`` picks it; default 0).
"""
from __future__ import annotations

import copy
import math
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.backdoor.ft_sam import SamStep, ft_sam, sam_perturbation, smooth_cross_entropy
from lib.models import model_fingerprint
from lib.train import fit, random_translate
from tests.backdoor_planted import clean_acc_and_asr, one_thread, planted  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

SEED = int(os.environ.get("FT_SAM_TEST_SEED", "0"))
SMOKE = dict(epochs=40, lr=0.01, rho=2.0, adaptive=True, batch_size=10, label_smoothing=0.0)
MAX_ASR = 0.40       # measured 0.20-0.31 over seeds 0-4 (from 0.975)
MAX_ACC_COST = 0.12  # measured 0.050-0.067 over seeds 0-4 (from 0.842)
FT_MARGIN = 0.03     # FT-SAM's ASR below plain fine-tuning's by at least this; measured 0.075-0.235
CLEAN_MAX_ASR = 0.10  # the clean twin stays without a backdoor: measured 0.045 over seeds 0-2
CLEAN_MIN_ACC = 0.70  # measured 0.779-0.804 (from 0.858)




# ----------------------------------------------------------------------------- unit
class _Point(nn.Module):
    """A model whose output is its own weight vector: the criterion makes it a quadratic."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, x):
        return self.w


def _half_square(out, y):
    return 0.5 * out.pow(2).sum()  # L(w) = ||w||^2 / 2, grad L(w) = w


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_step_on_quadratic_by_hand(adaptive):
    """w = (3, 4), L = ||w||^2/2, g = w. SAM (rho 1): e = g/||g|| = (0.6, 0.8). ASAM (rho 1):
    T g = |w| g = (9, 16), ||T g|| = sqrt(337), e = w^2 g / sqrt(337) = (27, 64)/sqrt(337).
    Descent: the gradient at w + e is w + e; SGD (lr 0.1, no momentum) from w: w - 0.1 (w + e)."""
    w0 = torch.tensor([3.0, 4.0])
    e = torch.tensor([27.0, 64.0]) / math.sqrt(337.0) if adaptive else torch.tensor([0.6, 0.8])
    assert torch.allclose(sam_perturbation([w0], [w0], 1.0, adaptive)[0], e, atol=1e-6)
    assert torch.allclose(sam_perturbation([w0], [w0], 2.5, adaptive)[0], 2.5 * e, atol=1e-6)
    m = _Point([3.0, 4.0])
    step = SamStep(m.parameters(), rho=1.0, adaptive=adaptive, criterion=_half_square)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    loss, _, extras = step.loss(m, None, None)  # the order of lib.train.fit's loop
    assert torch.allclose(m.w.detach(), w0 + e, atol=1e-6)  # the loss is taken at w + e
    assert math.isclose(float(loss.detach()), 0.5 * float((w0 + e).pow(2).sum()), rel_tol=1e-6)
    assert math.isclose(float(extras["loss_at_w"]), 12.5, rel_tol=1e-6)
    opt.zero_grad()
    loss.backward()
    step.after_backward(m)
    assert torch.equal(m.w.detach(), w0)  # back at w before the step
    assert torch.allclose(m.w.grad, w0 + e, atol=1e-6)
    opt.step()
    assert torch.allclose(m.w.detach(), w0 - 0.1 * (w0 + e), atol=1e-6)


def test_zero_gradient_and_missing_gradient_give_no_perturbation():
    w = [torch.ones(3), torch.ones(2)]
    e = sam_perturbation(w, [torch.zeros(3), None], 2.0, True)
    assert all(torch.equal(t, torch.zeros_like(t)) for t in e)


def test_smooth_cross_entropy_matches_davda54():
    """1 - s on the label, s / (K - 1) on the others (davda54's smooth_crossentropy)."""
    logits, y, s = torch.randn(5, 6, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3, 5]), 0.1
    target = torch.full((5, 6), s / 5).scatter_(1, y[:, None], 1 - s)
    ref = -(target * F.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(smooth_cross_entropy(logits, y, s), ref, atol=1e-6)


def test_batchnorm_statistics_taken_from_the_unperturbed_pass_only():
    """davda54's bypass_bn: two forwards per step, the running statistics move once (as one
    plain forward at w would move them), and the momentum is restored."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(3))
    x, y = torch.rand(8, 3, 6, 6), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    net(x)
    ref = copy.deepcopy(net)
    ref(x)
    step = SamStep(net.parameters(), rho=2.0, adaptive=True)
    loss, _, _ = step.loss(net, x, y)
    loss.backward()
    step.after_backward(net)
    assert torch.allclose(net[1].running_mean, ref[1].running_mean, atol=1e-6)
    assert torch.allclose(net[1].running_var, ref[1].running_var, atol=1e-6)
    assert net[1].momentum == ref[1].momentum == 0.1


def test_deterministic_and_input_untouched():
    p = planted()
    before = model_fingerprint(p.model)
    kw = dict(SMOKE, epochs=2, seed=SEED)
    a, b = ft_sam(p.model, p.clean_small, **kw), ft_sam(p.model, p.clean_small, **kw)
    assert model_fingerprint(p.model) == before
    assert model_fingerprint(a) == model_fingerprint(b) != before
    assert not a.training


# ----------------------------------------------------------------------------- planted model
@pytest.fixture(scope="module")
def purified():
    p = planted()
    return ft_sam(p.model, p.clean_small, seed=SEED, **SMOKE)


def test_ft_sam_lowers_asr_at_a_small_accuracy_cost(purified):
    acc0, asr0 = clean_acc_and_asr(planted().model)
    acc, asr = clean_acc_and_asr(purified)
    print(f"FT-SAM seed {SEED}: clean acc {acc0:.3f} -> {acc:.3f}, ASR {asr0:.3f} -> {asr:.3f}")
    assert asr0 > 0.9
    assert asr <= MAX_ASR, f"ASR {asr:.3f} after FT-SAM (from {asr0:.3f})"
    assert acc >= acc0 - MAX_ACC_COST, f"clean accuracy {acc0:.3f} -> {acc:.3f}"


def test_ft_sam_beats_plain_fine_tuning_at_the_same_budget(purified):
    p = planted()
    ft = copy.deepcopy(p.model)
    fit(ft, p.clean_small, epochs=SMOKE["epochs"], lr=SMOKE["lr"], batch_size=SMOKE["batch_size"],
        momentum=0.9, weight_decay=5e-4, schedule="cosine", augment=random_translate(3), seed=SEED,
        progress=False)
    (acc_ft, asr_ft), (acc, asr) = clean_acc_and_asr(ft), clean_acc_and_asr(purified)
    print(f"seed {SEED}: fine-tuning {acc_ft:.3f}/{asr_ft:.3f}, FT-SAM {acc:.3f}/{asr:.3f}")
    assert asr <= asr_ft - FT_MARGIN, f"FT-SAM ASR {asr:.3f} vs fine-tuning {asr_ft:.3f}"


def test_ft_sam_keeps_a_clean_model_clean_and_usable():
    p = planted()
    m = ft_sam(p.clean_model, p.clean_small, seed=SEED, **SMOKE)
    acc, asr = clean_acc_and_asr(m)
    print(f"clean twin seed {SEED}: FT-SAM {acc:.3f}/{asr:.3f}")
    assert asr <= CLEAN_MAX_ASR and acc >= CLEAN_MIN_ACC
