"""CPU precision of one SGD step: fp32 vs channels-last vs bf16 autocast vs both (issue 15's table).

One training step (forward, cross-entropy, backward, SGD with momentum) of ``small_cnn`` and
``resnet20`` at batch 128, 32 px, on ``--threads`` threads (default 2), each variant timed in
interleaved repeats so that machine noise hits all alike; speed-ups are fp32's median step time
over the variant's. The 1-minute load average before and after is recorded: on a shared machine
the absolute times are inflated, the interleaved ratios less so. ``lib.train.cpu_bf16_supported``
says whether this CPU runs bf16 natively (AVX-512 bf16 / AMX); elsewhere bf16 is emulated and
slower, which is why ``fit(amp="auto")`` turns it on only where it is supported.
"""
from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F
from common import save

from lib.models import build
from lib.train import cpu_bf16_supported

VARIANTS = {"fp32": (False, False), "channels_last": (True, False), "bf16": (False, True),
            "bf16_channels_last": (True, True)}  # name -> (channels_last, bf16)


def _loadavg():
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _step_fn(arch, channels_last, bf16, batch_size):
    torch.manual_seed(0)
    model = build(arch, 10)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch_size, 3, 32, 32)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def bench_arch(arch, batch_size, steps, repeats):
    fns = {k: _step_fn(arch, cl, bf, batch_size) for k, (cl, bf) in VARIANTS.items()}
    for fn in fns.values():  # warm-up: oneDNN primitives, allocator
        for _ in range(3):
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            times[k].append((time.perf_counter() - t0) / steps)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print(arch, {k: round(med["fp32"] / v, 2) for k, v in med.items()}, flush=True)
    return {"arch": arch, "seconds_per_step_median": {k: round(v, 4) for k, v in med.items()},
            "seconds_per_step_min": {k: round(min(v), 4) for k, v in times.items()},
            "speedup_vs_fp32": {k: round(med["fp32"] / v, 2) for k, v in med.items()},
            "speedup_vs_fp32_min": {k: round(min(times["fp32"]) / min(v), 2) for k, v in times.items()}}


def main(archs=("small_cnn", "resnet20"), batch_size: int = 128, threads: int = 2, steps: int = 3,
         repeats: int = 5) -> dict:
    before_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    load = _loadavg()
    try:
        results = [bench_arch(a, batch_size, steps, repeats) for a in archs]
    finally:
        torch.set_num_threads(before_threads)
    res = {"device": "cpu", "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "bf16_supported": cpu_bf16_supported(), "threads": threads, "batch_size": batch_size, "image_size": 32,
           "steps_per_repeat": steps, "repeats": repeats, "load_average_before": load, "results": results}
    res["load_average_after"] = _loadavg()
    # goal: bf16 + channels-last at least 1.2x fp32 on a CPU that supports bf16 (the issue measured 1.95-2.42x)
    res["meets_goal"] = (not res["bf16_supported"]) or all(
        r["speedup_vs_fp32"]["bf16_channels_last"] >= 1.2 for r in results)
    save("precision_cpu", res)
    return res


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--archs", nargs="+", default=["small_cnn", "resnet20"])
    args = ap.parse_args()
    main(archs=tuple(args.archs), threads=args.threads, repeats=args.repeats)
