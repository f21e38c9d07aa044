"""Adversarial training through the one ``fit`` loop: hooks, losses, robust checkpoints, the effect."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from lib import data as D
from lib.adversarial_training import (
    METHODS,
    RobustCheckpoint,
    adversarial_train,
    fgsm_rs,
    ll_fgsm_mix,
    ll_fgsm_per_image,
    pgd_at,
    pgd_val_attack,
    trades,
)
from lib.attacks import as_batch_hook, ll_fgsm
from lib.models import build
from lib.train import evaluate, fit

EPS = 8 / 255
CLASSES = [0, 21, 42, 63, 84]  # differ in shape, colours and glyph


@pytest.fixture(scope="module")
def five_classes():
    sets = {}
    for split, per in (("train", 60), ("val", 20), ("test", 30)):
        ds = D.load_synsigns(split, n=5 * per, classes=CLASSES)
        sets[split] = D.subset_classes(ds, CLASSES)
    return sets["train"], sets["val"], sets["test"]


def small():
    torch.manual_seed(0)
    return build("small_cnn", 5, width=8)


@pytest.fixture(scope="module")
def trained(five_classes):
    """A standard and a PGD-AT model with the same budget: architecture, init, data, epochs,
    optimiser, schedule, seed, selection (last epoch)."""
    tr, val, _ = five_classes
    models, hists = {}, {}
    for method in ("standard", "pgd_at"):
        m = small()
        hists[method] = adversarial_train(m, tr, val, method, eps=EPS, epochs=6, lr=0.1, batch_size=32,
                                          val_n=50, select="last", progress=False)
        models[method] = m
    return models, hists


def batch(ds, n=32):
    return ds.float_images(range(n)), ds.labels[:n]


# ----------------------------------------------------------------------------- hooks
@pytest.mark.parametrize("make", [pgd_at, fgsm_rs], ids=["pgd_at", "fgsm_rs"])
def test_hooks_return_images_in_the_eps_ball_and_unit_range(make, five_classes, trained):
    tr, _, _ = five_classes
    model = copy.deepcopy(trained[0]["standard"]).train()
    x, y = batch(tr)
    x_adv, y2 = make(eps=EPS)(model, x, y)
    assert torch.equal(y2, y)
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not torch.equal(x_adv, x)
    assert model.training  # the attack's eval mode is undone
    assert all(p.grad is None for p in model.parameters())
    # the hook attacks: accuracy on its batch is lower than on the clean batch
    with torch.no_grad():
        model.eval()
        assert (model(x_adv).argmax(1) == y).sum() < (model(x).argmax(1) == y).sum()


def test_hook_defaults_follow_the_papers():
    assert pgd_at().config == {"method": "pgd_at", "eps": EPS, "alpha": pytest.approx(2 / 255), "steps": 7,
                               "norm": "linf"}
    assert fgsm_rs().config["alpha"] == pytest.approx(10 / 255)  # Wong et al.: alpha = 1.25 eps
    assert fgsm_rs(eps=4 / 255).config["alpha"] == pytest.approx(5 / 255)
    t = trades()
    assert (t.beta, t.eps, t.steps) == (6.0, EPS, 7) and t.alpha == pytest.approx(2 / 255)
    mix = ll_fgsm_mix()
    assert (mix.eps_max, mix.adv_fraction, mix.adv_weight) == (pytest.approx(16 / 255), 0.5, 0.3)


# ----------------------------------------------------------------------------- every method trains through fit
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_through_fit_in_train_mode(method, five_classes):
    """History rows with finite losses; the attack runs in eval mode and the update in train mode
    (BatchNorm sees the training batches: its running statistics move). No validation here, so
    every forward pass seen is a training one."""
    tr, _, _ = five_classes
    model = small()
    bn = model.blocks["conv2"].bn
    modes = set()  # (bn.training, grad enabled) at every forward through the BN layer
    handle = bn.register_forward_hook(lambda mod, inp, out: modes.add((mod.training, torch.is_grad_enabled())))
    before = bn.running_mean.clone()
    hist = adversarial_train(model, tr.subset(range(160)), None, method, epochs=2, lr=0.05, batch_size=32,
                             select="last", progress=False)
    handle.remove()
    assert list(hist["epoch"]) == [1, 2] and (hist["method"] == method).all()
    assert hist["train_loss"].map(math.isfinite).all()
    assert list(hist["selected"]) == [False, True]
    assert not torch.equal(bn.running_mean, before)  # updates ran in train mode
    # standard: only training forwards; adversarial: also the attack's, in eval mode with gradients
    # (and eval-mode no-grad passes: TRADES' clean target, the least-likely class)
    if method == "standard":
        assert modes == {(True, True)}
    else:
        assert {(True, True), (False, True)} <= modes <= {(True, True), (False, True), (False, False)}
    assert not model.training


# ----------------------------------------------------------------------------- TRADES
def test_trades_loss_is_ce_at_beta_zero_and_above_it_otherwise(five_classes, trained):
    tr, _, _ = five_classes
    model = copy.deepcopy(trained[0]["standard"]).train()
    x, y = batch(tr, 48)
    loss0, logits0 = trades(beta=0.0)(model, x, y)
    ce_logits = model(x)
    ce = F.cross_entropy(ce_logits, y)
    assert torch.allclose(logits0, ce_logits) and abs(loss0.item() - ce.item()) < 1e-6
    t6 = trades(beta=6.0)
    loss6, _ = t6(model, x, y)
    assert loss6.item() > ce.item() and t6.last["robust"].item() > 0
    assert loss6.item() == pytest.approx(t6.last["natural"].item() + 6.0 * t6.last["robust"].item(), rel=1e-5)
    assert model.training and all(p.grad is None for p in model.parameters())
    # the inner maximisation stays in the eps-ball and [0, 1] and moves away from x
    x_adv = t6.perturb(model, x)
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > EPS / 2
    assert model.training


# ----------------------------------------------------------------------------- Kurakin et al. mix
def test_ll_fgsm_mix_replaces_the_stated_fraction(five_classes, trained):
    tr, _, _ = five_classes
    model = copy.deepcopy(trained[0]["standard"]).train()
    x, y = batch(tr, 40)
    mix = ll_fgsm_mix(eps_max=16 / 255, adv_fraction=0.25, adv_weight=0.3)
    loss, logits = mix(model, x, y)
    last = mix.last
    assert last["n_adv"] == 10 and last["mask"].sum() == 10 and last["n"] == 40
    x_mix, mask, eps = last["x"], last["mask"], last["eps"]
    assert torch.equal(x_mix[~mask], x[~mask])  # clean images untouched
    assert ((eps >= 0) & (eps <= 16 / 255)).all()
    dev = (x_mix[mask] - x[mask]).flatten(1).abs().amax(1)
    assert (dev <= eps + 1e-6).all() and (dev > 0).any()
    assert model.training
    # loss = (sum CE clean + lambda sum CE adv) / (n_clean + lambda n_adv), on the mixed batch
    ce = F.cross_entropy(model(x_mix), y, reduction="none")
    expected = (ce[~mask].sum() + 0.3 * ce[mask].sum()) / (30 + 0.3 * 10)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_per_image_budgets_match_the_library_attack(five_classes, trained):
    tr, _, _ = five_classes
    model = trained[0]["standard"]
    x, _ = batch(tr, 8)
    for e in (0.0, 2 / 255, 16 / 255):
        got = ll_fgsm_per_image(model, x, torch.full((8,), e))
        assert torch.equal(got, ll_fgsm(model, x, e))
    e = torch.linspace(0, 16 / 255, 8)
    got = ll_fgsm_per_image(model, x, e)
    for i in range(8):
        assert torch.equal(got[i:i + 1], ll_fgsm(model, x[i:i + 1], float(e[i])))


def test_truncated_normal_budgets():
    torch.manual_seed(0)
    e = ll_fgsm_mix(eps_max=16 / 255).sample_eps(20_000, "cpu")
    assert e.min() >= 0 and e.max() <= 16 / 255
    # N(0, eps_max/2) truncated to [0, eps_max]: mean = 0.36 eps_max, most mass near 0
    assert 0.33 < e.mean().item() / (16 / 255) < 0.39


# ----------------------------------------------------------------------------- RobustCheckpoint
class FakeAccs:
    """An on_epoch_end that feeds made-up robust accuracies to a RobustCheckpoint and snapshots
    the weights of every epoch."""

    def __init__(self, ckpt, accs):
        self.ckpt, self.accs, self.states = ckpt, accs, {}

    def __call__(self, epoch, row, model):
        self.states[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        return self.ckpt.update(epoch, row, model, self.accs[epoch - 1])


def test_robust_checkpoint_restores_the_best_epoch_bit_identical(five_classes):
    tr, val, _ = five_classes
    model = small()
    ckpt = RobustCheckpoint(val, pgd_val_attack(EPS, steps=2), n=20)
    fake = FakeAccs(ckpt, [0.2, 0.5, 0.4, 0.3])
    hist = fit(model, tr.subset(range(128)), val=val, epochs=4, lr=0.05, batch_size=32, on_epoch_end=fake,
               progress=False)
    assert list(hist["val_robust_acc"]) == [0.2, 0.5, 0.4, 0.3] and ckpt.best_epoch == 2
    last = {k: v.clone() for k, v in model.state_dict().items()}
    assert not all(torch.equal(last[k], fake.states[2][k]) for k in last)
    ckpt.restore(model)
    for k, v in model.state_dict().items():  # parameters and BatchNorm buffers
        assert torch.equal(v, fake.states[2][k]), k
    # measured for real, the row gets the accuracy under the attack
    row = {}
    assert ckpt(5, row, model) is False and 0 <= row["val_robust_acc"] <= 1


def test_robust_checkpoint_ties_go_to_higher_clean_accuracy():
    model = small()
    ckpt = RobustCheckpoint((torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)), pgd_val_attack(EPS))
    for epoch, (rob, clean) in enumerate([(0.3, 0.5), (0.3, 0.6), (0.3, 0.55), (0.2, 0.9)], 1):
        ckpt.update(epoch, {"val_acc": clean}, model, rob)
    assert ckpt.best_epoch == 2


def test_early_stop_on_a_drop_below_the_best(five_classes):
    model = small()
    ckpt = RobustCheckpoint((torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)), pgd_val_attack(EPS),
                            early_stop_drop=0.2)
    stops = [ckpt.update(e, {}, model, a) for e, a in enumerate([0.30, 0.45, 0.40, 0.26, 0.20], 1)]
    assert stops == [False, False, False, False, True]  # 0.26 is 0.19 below the best, 0.20 is 0.25 below
    assert ckpt.stopped_epoch == 5 and ckpt.best_epoch == 2
    # inside fit: training stops at the epoch of the drop
    tr, val, _ = five_classes
    ckpt = RobustCheckpoint(val, pgd_val_attack(EPS, steps=1), n=8, early_stop_drop=0.2)
    hist = fit(small(), tr.subset(range(64)), epochs=6, batch_size=32, progress=False,
               on_epoch_end=FakeAccs(ckpt, [0.3, 0.5, 0.2, 0.6, 0.6, 0.6]))
    assert list(hist["epoch"]) == [1, 2, 3] and ckpt.stopped_epoch == 3


def test_fgsm_rs_stops_on_catastrophic_overfitting_by_default(five_classes):
    tr, val, _ = five_classes
    hist = adversarial_train(small(), tr.subset(range(64)), val, "fgsm_rs", epochs=1, batch_size=32, val_n=8,
                             progress=False)
    assert hist.attrs["early_stop_drop"] == 0.2
    hist = adversarial_train(small(), tr.subset(range(64)), val, "pgd_at", steps=1, epochs=1, batch_size=32,
                             val_n=8, progress=False)
    assert hist.attrs["early_stop_drop"] is None and hist.attrs["config"]["steps"] == 1  # method kwargs routed


def test_select_best_robust_keeps_the_selected_epochs_weights(five_classes):
    """After training, the model's robust val accuracy (same attack, same images) is the one the
    history records for the selected epoch, which is the best epoch."""
    tr, val, _ = five_classes
    model = small()
    attack = pgd_val_attack(EPS, steps=3)
    hist = adversarial_train(model, tr.subset(range(160)), val, "standard", epochs=4, lr=0.1, batch_size=32,
                             val_attack=attack, val_n=60, select="best_robust", progress=False)
    sel = hist[hist["selected"]]
    assert len(sel) == 1 and sel["val_robust_acc"].item() == hist["val_robust_acc"].max()
    assert hist.attrs["selected_epoch"] == sel["epoch"].item()
    acc = evaluate(model, D.stratified_subset(val, 60), batch_hook=as_batch_hook(attack))["acc"]
    assert acc == pytest.approx(sel["val_robust_acc"].item())


# ----------------------------------------------------------------------------- the effect
def test_pgd_at_is_more_robust_than_standard_training_with_the_same_budget(five_classes, trained):
    _, _, te = five_classes
    models, hists = trained
    attack = as_batch_hook(pgd_val_attack(EPS, steps=10))
    res = {m: (evaluate(models[m], te)["acc"], evaluate(models[m], te, batch_hook=attack)["acc"]) for m in models}
    print(f"\nclean / PGD-10 at 8/255 accuracy on {len(te)} test images: "
          + ", ".join(f"{m}: {c:.3f} / {r:.3f}" for m, (c, r) in res.items()))
    assert res["pgd_at"][1] > res["standard"][1] + 0.1
    assert res["standard"][0] > 0.5  # the standard model learned the task; its robustness is what is missing
