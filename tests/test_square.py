"""Square attack: its schedule and update pattern against hand-computed values, the eps-ball and
[0, 1], the query count, seeds, agreement with torchattacks.Square, and the point of a
gradient-free attack: on a model with masked gradients PGD fails and Square does not. Also the
AutoAttack-style cascade of :func:`lib.robustness.autoattack_eval` (APGD-CE -> APGD-T -> Square).
"""
import sys

import pytest
import torch
import torch.nn as nn

from lib import attacks as A
from lib import data as D
from lib import robustness as R
from lib.models import build
from lib.train import fit

S = sys.modules["lib.attacks.square"]  # the module (lib.attacks.square is the function)

try:
    import torchattacks
except ImportError:  # the cross-check skips; everything else runs
    torchattacks = None

CLASSES = [0, 21, 42, 63, 84]


@pytest.fixture(scope="module")
def model():
    tr = D.subset_classes(D.load_synsigns("train", n=5 * 60, classes=CLASSES), CLASSES)
    torch.manual_seed(0)
    m = build("small_cnn", 5, width=8)
    fit(m, tr, epochs=6, lr=0.1, batch_size=32, seed=0, progress=False)
    return m.eval()


@pytest.fixture(scope="module")
def batch():
    te = D.subset_classes(D.load_synsigns("test", n=5 * 20, classes=CLASSES), CLASSES)  # 100 images
    return te.float_images(), te.labels


class Quantize(nn.Module):
    """Rounds pixels to 4 levels: zero gradient almost everywhere (gradient masking)."""

    def forward(self, x):
        return torch.round(x * 3) / 3


def correct(model, x, y) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) == y


def dist(d, norm):
    d = d.flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


# ------------------------------------------------------------------ the paper's ingredients
def test_p_schedule_halves_at_the_papers_milestones():
    p = lambda it, q=10000, rescale=True: S.p_schedule(0.8, it, q, rescale)
    assert [p(i) for i in (0, 10, 11, 50, 51, 200, 201, 8000, 8001, 9999)] == pytest.approx(
        [0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.1, 0.8 / 256, 0.8 / 512, 0.8 / 512])
    # rescaled to a 5,000-query budget (the reference code): iteration 6 reads the schedule at 12
    assert p(5, 5000) == 0.8 and p(6, 5000) == 0.4 and p(4001, 5000) == pytest.approx(0.8 / 512)
    assert p(6, 5000, rescale=False) == 0.8 and p(4001, 5000, rescale=False) == pytest.approx(0.8 / 128)


def test_l2_bump_is_the_papers_pseudo_gaussian():
    # 1 x 3 block: ring 0 at the centre (weight 1), ring 1 everywhere (1/4), as the reference code
    r = S._rings(1, 3, "cpu")
    assert torch.allclose(r, torch.tensor([[0.25, 1.25, 0.25]]) / torch.tensor([0.25, 1.25, 0.25]).norm())
    b = S._bump(5, "cpu")
    assert b.shape == (5, 5) and b.norm().item() == pytest.approx(1.0)
    assert (b[:2] > 0).all() and (b[2:] < 0).all()  # two halves of opposite sign
    assert b[:2].abs().argmax() == 1 * 5 + 2 and b[2:].abs().argmax() == 1 * 5 + 2  # each peaks at its centre


def test_margin_is_positive_exactly_when_correct():
    z = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    assert S.margin(z, torch.tensor([0, 0])).tolist() == [1.0, -5.0]


# ------------------------------------------------------------------ invariants
@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_output_in_the_eps_ball_and_in_unit_range(model, batch, norm, eps):
    x, y = batch
    x = torch.cat([x[:16], x[16:24].round()])  # saturated pixels: the [0, 1] clamp must matter
    y = y[:24]
    x_adv = A.square(model, x, y, eps, norm=norm, queries=30)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert dist(x_adv - x, norm).max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert correct(model, x_adv, y).sum() <= correct(model, x, y).sum()
    if norm == "linf":  # every changed pixel sits on the boundary of the ball or of [0, 1]
        d = (x_adv - x).abs()
        on_edge = (d - eps).abs() < 1e-6
        clamped = (x_adv == 0) | (x_adv == 1)
        assert (on_edge | clamped | (d < 1e-7)).all()


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_query_count(model, batch, norm, eps):
    x, y = batch[0][:40], batch[1][:40]
    budget = 25
    x_adv, q = A.square(model, x, y, eps, norm=norm, queries=budget, return_queries=True)
    clean, after = correct(model, x, y), correct(model, x_adv, y)
    assert q.dtype == torch.long and q.shape == (len(x),)
    assert (q <= budget).all()
    assert (q[~clean] == 0).all()                          # already misclassified: never queried
    assert (x_adv[~clean] == x[~clean]).all()
    assert (q[clean] >= 1).all()                           # the start is one query
    assert (q[after] == budget).all()                      # still correct: the whole budget was used
    assert (q[clean & ~after] < budget + 1).all() and (~after & clean).any()
    # an image is queried until it is misclassified, then left alone: with the schedule not
    # rescaled to the budget, a larger budget repeats the first 25 queries exactly
    _, q1 = A.square(model, x, y, eps, norm=norm, queries=budget, return_queries=True, rescale_schedule=False)
    _, q2 = A.square(model, x, y, eps, norm=norm, queries=budget + 10, return_queries=True, rescale_schedule=False)
    assert (q2[q1 < budget] == q1[q1 < budget]).all() and (q2[q1 == budget] > budget).any()


def test_seeded_and_leaves_the_global_rng_alone(model, batch):
    x, y = batch[0][:16], batch[1][:16]
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = A.square(model, x, y, 8 / 255, queries=15, seed=1)
    assert torch.equal(torch.rand(3), before)  # the private generator does not touch the global one
    assert torch.equal(a, A.square(model, x, y, 8 / 255, queries=15, seed=1))
    assert not torch.equal(a, A.square(model, x, y, 8 / 255, queries=15, seed=2))
    b = A.square(model, x, y, 0.5, norm="l2", queries=15, seed=1)
    assert torch.equal(b, A.square(model, x, y, 0.5, norm="l2", queries=15, seed=1))


def test_model_state_is_restored_and_inputs_checked(model, batch):
    x, y = batch[0][:8], batch[1][:8]
    model.train()
    for p in model.parameters():
        p.grad = None  # fit leaves the last step's gradients
    try:
        A.square(model, x, y, 8 / 255, queries=5)
        assert model.training and all(p.requires_grad for p in model.parameters())
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()
    with pytest.raises(ValueError, match="norm"):
        A.square(model, x, y, 8 / 255, norm="l1")
    with pytest.raises(ValueError, match="queries"):
        A.square(model, x, y, 8 / 255, queries=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        A.square(model, x * 255, y, 8 / 255)
    with pytest.raises(ValueError, match="p_init"):
        A.square(model, x, y, 8 / 255, p_init=1.5)


def test_eps_zero_leaves_the_images_unchanged(model, batch):
    x, y = batch[0][:16], batch[1][:16]
    assert torch.equal(A.square(model, x, y, 0.0, queries=10), x)


def test_registered_by_name(model, batch):
    x, y = batch[0][:16], batch[1][:16]
    direct = A.square(model, x, y, 4 / 255, queries=20, seed=3)
    assert torch.equal(A.attack_fn("square", eps=4 / 255, queries=20, seed=3)(model, x, y), direct)
    assert torch.equal(R.make_attack("square", 4 / 255, queries=20, seed=3)(model, x, y), direct)
    assert "square" in A.ATTACKS


# ------------------------------------------------------------------ strength
@pytest.mark.skipif(torchattacks is None, reason="torchattacks not installed (requirements-test.txt)")
@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 1.0)])
def test_about_as_strong_as_torchattacks_square(model, batch, norm, eps):
    # Another implementation of the same paper (torchattacks follows AutoAttack's code: one
    # window per batch, not per image): with the same budget and p_init the two random searches
    # leave robust accuracies within 10 of 100 images (measured over seeds: see the report).
    x, y = batch
    ours = int(correct(model, A.square(model, x, y, eps, norm=norm, queries=150), y).sum())
    ref = torchattacks.Square(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, n_queries=150, p_init=0.8,
                              seed=0)(x, y)
    theirs = int(correct(model, ref, y).sum())
    print(f"\nSquare {norm} eps={eps:.4f}, 150 queries, of {len(y)}: ours {ours}, torchattacks {theirs} correct")
    assert abs(ours - theirs) <= 10
    assert ours < int(correct(model, x, y).sum()) - 10  # it does bite


def test_square_succeeds_where_gradients_are_masked(model, batch):
    # Rounding the input to 4 levels zeroes the gradient: PGD and APGD barely move, the random
    # search of Square does not need gradients (measured: PGD 0.73, Square 0.22 at 300 queries).
    x, y = batch[0][:60], batch[1][:60]
    masked = nn.Sequential(Quantize(), model).eval()
    eps = 8 / 255
    clean = correct(masked, x, y).float().mean().item()
    pgd = correct(masked, A.pgd(masked, x, y, eps, 2.5 * eps / 20, 20, seed=0), y).float().mean().item()
    sq = correct(masked, A.square(masked, x, y, eps, queries=300), y).float().mean().item()
    print(f"\nquantised input, eps 8/255: clean {clean:.2f}, PGD-20 {pgd:.2f}, Square-300 {sq:.2f}")
    assert pgd >= clean - 0.1          # PGD fails
    assert sq <= pgd - 0.3             # Square succeeds


# ------------------------------------------------------------------ AutoAttack-style cascade
def test_autoattack_eval_runs_square_on_the_survivors(model, batch):
    x, y = batch[0][:40], batch[1][:40]
    r = R.autoattack_eval(model, x, y, 2 / 255, steps=5, n_target_classes=2, square_queries=60, batch_size=16)
    acc = r["acc_after"]
    assert list(acc) == list(R.AA_STAGES) and list(r["robust_after"]) == list(R.AA_STAGES)
    assert r["robust_acc"] == acc["square"] <= acc["apgd_t"] <= acc["apgd_ce"] <= r["clean_acc"]
    after = r["robust_after"]
    assert torch.equal(correct(model, r["x_adv"], y), after["square"])
    assert r["robust_acc"] == pytest.approx(after["square"].float().mean().item())
    # Square queried only the images APGD-T left robust, within its budget
    assert (r["queries"][~after["apgd_t"]] == 0).all() and (r["queries"][after["apgd_t"]] >= 1).all()
    assert r["queries"].max() <= 60
    assert dist(r["x_adv"] - x, "linf").max() <= 2 / 255 + 1e-6
    skip = R.autoattack_eval(model, x, y, 2 / 255, steps=5, n_target_classes=2, square_queries=0)
    assert list(skip["acc_after"]) == ["apgd_ce", "apgd_t"] and skip["robust_acc"] == skip["acc_after"]["apgd_t"]
    assert (skip["queries"] == 0).all()


def test_autoattack_eval_takes_given_stages(model, batch):
    x, y = batch[0][:40], batch[1][:40]
    ce = A.apgd(model, x, y, 2 / 255, steps=5)
    t = A.apgd(model, x, y, 2 / 255, steps=5, loss="dlr", targeted=True, n_target_classes=2)
    r = R.autoattack_eval(model, x, y, 2 / 255, steps=5, square_queries=20, given={"apgd_ce": ce, "apgd_t": t})
    assert torch.equal(r["robust_after"]["apgd_ce"], correct(model, ce, y))
    assert torch.equal(r["robust_after"]["apgd_t"], correct(model, ce, y) & correct(model, t, y))
    with pytest.raises(ValueError, match="given"):
        R.autoattack_eval(model, x, y, 2 / 255, given={"apgd_ce": ce[:3]})
