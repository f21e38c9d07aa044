"""Notebook 03's tables and generated text: the compact method x attack table and a paragraph that
reads it (every number in the sentences comes from the tables, so a rerun rewrites them)."""
from __future__ import annotations

import pandas as pd

from ..robustness import compact_table  # noqa: F401  (re-exported: the notebook's table)


def _cell(compact: pd.DataFrame, method: str, attack: str, eps255: float):
    rows = compact[(compact["method"] == method) & (compact["attack"] == attack)
                   & ((compact["eps_255"] - eps255).abs() < 1e-6)]
    return rows.iloc[0] if len(rows) else None


def _pct(r) -> str:
    return f"{r.acc:.1%} [{r.low:.1%}, {r.high:.1%}]"


def read_results(compact: pd.DataFrame, best_last: pd.DataFrame, metas: dict, cfg: dict) -> str:
    """A paragraph (Markdown) reading the compact table at the training eps: what the standard
    model loses, what each robust method buys back and costs, and why FGSM-RS and PGD-AT compare
    as they do here (clean accuracy, catastrophic overfitting, robust overfitting, intervals).
    ``metas``: method -> the training meta of :func:`lib.artifacts.robust.robust_model`."""
    e = round(cfg["eps"] * 255, 6)
    clean = {m: _cell(compact, m, "clean", 0.0) for m in compact["method"].unique()}
    worst = {m: _cell(compact, m, "worst case", e) for m in compact["method"].unique()}
    n, interval = int(compact["n"].iloc[0]), compact["interval"].iloc[0]
    out = []
    std_c, std_w = clean.get("standard"), worst.get("standard")
    if std_c is not None and std_w is not None:
        out.append(f"The standard model reaches {_pct(std_c)} clean accuracy and keeps {_pct(std_w)} under the "
                   f"per-image worst case at {e:g}/255 (n = {n} test images; brackets: 95% interval, {interval}).")
    robust = [m for m in worst if m != "standard" and worst[m] is not None]
    for m in sorted(robust, key=lambda k: -worst[k].acc):
        bits = [f"**{m}** keeps {_pct(worst[m])} worst-case accuracy"]
        if std_w is not None:
            bits.append(f"{(worst[m].acc - std_w.acc) * 100:+.1f} points over the standard model")
        if std_c is not None and clean.get(m) is not None:
            bits.append(f"at a clean accuracy of {clean[m].acc:.1%} ({(clean[m].acc - std_c.acc) * 100:+.1f} points)")
        out.append(", ".join(bits) + ".")
    if "pgd_at" in worst and "fgsm_rs" in worst and worst["pgd_at"] is not None and worst["fgsm_rs"] is not None:
        p, f = worst["pgd_at"], worst["fgsm_rs"]
        overlap = not (p.low > f.high or f.low > p.high)
        ahead, behind = ("FGSM-RS", "PGD-AT") if f.acc > p.acc else ("PGD-AT", "FGSM-RS")
        verdict = "overlap, so this test set cannot tell them apart" if overlap else "do not overlap"
        text = (f"FGSM-RS vs PGD-AT: {ahead} is ahead by {abs(f.acc - p.acc) * 100:.1f} points of worst-case "
                f"accuracy; the intervals {verdict}.")
        reasons = []
        fc, pc = clean.get("fgsm_rs"), clean.get("pgd_at")
        if fc is not None and pc is not None and abs(fc.acc - pc.acc) >= 0.02:
            higher = "FGSM-RS" if fc.acc > pc.acc else "PGD-AT"
            if higher == ahead:
                reasons.append(f"{higher} also has the higher clean accuracy ({fc.acc:.1%} vs {pc.acc:.1%}); with a "
                               "small network and few epochs both are capacity-limited, and robust accuracy follows "
                               "clean accuracy")
            else:
                reasons.append(f"{higher} has the higher clean accuracy ({fc.acc:.1%} vs {pc.acc:.1%}) but the lower "
                               "worst case: it traded robustness for accuracy")
        stopped = (metas.get("fgsm_rs") or {}).get("stopped_epoch")
        if stopped:
            reasons.append(f"FGSM-RS hit its catastrophic-overfitting stop at epoch {stopped}")
        else:
            reasons.append("FGSM-RS never hit its catastrophic-overfitting stop (its validation PGD accuracy never "
                           "fell 20 points below its best), which is the failure that makes single-step training "
                           "lose to PGD-AT in Wong et al.")
        for m in ("pgd_at", "fgsm_rs"):
            h = pd.DataFrame((metas.get(m) or {}).get("history", []))
            if "train_adv_acc" in h:
                reasons.append(f"{m} ends at {h['train_adv_acc'].iloc[-1]:.1%} accuracy on its own training attacks")
        bl = best_last.set_index("method") if len(best_last) else None
        if bl is not None and {"pgd_at", "fgsm_rs"} <= set(bl.index) and "test_worst_last" in bl:
            moves = [f"{m} {bl.loc[m, 'test_worst_selected']:.1%} -> {bl.loc[m, 'test_worst_last']:.1%}"
                     for m in ("pgd_at", "fgsm_rs")]
            reasons.append("from the selected to the last epoch the AutoAttack-style accuracy moves "
                           + ", ".join(moves))
        close = ("so " + behind + " trailing here says more about this budget than about the methods."
                 if overlap and cfg.get("dataset") == "synsigns" else
                 "which is the comparison to read these numbers against.")
        out.append(text + " " + "; ".join(reasons) + ". On CIFAR-10 with PreActResNet-18 the papers find the two "
                   "close when FGSM-RS avoids catastrophic overfitting (RobustBench AutoAttack: Wong2020Fast 43.2%; "
                   "Rice et al. PGD-10 53.5% best / 45.6% last for PGD-AT), " + close)
    chain = compact[compact["attack"].str.startswith("AutoAttack") & ((compact["eps_255"] - e).abs() < 1e-6)]
    gaps = [r.acc - worst[r.method].acc for r in chain.itertuples() if worst.get(r.method) is not None]
    if gaps:
        same = max(gaps) <= 1.0 / n + 1e-9
        out.append("The AutoAttack-style chain alone (APGD-CE, APGD-T, Square on the survivors) is at most "
                   f"{max(gaps) * 100:.1f} points above the per-image worst case over every attack: "
                   + ("the cheaper standard evaluation would report the same numbers (within one image)." if same else
                      "the extra attacks of the ladder (FGSM, PGD-k) still find images the chain misses, so report "
                      "the worst case."))
    return " ".join(out)


def headline(compact: pd.DataFrame, cfg: dict) -> dict:
    """The quantities notebook 03 asserts, and a Markdown paragraph naming exactly them: PGD-AT's
    gain in **per-image worst-case** accuracy at the training eps over the standard model (an image
    counts as robust only if every attack of the report fails on it: FGSM, PGD-k for each k,
    APGD-CE, APGD-T and the AutoAttack-style chain with Square), against the recipe's floor, and
    whether the two 95% intervals are disjoint. Not the PGD-k accuracy: its gain is quoted beside
    it, marked as not asserted, so nobody reads one for the other. Returns ``{"text", "gain",
    "floor", "slack", "pgd_at", "standard"}`` (``slack``: half an image, the float tolerance of
    the floor: one seed compares image counts)."""
    e = round(cfg["eps"] * 255, 6)
    at_eps = compact[(compact["eps_255"] - e).abs() < 1e-6]
    worst = at_eps[at_eps["attack"] == "worst case"].set_index("method")
    std, pgd = worst.loc["standard"], worst.loc["pgd_at"]
    n, gain, floor = int(std.n), float(pgd.acc - std.acc), float(cfg["min_pgd_at_gain"])
    steps = "/".join(str(k) for k in cfg["pgd_steps"])
    longest = f"PGD-{max(cfg['pgd_steps'])}"
    lines = [f"**Asserted below: PGD-AT's gain in per-image worst-case accuracy at {e:g}/255 over the standard "
             f"model** (an image counts as robust only if every attack fails on it: FGSM, PGD-{steps}, APGD-CE, "
             f"APGD-T and the AutoAttack-style chain with Square). It is {gain * 100:+.1f} points "
             f"(floor {floor * 100:.0f} points); n = {n} test images, brackets: 95% interval ({std.interval})."]
    for m in [k for k in cfg["methods"] if k != "standard" and k in worst.index]:
        r = worst.loc[m]
        lines.append(f"- {m}{' (asserted)' if m == 'pgd_at' else ' (not asserted)'}: worst case {_pct(r)} vs "
                     f"standard {_pct(std)}, gain {(r.acc - std.acc) * 100:+.1f} points")
    disjoint = bool(pgd.low > std.high)
    lines.append(f"- PGD-AT's and the standard model's worst-case intervals {'are disjoint' if disjoint else 'overlap'}"
                 " (second assert).")
    pg = at_eps[at_eps["attack"] == longest].set_index("method")
    if {"standard", "pgd_at"} <= set(pg.index):
        lines.append(f"- Not asserted, for reference: the {longest} accuracy alone gives PGD-AT a gain of "
                     f"{(pg.loc['pgd_at', 'acc'] - pg.loc['standard', 'acc']) * 100:+.1f} points; the worst case is "
                     "the lower, trustworthy number.")
    return {"text": lines[0] + "\n\n" + "\n".join(lines[1:]), "gain": gain, "floor": floor, "slack": 0.5 / n,
            "pgd_at": pgd, "standard": std}
