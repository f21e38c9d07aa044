"""Tests of lib.store: keys, bit-exact weights, train-once caching, results, crash safety."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import safetensors
import safetensors.torch
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lib import store as store_module  # noqa: E402
from lib.store import CorruptArtifactError, Store, config_hash, load_weights, save_weights  # noqa: E402

CONFIG = {"arch": "cnn", "width": 8, "lr": 1e-3, "epochs": 2, "milestones": (1, 2)}


# ----------------------------------------------------------------------------- helpers


class Transposed(nn.Module):
    """Holds a non-contiguous parameter (a transposed view)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3).t())


def conv_bn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), Transposed())


class Tied(nn.Module):
    """A language-model-style net whose output layer shares the embedding matrix."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.head = nn.Linear(6, 10, bias=False)
        self.head.weight = self.embed.weight


def trained_conv_bn(seed: int = 0) -> nn.Module:
    """A conv+BN net whose weights and BN buffers all differ from a fresh one."""
    torch.manual_seed(seed)
    net = conv_bn()
    net.train()
    for _ in range(3):  # updates running_mean/var and num_batches_tracked
        net[:2](torch.randn(2, 3, 8, 8))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    return net


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        assert torch.equal(sa[name], sb[name]), name


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# ----------------------------------------------------------------------------- config_hash


def test_config_hash_keys_a_multi_process_launch_apart(monkeypatch):
    single = config_hash(CONFIG)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert config_hash(CONFIG) == single  # torchrun with one process: the single-process key
    monkeypatch.setenv("WORLD_SIZE", "2")
    two = config_hash(CONFIG)
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert len({single, two, config_hash(CONFIG)}) == 3


def test_config_hash_keys_auto_precision_apart_only_where_it_trains_in_bf16(monkeypatch, tmp_path):
    """``"amp": "auto"`` trains in bf16 on CUDA or a CPU with native bf16 and in fp32 elsewhere: the
    bf16 answer gets its own key, the fp32 one keeps the key it always had, and a config without
    "auto" is keyed the same on both; seal accepts a file written under either answer."""
    from lib.store.keys import HASH_LENGTH, asks_auto_amp, auto_amp_devices, json_digest, to_json
    from lib.train import cpu_bf16_supported

    auto = {"fit": {"lr": 0.1, "amp": "auto"}, "steps": [{"amp": None}, {"amp": "auto", "device": "cpu"}]}
    assert auto_amp_devices(auto) == [None, "cpu"] and asks_auto_amp(auto)
    assert not asks_auto_amp(CONFIG) and not asks_auto_amp({"amp": True})
    fp32, bf16 = config_hash(auto, bf16=False), config_hash(auto, bf16=True)
    assert fp32 != bf16 and fp32 == json_digest(to_json(auto))[:HASH_LENGTH]  # the key it always had
    assert config_hash(CONFIG, bf16=True) == config_hash(CONFIG, bf16=False) == json_digest(to_json(CONFIG))[:12]
    for forced, expected in (("1", bf16), ("0", fp32)):  # this machine's answer, as fit resolves it
        monkeypatch.setenv("WORKBOOK_CPU_BF16", forced)
        cpu_bf16_supported.cache_clear()
        try:
            assert config_hash(auto) == (bf16 if torch.cuda.is_available() else expected)
        finally:
            cpu_bf16_supported.cache_clear()
    store = Store(tmp_path)
    monkeypatch.setenv("WORKBOOK_CPU_BF16", "1")
    cpu_bf16_supported.cache_clear()
    try:
        store.result("auto", auto, lambda: {"v": 1})  # written under bf16
    finally:
        monkeypatch.delenv("WORKBOOK_CPU_BF16")
        cpu_bf16_supported.cache_clear()
    [path] = [p for p in tmp_path.rglob("auto-*") if p.is_file()]
    assert path.stem.endswith(bf16)
    from lib.store.seal import seal_file

    assert seal_file(path, dry_run=True) is False  # verified (its key under bf16), already sealed


def test_config_hash_ignores_key_order_and_sequence_type():
    reordered = {"milestones": [1, 2], "epochs": 2, "lr": 1e-3, "width": 8, "arch": "cnn"}
    assert config_hash(CONFIG) == config_hash(reordered)
    nested = {"opt": {"b": (1, 2), "a": "x"}}
    assert config_hash(nested) == config_hash({"opt": {"a": "x", "b": [1, 2]}})
    assert len(config_hash(CONFIG)) == 12 and int(config_hash(CONFIG), 16) >= 0


def test_config_hash_normalises_paths_and_numpy_torch_scalars():
    plain = {"root": "data/x", "eps": 0.5, "n": 3}
    fancy = {"root": Path("data/x"), "eps": np.float64(0.5), "n": torch.tensor(3)}
    assert config_hash(plain) == config_hash(fancy)
    assert config_hash({"n": np.int64(3)}) == config_hash({"n": 3})


def test_config_hash_changes_with_any_value():
    base = config_hash(CONFIG)
    assert config_hash({**CONFIG, "lr": 2e-3}) != base
    assert config_hash({**CONFIG, "milestones": (1, 3)}) != base
    assert config_hash({**CONFIG, "extra": None}) != base
    assert config_hash({"n": 1}) != config_hash({"n": 1.0}) != config_hash({"n": True})
    with pytest.raises(TypeError):  # a repr with a memory address would make keys unstable
        config_hash({"fn": object()})


def test_key_validates_name():
    store = Store("unused-root")
    assert store.key("base.cnn_v2-x", CONFIG) == f"base.cnn_v2-x-{config_hash(CONFIG)}"
    for bad in ["", "a/b", "../up", ".hidden", "sp ace"]:
        with pytest.raises(ValueError):
            store.key(bad, CONFIG)


# ----------------------------------------------------------------------------- weights


def test_weights_round_trip_bit_identical_with_buffers(tmp_path):
    net = trained_conv_bn()
    assert net[1].num_batches_tracked.item() == 3
    assert not net[3].weight.is_contiguous()
    path = save_weights(net, tmp_path / "w.safetensors", {"note": "hi"})
    assert files(tmp_path) == ["w.safetensors"]  # no temp file left behind

    fresh = conv_bn()
    assert load_weights(fresh, path) == {"note": "hi"}
    assert_same_state(net, fresh)
    with safetensors.safe_open(str(path), "pt") as f:  # plain safetensors, readable by anyone
        assert "1.running_mean" in f.keys() and "1.num_batches_tracked" in f.keys()


def test_tied_weights_stored_once_and_stay_tied(tmp_path):
    torch.manual_seed(1)
    net = Tied()
    path = save_weights(net, tmp_path / "tied.safetensors")
    with safetensors.safe_open(str(path), "pt") as f:
        assert sorted(f.keys()) == ["embed.weight"]

    fresh = Tied()
    load_weights(fresh, path)
    assert_same_state(net, fresh)
    assert fresh.head.weight is fresh.embed.weight
    # the library's own loader agrees with our file
    other = Tied()
    safetensors.torch.load_model(other, str(path))
    assert_same_state(net, other)


# ----------------------------------------------------------------------------- Store.model


def test_store_model_trains_once_then_reuses(tmp_path, capsys):
    store = Store(tmp_path)
    calls = []

    def train(net):
        calls.append(1)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
        return {"history": [0.9, 0.5], "accuracy": np.float32(0.75)}

    net1, meta1 = store.model("base", CONFIG, conv_bn, train)
    assert len(calls) == 1 and meta1["cached"] is False
    assert store.has_model("base", CONFIG)
    assert "trained" in capsys.readouterr().out

    net2, meta2 = store.model("base", CONFIG, conv_bn, train)
    assert len(calls) == 1 and meta2["cached"] is True
    assert "loaded" in capsys.readouterr().out
    assert_same_state(net1, net2)
    assert meta2["history"] == [0.9, 0.5] and meta2["accuracy"] == pytest.approx(0.75)
    assert {k: v for k, v in meta1.items() if k != "cached"} == {
        k: v for k, v in meta2.items() if k != "cached"
    }

    store.model("base", CONFIG, conv_bn, train, retrain=True)
    assert len(calls) == 2
    store.model("base", {**CONFIG, "lr": 0.1}, conv_bn, lambda net: None)  # another config
    assert len(files(tmp_path / "models")) == 2

    # the artifact explains itself: name and config are in the file header
    with safetensors.safe_open(str(store.model_path("base", CONFIG)), "pt") as f:
        header = f.metadata()
    assert header["name"] == "base" and json.loads(header["config"])["milestones"] == [1, 2]


def test_load_model_absent_raises_keyerror_naming_key_and_root(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(KeyError) as info:
        store.load_model("nothing", CONFIG, conv_bn())
    assert store.key("nothing", CONFIG) in str(info.value) and str(tmp_path) in str(info.value)


# ----------------------------------------------------------------------------- results


def test_results_round_trip_dict_and_dataframe(tmp_path):
    store = Store(tmp_path)
    value = {"acc": 0.91, "eps": [0.0, 0.03], "pair": (1, 2), "nan": float("nan"), "n": np.int64(4)}
    store.save_result("summary", CONFIG, value)
    back = store.load_result("summary", CONFIG)
    assert back["acc"] == 0.91 and back["eps"] == [0.0, 0.03] and back["pair"] == [1, 2]
    assert np.isnan(back["nan"]) and back["n"] == 4 and type(back["n"]) is int

    frame = pd.DataFrame({
        "eps": np.array([0.0, 1 / 3, 2 / 3]),
        "correct": [10, 7, 2],
        "attack": ["none", "pgd", "007"],
        "success": [False, True, True],
        "model": pd.Categorical(["a", "b", "a"]),
        "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
    }).set_index(pd.Index([3, 1, 2], name="run"))
    store.save_result("table", CONFIG, frame)
    pd.testing.assert_frame_equal(store.load_result("table", CONFIG), frame)  # exact, dtypes too
    assert sorted(files(tmp_path / "results")) == sorted(
        [f"{store.key('summary', CONFIG)}.json", f"{store.key('table', CONFIG)}.csv"]
    )

    calls = []

    def compute():
        calls.append(1)
        return {"score": len(calls)}

    assert store.result("r", CONFIG, compute) == {"score": 1}
    assert store.result("r", CONFIG, compute) == {"score": 1} and len(calls) == 1
    assert store.result("r", CONFIG, compute, recompute=True) == {"score": 2}

    table = store.entries()
    assert list(table.columns[:5]) == ["name", "hash", "kind", "format", "bytes"]
    assert sorted(table["name"]) == ["r", "summary", "table"]
    assert set(table["kind"]) == {"result"} and (table["bytes"] > 0).all()


# ----------------------------------------------------------------------------- crashes


def test_crash_inside_serialiser_leaves_nothing_then_retrains(tmp_path, monkeypatch):
    store = Store(tmp_path)
    real_save = safetensors.torch.save_file

    def dies_half_way(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:
            f.truncate(os.path.getsize(filename) // 2)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(safetensors.torch, "save_file", dies_half_way)
    with pytest.raises(OSError, match="simulated"):
        store.model("base", CONFIG, conv_bn, lambda net: {"acc": 1.0})
    assert not store.has_model("base", CONFIG)
    assert files(tmp_path / "models") == []  # no final file and no temp file
    assert store.entries().empty

    monkeypatch.setattr(safetensors.torch, "save_file", real_save)
    calls = []
    net, meta = store.model("base", CONFIG, conv_bn, lambda net: calls.append(1) or {"acc": 1.0})
    assert calls == [1] and meta["cached"] is False
    _, meta = store.model("base", CONFIG, conv_bn, lambda net: calls.append(1))
    assert calls == [1] and meta["cached"] is True and meta["acc"] == 1.0


def test_a_models_meta_comes_back_in_its_key_order(tmp_path):
    """A table built from stored meta (notebook 07's GAN history) has the same columns whether the
    model was trained now or loaded: the store keeps the order the meta was written in."""
    store = Store(tmp_path)
    history = [{"step": 10, "d_loss": -8.0, "g_loss": 18.2, "aux_acc_real": 0.2}]
    store.save_model("base", CONFIG, trained_conv_bn(seed=0), {"history": history, "b": 1, "a": 2})
    meta = store.load_model("base", CONFIG, trained_conv_bn(seed=1))
    assert list(meta) == ["history", "b", "a"]
    assert list(pd.DataFrame(meta["history"]).columns) == ["step", "d_loss", "g_loss", "aux_acc_real"]


def test_crashed_overwrite_keeps_the_previous_artifact(tmp_path, monkeypatch):
    store = Store(tmp_path)
    good = trained_conv_bn(seed=0)
    store.save_model("base", CONFIG, good, {"version": "good"})
    store.save_result("res", CONFIG, {"v": "good"})

    def rename_fails(src, dst):
        raise OSError("killed before rename (simulated)")

    monkeypatch.setattr(store_module.os, "replace", rename_fails)
    with pytest.raises(OSError, match="simulated"):
        store.save_model("base", CONFIG, trained_conv_bn(seed=1), {"version": "bad"})
    with pytest.raises(OSError, match="simulated"):
        store.save_result("res", CONFIG, {"v": "bad"})
    monkeypatch.undo()

    fresh = conv_bn()
    assert store.load_model("base", CONFIG, fresh) == {"version": "good"}
    assert_same_state(good, fresh)
    assert store.load_result("res", CONFIG) == {"v": "good"}
    assert len(files(tmp_path / "models")) == 1 and len(files(tmp_path / "results")) == 1


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys
    import safetensors.torch, torch
    from lib.store import Store

    real_save = safetensors.torch.save_file

    def killed_half_way(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:
            f.truncate(os.path.getsize(filename) // 2)
        os._exit(9)  # like SIGKILL: no except/finally clause runs

    safetensors.torch.save_file = killed_half_way
    Store(sys.argv[1]).model("base", {"seed": 0}, lambda: torch.nn.Linear(4, 2), lambda net: None)
    """
)


def test_killed_writer_leaves_a_temp_that_is_ignored_then_removed(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path)], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 9, done.stderr
    leftovers = files(tmp_path / "models")
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")  # the half-written temp file

    store = Store(tmp_path)
    config = {"seed": 0}
    assert not store.has_model("base", config) and store.entries().empty
    calls = []
    _, meta = store.model("base", config, lambda: nn.Linear(4, 2), lambda net: calls.append(1))
    assert calls == [1] and meta["cached"] is False
    assert files(tmp_path / "models") == [f"{store.key('base', config)}.safetensors"]


def test_stale_temp_rules(tmp_path):
    host, me = store_module.HOST, os.getpid()
    live_other = tmp_path / f".a.safetensors.{host}.{os.getppid()}.ab12.tmp"  # writer alive
    own_dead = tmp_path / f".b.safetensors.{host}.{me}.cd34.tmp"  # ours, not in flight
    remote_fresh = tmp_path / ".c.json.otherhost.123.ef56.tmp"  # another machine, recent
    remote_old = tmp_path / ".d.json.otherhost.123.ab78.tmp"  # another machine, a day old
    unrelated = tmp_path / ".notes.tmp"  # not our naming: never touched
    for path in (live_other, own_dead, remote_fresh, remote_old, unrelated):
        path.write_bytes(b"partial")
    old = time.time() - 24 * 3600
    os.utime(remote_old, (old, old))

    removed = store_module.clean_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted([own_dead.name, remote_old.name])
    assert live_other.exists() and remote_fresh.exists() and unrelated.exists()


# ----------------------------------------------------------------------------- corruption


def test_corrupt_or_truncated_files_raise_naming_the_file(tmp_path):
    store = Store(tmp_path)
    store.save_model("base", CONFIG, trained_conv_bn())
    path = store.model_path("base", CONFIG)
    data = path.read_bytes()

    path.write_bytes(data[: len(data) // 2])  # truncated by a full disk / bad copy
    with pytest.raises(CorruptArtifactError) as info:
        store.load_model("base", CONFIG, conv_bn())
    assert str(path) in str(info.value)
    with pytest.raises(CorruptArtifactError):  # Store.model does not silently retrain or return junk
        store.model("base", CONFIG, conv_bn, lambda net: pytest.fail("must not train"))

    flipped = bytearray(data)
    flipped[-3] ^= 0xFF  # one bad byte inside the weights: header still parses
    path.write_bytes(bytes(flipped))
    with pytest.raises(CorruptArtifactError, match="checksum") as info:
        load_weights(conv_bn(), path)
    assert str(path) in str(info.value)

    store.save_result("res", CONFIG, {"acc": [0.5, 0.25]})
    store.save_result("tab", CONFIG, pd.DataFrame({"a": range(50)}))
    for name, cut in (("res", 0.5), ("tab", 0.9)):
        result_path = store._result_path(name, CONFIG)
        text = result_path.read_bytes()
        result_path.write_bytes(text[: int(len(text) * cut)])
        with pytest.raises(CorruptArtifactError) as info:
            store.load_result(name, CONFIG)
        assert str(result_path) in str(info.value)


# ----------------------------------------------------------------------------- code versions

TRAIN_V1 = '''
"""Training code, first version."""
import math


class Trainer:
    """Holds a learning rate."""

    def step(self, x):
        """One step."""
        return x - 0.1 * math.tanh(x)


def fit(net, epochs=2):
    """Train ``net`` for ``epochs`` epochs."""
    for _ in range(epochs):
        net = Trainer().step(net)
    return net
'''

# The same code: other docstrings, comments, blank lines, quotes and line breaks.
TRAIN_V1_PROSE = """
# a comment at the top
import math
class Trainer:
    '''Holds a learning rate (reworded).'''
    def step(self, x):
        # a comment in a method
        return (x
                - 0.1 * math.tanh(x))


def fit(net, epochs = 2):
    '''Another docstring.

    With more lines.
    '''

    for _ in range( epochs ):  # loop
        net = Trainer().step(net)

    return net
"""

# A code change in fit (0.1 -> 0.2 inside step, and epochs default 2 -> 3).
TRAIN_V2 = TRAIN_V1.replace("0.1 * math", "0.2 * math").replace("epochs=2", "epochs=3")


def load_module(tmp_path, monkeypatch, name: str, source: str):
    """Import ``source`` as module ``name`` from a real file (``inspect.getsource`` needs one)."""
    import importlib.util

    path = tmp_path / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # getsource of a class looks its module up
    spec.loader.exec_module(module)
    return module


def test_code_version_ignores_prose_and_sees_code_changes(tmp_path, monkeypatch):
    from lib.store import code_version

    v1 = load_module(tmp_path, monkeypatch, "train_v1", TRAIN_V1)
    prose = load_module(tmp_path, monkeypatch, "train_v1_prose", TRAIN_V1_PROSE)
    v2 = load_module(tmp_path, monkeypatch, "train_v2", TRAIN_V2)

    version = code_version(v1.fit, v1.Trainer)
    assert len(version) == 12 and int(version, 16) >= 0
    assert code_version(v1.fit, v1.Trainer) == version  # stable across calls
    assert code_version(v1) == code_version(prose)  # a module: its docstring is prose too
    assert code_version(v1.fit) == code_version(prose.fit)  # a function
    assert code_version(v1.Trainer) == code_version(prose.Trainer)  # a class
    assert code_version(v1.Trainer.step) == code_version(prose.Trainer.step)  # an indented method
    assert code_version(prose.fit, prose.Trainer) == version

    assert code_version(v2.fit) != code_version(v1.fit)  # default changed
    assert code_version(v2.Trainer) != code_version(v1.Trainer)  # constant changed in a method
    assert code_version(v2.Trainer.step) != code_version(v1.Trainer.step)
    assert code_version(v2) != code_version(v1)
    assert code_version(v1.Trainer, v1.fit) != version  # order matters
    assert code_version(v1.fit) != version  # so does what is included

    assert code_version("v2") == code_version("v2") != code_version("v3")  # manual tags
    assert code_version("v2") != code_version(v1.fit)
    with pytest.raises(TypeError):
        code_version(42)


def test_code_version_memo_sees_an_edit_in_place(tmp_path, monkeypatch):
    # parsed code is memoised on its text: rewriting the same file (a notebook kernel that reloads a
    # module) must still give the new version, and the old text its old one
    from lib.store import code_version

    before = code_version(load_module(tmp_path, monkeypatch, "edited", TRAIN_V1).fit)
    edited = TRAIN_V2 + "\n\ndef helper():\n    return 1\n"  # another size, so linecache rereads the file
    after = code_version(load_module(tmp_path, monkeypatch, "edited", edited).fit)
    assert after != before and after == code_version(load_module(tmp_path, monkeypatch, "v2_copy", TRAIN_V2).fit)
    assert code_version(load_module(tmp_path, monkeypatch, "edited", TRAIN_V1).fit) == before


def test_tensor_results_round_trip_exactly_and_are_checksummed(tmp_path):
    # crafted images stored as safetensors: the same bits back, a flipped byte refused
    store = Store(tmp_path)
    adv = {"adv": torch.rand(5, 3, 8, 8), "pred": torch.tensor([3, 1, 4, 1, 5]), "ok": torch.tensor([True, False])}
    calls = []
    first = store.result("crafted", CONFIG, lambda: calls.append(1) or adv)
    again = store.result("crafted", CONFIG, lambda: calls.append(1) or adv)
    assert len(calls) == 1 and set(first) == set(adv)
    for k, v in adv.items():
        assert torch.equal(first[k], v) and torch.equal(again[k], v) and again[k].dtype == v.dtype
    path = tmp_path / "results" / f"{store.key('crafted', CONFIG)}.safetensors"
    assert path.is_file() and set(store.entries()["format"]) == {"safetensors"}
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match="checksum"):
        store.load_result("crafted", CONFIG)


def test_store_model_and_result_with_code_key_on_code_version(tmp_path, monkeypatch):
    from lib.store import code_version

    v1 = load_module(tmp_path, monkeypatch, "fit_v1", TRAIN_V1)
    prose = load_module(tmp_path, monkeypatch, "fit_v1_prose", TRAIN_V1_PROSE)
    v2 = load_module(tmp_path, monkeypatch, "fit_v2", TRAIN_V2)
    store = Store(tmp_path / "store")
    config = dict(CONFIG)
    calls = []

    def train(net):
        calls.append(1)

    _, meta = store.model("base", config, conv_bn, train, code=(v1.fit, v1.Trainer))
    assert meta["cached"] is False and calls == [1]
    assert config == CONFIG  # the caller's dict is not changed
    key_v1 = store.key("base", {**CONFIG, "code": code_version(v1.fit, v1.Trainer)})
    assert files(tmp_path / "store" / "models") == [f"{key_v1}.safetensors"]
    assert key_v1 != store.key("base", CONFIG)
    with safetensors.safe_open(str(tmp_path / "store" / "models" / f"{key_v1}.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["config"])["code"] == code_version(v1.fit, v1.Trainer)

    # docstrings/comments/formatting edited: same key, loaded
    _, meta = store.model("base", config, conv_bn, train, code=[prose.fit, prose.Trainer])
    assert meta["cached"] is True and calls == [1]

    # code edited: new key, trained again; the old artifact stays
    _, meta = store.model("base", config, conv_bn, train, code=(v2.fit, v2.Trainer))
    assert meta["cached"] is False and calls == [1, 1]
    key_v2 = store.key("base", {**CONFIG, "code": code_version(v2.fit, v2.Trainer)})
    assert files(tmp_path / "store" / "models") == sorted(
        [f"{key_v1}.safetensors", f"{key_v2}.safetensors"]
    )

    # a string tag and a single object work too; no code= keeps the plain key
    _, meta = store.model("base", config, conv_bn, train, code="manual-1")
    assert meta["cached"] is False and store.has_model("base", {**CONFIG, "code": code_version("manual-1")})
    _, meta = store.model("base", config, conv_bn, train, code="manual-1")
    assert meta["cached"] is True
    _, meta = store.model("base", config, conv_bn, train, code=v1.fit)
    assert meta["cached"] is False and store.has_model("base", {**CONFIG, "code": code_version(v1.fit)})
    assert not store.has_model("base", CONFIG)
    with pytest.raises(ValueError, match="code"):
        store.model("base", {**CONFIG, "code": "x"}, conv_bn, train, code="y")

    computed = []

    def compute():
        computed.append(1)
        return {"n": len(computed)}

    assert store.result("r", config, compute, code=(v1.fit,)) == {"n": 1}
    assert store.result("r", config, compute, code=(prose.fit,)) == {"n": 1}  # loaded
    assert store.result("r", config, compute, code=(v2.fit,)) == {"n": 2}  # recomputed
    assert store.has_result("r", {**CONFIG, "code": code_version(v1.fit)})
    assert not store.has_result("r", CONFIG) and config == CONFIG
