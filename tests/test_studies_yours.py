"""A study's ``yours`` entry (lib.studies.yours): the three forms of ``python -m lib.evaluate`` load
into a network that computes what the original does, and every wrong table, size or head gets one
line naming it before any study code runs."""
from __future__ import annotations

import pytest
import torch

from lib.evaluate import CheckpointError
from lib.studies.yours import load_yours
from tests.own_model_factory import tiny_net

BATCH = torch.export.Dim("batch", min=1, max=4096)


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    torch.manual_seed(0)
    net = tiny_net(5).eval()
    x = torch.rand(4, 3, 16, 16)
    d = tmp_path_factory.mktemp("yours")
    torch.export.save(torch.export.export(net, (x[:2],), dynamic_shapes=({0: BATCH},)), str(d / "net.pt2"))
    torch.jit.script(net).save(str(d / "net.pt"))
    torch.save(net.state_dict(), d / "state.pt")
    return net, x, {"pt2": {"model": str(d / "net.pt2"), "norm": "none"},
                    "script": {"model": str(d / "net.pt"), "norm": "none"},
                    "factory": {"factory": "tests.own_model_factory:tiny_net", "weights": str(d / "state.pt"),
                                "norm": "none"}}


def test_every_form_computes_what_the_network_does(forms):
    net, x, specs = forms
    with torch.no_grad():
        want = net(x)
    names = {}
    for kind, spec in specs.items():
        model, info = load_yours(spec, 5, 16)
        with torch.no_grad():
            torch.testing.assert_close(model(x), want)
        assert not model.training
        names[kind] = info["name"]
    assert names == {"pt2": "net.pt2 (torch.export program)", "script": "net.pt (TorchScript)",
                     "factory": "tests.own_model_factory:tiny_net"}


def test_declared_statistics_go_in_front(forms):
    net, x, specs = forms
    model, info = load_yours({**specs["pt2"], "norm": None, "mean": [0.5] * 3, "std": [0.25] * 3}, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net((x - 0.5) / 0.25))


@pytest.mark.parametrize("spec, size, classes, says", [
    ("net.pt2", 16, 5, "give a table"),
    ({}, 16, 5, "give a table"),
    ({"model": "PT2", "norm": "none", "colour": "red"}, 16, 5, "unknown entries ['colour']"),
    ({"arch": "resnet20", "model": "PT2", "weights": "x"}, 16, 5, "'arch' goes with 'weights' only"),
    ({"model": "PT2"}, 16, 5, "--norm"),
    ({"model": "PT2", "norm": "none"}, 16, 7, "the study has 7 classes"),
    ({"model": "missing.pt2", "norm": "none"}, 16, 5, "no such file"),
])
def test_wrong_tables_get_one_line(forms, spec, size, classes, says):
    _, _, specs = forms
    if isinstance(spec, dict) and spec.get("model") == "PT2":
        spec = {**spec, "model": specs["pt2"]["model"]}
    with pytest.raises(CheckpointError) as e:
        load_yours(spec, classes, size, key="gan_yours")
    assert str(e.value).startswith("gan_yours: ") and says in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_network_for_other_images_is_named_before_the_study_runs(tmp_path):
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 5)).eval()
    torch.jit.script(flat).save(str(tmp_path / "flat.pt"))
    with pytest.raises(CheckpointError, match=r"gan_yours: flat.pt \(TorchScript\) fails on a batch of two 3x16x16"):
        load_yours({"model": str(tmp_path / "flat.pt"), "norm": "none"}, 5, 16, key="gan_yours")
