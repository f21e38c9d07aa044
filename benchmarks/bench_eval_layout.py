"""Goal: attacks and evaluation in channels-last layout (``lib.train.channels_last_while``, what
``predict`` and ``lib.evaluate.craft`` use) are at least 1.1x faster than in the default layout on
the CPU, and give the same robust accuracy within 0.5 points (both fp32; only the summation order
differs). Measured: PGD-10 at 2/255 (robust accuracy well above 0) through ``predict`` (the
robustness report's path) on 400 images at 32 px, small_cnn (width 16, notebook 03's) and
resnet20, trained briefly so that the accuracy is not at chance; one thread, medians of
interleaved repeats."""
import contextlib
import os
import statistics
import time

import torch
from common import save

import lib.train as T
from lib import data as D
from lib.attacks import as_batch_hook, pgd
from lib.metrics import accuracy
from lib.models import build

GOAL_SPEEDUP, GOAL_POINTS = 1.1, 0.5


def _plain(model):
    return contextlib.nullcontext(False)


def main(repeats: int = 5) -> dict:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    classes = list(range(10))
    train = D.subset_classes(D.generate(2000, size=32, seed=0, classes=classes), classes)
    test = D.subset_classes(D.generate(400, size=32, seed=1, classes=classes), classes)
    hook = as_batch_hook(lambda m, x, y: pgd(m, x, y, eps=2 / 255, alpha=0.5 / 255, steps=10, seed=0))
    rows = []
    for arch, kw in (("small_cnn", {"width": 16}), ("resnet20", {})):
        model = build(arch, train.num_classes, seed=0, **kw)
        T.fit(model, train, epochs=4, progress=False)
        seconds, acc = {"default": [], "channels_last": []}, {}
        for _ in range(repeats):
            for name, ctx in (("default", _plain), ("channels_last", T.channels_last_while)):
                saved, T.channels_last_while = T.channels_last_while, ctx
                try:
                    t0 = time.perf_counter()
                    logits, y = T.predict(model, test, batch_hook=hook)
                    seconds[name].append(time.perf_counter() - t0)
                finally:
                    T.channels_last_while = saved
                acc[name] = accuracy(logits, y)
        med = {k: statistics.median(v) for k, v in seconds.items()}
        diff = 100 * (acc["channels_last"] - acc["default"])
        rows.append({"arch": arch, "seconds_median": med, "seconds_all": seconds,
                     "speedup": round(med["default"] / med["channels_last"], 3),
                     "robust_acc": acc, "diff_points": round(diff, 2), "n": len(test)})
    ok = all(r["speedup"] >= GOAL_SPEEDUP and abs(r["diff_points"]) <= GOAL_POINTS for r in rows)
    res = {"threads": torch.get_num_threads(), "attack": "PGD-10, 2/255, alpha 0.5/255", "results": rows,
           "goal_speedup": GOAL_SPEEDUP, "goal_points": GOAL_POINTS, "meets_goal": ok}
    save("eval_layout_cpu", res)
    return res


if __name__ == "__main__":
    main()
