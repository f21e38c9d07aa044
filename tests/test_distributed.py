"""``fit`` under ``torchrun``: two CPU processes (gloo) on a tiny model end with identical weights that
equal one process trained on the same global batches, for the default loss (DDP) and for a custom
loss (explicit all-reduce); inside ``Store.model`` only rank 0 writes and the other rank loads."""
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from lib import distributed

SCRIPT = textwrap.dedent("""
    import json, os, sys, torch
    import torch.nn as nn
    import torch.nn.functional as F
    from lib import distributed
    from lib.store import Store
    from lib.train import fit, random_translate

    def data():
        g = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (96, 3, 8, 8), generator=g, dtype=torch.uint8), torch.arange(96) % 4

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 64, 4))
            self.spare = nn.Linear(4, 4)  # trainable but unused (an inactive head): DDP must cope, it stays put

        def forward(self, x):
            return self.body(x)

    def net():
        torch.manual_seed(1)
        return Net()

    def mse_loss(model, x, y):  # a custom loss: the explicit all-reduce path
        logits = model(x)
        return F.mse_loss(logits, F.one_hot(y, 4).float()) + 0.1 * F.cross_entropy(logits, y), logits

    def train(kind):
        model = net()
        hist = fit(model, data(), epochs=2, lr=0.05, batch_size=32, augment=random_translate(2), progress=False,
                   loss=mse_loss if kind == "custom" else None)
        return model, hist

    def main(out, store_root):
        tag = f"rank{distributed.rank()}" if distributed.launched() else "single"
        result = {"world": distributed.world_size()}
        for kind in ("default", "custom"):
            model, hist = train(kind)
            torch.save(model.state_dict(), os.path.join(out, f"{tag}-{kind}.pt"))
            result[kind + "_loss"] = hist["train_loss"].tolist()
        fit_once = lambda m: {"tag": tag, "epochs": len(fit(m, data(), epochs=1, batch_size=32, progress=False))}
        stored, meta = Store(store_root).model("tiny", {"k": 1}, net, fit_once)
        result["stored_meta"] = meta
        torch.save(stored.state_dict(), os.path.join(out, f"{tag}-stored.pt"))
        with open(os.path.join(out, f"{tag}.json"), "w") as f:
            json.dump(result, f)

    if __name__ == "__main__":
        torch.set_num_threads(1)
        main(sys.argv[1], sys.argv[2])
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd(), "CUDA_VISIBLE_DEVICES": ""}


def test_two_gloo_processes_match_one_process(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={_free_port()}", str(script), str(tmp_path), str(tmp_path / "store2")],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    namespace = {"__name__": "single_process"}
    exec(compile(SCRIPT, str(script), "exec"), namespace)  # the same code in this process, without torchrun
    namespace["main"](str(tmp_path), str(tmp_path / "store1"))
    results = {t: json.loads((tmp_path / f"{t}.json").read_text()) for t in ("rank0", "rank1", "single")}
    assert results["rank0"]["world"] == 2 and results["single"]["world"] == 1
    for kind in ("default", "custom"):
        r0, r1, single = (torch.load(tmp_path / f"{t}-{kind}.pt") for t in ("rank0", "rank1", "single"))
        start = namespace["net"]().state_dict()  # the weights moved (a no-op fit would also "agree")
        assert not torch.allclose(single["body.0.weight"], start["body.0.weight"])
        for k in single:
            assert torch.equal(r0[k], r1[k]), (kind, k)  # the two ranks end identical
            assert torch.allclose(r0[k], single[k], atol=1e-5, rtol=0), (kind, k, (r0[k] - single[k]).abs().max())
        # the unused parameters got no gradient, hence no weight decay: unchanged everywhere
        assert torch.equal(r0["spare.weight"], start["spare.weight"]) and torch.equal(single["spare.weight"],
                                                                                       start["spare.weight"])
        # the history's loss covers the whole global batch, as in one process
        assert results["rank0"][f"{kind}_loss"] == pytest.approx(results["single"][f"{kind}_loss"], abs=1e-5)
    # only rank 0 wrote the store; rank 1 loaded what it wrote (rank 0's meta, identical weights)
    assert len(list((tmp_path / "store2" / "models").glob("tiny-*.safetensors"))) == 1
    assert results["rank0"]["stored_meta"]["tag"] == "rank0" == results["rank1"]["stored_meta"]["tag"]
    s0, s1 = (torch.load(tmp_path / f"rank{r}-stored.pt") for r in (0, 1))
    assert all(torch.equal(s0[k], s1[k]) for k in s0)
    assert two.stdout.count("[store] trained model tiny-") == 1  # rank 0 alone prints


def test_outside_a_launch_everything_is_a_no_op(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert not distributed.launched() and distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.is_main() and not distributed.init()
    x = torch.arange(6)
    assert distributed.shard(x) is x and distributed.all_reduce_sum(x) is x
    distributed.barrier()


def test_a_batch_that_does_not_split_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    assert distributed.shard(torch.arange(6)).tolist() == [2, 3]
    with pytest.raises(ValueError, match="divisible by 3"):
        distributed.shard(torch.arange(8))


def test_cpu_precision_is_opt_in_and_follows_the_bf16_check(monkeypatch):
    """(``fit``'s other speed option, kept beside the parallel one.) ``None`` keeps fp32 on the CPU,
    channels-last where oneDNN runs the convolutions; ``"auto"`` turns bf16 on only where the CPU
    runs bf16 natively."""
    from lib import train as T

    cpu, layout = torch.device("cpu"), torch.backends.mkldnn.is_available()
    assert T.resolve_precision(cpu, None, None) == (False, layout)
    assert T.resolve_precision(cpu, None, False) == (False, False)
    assert T.resolve_precision(torch.device("cuda"), None, None) == (True, True)
    for forced, expected in (("1", (True, layout)), ("0", (False, layout))):
        monkeypatch.setenv("WORKBOOK_CPU_BF16", forced)
        T.cpu_bf16_supported.cache_clear()
        assert T.resolve_precision(cpu, "auto", "auto") == expected
    T.cpu_bf16_supported.cache_clear()
    with pytest.raises(ValueError, match="'auto'"):
        T.resolve_precision(cpu, "yes", None)
    monkeypatch.setenv("WORKBOOK_CPU_BF16", "1")
    x, y = torch.rand(64, 3, 8, 8), torch.arange(64) % 4
    seen = []
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 36, 4))
    loss = lambda m, xb, yb: (seen.append(m(xb).dtype) or torch.nn.functional.cross_entropy(m(xb).float(), yb))
    T.fit(net, (x, y), epochs=1, batch_size=32, amp="auto", channels_last="auto", loss=loss, progress=False)
    assert seen == [torch.bfloat16] * 2 and net[0].weight.dtype == torch.float32  # bf16 compute, fp32 weights
    T.cpu_bf16_supported.cache_clear()
