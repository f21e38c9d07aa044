"""Does bf16 autocast + channels-last on the CPU keep each smoke recipe's accuracy within 1 point of
fp32, and do bf16 attacks reach the same robust accuracy within 0.5 points? (issue 15, goal 2)

Two smoke recipes, trained twice per seed, once in fp32 and once with ``fit``'s bf16 autocast and
channels-last (every ``fit`` of the process switched through its keyword defaults, so the study
code runs unchanged), each into its own throwaway store:

- notebook 01's base A (:func:`lib.artifacts.bases.base_model`), test accuracy on its test set;
- notebook 03's standard small CNN (:func:`lib.artifacts.robust.robust_model`), test
  accuracy on its ``per_class_test`` test images.

The accuracy difference (bf16 - fp32) is given per seed and pooled over the seeds' test images,
with a percentile-bootstrap interval of the pooled per-image difference
(:func:`lib.metrics.bootstrap_interval`) and, with two or more seeds, a Student-t interval over
the seeds (:func:`lib.metrics.seed_interval`).

Attacks: on each fp32 standard model, PGD-10 (alpha = eps/4, random start with a fixed seed)
crafted in fp32 and crafted under CPU bf16 autocast, both scored in fp32, at several eps.
"""
from __future__ import annotations

import os
import tempfile
import time

import torch
from common import save

from lib import train as T
from lib.attacks import pgd
from lib.metrics import bootstrap_interval, seed_interval
from lib.artifacts import robust
from lib.artifacts.bases import base_model, half_data
from lib.store import Store
from lib.studies import adversarial, bases


VARIANTS = {"bf16_channels_last": (True, True), "channels_last": (False, True)}  # name -> (amp, channels_last)


def _precision(on: bool, variant: str = "bf16_channels_last", baseline_cl: bool = False) -> None:
    """Every later ``fit`` call of this process trains with ``variant``, or, when not ``on``, with the
    baseline: fp32 in the contiguous layout, or fp32 channels-last with ``baseline_cl`` (the CPU
    default since 2026-12-02, so the question bf16 must answer now is against it)."""
    amp, cl = VARIANTS[variant]
    T.fit.__kwdefaults__["amp"] = True if on and amp else None
    T.fit.__kwdefaults__["channels_last"] = bool(on and cl) or (not on and baseline_cl)


def _correct(model, test) -> torch.Tensor:
    logits, y = T.predict(model, test)
    return (logits.argmax(1) == y).float()


def _diff(per_seed: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """bf16 - fp32 accuracy: per seed, pooled, with intervals (points, i.e. x100)."""
    diffs = [float(b.mean() - f.mean()) * 100 for f, b in per_seed]
    pooled = torch.cat([b - f for f, b in per_seed])
    low, high = bootstrap_interval(pooled)
    out = {"fp32_acc": [round(float(f.mean()) * 100, 2) for f, _ in per_seed],
           "bf16_acc": [round(float(b.mean()) * 100, 2) for _, b in per_seed],
           "diff_points_per_seed": [round(d, 2) for d in diffs], "n_images_per_seed": len(per_seed[0][0]),
           "diff_points_pooled": round(float(pooled.mean()) * 100, 2),
           "diff_pooled_bootstrap_95": [round(low * 100, 2), round(high * 100, 2)]}
    if len(diffs) > 1:
        si = seed_interval(diffs)
        out["diff_seed_t_95"] = [round(si["low"], 2), round(si["high"], 2)]
    out["within_1_point"] = abs(out["diff_points_pooled"]) <= 1.0
    return out


def _attack_agreement(model, test, eps_list, steps=10) -> list[dict]:
    x, y = test.float_images(), test.labels.long()
    rows = []
    for eps in eps_list:
        res = {}
        for bf16 in (False, True):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                adv = pgd(model, x, y, eps, eps / 4, steps, random_start=True, seed=0)
            with torch.no_grad():
                res[bf16] = (model(adv.float()).argmax(1) == y).float()
        d = res[True] - res[False]
        low, high = bootstrap_interval(d)
        rows.append({"eps_255": round(eps * 255, 2), "fp32_robust_acc": round(float(res[False].mean()) * 100, 2),
                     "bf16_robust_acc": round(float(res[True].mean()) * 100, 2),
                     "diff_points": round(float(d.mean()) * 100, 2),
                     "diff_bootstrap_95": [round(low * 100, 2), round(high * 100, 2)], "n": len(y)})
    return rows


def main(seeds=(0, 1, 2), eps_list=(1 / 255, 2 / 255, 4 / 255, 8 / 255), root: str | None = None,
         variant: str = "bf16_channels_last", with_base: bool = True, baseline_cl: bool = False) -> dict:
    root = root or tempfile.mkdtemp(prefix="bench_precision_accuracy_")
    t0 = time.perf_counter()
    base, standard, attacks = [], [], []
    for seed in seeds:
        pair_base, pair_std = [], []
        for bf16 in (False, True):
            _precision(bf16, variant, baseline_cl)
            folder = ("bf16" if variant == "bf16_channels_last" else variant) if bf16 else (
                "fp32_channels_last" if baseline_cl else "fp32")
            store = Store(os.path.join(root, folder))
            if with_base:
                model, _ = base_model("A", bases.recipe(seed=seed), store, progress=False)
                pair_base.append(_correct(model, half_data("A", bases.recipe(seed=seed))[1]))
            cfg = adversarial.recipe(seed=seed)
            model, _ = robust.robust_model("standard", cfg, store, progress=False)
            test = robust.robust_study_data(cfg)[1]
            pair_std.append(_correct(model, test))
            if not bf16 and eps_list:
                _precision(False)
                attacks.append({"seed": seed, "rows": _attack_agreement(model, test, eps_list)})
            print(f"seed {seed} {'bf16' if bf16 else 'fp32'} done at {time.perf_counter() - t0:.0f}s", flush=True)
        if with_base:
            base.append(tuple(pair_base))
        standard.append(tuple(pair_std))
    _precision(False)
    pooled_attack = []
    for i, eps in enumerate(eps_list):
        diffs = [a["rows"][i]["diff_points"] for a in attacks]
        pooled_attack.append({"eps_255": round(eps * 255, 2),
                              "diff_points_mean_over_seeds": round(sum(diffs) / len(diffs), 2),
                              "max_abs_diff_points": max(abs(d) for d in diffs)})
    res = {"variant": variant, "baseline": "fp32 channels-last" if baseline_cl else "fp32 contiguous",
           "bf16_supported": T.cpu_bf16_supported(), "threads": torch.get_num_threads(),
           "seeds": list(seeds), "load_average_after": os.getloadavg()[0],
           "base_A_notebook01": _diff(base) if with_base else None, "standard_cnn_notebook03": _diff(standard),
           "pgd10_bf16_vs_fp32": {"per_seed": attacks, "summary": pooled_attack,
                                  "within_half_point": all(s["max_abs_diff_points"] <= 0.5 for s in pooled_attack)
                                  if pooled_attack else None},
           "seconds": round(time.perf_counter() - t0, 1)}
    res["meets_goal"] = (not with_base or res["base_A_notebook01"]["within_1_point"]) and \
        res["standard_cnn_notebook03"]["within_1_point"]
    save("precision_accuracy_cpu" + ("" if variant == "bf16_channels_last" else f"_{variant}")
         + ("_vs_channels_last" if baseline_cl else ""), res)
    return res


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--eps", type=float, nargs="*", default=[1, 2, 4, 8], help="PGD budgets in /255 (none: no attacks)")
    ap.add_argument("--root", default=None, help="store folder (default: a new temporary one; reuse to resume)")
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="bf16_channels_last")
    ap.add_argument("--no-base", action="store_true", help="only notebook 03's standard CNN")
    ap.add_argument("--baseline-channels-last", action="store_true",
                    help="fp32 channels-last (the CPU default now) as the baseline, not fp32 contiguous")
    args = ap.parse_args()
    main(tuple(args.seeds), tuple(e / 255 for e in args.eps), args.root, args.variant, not args.no_base,
         args.baseline_channels_last)
