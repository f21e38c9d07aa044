"""Your own network in ``python -m lib.evaluate`` (issue 32): a ``torch.export`` program, a
TorchScript archive and a factory with a state dict reach the same report as a checkpoint of
``lib.models``; a torchvision architecture the workbook does not list, exported here, runs too; and
each wrong form gets one line naming the fix."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
import torchvision

from lib.data.real import load_real
from lib.evaluate import NORM_PRESETS, eval_images
from lib.evaluate.__main__ import main
from lib.evaluate.own_model import load_own_model
from tests.own_model_factory import tiny_net

FAST = ["--eps", "8/255", "--n", "20", "--pgd-steps", "2", "4", "--apgd-steps", "3", "--square-queries", "50",
        "--quiet", "--device", "cpu"]
MEAN, STD = (torch.tensor(v).view(1, 3, 1, 1) for v in NORM_PRESETS["cifar10"])
BATCH = torch.export.Dim("batch", min=1, max=4096)


@pytest.fixture(scope="module")
def own(cifar, tmp_path_factory):
    """``tiny_net`` fitted on CIFAR-10-normalised fixture images, saved in the three forms."""
    torch.manual_seed(0)
    net = tiny_net(10)
    x, y = eval_images(load_real("cifar10", "train", root=cifar), None)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net((x - MEAN) / STD), y).backward()
        opt.step()
    net.eval()
    d = tmp_path_factory.mktemp("own")
    paths = {"pt2": d / "tiny.pt2", "script": d / "tiny_script.pt", "state": d / "tiny_state.pt"}
    torch.export.save(torch.export.export(net, (x[:2],), dynamic_shapes=({0: BATCH},)), str(paths["pt2"]))
    torch.jit.script(net).save(str(paths["script"]))
    torch.save(net.state_dict(), paths["state"])
    return net, paths


def _report(cifar, out, *how) -> pd.DataFrame:
    assert main([*how, "--data", "cifar10", "--data-root", str(cifar), "--out", str(out), *FAST]) == 0
    return pd.read_csv(out / "compact_table.csv")


def test_three_forms_give_the_same_report_as_the_network_itself(cifar, own, tmp_path, capsys):
    net, paths = own
    tables = {"pt2": _report(cifar, tmp_path / "pt2", "--model", str(paths["pt2"]), "--norm", "cifar10"),
              "script": _report(cifar, tmp_path / "script", "--model", str(paths["script"]), "--norm", "cifar10"),
              "factory": _report(cifar, tmp_path / "factory", "--factory", "tests.own_model_factory:tiny_net",
                                 "--weights", str(paths["state"]), "--norm", "cifar10", "--num-classes", "10")}
    printed = capsys.readouterr().out
    assert "torch.export program" in printed and "TorchScript" in printed and "given (cifar10)" in printed
    for kind in ("script", "factory"):
        pd.testing.assert_frame_equal(tables["pt2"].drop(columns="method"), tables[kind].drop(columns="method"),
                                      atol=1e-9)
    x, y = eval_images(load_real("cifar10", "test", root=cifar), 20)
    with torch.no_grad():
        clean = (net((x - MEAN) / STD).argmax(1) == y).float().mean().item()
    assert tables["pt2"].acc.iloc[0] == pytest.approx(clean) and clean >= 0.8
    assert tables["pt2"].set_index("attack").acc["worst case"] < clean  # the attacks reach through the wrapper


def test_a_torchvision_network_the_workbook_does_not_list_exported_here(cifar, tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    x, _ = eval_images(load_real("cifar10", "test", root=cifar), 2)
    path = tmp_path / "mobilenet_v3_small.pt2"
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=({0: BATCH},)), str(path))
    model, info = load_own_model(path, norm="none")
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x))  # eval mode kept: an exported module refuses .eval()
    table = _report(cifar, tmp_path / "out", "--model", str(path), "--norm", "none")
    assert (table.n == 20).all() and "worst case" in set(table.attack)


@pytest.mark.parametrize("how, says", [
    (["--model", "{state}", "--norm", "none"], "not a TorchScript archive (a state dict?)"),
    (["--model", "{pt2}"], "--norm none"),
    (["--arch", "small_cnn", "--model", "{pt2}", "--norm", "none"], "--arch and --model both name the network"),
    (["--factory", "tests.own_model_factory:tiny_net", "--norm", "none"], "--factory needs --weights"),
    (["--factory", "tests.no_such_module:net", "--weights", "{state}", "--norm", "none"], "cannot import it"),
    (["--model", "{pt2}", "--weights", "{state}", "--norm", "none"], "--model holds its weights"),
    (["--model", "{missing}", "--norm", "none"], "no such file"),
    ([], "no network given"),
])
def test_a_wrong_form_gets_one_line(cifar, own, tmp_path, capsys, how, says):
    _, paths = own
    args = [a.format(**{k: str(v) for k, v in paths.items()}, missing=tmp_path / "nope.pt2") for a in how]
    rc = main([*args, "--data", "cifar10", "--data-root", str(cifar), "--out", str(tmp_path / "out"), *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and says in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
