"""A training killed mid-run (SIGKILL, as a crash or a hard Ctrl-C leaves it) resumes from its last
finished epoch and ends bit-identical to an uninterrupted run: plain ``fit`` and adversarial
training with best-epoch selection (whose selection state is checkpointed too)."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    torch.set_num_threads(1)
    from lib.store import Store
    from lib.models import build
    from lib.train import fit
    from lib.adversarial_training import adversarial_train
    from lib.data import load_synsigns
    root, kill_at, kind, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    data = load_synsigns("train", n=320, seed=0, classes=list(range(8)))
    val = load_synsigns("val", n=64, seed=0, classes=list(range(8)))

    def killer(epoch, row, model):
        if epoch == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    killer.state_dict = lambda: {}
    killer.load_state_dict = lambda state: None

    def train(model):
        if kind == "fit":
            hist = fit(model, data, epochs=4, lr=0.05, batch_size=64, on_epoch_end=killer, progress=False)
        else:
            hist = adversarial_train(model, data, val, "pgd_at", eps=4 / 255, epochs=4, lr=0.05, batch_size=64,
                                     steps=2, val_n=64, on_epoch_end=killer, progress=False)
        return {"history": hist.drop(columns=["seconds", "images_per_s"]).to_dict("records")}

    net, meta = Store(root).model("ck_" + kind, {"k": kind}, lambda: build("small_cnn", 100, seed=0, width=8), train)
    torch.save({"state": net.state_dict(), "history": meta["history"],
                "resumed": meta.get("resumed_from_epoch", 0)}, out)
""")


def _run(tmp_path, root, kill_at, kind, out):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-c", SCRIPT, str(root), str(kill_at), kind, str(out)], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("kind", ["fit", "adversarial"])
def test_killed_training_resumes_from_its_last_epoch(tmp_path, kind):
    killed = _run(tmp_path, tmp_path / "a", 3, kind, tmp_path / "never.pt")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert list((tmp_path / "a" / "checkpoints").glob("*/fit0.pt")), "no epoch checkpoint was left behind"
    resumed = _run(tmp_path, tmp_path / "a", 0, kind, tmp_path / "resumed.pt")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed after epoch 2 of 4" in resumed.stdout
    straight = _run(tmp_path, tmp_path / "b", 0, kind, tmp_path / "straight.pt")
    assert straight.returncode == 0, straight.stderr[-2000:]
    a, b = (torch.load(tmp_path / f, weights_only=True) for f in ("resumed.pt", "straight.pt"))
    assert a["resumed"] == 2 and b["resumed"] == 0
    assert a["history"] == b["history"]
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in b["state"])
    assert not list((tmp_path / "a" / "checkpoints").glob("*/fit0.pt")), "checkpoints kept after the model was saved"
