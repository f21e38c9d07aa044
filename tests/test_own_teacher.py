"""Your own pretrained teacher (lib.models.adopted, lib.evaluate.own_teacher): a network built outside
lib.models becomes a Classifier that computes what it computes, with blocks, stages and a head a
transfer method can use; what cannot be a teacher is refused in one line; and notebooks 02, 05 and 06
take it through their ``yours`` entries."""
from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from lib.evaluate import CheckpointError
from lib.evaluate.own_teacher import load_teacher
from lib.models import AdoptError, adopt, fresh_like
from tests.own_model_factory import tiny_net

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _save(net: nn.Module, path) -> str:
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return str(path)


class Skip(nn.Module):
    """A residual between two children: its forward is not its children in order."""

    def __init__(self):
        super().__init__()
        self.conv, self.pool, self.fc = nn.Conv2d(3, 3, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Linear(3, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x + self.conv(x)), 1))


def test_adopted_network_computes_what_it_computes_with_blocks_stages_and_head():
    torch.manual_seed(0)
    for net, size, stages in ((tiny_net(6), 16, ["1", "4"]),
                              (torchvision.models.resnet18(num_classes=5), 32, ["relu", "layer1", "layer2", "layer3"])):
        net.eval()
        model = adopt(net, mean=MEAN, std=STD, size=size, name="mine")
        x = torch.rand(3, 3, size, size)
        with torch.no_grad():
            torch.testing.assert_close(model(x), net((x - 0.5) / 0.25))
        assert model.stages == stages and model.head.fc is list(net.children())[-1]
        feats = model.features(x, model.stages)
        assert all(feats[s].ndim == 4 for s in model.stages) and feats["penultimate"].shape[0] == 3


def test_what_cannot_be_a_teacher_is_refused_naming_the_fix():
    with pytest.raises(AdoptError, match="children in order"):
        adopt(Skip().eval(), mean=MEAN, std=STD, size=8, name="skip")
    with pytest.raises(AdoptError, match="last direct child must be its Linear"):
        adopt(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), mean=MEAN, std=STD, size=8, name="nohead")
    with pytest.raises(CheckpointError, match="^transfer_yours: a teacher is fine-tuned"):
        load_teacher({"model": "net.pt2", "norm": "none"}, 16, key="transfer_yours")
    with pytest.raises(CheckpointError, match="^bd_yours: give 'weights'"):
        load_teacher({"factory": "tests.own_model_factory:tiny_net"}, 16, key="bd_yours")
    with pytest.raises(CheckpointError, match="unknown entries"):
        load_teacher({"factory": "x:y", "weights": "w", "layers": 3}, 16)


def test_fresh_like_of_an_adopted_teacher_is_seeded_new_weights_of_its_kind():
    torch.manual_seed(0)
    model = adopt(tiny_net(6).eval(), mean=MEAN, std=STD, size=16, name="mine")
    a, b, c = fresh_like(model, 3, seed=1), fresh_like(model, 3, seed=1), fresh_like(model, 3, seed=2)
    assert a.num_classes == 3 and model.num_classes == 6 and a.block_names == model.block_names
    assert not torch.equal(a.blocks["0"].weight, model.blocks["0"].weight)
    assert torch.equal(a.blocks["0"].weight, b.blocks["0"].weight)
    assert not torch.equal(a.blocks["0"].weight, c.blocks["0"].weight)
    assert all(p.requires_grad for p in a.parameters()) and a(torch.rand(2, 3, 16, 16)).shape == (2, 3)


def test_load_teacher_factory_and_arch_forms(tmp_path):
    torch.manual_seed(0)
    net = tiny_net(6).eval()
    spec = {"factory": "tests.own_model_factory:tiny_net", "weights": _save(net, tmp_path / "t.safetensors"),
            "mean": list(MEAN), "std": list(STD)}
    model, info = load_teacher(spec, 16)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net((x - 0.5) / 0.25))
    assert info["name"] == "tests.own_model_factory:tiny_net" and info["stages"] == ["1", "4"]
    # torchvision's builders take num_classes through **kwargs: the head's size is read from the weights
    tv = _save(torchvision.models.resnet18(num_classes=5), tmp_path / "r18.safetensors")
    model, info = load_teacher({"factory": "torchvision.models:resnet18", "weights": tv, "norm": "imagenet"}, 32)
    assert model.num_classes == 5 and model.block_names[-1] == "avgpool"
    from lib.models import build
    base = build("small_cnn", 4, seed=0)
    torch.save(base.state_dict(), tmp_path / "base.pt")
    model, info = load_teacher({"arch": "small_cnn", "weights": str(tmp_path / "base.pt")}, 32)
    assert model.block_names == base.block_names and model.num_classes == 4


@pytest.fixture()
def yours(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_STORE", str(tmp_path / "store"))
    torch.manual_seed(0)
    return {"factory": "tests.own_model_factory:tiny_net", "weights": _save(tiny_net(6), tmp_path / "t.safetensors"),
            "norm": "imagenet"}


def test_notebook_02_students_of_your_teacher(yours):
    """Every method trains from your teacher; Renofeation distils its stages but the last (the recipe's
    stages name base A's blocks, which your teacher lacks: without the rule it raises KeyError)."""
    from lib.artifacts import transfer as transfer_models
    from lib.data import load_synsigns, subset_classes
    from lib.studies import transfer

    cfg = transfer.recipe("smoke", yours=yours)
    teacher, _ = load_teacher(yours, 32)
    train = subset_classes(load_synsigns("train", n=160, seed=0, classes=[0, 1, 2, 3]), [0, 1, 2, 3])
    for method in transfer_models.METHODS:
        over = {"epochs_distill": 1, "epochs_swa": 1} if method == "renofeation" else {"epochs": 1}
        if method == "delta":
            over["attention_epochs"] = 1
        model, meta = transfer_models.student(method, cfg, teacher, train, progress=False, **over)
        assert model.num_classes == 4 and model.arch == yours["factory"] and not meta["cached"], method
    assert transfer.seed_bases(cfg, cfg["seed"] + 1) is None  # every seed starts from your one teacher


def test_notebook_05_plants_in_your_public_model_and_06_reads_it(yours):
    from lib.artifacts import backdoor as bd_models
    from lib.studies import attention, backdoor

    cfg = backdoor.recipe("smoke", yours=yours, teacher_epochs=1)
    base = bd_models.public_base(cfg)
    assert base.arch == yours["factory"] and base.block_names[0] == "0"
    teacher, meta = bd_models.clean_teacher(cfg, progress=False)
    assert teacher.arch == yours["factory"] and teacher.num_classes == cfg["teacher_classes"]
    cfg06 = attention.recipe("smoke", yours=yours)
    assert attention.recipe_05(cfg06)["yours"] == yours and attention.recipe_02(cfg06)["yours"] == yours
    zoo = {"pretrained teacher": attention.Entry(base, "pretrained", None)}
    assert attention.map_stage(cfg06, zoo) is None  # conv3 is base A's: each model's last stage
    assert attention.map_stage({**cfg06, "stage": "4"}, zoo) == "4"


def test_weights_of_another_shape_are_one_line(tmp_path):
    path = _save(tiny_net(6), tmp_path / "six.safetensors")
    with pytest.raises(CheckpointError, match="does not fit --factory tests.own_model_factory:tiny_net: size mismatch"):
        from lib.evaluate.own_model import load_own_model
        load_own_model(factory="tests.own_model_factory:tiny_net", weights=path, num_classes=3, norm="none")
