"""Notebook 08 on real images: how far does one ANP row move with the seed of its masks?

ANP's masks come from a few hundred steps of noisy optimisation on the defender's 10% clean set,
and on the shared ResNet-20's 688 BatchNorm neurons the pruned set changes with the batches drawn
and the noise starts (the ``seed`` of :func:`lib.backdoor.anp.anp_masks`). Notebook 08's real
run purifies each teacher with one seed, the recipe's; this measures ANP at :data:`SEEDS` on every
planted teacher of the ``real`` recipe (notebook 08's, with its ``anp_kw``), each scored on the
1,290 GTSRB test images as the notebook scores it (:func:`lib.studies.defences_report.metrics`),
and summarises each teacher over the seeds with a t interval.

Every model goes through the store (the recipe's seed is the workbook's own model); a seed trained
here with two threads sums in another order than the workbook's one-thread kernels, which moves
ANP's masks as a seed does (docs/08_backdoor_defences.md).

``python -m lib.studies.defences_real [--out DIR]`` writes :data:`CSV` under
:func:`lib.paths.measured_dir` (``measurements/``, committed) or ``DIR``; notebook 08 reads it in
the ``real`` profile when present (:func:`load_anp_seeds`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ..artifacts import backdoor as bd_models
from ..artifacts import defences as df_models
from ..metrics import seed_interval
from ..paths import measured_dir
from .defences import recipe
from .defences_report import Subject, metrics, trigger_cfg

CSV = "08_real_anp_seeds.csv"
SEEDS = (0, 1, 2, 3, 4)


def anp_seed_table(seeds=SEEDS, cfg: dict | None = None, *, progress: bool = False) -> pd.DataFrame:
    """One row per planted teacher of ``cfg`` (default: notebook 08's real recipe) and ANP seed:
    clean accuracy and ASR (target class excluded) with their Wilson intervals and n, before
    (``seed`` None) and after ANP with that seed."""
    cfg = cfg or recipe("real")
    clean = df_models.clean_set(cfg, "same")
    rows = []
    for trigger in cfg["triggers"]:
        bd = trigger_cfg(cfg, trigger)
        model, _ = bd_models.backdoored_teacher(bd, None, progress=progress)
        s = Subject(f"teacher ({trigger})", "teacher", trigger, "same", model, bd_models.teacher_data(bd)[1], bd)
        for seed in (None, *seeds):
            net = model if seed is None else df_models.purified("anp", model, clean, {**cfg, "seed": seed})[0]
            m = metrics(net, s)
            rows.append({"trigger": trigger, "seed": seed, "recipe_seed": seed == cfg["seed"],
                         **{k: m[k] for k in ("clean_acc", "clean_acc_low", "clean_acc_high", "clean_acc_n",
                                              "asr_bb", "asr_bb_low", "asr_bb_high", "asr_bb_n")}})
    return pd.DataFrame(rows)


def anp_seed_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per teacher: the undefended ASR and clean accuracy, and over the seeds the mean of each
    after ANP with its 95% t interval (clipped to [0, 1]), the range and the recipe's seed's value."""
    rows = []
    for trigger, g in table.groupby("trigger", sort=False):
        before, after = g[g["seed"].isna()].iloc[0], g[g["seed"].notna()]
        row = {"trigger": trigger, "seeds": len(after), "asr_before": before["asr_bb"],
               "clean_acc_before": before["clean_acc"]}
        for col in ("asr_bb", "clean_acc"):
            t = seed_interval(after[col].to_numpy())  # a rate: its interval clipped to [0, 1]
            row.update({f"{col}_mean": t["mean"], f"{col}_low": max(0.0, t["low"]), f"{col}_high": min(1.0, t["high"]),
                        f"{col}_min": after[col].min(), f"{col}_max": after[col].max(),
                        f"{col}_recipe_seed": _recipe_seed(after, col)})
        rows.append(row)
    return pd.DataFrame(rows)


def _recipe_seed(after: pd.DataFrame, col: str) -> float:
    own = after[after["recipe_seed"].astype(bool)]
    return float(own[col].iloc[0]) if len(own) else float("nan")


def anp_seed_paragraph(summary: pd.DataFrame) -> str:
    """What the seeds show, generated from :func:`anp_seed_summary`."""
    parts = [f"{r.trigger}: ASR {r.asr_before:.1%} before, {r.asr_bb_mean:.1%} [{r.asr_bb_low:.1%}, "
             f"{r.asr_bb_high:.1%}] after (seeds range {r.asr_bb_min:.1%}-{r.asr_bb_max:.1%}; the recipe's seed "
             f"{r.asr_bb_recipe_seed:.1%}), clean accuracy {r.clean_acc_before:.1%} before, {r.clean_acc_mean:.1%} "
             f"[{r.clean_acc_low:.1%}, {r.clean_acc_high:.1%}] after" for r in summary.itertuples()]
    n = int(summary["seeds"].max())
    return (f"**ANP over {n} mask seeds** (measurements/{CSV}, `python -m lib.studies.defences_real`; mean over "
            f"the seeds with its 95% t interval): " + "; ".join(parts) + ". One ANP row of the purification "
            "table above is one of these draws.")


def load_anp_seeds(folder: Path | None = None) -> pd.DataFrame | None:
    """The committed seed table (``measurements/``), or ``None`` when absent."""
    path = (folder or measured_dir()) / CSV
    return pd.read_csv(path) if path.is_file() else None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="folder for the table (default: measurements/)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    a = ap.parse_args(argv)
    folder = a.out or measured_dir()
    folder.mkdir(parents=True, exist_ok=True)
    table = anp_seed_table(a.seeds, progress=True)
    table.to_csv(folder / CSV, index=False)
    print(anp_seed_summary(table).round(3).to_string(index=False))
    print(f"written to {folder / CSV}")


if __name__ == "__main__":
    main()
