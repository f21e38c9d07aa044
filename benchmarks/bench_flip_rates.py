"""How often the asserted sanity checks of notebooks 03 and 06 flip between training seeds.

A check that fails on one clean clone in twenty is a defect (the fresh-machine issue): this
trains the models each check reads at several seeds and applies the check as the notebook does,
both as it stood before (one image of slack between two accuracies; notebook 06's trigger check on
every firing model) and as it stands now (paired per-image sign test; trigger check on the planted
teacher where it fired on at least ``MIN_FIRED`` images, :func:`lib.studies.attention.trigger_check`),
at the test suite's parameters and at smoke.

- notebook 03, "PGD <= FGSM" (and every order check): the four smoke models per seed
  (``adv_seed``), a robustness report at smoke (PGD-7/10/20/40, Square 1,000) and at the test's
  parameters (PGD-10/20, Square 300). Training is the same at both sizes.
- notebook 03, "white-box <= transfer": PGD-20 crafted on a standard model of another seed
  against each model's worst case at both sizes (``03-transfer``, after ``03``).
- notebook 06, the trigger check: notebook 05's teachers and students per seed (``bd_seed``, which
  seeds the poisoning and every training run), with the test's overrides (3-epoch base, 3-epoch
  students, fine-tune and mag, 100 images) and at smoke (all six students, all 300 images).
  Notebook 02's students are left out: the trigger check never reads them.

Models and results go to a store of their own (``--store``), so a rerun only adds seeds.
``python benchmarks/bench_flip_rates.py --seeds 0 1 2 3 4`` (``--only 03 03-transfer`` picks some,
``--append`` adds to the runs already saved, replacing those of the same seeds); the result is
``results/flip_rates.json``. About 7 minutes a seed for 03 and 3 for 06 at smoke on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import pandas as pd  # noqa: E402

from common import RESULTS, save  # noqa: E402

SMALL03 = {"pgd_steps": [10, 20], "square_queries": 300}  # tests/test_notebooks.py's SMALL03
SMALL06 = {"backdoor_methods": ["fine_tune", "mag"], "transfer_methods": [], "n_eval": 100,
           "backdoor_recipe": {"base_epochs": 3, "per_class_test": 10, "student_epochs": 3}}  # test_notebook_06's


def old_pgd_fgsm(table: pd.DataFrame) -> bool:
    """The check before the paired test: PGD with the most steps at most FGSM + one image, per eps."""
    n, ok = int(table["n"].max()), True
    for _, g in table[table["eps"] > 0].groupby("eps"):
        f, p = g[g["attack"] == "fgsm"], g[g["attack"] == "pgd"]
        if len(f) and len(p):
            ok &= bool(p.sort_values("steps")["acc"].iloc[-1] <= f["acc"].min() + 1 / n + 1e-9)
    return ok


def run03(seeds, store) -> list[dict]:
    from lib.artifacts import robust
    from lib.robustness import robustness_report
    from lib.studies import adversarial

    rows = []
    for seed in seeds:
        cfg = adversarial.recipe("smoke", seed=seed)
        _, test = robust.robust_study_data(cfg)
        for method in cfg["methods"]:
            t0 = time.perf_counter()
            model, _ = robust.robust_model(method, cfg, store, progress=False)
            for size, kw in (("smoke", {}), ("test", SMALL03)):
                ev = {**cfg, **kw}
                table, checks = robustness_report(model, test, eps_list=ev["eps_list"], pgd_steps=ev["pgd_steps"],
                                                  apgd_steps=ev["apgd_steps"], square_queries=ev["square_queries"],
                                                  n=ev["n_eval"], seed=seed, progress=False)
                c = checks.set_index("check")
                worst = table[(table["attack"] == "worst") & ((table["eps"] - cfg["eps"]).abs() < 1e-9)]["acc"]
                rows.append({"notebook": "03", "size": size, "seed": seed, "model": method,
                             "pgd_fgsm_old": old_pgd_fgsm(table), "pgd_fgsm_new": bool(c.loc["PGD <= FGSM", "passed"]),
                             "all_checks_new": bool(checks["passed"].all()),
                             "failed_new": "; ".join(checks.loc[~checks["passed"], "check"]),
                             "pgd_fgsm_detail": c.loc["PGD <= FGSM", "detail"], "worst_acc": float(worst.iloc[0]),
                             "seconds": time.perf_counter() - t0})
                print(rows[-1], flush=True)
    return rows


def run03_transfer(seeds, store, worst: dict) -> list[dict]:
    """Notebook 03's "white-box <= transfer" check (PGD-20 from a standard model of seed + 100)
    against the worst cases ``worst[(seed, model, size)]`` of :func:`run03`'s rows."""
    from lib.artifacts import robust
    from lib.robustness import transfer_check
    from lib.studies import adversarial

    rows = []
    for seed in seeds:
        cfg = adversarial.recipe("smoke", seed=seed)
        _, test = robust.robust_study_data(cfg)
        surrogate, _ = robust.robust_model("standard", {**cfg, "seed": seed + 100}, store, progress=False)
        for method in cfg["methods"]:
            model, _ = robust.robust_model(method, cfg, store, progress=False)
            for size in ("smoke", "test"):
                wb = worst[(seed, method, size)]
                c = transfer_check(model, surrogate, test, cfg["eps"], white_box_acc=wb, n=cfg["n_eval"], seed=seed)
                rows.append({"notebook": "03-transfer", "size": size, "seed": seed, "model": method,
                             "transfer_ok": bool(c["passed"].iloc[0]), "detail": c["detail"].iloc[0]})
                print(rows[-1], flush=True)
    return rows


def run06(seeds, store, size: str) -> list[dict]:
    from lib.studies import attention as A

    rows = []
    for seed in seeds:
        t0 = time.perf_counter()
        over = SMALL06 if size == "test" else {"transfer_methods": []}
        cfg = A.recipe("smoke", **{**over, "backdoor_recipe": {**over.get("backdoor_recipe", {}), "seed": seed}})
        zoo = A.model_zoo(cfg, store, progress=False)
        ev = A.eval_set(cfg)
        scores = A.attention_table(zoo, ev, cfg, store, progress=False)
        rates = A.backdoor_table(scores, ev.target)
        trig = A.trigger_check(scores, rates, target=ev.target)
        clean = A.clean_check(scores)
        fires = trig[trig["fires"]]
        checked = trig[trig["checked"]]
        rows.append({"notebook": "06", "size": size, "seed": seed,
                     "trigger_old": bool((fires["difference_low"] > 0).all()) and len(fires) > 0,
                     "trigger_new": bool(checked["passed"].astype(bool).all()) and len(checked) > 0,
                     "clean_checks": bool(clean["passed_area"].all() and clean["passed_other"].all()),
                     "models": trig[["model", "asr", "fires", "n_fired", "difference", "difference_low",
                                     "checked", "passed"]].to_dict("records"),
                     "seconds": time.perf_counter() - t0})
        print(rows[-1], flush=True)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    df = pd.DataFrame(rows)
    for (nb, size), g in df.groupby(["notebook", "size"]):
        cols = {"03": ["pgd_fgsm_old", "pgd_fgsm_new", "all_checks_new"], "03-transfer": ["transfer_ok"],
                "06": ["trigger_old", "trigger_new", "clean_checks"]}[nb]
        runs = g.groupby("seed")[cols].all()  # a notebook run fails when any of its models fails
        out.append({"notebook": nb, "size": size, "seeds": int(len(runs)),
                    **{f"{c}_failed_runs": int((~runs[c]).sum()) for c in cols}})
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--only", nargs="+", default=["06-test", "03", "06-smoke", "03-transfer"],
                    choices=["03", "06-test", "06-smoke", "03-transfer"])
    ap.add_argument("--append", action="store_true",
                    help="keep the runs already in results/flip_rates.json that --only does not run again")
    ap.add_argument("--store", default="data/flip_store")
    args = ap.parse_args(argv)
    os.environ["WORKBOOK_STORE"] = str(Path(args.store).resolve())  # the cached helpers' default store too
    from lib.store import Store

    store = Store(args.store)
    rows = json.loads((RESULTS / "flip_rates.json").read_text())["runs"] if args.append else []
    # what runs again replaces what it ran before, seed by seed: --only choice -> (notebook, size; None = both)
    redo = [{"03": ("03", None), "03-transfer": ("03-transfer", None), "06-test": ("06", "test"),
             "06-smoke": ("06", "smoke")}[w] for w in args.only]
    rows = [r for r in rows if not any(r["notebook"] == nb and size in (None, r["size"]) and r["seed"] in args.seeds
                                       for nb, size in redo)]
    for what in args.only:
        if what == "03":
            rows += run03(args.seeds, store)
        elif what == "03-transfer":
            worst = {(r["seed"], r["model"], r["size"]): r["worst_acc"] for r in rows if r["notebook"] == "03"}
            rows += run03_transfer(args.seeds, store, worst)
        else:
            rows += run06(args.seeds, store, what.split("-")[1])
        result = {"seeds": sorted({r["seed"] for r in rows}), "summary": summarise(rows), "runs": rows}
        save("flip_rates", result)
    asserted = ("pgd_fgsm_new_failed_runs", "all_checks_new_failed_runs", "trigger_new_failed_runs",
                "transfer_ok_failed_runs")
    return {**result, "meets_goal": all(r.get(k, 0) == 0 for r in result["summary"] for k in asserted)}


if __name__ == "__main__":
    main()
