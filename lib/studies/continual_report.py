"""Notebook 04's report: the tables behind its figures (clean and adversarial accuracy matrices
with n per cell, CMAT minus adversarial PackNet paired per image, the gap between attacks) and
every sentence of the notebook that holds a recipe or measured number, generated from the recipe
(``cfg``) and the tables so that no number in the story is typed by hand."""
from __future__ import annotations

import pandas as pd

from ..store import Store
from ..store.versions import module_version
from .continual import ANCHORS, correct_vector, paired_difference, pgd_accuracy


# ----------------------------------------------------------------------------- tables
def matrix_table(logs: dict, methods: list) -> pd.DataFrame:
    """The clean accuracy matrices of ``methods`` as one tidy table (0-based ``after_task`` and
    ``task`` as in the run logs) with ``n``, the test images behind each cell."""
    rows = []
    for m in methods:
        n = {(e["after_task"] - 1, e["task"] - 1): e["n"] for e in logs[m]["evals"]}
        rows += [{**r, "method": m, "n": n.get((r["after_task"], r["task"]))} for r in logs[m]["matrix"]]
    return pd.DataFrame(rows)


def adversarial_matrix_table(final: pd.DataFrame, summary: pd.DataFrame, n_eval: int) -> pd.DataFrame:
    """``R_adv[i, j]`` (0-based, like :func:`matrix_table`) from the attacked final row
    (``final``: the table ``04_adversarial_final_row``). An earlier row repeats the final value
    where the method's earlier predictions never changed (``summary``'s ``earlier_evals_changed``
    is 0: the task's model is the final one); otherwise only the final row was attacked and the
    earlier cells are NaN with ``measured`` False."""
    unchanged = summary.set_index("method")["earlier_evals_changed"] == 0
    n_tasks = int(final["task"].max())
    rows = []
    for r in final.itertuples():
        for i in range(r.task - 1, n_tasks):
            known = i == n_tasks - 1 or bool(unchanged.get(r.method, False))
            rows.append({"after_task": i, "task": r.task - 1, "acc": r.pgd_acc if known else float("nan"),
                         "method": r.method, "n": n_eval, "measured": known,
                         "source": "attacked" if i == n_tasks - 1 else "final row (same model)" if known else "n/a"})
    return pd.DataFrame(rows)


def paired_table(a, b, tasks: list[dict], cfg: dict, store: Store | None = None,
                 fingerprints: tuple = ()) -> pd.DataFrame:
    """Model ``a`` (CMAT) minus model ``b`` (adversarial PackNet) under PGD-``matrix_steps`` at
    every eps of ``eps_list`` on the same images: per task and pooled (``task`` "all"), with the
    paired 95% interval of :func:`lib.studies.continual.paired_difference`. Stored when
    ``fingerprints`` (the two models' weights) key it."""
    steps = cfg["matrix_steps"]  # eps_list and eps_train (the row of the table 04_cmat_vs_packnet_adv)

    def compute():
        rows, k = [], cfg["n_eval"]
        for eps in sorted(set(cfg["eps_list"]) | {cfg["eps_train"]}):
            ca, cb = (correct_vector("", m, tasks, cfg, steps, eps=eps) for m in (a, b))
            parts = [(str(j + 1), slice(j * k, (j + 1) * k)) for j in range(len(tasks))] + [("all", slice(None))]
            rows += [{"eps": eps, "eps_255": round(eps * 255, 3), "steps": steps, "task": name,
                      **paired_difference(ca[s], cb[s])} for name, s in parts]
        return pd.DataFrame(rows)

    if not fingerprints:
        return compute()
    key = {"models": list(fingerprints),
           **{k: cfg[k] for k in ("eps_list", "eps_train", "matrix_steps", "n_eval", "seed")},
           "eval_code": module_version(__name__)}
    out = (store or Store()).result("cl_paired_cmat_packnet", key, compute)
    return out.assign(task=out["task"].astype(str))


def attack_gaps(pooled: pd.DataFrame, eps_list: list) -> pd.DataFrame:
    """Per method and eps of ``eps_list``: images correct under that method's PGD with the most
    steps minus images correct under APGD-T and under the per-image worst case (positive: the
    other attack breaks that many more images)."""
    idx = pooled.set_index(["method", "attack", "eps"])
    rows = []
    for m in pooled["method"].unique():
        for eps in eps_list:
            ladder = idx.loc[[(m, "pgd", eps)]].set_index("steps")
            k = ladder.index.max()  # methods evaluated beyond the ladder (PGD-matrix_steps) have more steps
            pgd = ladder.loc[k]
            rows.append({"method": m, "eps": eps, "eps_255": round(eps * 255, 3), "pgd_steps": int(k),
                         "pgd": int(pgd["correct"]), "apgd_t": int(idx.loc[(m, "apgd_t", eps), "correct"]),
                         "worst": int(idx.loc[(m, "worst", eps), "correct"]), "n": int(pgd["n"])})
    out = pd.DataFrame(rows)
    return out.assign(gap_apgd_t=out["pgd"] - out["apgd_t"], gap_worst=out["pgd"] - out["worst"])


# ----------------------------------------------------------------------------- generated text
def _fmt_eps(eps) -> str:
    return "/".join(f"{e * 255:g}" for e in eps) + "/255"


def _n(k: int, word: str) -> str:
    return f"{k} {word}" + ("" if k == 1 else "s")


def recipe_markdown(cfg: dict) -> str:
    """The recipe paragraph of notebook 04, every number read from ``cfg`` (the run's recipe)."""
    c = cfg
    return (
        f"**Recipe of this run** (`lib.studies.continual.RECIPE`, parameters `cl_<key>`): {c['n_tasks']} "
        f"`{c['dataset']}` tasks of {c['classes_per_task']} classes ({c['per_class_train']} training / "
        f"{c['per_class_val']} validation / {c['per_class_test']} test images per class), body `{c['cfg']}` + fc "
        f"`{c['fc']}`; {c['epochs']} epochs per task (lr {c['lr']:g}, batch {c['batch_size']}, weight decay "
        f"{c['weight_decay']:g}). PackNet prunes {c['prune']:.0%} of a task's own weights per layer and retrains "
        f"{_n(c['retrain_epochs'], 'epoch')}. CPG compacts to sparsities {c['sparsities']} "
        f"({_n(c['prune_epochs'], 'epoch')} each, {_n(c['cpg_retrain_epochs'], 'epoch')} of retraining), may lose "
        f"{c['allow_acc_loss']:g} of the goal, and grows up "
        f"to {c['max_width']:.2f}x channels ({c['max_width'] ** 2:.2f}x parameters). The adversarial variants "
        f"train with PGD-{c['train_steps']} at {c['eps_train'] * 255:g}/255 and validate with "
        f"PGD-{c['val_steps']}. Evaluation: {c['n_eval']} stratified test images per task, the same for every "
        f"model and attack; the robustness report (FGSM, PGD-{'/'.join(map(str, c['pgd_steps']))} at "
        f"{_fmt_eps(c['eps_list'])}, APGD-CE and APGD-T with {c['apgd_steps']} steps, Square with "
        f"{c['square_queries']} queries, the per-image worst case) on {', '.join(c['report_methods'])}; every "
        f"method gets PGD-{c['matrix_steps']} at the training eps (the adversarial accuracy matrix).")


def attack_gap_markdown(gaps: pd.DataFrame) -> str:
    """How far APGD-T and the per-image worst case go below PGD, with the largest gap in images."""
    def worst(col):
        r = gaps.loc[gaps[col].idxmax()]
        return f"{int(r[col])} of {int(r['n'])} images ({r['method']}, {r['eps_255']:g}/255)"
    k = int(gaps["pgd_steps"].iloc[0])
    return (f"Against PGD-{k}, APGD-T breaks between {int(gaps['gap_apgd_t'].min())} and "
            f"{int(gaps['gap_apgd_t'].max())} more images per method and eps (largest gap {worst('gap_apgd_t')}); "
            f"the per-image worst case of all attacks between {int(gaps['gap_worst'].min())} and "
            f"{int(gaps['gap_worst'].max())} more (largest {worst('gap_worst')}).")


def paired_verdict(row) -> str:
    """The ranking a paired interval allows: one method is more robust only when the interval
    excludes zero, else "not separated"."""
    if row["low"] > 0:
        return "CMAT is more robust than adversarial PackNet"
    if row["high"] < 0:
        return "adversarial PackNet is more robust than CMAT"
    return "not separated (the paired interval contains zero)"


def paired_markdown(row, n_tasks: int) -> str:
    """The pooled CMAT vs adversarial PackNet comparison with its paired interval and verdict."""
    return (f"**CMAT vs adversarial PackNet** (PGD-{int(row['steps'])} at {row['eps'] * 255:g}/255, {int(row['n'])} "
            f"images over {n_tasks} tasks): difference {row['diff']:+.1%}, paired 95% interval "
            f"[{row['low']:+.1%}, {row['high']:+.1%}] ({int(row['a_only'])} images only CMAT survives, "
            f"{int(row['b_only'])} only PackNet): {paired_verdict(row)}.")


def pooled_row(paired: pd.DataFrame, eps: float):
    """The pooled ("all" tasks) row of :func:`paired_table` at ``eps``; ``None`` when absent."""
    rows = paired[(paired["task"] == "all") & ((paired["eps"] - eps).abs() < 1e-9)]
    return None if rows.empty else rows.iloc[0]


def paired_note(paired: pd.DataFrame, eps: float) -> str:
    """One line for a figure caption: the pooled paired difference at ``eps`` ("" when absent)."""
    r = pooled_row(paired, eps)
    if r is None:
        return ""
    return (f"CMAT - adv. PackNet at PGD-{int(r['steps'])}, {eps * 255:g}/255: {100 * r['diff']:+.1f} points, "
            f"paired 95% [{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]: {paired_verdict(r)}")


def findings_markdown(summary: pd.DataFrame, pooled: pd.DataFrame, paired: pd.DataFrame | None, cfg: dict,
                      methods: list) -> str:
    """Clean average accuracy of PackNet and CPG and the pooled PGD accuracies of CMAT and
    adversarial PackNet, next to the papers' numbers; the CMAT/PackNet ranking only through
    the paired interval."""
    text, eps = [], cfg["eps_train"]
    if {"packnet", "cpg"} <= set(methods):
        s = summary.set_index("method")
        text.append(f"Clean average accuracy over {cfg['n_tasks']} tasks: PackNet "
                    f"{s.loc['packnet', 'average_accuracy']:.1%}, CPG {s.loc['cpg', 'average_accuracy']:.1%} "
                    f"(CPG paper, VGG-16 on CIFAR-100's 20 tasks: PackNet {ANCHORS['clean']['packnet']:.1%}, "
                    f"CPG {ANCHORS['clean']['cpg']:.1%}).")
    if {"cmat", "packnet_adv"} <= set(pooled["method"]):
        ks = [k for k in (7, 10, 20) if k in cfg["pgd_steps"]]
        acc = {m: " / ".join(f"{pgd_accuracy(pooled, m, k, eps):.1%}" for k in ks) for m in ("cmat", "packnet_adv")}
        n = int(pooled.loc[pooled["method"] == "cmat", "n"].iloc[0])
        a = {m: " / ".join(f"{v[k]:.1%}" for k in ks) for m, v in ANCHORS["adversarial"].items()}
        text.append(f"Pooled accuracy under PGD-{'/'.join(map(str, ks))} at {eps * 255:g}/255 (pixel space, "
                    f"n = {n} images each): CMAT {acc['cmat']}, adversarial PackNet {acc['packnet_adv']} (CMAT's "
                    f"README at its 2/255: CMAT {a['cmat']}, PackNet {a['packnet_adv']}).")
        if paired is not None and paired_note(paired, eps):
            text.append(paired_note(paired, eps) + ".")
    return " ".join(text)
