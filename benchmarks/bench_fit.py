"""Goal: ``lib.train.fit`` trains at >= 0.95x the throughput of a bare PyTorch loop on the same
model, data, optimiser and batch size (progress bar, on-device uint8 data and bookkeeping
included). On CUDA both run with bf16 autocast and channels-last."""
import time

import torch
import torch.nn.functional as F
from common import save

from lib import data as D
from lib.models import build
from lib.train import fit, pick_device

GOAL = 0.95


def bare_loop(model, x, y, epochs, batch_size, lr, device, amp):
    """The reference: float images already on the device, randperm indexing, SGD, nothing else."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    model.train()
    n = len(y) // batch_size * batch_size
    for _ in range(epochs):
        order = torch.randperm(len(y), device=device)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            xb, yb = x[idx], y[idx]
            if amp:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(arch: str = "small_cnn", n: int = 2500, epochs: int = 2, batch_size: int = 128, repeats: int = 5) -> dict:
    device = pick_device()
    amp = device.type == "cuda"
    ds = D.load_synsigns("train", n=n)
    x, y = ds.float_images().to(device), ds.labels.to(device)
    fmt = torch.channels_last if amp else torch.contiguous_format
    make = lambda: build(arch, ds.num_classes).to(device, memory_format=fmt)
    images = epochs * (n // batch_size) * batch_size
    bare, ours = [], []
    bare_loop(make(), x, y, 1, batch_size, 0.05, device, amp)  # warm-up (allocator, kernels)
    for _ in range(repeats):  # interleaved so that machine noise hits both alike
        t0 = time.perf_counter()
        bare_loop(make(), x, y, epochs, batch_size, 0.05, device, amp)
        bare.append(images / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        fit(make(), ds, epochs=epochs, batch_size=batch_size, lr=0.05, schedule=None, device=device, desc="bench fit")
        if device.type == "cuda":
            torch.cuda.synchronize()
        ours.append(images / (time.perf_counter() - t0))
    med = lambda v: sorted(v)[len(v) // 2]
    ratio = med(ours) / med(bare)
    res = {"arch": arch, "device": str(device), "amp": amp, "images_per_epoch": n, "epochs": epochs,
           "batch_size": batch_size, "bare_images_per_s": round(med(bare), 1), "fit_images_per_s": round(med(ours), 1),
           "ratio": round(ratio, 3), "goal_ratio": GOAL, "meets_goal": ratio >= GOAL}
    save(f"fit_throughput_{device.type}", res)
    return res


if __name__ == "__main__":
    main()
