"""Tests of lib.explain: Grad-CAM and the activation map against hand-computed maps and against
pytorch-grad-cam (test-only dependency), batch invariance, untouched models, the attention
metrics and their errors."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from lib import explain as E
from lib.models import Classifier, Head, build


# ------------------------------------------------------------------ a model small enough to do by hand
def _hand_model() -> Classifier:
    """Stage ``down``: a 2x2 stride-2 conv that averages each 2x2 block of channel 0 (times 8)
    and of channel 1 (times 2) into channels A0 and A1; head: global mean, then
    ``logits = W @ mean(A)`` with W = [[1, -2], [0.5, 1]]. No normalisation (mean 0, std 1)."""
    conv = nn.Conv2d(3, 2, 2, stride=2, bias=False)
    fc = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = 2.0  # 4 pixels x 2 = 8 x their mean
        conv.weight[1, 1] = 0.5
        fc.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 1.0]]))
    return Classifier("hand", OrderedDict(down=conv), Head(fc), ["down"], mean=(0, 0, 0), std=(1, 1, 1)).eval()


def _hand_image() -> torch.Tensor:
    """4x4 image whose 2x2 blocks average to A0 = [[4, 0], [2, 8]] and A1 = [[1, 1], [2, 0]]."""
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0] = torch.tensor([[0.5, 0.0], [0.25, 1.0]]).repeat_interleave(2, 0).repeat_interleave(2, 1)
    x[0, 1] = torch.tensor([[0.5, 0.5], [1.0, 0.0]]).repeat_interleave(2, 0).repeat_interleave(2, 1)
    x[0, 2] = 0.3  # ignored by the conv
    return x


def test_gradcam_matches_hand_computation():
    model, x = _hand_model(), _hand_image()
    # class 0: weights = W[0] / 4 (gradient of a mean over 4 positions) = (0.25, -0.5)
    # cam = relu(0.25 A0 - 0.5 A1) = [[0.5, 0], [0, 2]]; bilinear x2 (half-pixel centres): per axis
    # [a, b] -> [a, .75a + .25b, .25a + .75b, b]; then divided by the maximum 2 (minimum 0)
    expected = torch.tensor([[0.25, 0.1875, 0.0625, 0.0],
                             [0.1875, 0.203125, 0.234375, 0.25],
                             [0.0625, 0.234375, 0.578125, 0.75],
                             [0.0, 0.25, 0.75, 1.0]])
    cam = E.gradcam(model, x, target=0)
    assert cam.shape == (1, 4, 4)
    torch.testing.assert_close(cam[0], expected)
    # logits: class 0 = 3.5 - 2 = 1.5, class 1 = 1.75 + 1 = 2.75, so the default target is class 1:
    # cam = relu(0.125 A0 + 0.25 A1) = [[0.75, 0.25], [0.75, 1]]; corners keep the low-res values
    default = E.gradcam(model, x)
    torch.testing.assert_close(default, E.gradcam(model, x, target=1))
    corners = default[0][[0, 0, -1, -1], [0, -1, 0, -1]]
    torch.testing.assert_close(corners, (torch.tensor([0.75, 0.25, 0.75, 1.0]) - 0.25) / 0.75)


def test_activation_map_matches_hand_computation():
    model, x = _hand_model(), _hand_image()
    # mean_c |A| = [[2.5, 0.5], [2, 4]]: min 0.5, max 4; corners keep the low-res values
    amap = E.activation_map(model, x, "down")
    corners = amap[0][[0, 0, -1, -1], [0, -1, 0, -1]]
    torch.testing.assert_close(corners, (torch.tensor([2.5, 0.5, 2.0, 4.0]) - 0.5) / 3.5)
    torch.testing.assert_close(amap, E.activation_map(model, x))  # default: the last stage


def test_gradcam_equals_pytorch_grad_cam_on_resnet18_layer4():
    pgc = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam (requirements-test.txt) not installed")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = build("resnet18", 10, seed=0).eval()
    x = torch.rand(3, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    ours = E.gradcam(model, x)  # stage default: layer4_1, the output of torchvision's layer4
    assert model.stages[-1] == "layer4_1"
    targets = [2, 5, 7]
    ours_t = E.gradcam(model, x, target=torch.tensor(targets))
    reference_model = build("resnet18", 10, seed=0).eval()  # their backward leaves .grad on parameters
    with pgc.GradCAM(model=reference_model, target_layers=[reference_model.blocks["layer4_1"]]) as cam:
        theirs = torch.from_numpy(cam(input_tensor=x, targets=None))
        theirs_t = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets]))
    assert theirs.shape == ours.shape == (3, 96, 96)
    assert (ours.flatten(1).max(1).values > 0.99).all()  # non-trivial maps
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    torch.testing.assert_close(ours_t, theirs_t, atol=1e-4, rtol=0)


def _trained_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_maps_leave_model_untouched_and_do_not_depend_on_batch():
    model = build("small_cnn", 6, width=8, seed=0)
    model.train()
    model.blocks["conv2"].eval()  # a mixed mode must come back as it was
    model.head.fc.weight.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    before = _trained_state(model)
    x = torch.rand(7, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    x_copy = x.clone()
    for fn in (E.gradcam, E.activation_map):
        batched = fn(model, x, batch_size=3)
        one_by_one = torch.cat([fn(model, x[i:i + 1]) for i in range(len(x))])
        torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=0)  # float rounding of batched convs
        torch.testing.assert_close(fn(model, x), batched, atol=1e-5, rtol=0)
        assert batched.shape == (7, 32, 32) and batched.min() >= 0 and batched.max() <= 1
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm running statistics included
    assert torch.equal(x, x_copy) and not x.requires_grad


def test_gradcam_targets_and_stages():
    model = build("small_cnn", 6, width=8, seed=0).eval()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        pred = model(x).argmax(1)
    torch.testing.assert_close(E.gradcam(model, x), E.gradcam(model, x, target=pred))
    assert E.gradcam(model, x, stage="conv3").shape == (4, 32, 32)
    assert not torch.allclose(E.gradcam(model, x, stage="conv3"), E.gradcam(model, x, stage="conv4"))
    with pytest.raises(ValueError, match="no stage 'layer4'.*conv1"):
        E.gradcam(model, x, stage="layer4")
    with pytest.raises(ValueError, match="no stage 'nope'"):
        E.activation_map(model, x, "nope")
    with pytest.raises(ValueError, match="one per image"):
        E.gradcam(model, x, target=[0, 1])
    with pytest.raises(ValueError, match="0..5"):
        E.gradcam(model, x, target=6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        E.gradcam(model, x * 255)
    # a plain torchvision module: stage by submodule name, none by default
    import torchvision
    tv = torchvision.models.resnet18(num_classes=3).eval()
    assert E.gradcam(tv, torch.rand(2, 3, 64, 64), stage="layer4").shape == (2, 64, 64)
    with pytest.raises(ValueError, match="pass stage="):
        E.gradcam(tv, torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="no submodule 'layer9'"):
        E.activation_map(tv, torch.rand(1, 3, 64, 64), "layer9")


# ------------------------------------------------------------------ attention metrics
def test_attention_mass_inside_uniform_and_chance():
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[0, 2:6, 2:6] = True      # 16 of 64 pixels
    mask[1, :, :2] = True         # 16 of 64 pixels
    inside = torch.zeros(2, 8, 8)
    inside[0, 3:5, 3:5] = 1.0
    inside[1, 1:7, 0] = torch.linspace(0.1, 1.0, 6)
    torch.testing.assert_close(E.attention_mass(inside, mask), torch.ones(2))
    uniform = torch.full((2, 8, 8), 0.7)
    torch.testing.assert_close(E.attention_mass(uniform, mask), E.area_share(mask))
    torch.testing.assert_close(E.area_share(mask), torch.full((2,), 0.25))
    outside = 1.0 - mask.float()
    torch.testing.assert_close(E.attention_mass(outside, mask), torch.zeros(2))
    # half the mass inside: a map with 1 everywhere inside and 1/3 outside (16 vs 48 pixels)
    half = torch.where(mask, 1.0, 1 / 3)
    torch.testing.assert_close(E.attention_mass(half, mask), torch.full((2,), 0.5))
    # one mask for all maps, (N, 1, H, W) maps, and an all-zero map (nothing to share: NaN)
    shared = mask[0]
    mass = E.attention_mass(torch.stack([inside[0], torch.zeros(8, 8)])[:, None], shared)
    assert mass[0] == 1.0 and torch.isnan(mass[1])


def test_pointing_hit():
    mask = torch.zeros(3, 6, 6, dtype=torch.bool)
    mask[:, :3, :3] = True
    cam = torch.zeros(3, 6, 6)
    cam[0, 1, 1] = 1.0          # maximum inside
    cam[1, 5, 5] = 1.0          # maximum outside
    cam[1, 0, 0] = 0.9
    cam[2] = 0.5                # flat: no maximum to point at
    assert E.pointing_hit(cam, mask).tolist() == [True, False, False]
    plateau = torch.zeros(1, 6, 6)
    plateau[0, 2:4, 2:4] = 1.0  # a tied maximum, one pixel of it inside
    assert E.pointing_hit(plateau, mask[:1]).tolist() == [True]
    # Zhang et al.'s tolerance: a maximum 2 px right of the region (column 4; it ends at column 2)
    # hits within 2 px; one at (5, 5) is 4.24 px from the region's corner (2, 2)
    near = torch.zeros(2, 6, 6)
    near[0, 1, 4] = 1.0
    near[1, 5, 5] = 1.0
    assert E.pointing_hit(near, mask[:2]).tolist() == [False, False]
    assert E.pointing_hit(near, mask[:2], tolerance=2).tolist() == [True, False]
    assert E.pointing_hit(near, mask[:2], tolerance=4.3).tolist() == [True, True]
    with pytest.raises(ValueError, match="tolerance"):
        E.pointing_hit(near, mask[:2], tolerance=-1)


def test_attention_scores_table_and_errors():
    cam = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(0))
    obj = torch.zeros(4, 8, 8, dtype=torch.bool)
    obj[:, 1:5, 1:5] = True
    trig = torch.zeros(8, 8, dtype=torch.bool)
    trig[6:, 6:] = True
    table = E.attention_scores(cam, {"object": obj, "trigger": trig})
    assert list(table.columns) == ["object_mass", "object_hit", "object_area", "trigger_mass", "trigger_hit",
                                   "trigger_area"]
    assert len(table) == 4 and np.allclose(table["trigger_area"], 4 / 64) and np.allclose(table["object_area"], 0.25)
    np.testing.assert_allclose(table["object_mass"], E.attention_mass(cam, obj).numpy())
    with pytest.raises(ValueError, match=r"does not match maps of shape \(4, 8, 8\).*resize the mask"):
        E.attention_mass(cam, torch.ones(4, 16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="3 masks for 4 maps"):
        E.pointing_hit(cam, obj[:3])
    with pytest.raises(ValueError, match="non-negative"):
        E.attention_mass(cam - 0.5, obj)


def test_overlay():
    img = torch.zeros(3, 5, 7)
    img[0] = 1.0  # red image
    cam = torch.zeros(5, 7)
    cam[2, 3] = 1.0
    out = E.overlay(img, cam, cmap="gray", alpha=0.5)
    assert out.shape == (5, 7, 3) and out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out[0, 0], [0.5, 0.0, 0.0], atol=1e-6)   # black of the map over red
    np.testing.assert_allclose(out[2, 3], [1.0, 0.5, 0.5], atol=1e-6)   # white of the map over red
    np.testing.assert_allclose(E.overlay(img, cam, alpha=0.0), img.permute(1, 2, 0).numpy())
    batch = E.overlay((img[None] * 255).to(torch.uint8).expand(2, -1, -1, -1), cam[None].expand(2, -1, -1))
    assert batch.shape == (2, 5, 7, 3)
    with pytest.raises(ValueError, match="same size"):
        E.overlay(img, torch.zeros(4, 4))
