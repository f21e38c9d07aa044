"""Tests of lib.models: shapes, the Normalize layer inside, blocks/stages, heads, and loading
weights (torch hub cache, DenseNet's old keys, CIFAR-ResNet checkpoints, the shared ResNet-20)."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
import torchvision

from lib import models as M
from lib.paths import shared_dir

SMALL = ("small_cnn", *M.CIFAR_RESNETS, "preact_resnet18", "wrn16_2")  # 32-px architectures; the rest get 64 px
# every architecture; the 36-46M-parameter Wide ResNets are run at depth 16, width 2 (the same code;
# their sizes are checked on the meta device in test_robust_arch_parameter_counts)
GENERIC = (*(a for a in M.ARCHS if not a.startswith("wrn")), "wrn16_2")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]


def _input(arch: str, n: int = 2, seed: int = 0) -> torch.Tensor:
    size = 32 if arch in SMALL else 64
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def built():
    """Each architecture built once per module (resnet101 and densenet121 are slow to init)."""
    cache: dict[str, M.Classifier] = {}

    def get(arch: str) -> M.Classifier:
        if arch not in cache:
            torch.manual_seed(0)
            cache[arch] = M.build(arch, 5).eval()
        return cache[arch]

    return get


# ---------------------------------------------------------------------------- every arch
@pytest.mark.parametrize("arch", GENERIC)
def test_arch_forward_blocks_stages(arch, built):
    model = built(arch)
    x = _input(arch)
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (2, 5) and model.num_classes == 5 and model.arch == arch

        # Normalize is the first thing inside; then the blocks in order, then the head.
        h = (x - torch.tensor(M.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(M.IMAGENET_STD).view(1, 3, 1, 1)
        names = model.block_names
        assert names == list(model.blocks.keys()) and len(names) == len(set(names)) >= 4
        for name in names:
            h = model.blocks[name](h)
        torch.testing.assert_close(model.head(h), logits)
        assert isinstance(model.head.fc, torch.nn.Linear) and model.classifier_layer is model.head.fc

        # Stages are block names in forward order; features() is one pass and changes nothing.
        assert model.stages and set(model.stages) <= set(names)
        positions = [names.index(s) for s in model.stages]
        assert positions == sorted(positions) and positions[-1] == len(names) - 1
        feats = model.features(x)
        assert list(feats) == [*model.stages, "penultimate", "logits"]
        sizes = []
        for s in model.stages:
            f = feats[s]
            assert f.ndim == 4 and f.shape[0] == 2 and torch.isfinite(f).all()
            sizes.append(f.shape[-1])
        assert sizes == sorted(sizes, reverse=True)  # resolution never grows with depth
        assert feats["penultimate"].shape == (2, model.head.fc.in_features)
        torch.testing.assert_close(feats["penultimate"], model.penultimate(x))
        assert torch.equal(feats["logits"], logits)
        assert torch.equal(model(x), logits)
        assert set(model.features(x, stages=[names[0]])) == {names[0], "penultimate", "logits"}
        with pytest.raises(KeyError):
            model.features(x, stages=["no_such_block"])


def test_expected_blocks_and_stages(built):
    r18, mnv2, dn = built("resnet18"), built("mobilenet_v2"), built("densenet121")
    assert r18.block_names == ["stem"] + [f"layer{i}_{j}" for i in (1, 2, 3, 4) for j in (0, 1)]
    assert r18.stages == ["layer1_1", "layer2_1", "layer3_1", "layer4_1"]
    assert built("resnet20").stages == ["layer1_2", "layer2_2", "layer3_2"]
    assert len(built("resnet56").block_names) == 1 + 27
    assert mnv2.block_names == [f"f{i}" for i in range(19)]
    assert mnv2.stages == ["f3", "f6", "f13", "f18"]
    assert isinstance(mnv2.head.dropout, torch.nn.Dropout) and mnv2.head.dropout.p == 0.2
    assert dn.block_names == ["stem", "denseblock1", "transition1", "denseblock2", "transition2",
                              "denseblock3", "transition3", "denseblock4"]
    assert dn.stages == ["transition1", "transition2", "transition3", "denseblock4"]
    assert built("small_cnn").block_names == built("small_cnn").stages == ["conv1", "conv2", "conv3", "conv4"]
    # No in-place activations anywhere (they break module backward hooks used by explainers).
    for arch in ("resnet18", "mobilenet_v2", "densenet121"):
        assert not any(getattr(m, "inplace", False) for m in built(arch).modules())


def test_unknown_arch_and_bad_options():
    with pytest.raises(ValueError, match="unknown arch"):
        M.build("vgg16", 10)
    with pytest.raises(TypeError):
        M.build("resnet20", 10, width=8)
    with pytest.raises(ValueError, match="no ImageNet weights"):
        M.build("small_cnn", 10, pretrained=True)


# ---------------------------------------------------------------------------- Normalize
def test_normalize_is_inside_and_follows_the_model():
    torch.manual_seed(0)
    model = M.build("resnet20", 10).eval()
    x = _input("resnet20", 4)
    assert list(model.children())[0] is model.normalize
    assert {"normalize.mean", "normalize.std"} <= set(model.state_dict())
    with torch.no_grad():
        before = model(x)
        # The same as feeding pre-normalised images to a model with an identity Normalize.
        plain = M.build("resnet20", 10, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)).eval()
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")},
                              strict=False)
        mean, std = torch.tensor(M.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(M.IMAGENET_STD).view(1, 3, 1, 1)
        torch.testing.assert_close(plain((x - mean) / std), before)
        model.normalize.mean.fill_(0.5)
        assert not torch.allclose(model(x), before)
        # Buffers move with .to(): a float64 model runs on float64 inputs.
        assert model.double()(x.double()).dtype == torch.float64
    assert model.normalize.mean.dtype == torch.float64
    small = M.build("small_cnn", 3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert small.normalize.std.flatten().tolist() == [0.25] * 3


def test_channels_last_autocast_and_input_gradients():
    torch.manual_seed(0)
    for arch in ("resnet20", "small_cnn"):
        model = M.build(arch, 10).eval()
        x = _input(arch, 4)
        with torch.no_grad():
            ref = model(x)
            cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)
        # Under autocast, gradients reach the input and the input is left untouched.
        xa = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(xa), torch.zeros(4, dtype=torch.long))
        loss.backward()
        assert xa.grad is not None and xa.grad.abs().sum() > 0 and torch.equal(xa.detach(), x)


# ---------------------------------------------------------------------------- head, params, AnB
def test_reset_head_and_count_parameters():
    torch.manual_seed(0)
    model = M.build("small_cnn", 10, width=8)
    old = model.head.fc
    new = model.reset_head(3)
    assert model.head.fc is new and new is not old
    assert new.out_features == 3 and new.in_features == old.in_features == 64
    assert model.num_classes == 3 and model(_input("small_cnn")).shape == (2, 3)

    total = M.count_parameters(model)
    assert total == sum(p.numel() for p in model.parameters())
    for name in model.block_names[:2]:
        model.blocks[name].requires_grad_(False)
    frozen = sum(p.numel() for n in model.block_names[:2] for p in model.blocks[n].parameters())
    assert M.count_parameters(model, trainable_only=True) == total - frozen


def test_blocks_transfer_between_models_of_one_arch():
    """AnB: the first n blocks of A copied into B make B compute A's features up to the cut."""
    torch.manual_seed(0)
    a, b = M.build("resnet20", 10).eval(), M.build("resnet20", 4).eval()
    cut = a.block_names[4]  # stem + layer1_0..layer1_2 + layer2_0
    for name in a.block_names[:5]:
        b.blocks[name].load_state_dict(a.blocks[name].state_dict())
    x = _input("resnet20")
    with torch.no_grad():
        torch.testing.assert_close(b.features(x, [cut])[cut], a.features(x, [cut])[cut])
        last = a.block_names[-1]
        assert not torch.allclose(b.features(x, [last])[last], a.features(x, [last])[last])


# ---------------------------------------------------------------------------- pretrained weights
def test_pretrained_missing_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert M.pretrained_path("resnet18") == expected
    with pytest.raises(M.PretrainedWeightsMissing) as err:
        M.build("resnet18", 10, pretrained=True)
    assert str(expected) in str(err.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert not expected.exists()  # nothing was downloaded


def test_pretrained_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(1)
    tv = torchvision.models.mobilenet_v2(weights=None).eval()
    path = M.pretrained_path("mobilenet_v2")
    assert path.name == "mobilenet_v2-b0353104.pth"
    path.parent.mkdir(parents=True)
    torch.save(tv.state_dict(), path)

    x = _input("mobilenet_v2")
    with torch.no_grad():
        full = M.build("mobilenet_v2", 1000, pretrained=True).eval()
        torch.testing.assert_close(full(x), tv(x_norm := (x - full.normalize.mean) / full.normalize.std))
        assert torch.equal(full.head.fc.weight, tv.classifier[1].weight)

        model = M.build("mobilenet_v2", 7, pretrained=True).eval()
        assert torch.equal(model.blocks["f0"][0].weight, tv.features[0][0].weight)
        assert torch.equal(model.blocks["f18"][1].running_var, tv.features[18][1].running_var)
        assert model.head.fc.out_features == 7
        torch.testing.assert_close(model.penultimate(x),
                                   torch.flatten(F.adaptive_avg_pool2d(tv.features(x_norm), 1), 1))


def test_densenet_old_style_keys_are_remapped(tmp_path, built):
    old = {"features.denseblock1.denselayer1.norm.1.weight": 1, "features.denseblock1.denselayer1.conv.2.weight": 2,
           "features.norm5.bias": 3, "classifier.weight": 4}
    assert M.remap_densenet_keys(old) == {"features.denseblock1.denselayer1.norm1.weight": 1,
                                          "features.denseblock1.denselayer1.conv2.weight": 2,
                                          "features.norm5.bias": 3, "classifier.weight": 4}
    # End to end: a torchvision-layout checkpoint with old keys, given as a path, loads strictly.
    model = built("densenet121")
    raw = {}
    for key, value in model.state_dict().items():
        key = (key.replace("blocks.stem.", "features.").replace("blocks.denseblock4.block.", "features.denseblock4.")
               .replace("blocks.denseblock4.norm5.", "features.norm5.").replace("blocks.", "features.")
               .replace("head.fc.", "classifier."))
        if not key.startswith(("normalize.", "_extra_state")):  # the wrapper's own state
            raw[re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", key)] = value
    assert "features.denseblock2.denselayer3.norm.1.running_mean" in raw
    path = tmp_path / "densenet-old.pth"
    torch.save({"state_dict": raw}, path)
    loaded = M.build("densenet121", 5, pretrained=path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_classifier_checkpoints_round_trip(tmp_path):
    torch.manual_seed(0)
    model = M.build("small_cnn", 6, width=8).eval()
    x = _input("small_cnn")
    torch.save(model.state_dict(), tmp_path / "small.pt")
    again = M.build("small_cnn", 6, pretrained=tmp_path / "small.pt", width=8).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
    other = M.build("small_cnn", 2, pretrained=tmp_path / "small.pt", width=8)
    assert other.num_classes == 2 and torch.equal(other.blocks["conv4"].conv.weight, model.blocks["conv4"].conv.weight)
    with pytest.raises(FileNotFoundError):
        M.build("small_cnn", 6, pretrained=tmp_path / "absent.pt")

    store = pytest.importorskip("lib.store")
    store.save_weights(model, tmp_path / "small.safetensors")
    again = M.build("small_cnn", 6, pretrained=tmp_path / "small.safetensors", width=8).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
    assert M.build("small_cnn", 3, pretrained=tmp_path / "small.safetensors", width=8).num_classes == 3


def test_cifar_resnet_checkpoint_layout(tmp_path):
    """A checkpoint in the shared ResNet-20's format (``module.`` keys under ``state_dict``)."""
    torch.manual_seed(0)
    net = M.CifarResNet(20, 10).eval()
    for m in net.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    assert not any(k.startswith("layer2.0.shortcut") for k in net.state_dict())  # option A: no weights
    path = tmp_path / "resnet20.th"
    torch.save({"best_prec1": 0.0, "state_dict": {"module." + k: v for k, v in net.state_dict().items()}}, path)
    model = M.load_cifar_resnet20(path).eval()
    x = _input("resnet20")
    mean, std = torch.tensor(M.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(M.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        h = net.bn1(net.conv1((x - mean) / std)).relu()
        h = net.layer3(net.layer2(net.layer1(h)))
        torch.testing.assert_close(model(x), net.linear(F.avg_pool2d(h, h.shape[-1]).flatten(1)))
    assert M.load_cifar_resnet20(path, num_classes=4).num_classes == 4


# ---------------------------------------------------------------------------- the real base
def test_shared_resnet20_accuracy_on_cifar10_jpegs():
    shared = shared_dir()
    if shared is None:
        pytest.skip("no ../shared folder (a user's clone)")
    weights = shared / "weights" / "resnet20-cifar10" / "resnet20-12fca82f.th"
    test_dir = shared / "data" / "cifar10-jpg-subset" / "test"
    if not weights.is_file() or not test_dir.is_dir():
        pytest.skip("shared ResNet-20 weights or CIFAR-10 JPEG subset absent")

    raw = torch.load(weights, map_location="cpu", weights_only=True)["state_dict"]
    model = M.load_cifar_resnet20(weights).eval()  # strict: every checkpoint key has a home
    # Every tensor of the model but Normalize's buffers, BN's step counters (which this old
    # checkpoint predates) and the wrapper's frozen flags comes from the file.
    expected = {"module." + re.sub(r"^blocks\.layer(\d)_(\d+)\.", r"layer\1.\2.", k)
                .replace("blocks.stem.", "").replace("head.fc.", "linear.")
                for k in model.state_dict()
                if not k.startswith(("normalize.", "_extra_state")) and "num_batches" not in k}
    assert set(raw) == expected
    assert torch.equal(model.blocks["layer3_2"].bn2.running_var, raw["module.layer3.2.bn2.running_var"])

    ds = torchvision.datasets.ImageFolder(str(test_dir), transform=torchvision.transforms.ToTensor())
    assert ds.classes == CIFAR10_CLASSES  # ImageFolder's sorted order is CIFAR-10's label order
    x = torch.stack([img for img, _ in ds])
    y = torch.tensor(ds.targets)
    assert x.shape == (1000, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
    with torch.no_grad():
        pred = torch.cat([model(batch).argmax(1) for batch in x.split(250)])
    acc = (pred == y).float().mean().item()
    print(f"shared ResNet-20 accuracy on the CIFAR-10 JPEG test subset: {acc:.3f}")
    assert acc >= 0.75


def test_seeded_build_is_reproducible_and_leaves_the_global_rng_alone():
    """``build(..., seed=s)`` gives the same initial weights whatever the process drew before, and
    does not move the global RNG; without a seed the weights follow the global RNG."""
    torch.manual_seed(0)
    a = M.build("small_cnn", 5, width=8, seed=3)
    state = torch.random.get_rng_state()
    torch.rand(100)  # the caller draws something in between
    b = M.build("small_cnn", 5, width=8, seed=3)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    c = M.build("small_cnn", 5, width=8, seed=4)
    assert not torch.equal(a.blocks["conv1"].conv.weight, c.blocks["conv1"].conv.weight)
    torch.set_rng_state(state)
    before = torch.random.get_rng_state()
    M.build("small_cnn", 5, width=8, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)


# ------------------------------------------------------------------ walk, build args, saved state
def test_walk_is_the_forward_pass_in_pieces():
    torch.manual_seed(0)
    model = M.build("resnet20", 10).eval()
    x = torch.rand(2, 3, 32, 32)
    names = model.block_names
    h = model.walk(x, stop="layer2_0")
    assert torch.allclose(model.head(model.walk(h, start=names[names.index("layer2_0") + 1])), model(x))
    seen = []
    model.walk(x, each=lambda n, h: seen.append(n))
    assert seen == names
    feats = model.features(x, ["layer1_2"], logits=False)
    assert list(feats) == ["layer1_2"] and torch.equal(feats["layer1_2"], model.walk(x, stop="layer1_2"))
    with pytest.raises(KeyError, match="unknown block"):
        model.walk(x, stop="nope")


def test_fresh_like_rebuilds_from_build_args():
    model = M.build("small_cnn", 5, width=8, pools=2, dropout=0.2, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert model.build_args["width"] == 8 and model.build_args["pools"] == 2
    fresh = M.fresh_like(model, 3, seed=1)
    assert fresh.num_classes == 3 and fresh.head.dropout.p == 0.2
    assert torch.equal(fresh.normalize.mean, model.normalize.mean)
    assert {k: v.shape for k, v in fresh.state_dict().items() if not k.startswith(("head.fc", "_extra"))} == \
           {k: v.shape for k, v in model.state_dict().items() if not k.startswith(("head.fc", "_extra"))}
    again = M.fresh_like(model, 3, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), again.state_dict().values()))
    other = M.fresh_like(model, 3, seed=2)
    assert not torch.equal(other.blocks["conv1"].conv.weight, fresh.blocks["conv1"].conv.weight)


def test_frozen_flags_heads_and_masks_are_saved_state(tmp_path):
    from lib.store import load_weights, save_weights

    model = M.build("small_cnn", 4, width=8, seed=0)
    M.freeze(model.blocks["conv1"])
    model.add_head("task2", 3)
    owner = torch.randint(0, 3, model.blocks["conv2"].conv.weight.shape)
    model.set_mask("blocks.conv2.conv.weight", owner)
    path = save_weights(model, tmp_path / "m.safetensors")
    loaded = M.build("small_cnn", 4, width=8)
    load_weights(loaded, path)
    assert not any(p.requires_grad for p in loaded.blocks["conv1"].parameters())
    assert all(p.requires_grad for p in loaded.blocks["conv2"].parameters())
    assert M.is_frozen(loaded.blocks["conv1"].bn) and not M.is_frozen(loaded.blocks["conv2"])
    assert torch.equal(loaded.get_mask("blocks.conv2.conv.weight"), owner)
    x = torch.rand(2, 3, 32, 32)
    model.eval(), loaded.eval()
    assert loaded(x, head="task2").shape == (2, 3) and torch.equal(loaded(x, head="task2"), model(x, head="task2"))
    loaded.active_head = "task2"
    assert loaded.num_classes == 3 and torch.equal(loaded(x), model(x, head="task2"))
    with pytest.raises(ValueError, match="shape"):
        model.set_mask("blocks.conv2.conv.weight", torch.zeros(3))


# ---------------------------------------------------------------------------- PreActResNet-18, Wide ResNets
def test_robust_arch_parameter_counts():
    """Against the papers: PreActResNet-18 ~11.2M (Wong et al. 2020, Rice et al. 2020; RobustBench
    lists 11.17M), WRN-34-10 ~46.2M (Madry et al. 2018, TRADES), WRN-28-10 36.5M (Zagoruyko &
    Komodakis 2016, Table 3). Counted on the meta device: nothing is allocated."""
    expected = {"preact_resnet18": 11_172_170, "wrn34_10": 46_160_474, "wrn28_10": 36_479_194}
    for arch, n in expected.items():
        with torch.device("meta"):
            model, net = M.build(arch, 10), M.robust_net(arch, 10)
        assert M.count_parameters(model) == M.count_parameters(net) == n, arch
    assert abs(expected["preact_resnet18"] / 1e6 - 11.2) < 0.05 and abs(expected["wrn34_10"] / 1e6 - 46.2) < 0.05
    assert abs(expected["wrn28_10"] / 1e6 - 36.5) < 0.05
    with torch.device("meta"):
        assert M.build("wrn34_10", 100).head.fc.weight.shape == (100, 640)
        assert len(M.build("wrn34_10", 10).block_names) == 1 + 3 * 5
    with pytest.raises(ValueError, match="6n\\+4"):
        M.build("wrn30_10", 10)


@pytest.mark.parametrize("arch", ["preact_resnet18", "wrn16_2"])
def test_robust_arch_matches_its_reference_forward(arch):
    """The Classifier walks the very modules of the unwrapped network and gives its logits."""
    torch.manual_seed(0)
    net = M.robust_net(arch, 7)
    model = M.wrap_raw(net, arch, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    x = _input(arch, 3)
    with torch.no_grad():
        model.train()(x)  # non-trivial BatchNorm statistics
        model.eval()
        ref = net((x - model.normalize.mean) / model.normalize.std)
        torch.testing.assert_close(model(x), ref)
        feats = model.features(x)
    assert feats["logits"].shape == (3, 7)
    assert [feats[s].shape[-1] for s in model.stages] == ([32, 16, 8, 4] if arch == "preact_resnet18" else [32, 16, 8])
    assert feats["penultimate"].shape == (3, 512 if arch == "preact_resnet18" else 128)
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    # a state dict of the wrapped model loads into a freshly built one
    again = M.build(arch, 7, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    again.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), ref)


def test_robust_arch_reference_checkpoints_load(tmp_path):
    """Checkpoints in Wong/Rice's PreActResNet and TRADES's WideResNet key layouts load with strict
    keys (TRADES's unused sub_block1 dropped; DataParallel's module. prefix stripped)."""
    for arch in ("preact_resnet18", "wrn16_2"):
        torch.manual_seed(1)
        net = M.robust_net(arch, 10).eval()
        state = {f"module.{k}": v for k, v in net.state_dict().items()}
        if arch.startswith("wrn"):
            extra = M.robust_net(arch, 10).block1.state_dict()
            state.update({f"module.sub_block1.{k}": v for k, v in extra.items()})
            assert "module.block1.layer.0.convShortcut.weight" in state and "module.fc.weight" in state
        else:
            assert "module.layer2.0.shortcut.0.weight" in state and "module.linear.weight" in state
        path = tmp_path / f"{arch}.pt"
        torch.save({"state_dict": state, "epoch": 3}, path)
        model = M.build(arch, 10, pretrained=path, mean=(0.0,) * 3, std=(1.0,) * 3).eval()
        x = _input(arch, 2)
        with torch.no_grad():
            torch.testing.assert_close(model(x), net(x))
