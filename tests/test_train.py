"""The one training loop: it learns, hooks replace batches, frozen modules stay fixed, seeds repeat."""
import math

import pytest
import torch
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


# ------------------------------------------------------------------ weight hooks and loss extras
def test_masked_weights_stay_bit_identical_under_momentum_and_weight_decay(five_classes):
    from lib.train import FixedWeights

    tr, _ = five_classes
    model = small()
    w = model.blocks["conv2"].conv.weight
    mask = torch.zeros_like(w, dtype=torch.bool)
    mask[: w.shape[0] // 2] = True  # the first half of the filters belong to an "earlier task"
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    fixed = FixedWeights(model, {"blocks.conv2.conv.weight": mask})
    fit(model, tr, epochs=2, lr=0.1, momentum=0.9, weight_decay=5e-3, batch_size=32, progress=False,
        after_backward=fixed.after_backward, after_step=fixed.after_step)
    after = dict(model.named_parameters())
    assert torch.equal(after["blocks.conv2.conv.weight"][mask], before["blocks.conv2.conv.weight"][mask])
    assert not torch.equal(after["blocks.conv2.conv.weight"][~mask], before["blocks.conv2.conv.weight"][~mask])
    assert not torch.equal(after["blocks.conv1.conv.weight"], before["blocks.conv1.conv.weight"])
    # without the hooks, momentum and weight decay move every weight
    free = small()
    ref = free.blocks["conv2"].conv.weight.detach().clone()
    fit(free, tr, epochs=1, lr=0.1, momentum=0.9, weight_decay=5e-3, batch_size=32, progress=False)
    assert not torch.equal(free.blocks["conv2"].conv.weight[mask], ref[mask])


def test_hooks_run_once_per_batch_in_order(five_classes):
    tr, _ = five_classes
    model = small()
    events = []

    def after_backward(m):
        assert m.blocks["conv1"].conv.weight.grad is not None
        events.append("b")

    fit(model, tr, epochs=1, lr=0.1, batch_size=100, progress=False, after_backward=after_backward,
        after_step=lambda m: events.append("s"))
    assert events == ["b", "s"] * (len(tr) // 100)


def test_loss_extras_are_epoch_means_in_the_history(five_classes):
    tr, _ = five_classes
    model = small()
    seen = []

    def loss(m, x, y):
        logits = m(x)
        v = torch.tensor(float(len(seen)))  # 0, 1, 2, ... per batch
        seen.append(v)
        return F.cross_entropy(logits, y), logits, {"counter": v, "const": 2.0}

    hist = fit(model, tr, epochs=2, lr=0.1, batch_size=100, progress=False, loss=loss)
    per_epoch = len(tr) // 100
    assert hist["counter"].tolist() == pytest.approx([(per_epoch - 1) / 2, per_epoch + (per_epoch - 1) / 2])
    assert hist["const"].tolist() == [2.0, 2.0]


def test_predict_runs_channels_last_and_gives_the_layout_back():
    """predict (and the attacks in its batch_hook) run the model channels-last, fp32: the same
    logits up to summation order, and afterwards the weights are contiguous again (in-place
    edits through view(-1), as lib.continual.ownership does, need that)."""
    import contextlib

    import lib.train as T
    from lib.models import build

    torch.manual_seed(0)
    model = build("small_cnn", 5, seed=0, width=8).eval()
    x, y = torch.rand(40, 3, 32, 32), torch.randint(0, 5, (40,))
    seen = []
    hook = lambda m, xb, yb: (seen.append(xb.is_contiguous(memory_format=torch.channels_last)
                                          and next(p for p in m.parameters() if p.dim() == 4)
                                          .is_contiguous(memory_format=torch.channels_last)) or xb, yb)
    logits, _ = T.predict(model, (x, y), batch_hook=hook, batch_size=16)
    assert seen == [True, True, True]
    assert all(p.is_contiguous() for p in model.parameters())
    next(p for p in model.parameters() if p.dim() == 4).data.view(-1)[0] = 0.0  # would raise if left channels-last
    model = build("small_cnn", 5, seed=0, width=8).eval()
    saved, T.channels_last_while = T.channels_last_while, lambda m: contextlib.nullcontext(False)
    try:
        plain, _ = T.predict(model, (x, y), batch_size=16)
    finally:
        T.channels_last_while = saved
    torch.testing.assert_close(logits, plain, rtol=1e-4, atol=1e-5)
    with T.channels_last_while(model.to(memory_format=torch.channels_last)) as inputs_too:
        assert inputs_too  # already channels-last (inside fit): inputs follow, the model is left as it is
    assert next(p for p in model.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)


def test_fit_trains_channels_last_on_the_cpu_and_gives_the_layout_back():
    """By default fit runs the CPU loop channels-last in fp32 (batches, the attack in batch_hook
    and the weights), the same steps as the default layout up to summation order; the weights
    are contiguous again afterwards."""
    import lib.train as T
    from lib.models import build

    if not torch.backends.mkldnn.is_available():
        pytest.skip("channels-last is the CPU default only where oneDNN runs the convolutions")
    x, y = torch.rand(96, 3, 32, 32), torch.randint(0, 5, (96,))
    seen = []

    def hook(m, xb, yb):
        w = next(p for p in m.parameters() if p.dim() == 4)
        seen.append(xb.is_contiguous(memory_format=torch.channels_last)
                    and w.is_contiguous(memory_format=torch.channels_last))
        return xb, yb

    runs = {}
    for layout in (None, False):
        model = build("small_cnn", 5, seed=0, width=8)
        T.fit(model, (x, y), epochs=2, batch_size=32, lr=0.05, channels_last=layout, batch_hook=hook,
              progress=False, seed=0)
        assert all(p.is_contiguous() for p in model.parameters())
        runs[layout] = model.state_dict()
    assert seen == [True] * 6 + [False] * 6
    for k, v in runs[None].items():
        torch.testing.assert_close(v, runs[False][k], rtol=1e-3, atol=1e-4, msg=k)

    class Flat(torch.nn.Module):  # no 4-D weights: its batches stay in the default layout
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3 * 32 * 32, 5)

        def forward(self, xb):
            return self.fc(xb.view(len(xb), -1))  # raises on a channels-last batch

    T.fit(Flat(), (x, y), epochs=1, batch_size=32, progress=False)
