"""lib.backdoor: triggers land where and how they say, poisoning and label flips change exactly
what they say, masked planting holds weights bit-identical, mag / divmag / fine-pruning select
exactly the stated weights and channels, and each metric on hand-made predictions."""
from __future__ import annotations

import copy

import pytest
import torch

import lib.backdoor as B
from lib import data as D
from lib.backdoor import Trigger, apply_trigger
from lib.models import build
from lib.train import fit

CLASSES = [3, 27, 51, 78]
FAST = dict(batch_size=32, progress=False, lr=0.05)


@pytest.fixture(scope="module")
def data():
    tr = D.subset_classes(D.load_synsigns("train", n=len(CLASSES) * 25, classes=CLASSES), CLASSES)
    te = D.subset_classes(D.load_synsigns("test", n=len(CLASSES) * 10, classes=CLASSES), CLASSES)
    return tr, te


@pytest.fixture(scope="module")
def model(data):
    m = build("small_cnn", len(CLASSES), width=8, seed=0)
    fit(m, data[0], epochs=1, **FAST)
    return m.eval()


# ----------------------------------------------------------------------------- triggers
def test_square_lands_bottom_right_with_full_alpha():
    x = torch.zeros(2, 3, 16, 20)
    out, mask = apply_trigger(x, Trigger.badnets(3))
    assert mask.shape == (2, 1, 16, 20) and mask.dtype == torch.bool
    assert mask[:, :, 13:, 17:].all() and mask.sum() == 2 * 9
    assert torch.equal(out[:, :, 13:, 17:], torch.ones(2, 3, 3, 3)) and out[~mask.expand_as(out)].abs().max() == 0
    assert x.abs().max() == 0  # the input is never modified


def test_emblem_alpha_blends_and_mask_is_where_alpha_is_positive():
    t = Trigger.emblem(0.25)
    rgb, alpha = t.render(32, 32)
    assert alpha.shape == (1, 8, 8) and 0 < alpha.min() + 1e-9 and (alpha > 0).sum() < 64  # round: corners transparent
    assert ((alpha > 0) & (alpha < 1)).any()  # an anti-aliased rim
    x = torch.rand(3, 3, 32, 32)
    out, mask = apply_trigger(x, t, "top_left")
    a = alpha[None]
    expected = a * rgb[None] + (1 - a) * x[:, :, :8, :8]
    assert torch.allclose(out[:, :, :8, :8], expected, atol=1e-6)
    assert torch.equal(mask[:, :, :8, :8], (a > 0).expand(3, 1, 8, 8)) and not mask[:, :, 8:].any()
    assert torch.equal(out[:, :, 8:], x[:, :, 8:])


def test_uint8_images_stay_uint8_and_blended_covers_everything():
    x = torch.full((2, 3, 16, 16), 100, dtype=torch.uint8)
    out, mask = apply_trigger(x, Trigger.blended(0.2))
    rgb, _ = Trigger.blended(0.2).render(16, 16)
    assert out.dtype == torch.uint8 and mask.all()
    assert torch.equal(out[0], (0.2 * rgb + 0.8 * 100 / 255).mul(255).round().to(torch.uint8))


@pytest.mark.parametrize("where", ["random", "corners"])
def test_random_positions_keep_the_whole_patch_inside(where):
    out, mask = apply_trigger(torch.zeros(64, 3, 12, 12), Trigger.badnets(3), where, seed=1)
    assert (mask.sum((1, 2, 3)) == 9).all()
    rows = mask.any(3).squeeze(1).float().argmax(1)
    assert len(rows.unique()) > 1
    if where == "corners":
        assert set(rows.tolist()) <= {0, 9}


def test_invalid_triggers_get_one_clear_error():
    with pytest.raises(ValueError, match="does not fit"):
        apply_trigger(torch.zeros(1, 3, 8, 8), Trigger.badnets(9))
    with pytest.raises(ValueError, match="where"):
        apply_trigger(torch.zeros(1, 3, 8, 8), Trigger.badnets(3), "middle")
    with pytest.raises(ValueError, match="fraction"):
        Trigger.emblem(1.5)


# ----------------------------------------------------------------------------- poisoning
def test_poison_changes_exactly_rate_of_images_and_only_their_labels(data):
    tr, _ = data
    p = B.poison(tr, Trigger.badnets(3), 0.2, target=1, seed=3)
    idx = p.info["poisoned"]
    assert int(idx.sum()) == int(0.2 * len(tr))
    assert (p.labels[idx] == 1).all() and torch.equal(p.labels[~idx], tr.labels[~idx])
    changed = (p.images != tr.images).flatten(1).any(1)
    assert not changed[~idx].any() and changed[idx].sum() >= idx.sum() - 1  # a white pixel may already be white
    assert torch.equal(p.info["true_labels"], tr.labels) and p.masks is tr.masks
    assert torch.equal(B.poison(tr, Trigger.badnets(3), 0.2, target=1, seed=3).images, p.images)  # seeded


def test_poison_rejects_bad_rate_and_target(data):
    tr, _ = data
    for rate in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            B.poison(tr, Trigger.badnets(3), rate, 0)
    with pytest.raises(ValueError, match="not a class"):
        B.poison(tr, Trigger.badnets(3), 0.1, target=len(CLASSES))


def test_label_flips_never_keep_the_true_label(data):
    tr, _ = data
    f = B.flip_labels(tr, 0.3, seed=5)
    idx = f.info["flipped"]
    assert int(idx.sum()) == int(0.3 * len(tr))
    assert (f.labels[idx] != tr.labels[idx]).all() and torch.equal(f.labels[~idx], tr.labels[~idx])
    assert torch.equal(f.images, tr.images)
    every = B.flip_labels(tr, 1.0, seed=0)
    assert (every.labels != tr.labels).all() and len(every.labels[tr.labels == 0].unique()) == len(CLASSES) - 1


# ----------------------------------------------------------------------------- weight selections
def test_smallest_is_global_and_exact():
    scores = {"a": torch.tensor([5.0, 1.0, 3.0]), "b": torch.tensor([[2.0, 4.0], [0.5, float("nan")]])}
    m = B.smallest(scores, 0.5)  # int(0.5 * 7) = 3 smallest: 0.5, 1, 2
    assert m["a"].tolist() == [False, True, False] and m["b"].tolist() == [[True, False], [True, False]]
    assert sum(int(v.sum()) for v in B.smallest(scores, 1.0).values()) == 7


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.37, 0.5, 0.9, 1.0])
def test_smallest_picks_the_first_of_a_stable_sort(fraction):
    """The linear-time selection picks what a stable sort's first k would: ties (here the many zeros a
    pruned network has, and equal values across tensors) go by position over the tensors in order."""
    g = torch.Generator().manual_seed(0)
    scores = {name: (torch.randint(0, 5, shape, generator=g).float() - 2) * (torch.rand(shape, generator=g) > 0.3)
              for name, shape in (("a", (7, 3)), ("b", (40,)), ("c", (2, 3, 4)))}
    scores["b"][[3, 9]] = float("nan")
    flat = torch.nan_to_num(torch.cat([v.flatten() for v in scores.values()]), nan=float("inf"))
    want = torch.zeros(len(flat), dtype=torch.bool)
    want[torch.sort(flat, stable=True).indices[:int(fraction * len(flat))]] = True
    got = torch.cat([m.flatten() for m in B.smallest(scores, fraction).values()])
    assert torch.equal(got, want)


@pytest.mark.parametrize("ratio", [0.05, 0.5, 0.8])
def test_mag_zeroes_exactly_the_stated_fraction(model, ratio):
    m = copy.deepcopy(model)
    weights = B.conv_weights(m)
    total = sum(p.numel() for p in weights.values())
    before = torch.cat([p.detach().abs().flatten() for p in weights.values()])
    masks = B.magnitude_prune(m, ratio)
    after = torch.cat([p.detach().flatten() for p in B.conv_weights(m).values()])
    assert int((after == 0).sum()) == int(ratio * total) == sum(int(v.sum()) for v in masks.values())
    kept = before[after != 0]
    assert kept.min() >= before[after == 0].max()  # one global threshold
    assert torch.equal(m.head.fc.weight, model.head.fc.weight)  # BN and head untouched


def test_divmag_score_on_a_hand_made_case():
    before = {"w": torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0])}
    after = {"w": torch.tensor([1.5, -2.2, 0.5, 0.3, 0.0])}
    s = B.divmag_scores(before, after)["w"]
    assert torch.allclose(s[:3], torch.tensor([0.5, 0.1, 0.0])) and s[3] == float("inf") and s[4].isnan()
    assert B.smallest({"w": s}, 0.4)["w"].tolist() == [False, True, True, False, False]
    bounded = B.divmag_scores(before, after, low_bound=1.0)["w"]
    assert torch.allclose(bounded, torch.tensor([0.5, 0.1, 0.0, 0.3, 0.0]))


def test_masked_planting_leaves_masked_weights_bit_identical(model, data):
    poisoned = B.poison(data[0], Trigger.badnets(3), 0.2, 0)
    planted, hist = B.plant(model, poisoned, update_ratio=0.7, epochs=1, weight_decay=5e-4, **FAST)
    masks = B.magnitude_masks(model, 0.7)
    assert hist.attrs["fixed"] == sum(int(v.sum()) for v in masks.values()) > 0
    before, after = B.conv_weights(model), B.conv_weights(planted)
    for k, m in masks.items():
        assert torch.equal(after[k][m], before[k][m]), k
        assert not torch.equal(after[k][~m], before[k][~m]), k  # the rest trained
    free, _ = B.plant(model, poisoned, update_ratio=0.0, epochs=1, **FAST)
    assert all(not torch.equal(B.conv_weights(free)[k][m], before[k][m]) for k, m in masks.items())


def test_fine_pruning_removes_the_channels_it_names(model, data):
    tr, _ = data
    act = B.channel_activity(model, tr)
    pruned_model, hist = B.fine_pruning(model, tr, ratio=0.5, epochs=1, **FAST)
    pruned = hist.attrs["pruned"]
    least_active = torch.sort(act, stable=True).indices[:len(pruned)].tolist()
    assert len(pruned) == int(0.5 * len(act)) and sorted(pruned) == sorted(least_active)
    out = pruned_model.features(tr.float_images(slice(0, 16)), ["conv4"], logits=False)["conv4"]
    assert out[:, pruned].abs().max() == 0 and out[:, [c for c in range(len(act)) if c not in pruned]].abs().max() > 0
    name, conv, _ = B.last_conv(model)
    assert name == "blocks.conv4.conv" and conv is model.blocks["conv4"].conv


# ----------------------------------------------------------------------------- metrics
def test_backdoor_rates_on_a_hand_made_case():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    clean = torch.tensor([0, 1, 1, 1, 2, 0])    # right: 0, 2, 3, 4
    trig = torch.tensor([0, 0, 0, 1, 0, 0])
    r = B.backdoor_rates(clean, trig, y, target=0)
    assert r["clean_acc"]["value"] == 4 / 6 and r["clean_acc"]["n"] == 6
    assert (r["asr"]["k"], r["asr"]["n"]) == (3, 4)            # authors: among clean-right, -> target (incl. class 0)
    assert (r["asr_bb"]["k"], r["asr_bb"]["n"]) == (3, 4)      # BackdoorBench: true class != 0
    assert (r["ra"]["k"], r["ra"]["n"]) == (1, 4)              # still the true class, true class != 0
    assert (r["untargeted_asr"]["k"], r["untargeted_asr"]["n"]) == (2, 4)
    assert r["asr"]["low"] < 0.75 < r["asr"]["high"]
    none = B.backdoor_rates(clean, trig, y, target=None)
    assert "asr" not in none and (none["ra"]["k"], none["ra"]["n"]) == (3, 6)


def test_backdoor_metrics_on_a_model(model, data):
    _, te = data
    row = B.backdoor_metrics(model, te, Trigger.badnets(3), 0)
    assert row["clean_acc_n"] == len(te) and row["asr_bb_n"] == int((te.labels != 0).sum())
    with pytest.raises(ValueError, match="not a class"):
        B.backdoor_metrics(model, te, Trigger.badnets(3), 7)


def test_file_backed_data_is_poisoned_after_its_transform(data):
    """A plain Dataset (as the full profile's 224-px real sets) gets the trigger per item."""
    tr, te = data

    class Files(torch.utils.data.Dataset):  # what a real loader looks like: float items, .targets, .classes
        classes = tr.classes

        def __len__(self):
            return len(tr)

        def __getitem__(self, i):
            return tr.images[i].float() / 255, int(tr.labels[i])

        @property
        def targets(self):
            return tr.labels.tolist()

    files = Files()
    mem = B.poison(tr, Trigger.badnets(3), 0.25, target=2, seed=4)
    wrapped = B.poison(files, Trigger.badnets(3), 0.25, target=2, seed=4)
    assert isinstance(wrapped, B.PoisonedImages) and torch.equal(wrapped.labels, mem.labels)
    for i in (0, int(mem.info["poisoned"].nonzero()[0])):
        x, y = wrapped[i]
        assert torch.allclose(x, mem.images[i].float() / 255, atol=1 / 255) and y == mem.labels[i]
    flipped = B.flip_labels(files, 0.5, seed=1)
    assert torch.equal(flipped.labels, B.flip_labels(tr, 0.5, seed=1).labels)
