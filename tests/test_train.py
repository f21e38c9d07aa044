"""The one training loop: it learns, hooks replace batches, frozen modules stay fixed, seeds repeat."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from lib import data as D
from lib.models import build
from lib.train import Batches, evaluate, fit, freeze, predict, random_translate


@pytest.fixture(scope="module")
def five_classes():
    classes = [0, 21, 42, 63, 84]  # differ in shape, colours and glyph
    tr = D.subset_classes(D.load_synsigns("train", n=5 * 60, classes=classes), classes)
    te = D.subset_classes(D.load_synsigns("test", n=5 * 30, classes=classes), classes)
    return tr, te


def small(num_classes=5):
    return build("small_cnn", num_classes, width=8)


def test_fit_learns_well_above_chance(five_classes):
    tr, te = five_classes
    model = small()
    before = evaluate(model, te)["acc"]
    hist = fit(model, tr, val=te, epochs=6, lr=0.1, batch_size=32, progress=False)
    assert list(hist["epoch"]) == list(range(1, 7))
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    acc = evaluate(model, te)["acc"]
    assert acc > 0.6 and acc > before + 0.2, (before, acc)
    assert hist["val_acc"].iloc[-1] == pytest.approx(acc)
    assert not model.training  # fit leaves the model in eval mode


def test_batch_hook_replaces_the_batch(five_classes):
    tr, _ = five_classes
    calls = []

    def hook(model, x, y):
        calls.append(len(y))
        return x, torch.zeros_like(y)  # every label replaced by class 0

    model = small()
    fit(model, tr, epochs=2, lr=0.05, batch_size=50, batch_hook=hook, progress=False)
    assert len(calls) == 2 * (len(tr) // 50)
    logits, _ = predict(model, tr)
    assert (logits.argmax(1) == 0).float().mean() > 0.95  # it learned the hook's labels, not the data's


def test_custom_loss_and_early_stop(five_classes):
    tr, _ = five_classes
    seen = []

    def loss(model, x, y):
        return F.cross_entropy(model(x), y)  # no logits returned: train_acc is not measured

    hist = fit(small(), tr, epochs=5, batch_size=50, loss=loss, progress=False,
               on_epoch_end=lambda e, row, m: seen.append(e) or e == 2)
    assert seen == [1, 2] and len(hist) == 2 and math.isnan(hist["train_acc"].iloc[0])


def test_frozen_blocks_stay_bit_identical_including_batchnorm_stats(five_classes):
    tr, _ = five_classes
    model = small()
    freeze(model.blocks["conv1"])
    freeze(model.blocks["conv2"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, tr, epochs=1, batch_size=50, lr=0.1, progress=False)
    after = model.state_dict()
    for k in before:
        frozen = k.startswith(("blocks.conv1.", "blocks.conv2."))
        if frozen or k.startswith("normalize."):
            assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["blocks.conv3.conv.weight"], after["blocks.conv3.conv.weight"])
    assert not torch.equal(before["blocks.conv3.bn.running_mean"], after["blocks.conv3.bn.running_mean"])


def test_same_seed_same_weights(five_classes):
    tr, _ = five_classes
    a, b = small(), small()
    b.load_state_dict(a.state_dict())
    fit(a, tr, epochs=1, batch_size=50, augment=random_translate(2), seed=7, progress=False)
    fit(b, tr, epochs=1, batch_size=50, augment=random_translate(2), seed=7, progress=False)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_batches_cover_each_image_once_as_float_in_unit_range(five_classes):
    tr, _ = five_classes
    b = Batches(tr, 64, torch.device("cpu"), shuffle=True, seed=0)
    xs, ys = zip(*b)
    x, y = torch.cat(xs), torch.cat(ys)
    assert len(b) == math.ceil(len(tr) / 64) and len(y) == len(tr)
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert torch.equal(torch.bincount(y), torch.bincount(tr.labels))
    # each image exactly once: sorted bytes of the batches equal the dataset's
    key = lambda imgs: sorted((imgs * 255).round().to(torch.uint8).flatten(1).sum(1).tolist())
    assert key(x) == key(tr.float_images())
    xs2, _ = zip(*b)  # the next epoch is another order
    assert not torch.equal(torch.cat(xs2), x)


def test_file_backed_datasets_go_through_a_dataloader(five_classes):
    tr, te = five_classes
    ds = TensorDataset(tr.float_images(), tr.labels)
    model = small()
    fit(model, ds, epochs=3, lr=0.1, batch_size=32, progress=False)
    assert evaluate(model, TensorDataset(te.float_images(), te.labels))["acc"] > 0.4


def test_random_translate_shifts_within_pad():
    x = torch.rand(16, 3, 12, 12)
    assert torch.equal(random_translate(0)(x), x)
    y = random_translate(2)(x)
    assert y.shape == x.shape and not torch.equal(y, x)
    # the centre 8x8 of y is a shifted crop of x: some offset within +-2 matches exactly
    for i in range(4):
        hits = [torch.equal(y[i, :, 2:10, 2:10], x[i, :, 2 + dy:10 + dy, 2 + dx:10 + dx])
                for dy in range(-2, 3) for dx in range(-2, 3)]
        assert any(hits)


def test_too_small_dataset_is_a_clear_error(five_classes):
    tr, _ = five_classes
    with pytest.raises(ValueError, match="fewer than one batch"):
        fit(small(), tr.subset(range(10)), epochs=1, batch_size=32, progress=False)
