"""Evaluation and selection subsets keep every class; the eps-0 sanity check runs the attacks.

Real datasets are stored in class order (an ImageFolder lists class 0's files first): every
helper that takes "n images" to attack or to select on must return every class in proportion.
"""
import pytest
import torch
from torch import nn
from torch.utils.data import Subset

import lib.data.fixtures as F
from lib import data as D
from lib.adversarial_training import RobustCheckpoint, adversarial_train, pgd_val_attack
from lib.attacks import fgsm, pgd
from lib.data.real import load_real
from lib.evaluate import attack_table, eval_images
from lib.models import build
from lib.robustness import robustness_report

K = 10


def _class_ordered(per_class=20):
    """A class-ordered in-memory set: all of class 0, then all of class 1, ..."""
    ds = D.load_synsigns("train", n=K * per_class, classes=list(range(K)))
    ds = D.subset_classes(ds, list(range(K)))
    return ds.subset(ds.labels.argsort(stable=True))


def _in_proportion(counts: dict, n: int, k: int = K) -> bool:
    return set(counts) == set(range(k)) and max(counts.values()) - min(counts.values()) <= 1 and \
        sum(counts.values()) == n


def test_stratified_subset_of_every_kind_of_data_keeps_every_class(tmp_path):
    ds = _class_ordered()
    assert set(D.labels_of(ds)[:100].tolist()) == set(range(5))  # "the first 100" would drop half the classes
    folder = load_real("image_folder", "train", root=F.write_image_folder(tmp_path / "f", per_class={"train": 6}))
    for data in (ds, (ds.float_images(), ds.labels), folder, Subset(folder, list(range(len(folder))))):
        n, k = len(D.labels_of(data)) // 2, len(D.class_counts(data))
        sub = D.stratified_subset(data, n, seed=3)
        assert _in_proportion(D.class_counts(sub), n, k), type(data).__name__
        assert type(sub) is type(data) or isinstance(sub, Subset)
    # the same images for the same seed, others for another seed; all of it when n is None
    a, b = D.stratified_subset(ds, 50, seed=1), D.stratified_subset(ds, 50, seed=1)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, D.stratified_subset(ds, 50, seed=2).images)
    assert D.class_counts(D.stratified_subset(ds, None)) == D.class_counts(ds)
    # a subset of a file-backed set is keyed by which items it holds, and knows its classes
    s0, s1 = D.stratified_subset(folder, 9, seed=0), D.stratified_subset(folder, 9, seed=1)
    assert D.data_fingerprint(s0) != D.data_fingerprint(s1) and D.num_classes_of(s0) == len(folder.classes)
    # unbalanced classes stay in proportion
    y = torch.cat([torch.zeros(90), torch.ones(10)]).long()
    assert D.class_counts(D.stratified_subset((torch.rand(100, 3, 2, 2), y), 20)) == {0: 18, 1: 2}


class OnlyLastClass(nn.Module):
    """Predicts class K-1 for every image (a bias, and weights too small to matter): right
    exactly on the last class."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, K)
        with torch.no_grad():
            self.fc.weight.fill_(1e-6)
            self.fc.bias.zero_()
            self.fc.bias[K - 1] = 1.0

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_evaluation_and_selection_helpers_see_every_class():
    ds = _class_ordered()
    model = OnlyLastClass()
    # robustness report: on "the first half" this model would score 0 (class 9 absent)
    table, _ = robustness_report(model, ds, eps_list=(2 / 255,), pgd_steps=(1,), apgd=False, n=100, progress=False)
    assert table.query("attack == 'clean'")["acc"].item() == pytest.approx(0.1)
    ckpt = RobustCheckpoint(ds, pgd_val_attack(2 / 255, steps=1), n=60)
    assert _in_proportion(D.class_counts(ckpt.val), 60)
    x, y = eval_images(ds, 40)
    assert _in_proportion(D.class_counts((x, y)), 40)
    t = attack_table(model, {"m": model}, ds, transfer_attacks={}, n=40, progress=False)
    assert t["clean_acc"].item() == pytest.approx(0.1)


def test_eps_zero_runs_the_attack_iterations():
    torch.manual_seed(0)
    model = build("small_cnn", K, width=4).eval()
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    x, y = torch.rand(4, 3, 32, 32), torch.arange(4)
    assert torch.equal(pgd(model, x, y, 0.0, 0.01, 5), x) and len(calls) >= 5
    calls.clear()
    assert torch.equal(pgd(model, x, y, 0.0, 0.01, 5, zero_shortcut=True), x) and not calls
    assert torch.equal(fgsm(model, x, y, 0.0), x) and calls


def test_eps_zero_check_catches_a_projection_bug(monkeypatch):
    import lib.attacks.projected as P

    torch.manual_seed(0)
    ds = _class_ordered(10)
    model = build("small_cnn", K, width=8)
    from lib.train import fit

    fit(model, ds, epochs=2, lr=0.1, batch_size=25, progress=False)
    kw = dict(eps_list=(8 / 255,), pgd_steps=(3,), apgd=False, n=40, large_eps_steps=2, progress=False)
    _, checks = robustness_report(model, ds, **kw)
    assert checks.set_index("check").loc["eps=0 equals clean", "passed"]
    # a step that forgets to project onto the ball: at eps 0 PGD now moves the images
    monkeypatch.setattr(P, "linf_step", lambda x_adv, g, x0, alpha, eps: (x_adv + alpha * g.sign()).clamp(0, 1))
    _, checks = robustness_report(model, ds, **kw)
    assert not checks.set_index("check").loc["eps=0 equals clean", "passed"]


def test_training_metrics_are_named_for_what_they_measure_and_last_epoch_is_kept():
    ds = _class_ordered(12)
    train, val = D.train_val_split(ds, 0.25, seed=0)
    model = build("small_cnn", K, width=4, seed=0)
    hist = adversarial_train(model, train, val, "standard", select="last", epochs=1, batch_size=30, progress=False)
    assert "val_robust_acc" not in hist and "train_acc" in hist  # no attack paid for a model selected on "last"
    model = build("small_cnn", K, width=4, seed=0)
    last = {}
    hist = adversarial_train(model, train, val, "pgd_at", epochs=3, batch_size=30, steps=1, keep_last=last,
                             progress=False)
    assert "train_adv_acc" in hist and "train_acc" not in hist and "val_robust_acc" in hist
    assert last["epoch"] == 3 and hist.attrs["val_n"] == len(val)
    same = all(torch.equal(v, model.state_dict()[k]) for k, v in last["state"].items())
    assert same == (hist.attrs["selected_epoch"] == 3)
