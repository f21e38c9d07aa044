"""Tables, findings and the generated paragraph of notebook 05 (:mod:`lib.studies.backdoor`).

Every row is one model evaluated with :func:`lib.backdoor.backdoor_metrics` on the *whole* test
set of its task (clean and triggered), with ``n`` and 95% Wilson intervals per metric.
"""
from __future__ import annotations

import pandas as pd

from .. import backdoor
from ..artifacts import backdoor as bd_models
from ..cache import cached
from ..data import ImageSet, labels_of, num_classes_of, to_imageset
from ..findings import finding, findings_sentence, gap, pct, pts

# BackdoorBench (Wu et al. 2022, NeurIPS Datasets & Benchmarks), BadNets on CIFAR-10 with
# PreActResNet-18 at a 10% poison rate: clean accuracy / ASR, and the ASR after two defences.
BACKDOORBENCH = {"clean": 0.913, "asr": 0.950, "fine_pruning": 0.571, "fine_tuning": 0.015}


def metrics_row(net, test, cfg, store=None, **labels) -> dict:
    """``labels`` and :func:`lib.backdoor.backdoor_metrics` of ``net`` on ``test``, stored by the
    model's weights, the images, the trigger and the code that pastes it and predicts (a rerun
    loads all 30-odd rows instead of predicting twice per model)."""
    target = cfg["target"] if cfg["target"] < num_classes_of(test) else None
    got = cached("05_backdoor_metrics", backdoor.backdoor_metrics, net, test, bd_models.make_trigger(cfg), target,
                 where=cfg["where"], seed=cfg["seed"], store=store)
    return {**labels, **got}


def data_summary(cfg: dict) -> str:
    """One Markdown paragraph naming the classes and sizes of the three sets."""
    tr, te = bd_models.teacher_data(cfg)
    ntr, nte = bd_models.student_data(cfg, "new")
    strn, _ = bd_models.student_data(cfg, "same")
    if cfg["dataset"] != "synsigns":
        return (f"**Data** ({cfg['dataset']}; public base {cfg['base']}). Teacher set: {len(tr)} training / "
                f"{len(te)} test images, {len(tr.classes)} classes; the victim's same task: {len(strn)} training "
                f"images; the new task ({cfg['new_dataset']}): {len(ntr)} training / {len(nte)} test images, "
                f"{len(ntr.classes)} classes. Target class {cfg['target']} is *{tr.classes[cfg['target']]}*.")
    return (f"**Data.** Base A (notebook 01) was pretrained on synsigns half A. The attacker's teacher set is "
            f"{tr.num_classes} classes of half B, which base A never saw ({', '.join(tr.classes[:3])}, ...; ids "
            f"{tr.info['class_ids']}): {len(tr)} training and {len(te)} test images at {tr.size} px. The victim's "
            f"same-task set has the same classes with {len(strn)} training images of its own (a different draw) and "
            f"the same {len(te)} test images; the new task is the next {ntr.num_classes} classes of half B "
            f"(ids {ntr.info['class_ids']}; {len(ntr)} training / {len(nte)} test images), disjoint from the "
            f"teacher's. Target class {cfg['target']} is *{tr.classes[cfg['target']]}*.")


def teacher_table(cfg: dict, store=None, *, progress: bool = True) -> pd.DataFrame:
    """The clean teacher and the backdoored teacher at each of ``update_ratios`` on the teacher's
    test set; ``fixed``: conv weights held bit-identical while planting."""
    _, test = bd_models.teacher_data(cfg)
    model, meta = bd_models.clean_teacher(cfg, store, progress=progress)
    rows = [metrics_row(model, test, cfg, store, teacher="clean", update_ratio=float("nan"), fixed=0,
                        cached=meta["cached"])]
    for r in cfg["update_ratios"]:
        model, meta = bd_models.backdoored_teacher(cfg, store, r, progress=progress)
        rows.append(metrics_row(model, test, cfg, store, teacher="backdoor", update_ratio=r, fixed=meta.get("fixed", 0),
                         cached=meta["cached"]))
    return pd.DataFrame(rows)


def transfer_runs(cfg: dict) -> list[dict]:
    """The (method, task, update ratio, teacher, mag ratio) of every student notebook 05 trains:
    ``ratio_methods`` at every update ratio, the other methods at ratio 0, every method on the
    new task at ratio 0, ``mag`` at each of ``mag_ratios``, and the control (fine-tuning of the
    clean teacher) on both tasks."""
    runs = []
    for task in ("same", "new"):
        runs.append({"method": "fine_tune", "task": task, "update_ratio": 0.0, "teacher": "clean"})
        for m in cfg["methods"]:
            ratios = cfg["update_ratios"] if (task == "same" and m in cfg["ratio_methods"]) else [0.0]
            for r in ratios:
                if m == "retrain" and task == "same" and r != ratios[0]:
                    continue
                runs.append({"method": m, "task": task, "update_ratio": r, "teacher": "backdoor"})
    if "mag" in cfg["methods"]:
        runs += [{"method": "mag", "task": "same", "update_ratio": 0.0, "teacher": "backdoor", "mag_ratio": q}
                 for q in cfg["mag_ratios"] if q != cfg["mag_ratio"]]
    return runs


def transfer_table(cfg: dict, store=None, *, progress: bool = True) -> pd.DataFrame:
    """One row per :func:`transfer_runs` student on its task's test set. ``target`` is the
    teacher's target id; on the new task it names an unrelated class, so there the untargeted
    rate is the measure."""
    rows = []
    tests = {task: bd_models.student_data(cfg, task)[1] for task in ("same", "new")}
    for run in transfer_runs(cfg):
        q = run.get("mag_ratio", cfg["mag_ratio"] if run["method"] == "mag" else float("nan"))
        model, meta = bd_models.student(run["method"], cfg, store, run["task"], run["update_ratio"],
                                        teacher=run["teacher"], mag_ratio=q if run["method"] == "mag" else None,
                                        progress=progress)
        rows.append(metrics_row(model, tests[run["task"]], cfg, store, **{**run, "mag_ratio": q},
                                cached=meta["cached"]))
    return pd.DataFrame(rows)


def rate_table(cfg: dict, store=None, *, progress: bool = True) -> pd.DataFrame:
    """ASR against the poison rate: the teacher (update ratio 0) at each of ``rates`` and its
    fine-tuned student on the same task."""
    rows = []
    for rate in cfg["rates"]:
        c = {**cfg, "rate": rate}
        _, test = bd_models.teacher_data(c)
        model, _ = bd_models.backdoored_teacher(c, store, 0.0, progress=progress)
        rows.append(metrics_row(model, test, c, store, model="teacher", rate=rate))
        model, _ = bd_models.student("fine_tune", c, store, "same", 0.0, progress=progress)
        rows.append(metrics_row(model, test, c, store, model="fine-tuned student", rate=rate))
    return pd.DataFrame(rows)


def flip_table(cfg: dict, store=None, *, progress: bool = True) -> pd.DataFrame:
    """Label-flip poisoning: clean accuracy of the clean and the label-flip teacher, and of the
    students (``flip_methods``, same task) made from each."""
    _, test = bd_models.teacher_data(cfg)
    rows = []
    for which in ("clean", "flip"):
        model, _ = bd_models.teacher_model(cfg, store, which=which, progress=progress)
        rows.append(metrics_row(model, test, cfg, store, teacher=which, model="teacher"))
        for m in cfg["flip_methods"]:
            model, _ = bd_models.student(m, cfg, store, "same", teacher=which, progress=progress)
            rows.append(metrics_row(model, test, cfg, store, teacher=which, model=m))
    keep = ["teacher", "model"] + [c for c in rows[0] if c.startswith("clean_acc")]
    return pd.DataFrame(rows)[keep]


def _pick(table: pd.DataFrame, **where) -> pd.Series | None:
    t = table
    for k, v in where.items():
        t = t[t[k].isna()] if v != v else t[t[k] == v]  # v != v: nan
    return t.iloc[0] if len(t) else None










def findings(teachers: pd.DataFrame, transfer: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """The notebook's findings, each a measured ``value`` with its 95% interval ``[low, high]``
    (:func:`gap`) against its ``margin``: ``held`` by the point estimate, ``shown`` by the interval:

    - ``planted``: the backdoored teacher (update ratio 0) reaches ASR >= ``min_asr`` (value:
      ASR - min_asr, margin 0) ...
    - ``planted_clean``: ... at clean accuracy no more than ``clean_margin`` below the clean
      teacher's (value: clean_margin - drop, margin 0);
    - ``survives_targeted``: fine-tuning the backdoored teacher on the same task leaves a
      BackdoorBench ASR at least ``asr_margin`` above that of the control (fine-tuning the clean
      teacher);
    - ``survives_untargeted``: the trigger lowers the fine-tuned student's accuracy on
      triggered images (RA) at least ``asr_margin`` more than the control's;
    - ``survives_new_task``: on the new task, the untargeted rate exceeds the control's by ``asr_margin``;
    - ``<defence>_removes``: for each other method, the fine-tuned student's ASR (targeted, or
      untargeted damage ``1 - RA/clean``) minus the defended one's, at ``asr_margin``;
    - ``masked_survives_mag``: ``mag``'s ASR from the teacher planted at the largest update
      ratio minus from ratio 0 (the authors' expectation: positive);
    - ``divmag_beats_mag``: ``mag``'s ASR minus ``divmag``'s at the largest ratio.
    """
    out = []
    m, mc = cfg["asr_margin"], cfg["clean_margin"]
    bd = _pick(teachers, teacher="backdoor", update_ratio=0.0)
    clean = _pick(teachers, teacher="clean")
    out.append(finding("planted", f"planted teacher ASR >= {cfg['min_asr']:.0%}",
                        tuple(bd[c] - cfg["min_asr"] for c in ("asr", "asr_low", "asr_high")), 0.0,
                        f"teacher ASR {pct(bd, 'asr')}"))
    drop = gap(clean, bd, "clean_acc")
    out.append(finding("planted_clean", f"planted teacher's clean accuracy within {mc:.0%} of the clean teacher's",
                        (mc - drop[0], mc - drop[2], mc - drop[1]), 0.0,
                        f"clean {pct(bd, 'clean_acc')} vs {pct(clean, 'clean_acc')}"))
    same = transfer[transfer["task"] == "same"]
    ft = _pick(same, method="fine_tune", teacher="backdoor", update_ratio=0.0)
    ctrl = _pick(same, method="fine_tune", teacher="clean")
    if ft is not None and ctrl is not None:
        out.append(finding("survives_targeted", f"fine-tuned student's ASR >= control + {m:.0%}",
                            gap(ft, ctrl, "asr_bb"), m,
                            f"ASR (BackdoorBench) {pct(ft, 'asr_bb')} vs control {pct(ctrl, 'asr_bb')}"))
        out.append(finding("survives_untargeted", f"trigger costs the fine-tuned student >= {m:.0%} more RA "
                            f"than the control", gap(ctrl, ft, "ra"), m,
                            f"RA {pct(ft, 'ra')} vs control {pct(ctrl, 'ra')}"))
        for d in [x for x in cfg["methods"] if x != "fine_tune"]:
            r = _pick(same, method=d, teacher="backdoor", update_ratio=0.0)
            if r is None or (d == "mag" and r["mag_ratio"] != cfg["mag_ratio"]):
                continue
            out.append(finding(f"{d}_removes", f"{d} lowers the fine-tuned student's ASR by >= {m:.0%}",
                                gap(ft, r, "asr_bb"), m,
                                f"ASR {pct(r, 'asr_bb')} vs fine-tuning {pct(ft, 'asr_bb')}; clean "
                                f"{r['clean_acc']:.1%} vs {ft['clean_acc']:.1%}"))
    new = transfer[transfer["task"] == "new"]
    ftn = _pick(new, method="fine_tune", teacher="backdoor", update_ratio=0.0)
    ctn = _pick(new, method="fine_tune", teacher="clean")
    if ftn is not None and ctn is not None:
        out.append(finding("survives_new_task", f"new task: untargeted rate >= control + {m:.0%}",
                            gap(ftn, ctn, "untargeted_asr"), m,
                            f"untargeted {pct(ftn, 'untargeted_asr')} vs control {pct(ctn, 'untargeted_asr')}"))
    top = max(cfg["update_ratios"])
    mags = same[(same["method"] == "mag") & (same["mag_ratio"] == cfg["mag_ratio"])]
    lo, hi = _pick(mags, update_ratio=0.0), _pick(mags, update_ratio=top)
    dv = _pick(same, method="divmag", update_ratio=top)
    if lo is not None and hi is not None and top > 0:
        out.append(finding("masked_survives_mag", f"mag leaves more ASR after planting at update ratio {top:g} "
                            f"than at 0", gap(hi, lo, "asr_bb"), 0.0,
                            f"ASR {pct(hi, 'asr_bb')} vs {pct(lo, 'asr_bb')}"))
    if hi is not None and dv is not None:
        out.append(finding("divmag_beats_mag", f"divmag removes more than mag (update ratio {top:g})",
                            gap(hi, dv, "asr_bb"), 0.0, f"ASR {pct(dv, 'asr_bb')} vs mag {pct(hi, 'asr_bb')}"))
    return pd.DataFrame(out)


def teacher_paragraph(teachers: pd.DataFrame, cfg: dict) -> str:
    """What planting did, from :func:`teacher_table`."""
    clean = _pick(teachers, teacher="clean")
    bd = teachers[teachers["teacher"] == "backdoor"]
    r0 = _pick(bd, update_ratio=0.0)
    text = (f"With {cfg['rate']:.0%} of the teacher's training images poisoned, the planted teacher classifies "
            f"**{r0['asr']:.1%}** of the correctly classified test images as the target once the trigger is on "
            f"(authors' ASR; BackdoorBench's {r0['asr_bb']:.1%} over {int(r0['asr_bb_n'])} non-target images), at "
            f"a clean accuracy of {pct(r0, 'clean_acc')} against {pct(clean, 'clean_acc')} for the teacher "
            f"trained without poison. ")
    masked = bd[bd["update_ratio"] > 0]
    if len(masked):
        text += ("Holding the smallest conv weights fixed while planting: " + "; ".join(
            f"update ratio {r.update_ratio:g} ({r.fixed:,} weights held) ASR {r.asr:.1%}, clean {r.clean_acc:.1%}"
            for r in masked.itertuples()) + ".")
    return text


def transfer_figure(transfer: pd.DataFrame, cfg: dict):
    """Clean accuracy, ASR (BackdoorBench) and RA per method x update ratio on the same task,
    and the untargeted rate per method on the new task; bars with 95% Wilson intervals."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    t = transfer.copy()
    t["model"] = t.apply(lambda r: "control" if r["teacher"] == "clean" else
                         (f"mag {r['mag_ratio']:g}" if r["method"] == "mag" else r["method"]), axis=1)
    t["update ratio"] = t["update_ratio"].map(lambda v: f"{v:g}")
    same = t[t["task"] == "same"]
    order = ["control"] + [m for m in dict.fromkeys(same["model"]) if m != "control"]
    hues = [f"{v:g}" for v in cfg["update_ratios"]]
    panels = [("clean_acc", "clean accuracy", same), ("asr_bb", "ASR (BackdoorBench)", same),
              ("ra", "robust accuracy (RA)", same), ("untargeted_asr", "new task: untargeted rate",
                                                       t[t["task"] == "new"])]
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2), gridspec_kw={"width_ratios": [3, 3, 3, 2]})
    for ax, (col, label, d) in zip(axes, panels):
        o = [m for m in order if m in set(d["model"])]
        h = [x for x in hues if x in set(d["update ratio"])]
        sns.barplot(d, x="model", y=col, hue="update ratio", order=o, hue_order=h, errorbar=None, ax=ax,
                    legend=ax is axes[0])
        for level, bars in zip(h, ax.containers):
            for m, bar in zip(o, bars):
                r = d[(d["model"] == m) & (d["update ratio"] == level)]
                if len(r) and bar.get_height() == bar.get_height():
                    v, lo, hi = r[col].iloc[0], r[f"{col}_low"].iloc[0], r[f"{col}_high"].iloc[0]
                    ax.errorbar(bar.get_x() + bar.get_width() / 2, v, yerr=[[v - lo], [hi - v]], color="k", lw=1,
                                capsize=2)
        n = int(d[f"{col}_n"].max())
        ax.set(ylim=(0, 1.02), xlabel="", ylabel=label, title=f"{label}\n(n up to {n} test images, 95% CI)")
        ax.tick_params(axis="x", rotation=40)
    axes[0].legend(title="update ratio", fontsize=8)
    fig.suptitle("students trained on clean data from the backdoored teacher (control: from the clean teacher)")
    fig.tight_layout()
    return fig


def example_grid(cfg: dict, n: int = 8, store=None):
    """Triggered test images (true class not the target) with each model's prediction: rows are
    the planted teacher and the same-task students (update ratio 0); red: the target class."""
    import torch

    from .. import plots
    from ..train import predict

    from torch.utils.data import Subset

    _, test = bd_models.student_data(cfg, "same")
    idx = (labels_of(test) != cfg["target"]).nonzero().flatten()[:n]
    picked = test.subset(idx) if isinstance(test, ImageSet) else to_imageset(Subset(test, idx.tolist()),
                                                                               classes=test.classes, progress=False)
    sub = backdoor.triggered(picked, bd_models.make_trigger(cfg), cfg["where"], seed=cfg["seed"])
    models = {"teacher": bd_models.backdoored_teacher(cfg, store, 0.0, progress=False)[0]}
    for m in cfg["methods"]:
        models[m] = bd_models.student(m, cfg, store, "same", 0.0, progress=False)[0]
    titles, images, masks, hit = [], [], [], []
    for name, model in models.items():
        logits, _ = predict(model, sub)
        pred = logits.argmax(1)
        titles += [f"{name}: {int(p)} (true {int(y)})" if i == 0 else f"{int(p)} (true {int(y)})" for i, (p, y) in
                   enumerate(zip(pred, sub.labels))]
        images.append(sub.images)
        masks.append(sub.info["trigger_mask"][:, 0])
        hit += (pred == cfg["target"]).tolist()
    fig = plots.image_grid(torch.cat(images), titles, masks=torch.cat(masks), ncols=len(idx),
                           suptitle=f"predicted class on triggered images (red: the target {cfg['target']}); "
                                    f"one row per model")
    for ax, h in zip(fig.axes, hit):
        if h:
            ax.title.set_color("red")
    return fig


def flip_paragraph(flips: pd.DataFrame, cfg: dict) -> str:
    """The label-flip comparison, from :func:`flip_table`."""
    c, f = _pick(flips, teacher="clean", model="teacher"), _pick(flips, teacher="flip", model="teacher")
    parts = []
    for m in cfg["flip_methods"]:
        a, b = _pick(flips, teacher="clean", model=m), _pick(flips, teacher="flip", model=m)
        parts.append(f"{m.replace('_', ' ')} {b['clean_acc']:.1%} vs {a['clean_acc']:.1%} "
                     f"({pts(gap(b, a, 'clean_acc'))})")
    return (f"Flipping {cfg['flip_rate']:.0%} of the teacher's labels changes its clean accuracy from "
            f"{pct(c, 'clean_acc')} to {pct(f, 'clean_acc')} ({pts(gap(f, c, 'clean_acc'))}). Students of the "
            f"label-flip teacher against students of the clean teacher: " + "; ".join(parts) + ". Each difference "
            "carries its 95% interval (Newcombe's method over the two Wilson intervals); \"not separated\": the "
            "interval contains zero.")


def headline_paragraph(teachers: pd.DataFrame, transfer: pd.DataFrame, found: pd.DataFrame, cfg: dict) -> str:
    """The study's result against BackdoorBench's BadNets anchor (:data:`BACKDOORBENCH`) and
    BadNets' transfer finding, generated from the tables."""
    bb = BACKDOORBENCH
    bd = _pick(teachers, teacher="backdoor", update_ratio=0.0)
    same = transfer[transfer["task"] == "same"]
    ft = _pick(same, method="fine_tune", teacher="backdoor", update_ratio=0.0)
    ctrl = _pick(same, method="fine_tune", teacher="clean")
    fp = _pick(same, method="fine_pruning", update_ratio=0.0)
    text = (f"**Against the anchors.** BackdoorBench's BadNets on CIFAR-10 (PreActResNet-18, 10% poisoned) reaches "
            f"{bb['clean']:.1%} clean accuracy and {bb['asr']:.1%} ASR; fine-pruning leaves {bb['fine_pruning']:.1%} "
            f"and fine-tuning {bb['fine_tuning']:.1%}. Here the planted teacher ({cfg['rate']:.0%} poisoned) reaches "
            f"{bd['clean_acc']:.1%} clean and {bd['asr_bb']:.1%} ASR (BackdoorBench's definition). ")
    if ft is not None:
        text += (f"The victim's fine-tuning with a new head on clean same-task data leaves **{ft['asr_bb']:.1%}** "
                 f"[{ft['asr_bb_low']:.1%}, {ft['asr_bb_high']:.1%}]")
        if ctrl is not None:
            text += f" against {ctrl['asr_bb']:.1%} for the control that fine-tuned the clean teacher"
        side = ("more than" if ft["asr_bb_low"] > bb["fine_tuning"] else "less than" if ft["asr_bb_high"] <
                bb["fine_tuning"] else "not separated from")
        text += (f"; {side} what BackdoorBench's fine-tuning defence leaves ({bb['fine_tuning']:.1%}; it "
                 f"fine-tunes the backdoored model itself). ")
        if fp is not None:
            text += (f"Fine-pruning leaves {fp['asr_bb']:.1%} (BackdoorBench: {bb['fine_pruning']:.1%}) at a clean "
                     f"accuracy of {fp['clean_acc']:.1%} against fine-tuning's {ft['clean_acc']:.1%} "
                     f"({pts(gap(fp, ft, 'clean_acc'))}; 95% interval of the difference). ")
    new = transfer[transfer["task"] == "new"]
    ftn = _pick(new, method="fine_tune", teacher="backdoor", update_ratio=0.0)
    ctn = _pick(new, method="fine_tune", teacher="clean")
    if ftn is not None and ctn is not None:
        text += (f"BadNets (Gu et al. 2017) found that a traffic-sign network re-trained for another country's signs "
                 f"keeps its backdoor as an accuracy drop on triggered images; on our new task the trigger flips "
                 f"{ftn['untargeted_asr']:.1%} of the fine-tuned student's correct predictions against "
                 f"{ctn['untargeted_asr']:.1%} for the control ({pts(gap(ftn, ctn, 'untargeted_asr'))}), "
                 + ("so the backdoor's damage survives into a new task too. "
                    if gap(ftn, ctn, "untargeted_asr")[1] >= cfg["asr_margin"] else
                    f"so here it is not shown to survive into a new task by {cfg['asr_margin']:.0%} or more. "))
    return text + findings_sentence(found)




def expectations_paragraph(transfer: pd.DataFrame, cfg: dict) -> str:
    """The authors' two expectations (masked planting survives ``mag`` better; ``divmag``
    removes more than ``mag``), read from the same-task rows of :func:`transfer_table`; every
    comparison is worded by the 95% interval of its difference (:func:`gap`)."""
    same = transfer[(transfer["task"] == "same") & (transfer["teacher"] == "backdoor")]
    ratios = [r for r in cfg["update_ratios"] if _pick(same, method="fine_tune", update_ratio=r) is not None]
    if not ratios or "mag" not in cfg["ratio_methods"]:
        return ""

    def row(method, r):
        rows = same[(same["method"] == method) & (same["update_ratio"] == r)]
        if method == "mag":
            rows = rows[rows["mag_ratio"] == cfg["mag_ratio"]]
        return rows.iloc[0] if len(rows) else None

    ft, mg, dv = ({r: row(m, r) for r in ratios} for m in ("fine_tune", "mag", "divmag"))
    lo, hi = min(ratios), max(ratios)
    text = ("**The authors' expectations** (differences with their 95% intervals, Newcombe's method over the two "
            "Wilson intervals). After plain fine-tuning, the backdoor's ASR is "
            + ", ".join(f"{ft[r]['asr_bb']:.1%} (update ratio {r:g})" for r in ratios) + ". ")
    g = gap(ft[hi], ft[lo], "asr_bb")
    verdict = "survives better" if g[1] > 0 else "survives worse" if g[2] < 0 else "is not separated from free planting"
    text += (f"Masked planting {verdict} here: holding the smallest conv weights fixed moved the fine-tuned student's "
             f"ASR from {ft[lo]['asr_bb']:.1%} to {ft[hi]['asr_bb']:.1%} ({pts(g)}). ")
    if g[2] < 0:
        text += ("A likely reason, not tested here: BatchNorm and the head always train while planting, so the fewer "
                 "conv weights may move, the more of the backdoor lives in the head, which the victim replaces. ")
    gaps = {r: gap(ft[r], mg[r], "asr_bb") for r in ratios if mg[r] is not None}
    removes = [r for r, x in gaps.items() if x[1] > 0]
    text += (f"mag (zeroing the smallest {cfg['mag_ratio']:.0%} of conv weights before fine-tuning) against plain "
             "fine-tuning, ASR removed: " + "; ".join(f"update ratio {r:g} {pts(x)}" for r, x in gaps.items()) + ": "
             + (f"it removes part of the backdoor at update ratio {', '.join(f'{r:g}' for r in removes)}. " if removes
                else "zeroing the smallest weights does not measurably remove the backdoor here, whether planting "
                     "was masked or not. "))
    if dv[hi] is not None and mg[hi] is not None:
        g = gap(mg[hi], dv[hi], "asr_bb")
        text += (f"divmag leaves {dv[hi]['asr_bb']:.1%} against mag's {mg[hi]['asr_bb']:.1%} from the teacher planted "
                 f"at update ratio {hi:g} ({pts(g)}): "
                 + ("it removes more than mag, as the authors expect if resetting the weights the victim's task barely "
                    "moves reaches the large weights where masked planting put the backdoor." if g[1] > 0 else
                    "it is not shown to remove more than mag here."))
    return text
