"""Does bf16 autocast keep notebook 05's ``real`` recipe within 1 point of fp32? (issue 34, goal 5)

Paired seeds: for each seed, the clean teacher and its victim are trained twice from the shared
CIFAR-10 ResNet-20 on the shared GTSRB subset, once with the recipe as it is (``"amp": "auto"``:
bf16 autocast on a CPU with native bf16) and once with ``amp`` taken out of every training keyword
dict (fp32), each scored on the 1,290 GTSRB test images. Two victims: fine-tuning (20 epochs, the
control every backdoor finding is read against) and re-training from scratch (40 epochs).

The two precisions run side by side in two processes of one thread each, as ``make workbook
--jobs 2`` runs two notebooks, so their seconds compare. The difference (bf16 - fp32, points) is
given per seed with a Student-t interval over the seeds (:func:`lib.metrics.seed_interval`): the
spread a training seed gives, which an image bootstrap does not cover. Needs ``../shared``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import save

KW_KEYS = ("fit_kw", "teacher_kw", "trial_kw", "retrain_kw", "renofeation_kw")


def _recipe(precision: str, seed: int) -> dict:
    from lib.studies import backdoor as bd_study
    cfg = bd_study.recipe("real", seed=seed)
    if precision == "fp32":
        cfg.update({k: {n: v for n, v in cfg[k].items() if n != "amp"} for k in KW_KEYS})
    return cfg


def lane(precision: str, seeds: list[int], methods: list[str]) -> None:
    """Train and score every (seed, method) in ``precision``; one JSON line each on stdout."""
    import torch

    from lib.artifacts import backdoor as bd
    from lib.train import predict, resolve_precision

    torch.set_num_threads(1)
    for seed in seeds:
        cfg = _recipe(precision, seed)
        bd.clean_teacher(cfg, None, progress=False)
        for method in methods:
            t0 = time.perf_counter()
            model, meta = bd.student(method, cfg, None, "same", 0.0, teacher="clean", progress=False)
            logits, y = predict(model, bd.student_data(cfg, "same")[1])
            print(json.dumps({"precision": precision, "seed": seed, "method": method, "cached": meta["cached"],
                              "bf16": resolve_precision(torch.device("cpu"), cfg["fit_kw"].get("amp"), None)[0],
                              "seconds": round(time.perf_counter() - t0, 1),
                              "correct": (logits.argmax(1) == y).int().tolist()}), flush=True)


def summary(rows: list[dict]) -> dict:
    """Per method: accuracies, paired differences per seed and their seed interval, seconds."""
    from lib.metrics import seed_interval

    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        by = {(r["precision"], r["seed"]): r for r in rows if r["method"] == method}
        seeds = sorted(s for p, s in by if p == "fp32" and ("bf16", s) in by)
        acc = {p: [100 * sum(by[p, s]["correct"]) / len(by[p, s]["correct"]) for s in seeds] for p in ("fp32", "bf16")}
        diffs = [b - f for f, b in zip(acc["fp32"], acc["bf16"])]
        si = seed_interval(diffs)
        fresh = {p: [by[p, s]["seconds"] for s in seeds if not by[p, s]["cached"]] for p in ("fp32", "bf16")}
        out[method] = {"seeds": seeds, "n_images": len(by["fp32", seeds[0]]["correct"]),
                       "fp32_acc": [round(a, 2) for a in acc["fp32"]], "bf16_acc": [round(a, 2) for a in acc["bf16"]],
                       "diff_points_per_seed": [round(d, 2) for d in diffs], "diff_points_mean": round(si["mean"], 2),
                       "diff_seed_t_95": [round(si["low"], 2), round(si["high"], 2)],
                       "within_1_point": bool(-1.0 <= si["low"] and si["high"] <= 1.0),
                       "seconds_mean": {p: round(sum(v) / len(v), 1) if v else None for p, v in fresh.items()},
                       "bf16_used": all(by["bf16", s]["bf16"] for s in seeds)}
        if all(fresh.values()):
            out[method]["speedup"] = round(out[method]["seconds_mean"]["fp32"] / out[method]["seconds_mean"]["bf16"], 2)
    return out


def main(seeds: list[int], methods: list[str]) -> dict:
    t0 = time.perf_counter()
    me = [sys.executable, str(Path(__file__).resolve())]
    args = ["--seeds", *map(str, seeds), "--methods", *methods]
    procs = [subprocess.Popen([*me, "--lane", p, *args], stdout=subprocess.PIPE, text=True) for p in ("fp32", "bf16")]
    rows = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a lane failed (exit {proc.returncode})")
        rows += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    res = {"recipe": "notebook 05 real (lib.studies.backdoor.RECIPE['real']), victims of the clean teacher, same task",
           "lanes": "fp32 and bf16 side by side, one thread each", **summary(rows),
           "seconds": round(time.perf_counter() - t0, 1)}
    save("precision_accuracy_real", res)
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--methods", nargs="+", default=["fine_tune", "retrain"])
    ap.add_argument("--lane", choices=["fp32", "bf16"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.lane:
        lane(a.lane, a.seeds, a.methods)
    else:
        main(a.seeds, a.methods)
