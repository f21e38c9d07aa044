"""Tables and findings of notebook 08 (:mod:`lib.studies.defences`): what each detector sees and
what each purification leaves, on notebook 05's planted teachers and their students.

Every model is scored with :func:`lib.backdoor.backdoor_metrics` on the whole test set of its task
(clean and triggered; n and 95% Wilson intervals per rate), and every defended model against the
same model undefended with :func:`lib.backdoor.metrics.defence_effect` (drops in ASR and clean
accuracy with Newcombe intervals, DER). On the new task the target label names an unrelated
class, so the rate a defence must lower there is the untargeted one (triggered images moved off
their true class), as in notebook 05.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from .. import backdoor
from ..artifacts import backdoor as bd_models
from ..artifacts import defences as df_models
from ..backdoor import activation_clustering, neural_cleanse, spectral_signatures, strip
from ..backdoor.detection import detection_scores, representations
from ..backdoor.metrics import defence_effect
from ..cache import cached
from ..data import ImageSet, data_fingerprint, num_classes_of
from ..models import model_fingerprint
from ..store import Store
from ..store.versions import module_version
from ..findings import finding, pct


@dataclass
class Subject:
    """A backdoored model a defender may hold: the planted teacher (per trigger) or a student."""

    name: str          # "teacher (emblem)", "student, same task", ...
    kind: str          # "teacher" | "student"
    trigger: str
    task: str          # "same" | "new"
    model: torch.nn.Module
    test: ImageSet
    cfg: dict          # notebook 05's recipe with this trigger

    @property
    def target(self) -> int | None:
        return self.cfg["target"] if self.task == "same" else None

    @property
    def asr(self) -> str:
        """The rate a defence must lower: BackdoorBench's ASR, or the untargeted rate on the new task."""
        return "asr_bb" if self.task == "same" else "untargeted_asr"


def trigger_cfg(cfg: dict, trigger: str) -> dict:
    """Notebook 05's recipe with ``trigger`` in place of its own and that trigger's
    ``trigger_recipes`` entry on top."""
    return {**df_models.backdoor_recipe(cfg), "trigger": trigger, **(cfg.get("trigger_recipes") or {}).get(trigger, {})}


def subjects(cfg: dict, store: Store | None = None, *, progress: bool = False) -> list[Subject]:
    """The planted teacher of every trigger in ``triggers`` (notebook 05's recipe otherwise) and
    the fine-tuned students of notebook 05's own teacher on the same and the new task."""
    out = []
    for t in cfg["triggers"]:
        bd = trigger_cfg(cfg, t)
        model, _ = bd_models.backdoored_teacher(bd, store, progress=progress)
        out.append(Subject(f"teacher ({t})", "teacher", t, "same", model, bd_models.teacher_data(bd)[1], bd))
    bd = df_models.backdoor_recipe(cfg)
    for task in ("same", "new"):
        model, _ = bd_models.student("fine_tune", bd, store, task, progress=progress)
        out.append(Subject(f"student, {task} task ({bd['trigger']})", "student", bd["trigger"], task, model,
                           bd_models.student_data(bd, task)[1], bd))
    return out


def metrics(model, s: Subject, store: Store | None = None) -> dict:
    """:func:`lib.backdoor.backdoor_metrics` of ``model`` on ``s``'s test set and trigger (stored)."""
    return cached("08_backdoor_metrics", backdoor.backdoor_metrics, model, s.test, bd_models.make_trigger(s.cfg),
                  s.target, where=s.cfg["where"], seed=s.cfg["seed"], store=store)


def _scored(s: Subject, defence: str, model, before: dict, store, **labels) -> dict:
    after = metrics(model, s, store)
    return {"subject": s.name, "kind": s.kind, "trigger": s.trigger, "task": s.task, "defence": defence,
            "asr_metric": s.asr, **labels, **after, **defence_effect(before, after, asr=s.asr)}


def purification_table(cfg: dict, store: Store | None = None, *, progress: bool = False) -> pd.DataFrame:
    """One row per subject and defence (``"none"``: the undefended model; ``"control"``: notebook
    05's clean teacher, for the teacher rows): the metrics, the drops against the undefended model
    with intervals, DER and the defence's training seconds (0 when it came from the store)."""
    rows = []
    for s in subjects(cfg, store, progress=progress):
        control = bd_models.clean_teacher(s.cfg, store, progress=progress)[0] if s.kind == "teacher" else None
        rows += purified_rows(s, df_models.clean_set(cfg, s.task), control, cfg, store)
    return pd.DataFrame(rows)


def purified_rows(s: Subject, clean: ImageSet, control, cfg: dict, store: Store | None = None) -> list[dict]:
    """:func:`purification_table`'s rows of one subject: undefended, its ``control`` (a clean
    model of its task, or ``None``) and every defence of ``methods`` on the ``clean`` images."""
    before = metrics(s.model, s, store)
    rows = [_scored(s, "none", s.model, before, store, seconds=0.0)]
    if control is not None:
        rows.append(_scored(s, "control", control, before, store, seconds=0.0))
    for d in cfg["methods"]:
        model, meta = df_models.purified(d, s.model, clean, cfg, store)
        rows.append(_scored(s, d, model, before, store, seconds=0.0 if meta["cached"] else meta["train_seconds"]))
    return rows


def transfer_table(cfg: dict, store: Store | None = None, *, progress: bool = False) -> pd.DataFrame:
    """Purify before or after transfer? Per task: the fine-tuned student of the undefended teacher
    (``when="none"``), of the teacher purified by each of ``transfer_methods`` (``"before"``), and
    that student purified (``"after"``), each scored against the undefended student."""
    bd = df_models.backdoor_recipe(cfg)
    rows = []
    for s in [s for s in subjects(cfg, store, progress=progress) if s.kind == "student"]:
        before = metrics(s.model, s, store)
        rows.append(_scored(s, "none", s.model, before, store, when="none"))
        control, _ = bd_models.student("fine_tune", bd, store, s.task, teacher="clean", progress=progress)
        rows.append(_scored(s, "control", control, before, store, when="control"))
        clean = df_models.clean_set(cfg, s.task)
        for d in cfg["transfer_methods"]:
            early, _ = df_models.purified_student(d, cfg, s.task, store, progress=progress)
            rows.append(_scored(s, d, early, before, store, when="before"))
            late, _ = df_models.purified(d, s.model, clean, cfg, store)
            rows.append(_scored(s, d, late, before, store, when="after"))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- detection
def detected_models(cfg: dict, store: Store | None = None, *, students: bool = True,
                    progress: bool = False) -> list[tuple[str, Subject]]:
    """The models the model- and input-level detectors look at: notebook 05's clean teacher (the
    control, scored with notebook 05's trigger), every planted teacher and (``students``) the
    same-task student."""
    subs = [s for s in subjects(cfg, store, progress=progress)
            if s.task == "same" and (students or s.kind != "student")]
    bd = df_models.backdoor_recipe(cfg)
    clean, _ = bd_models.clean_teacher(bd, store, progress=progress)
    control = Subject("clean teacher (control)", "control", bd["trigger"], "same", clean,
                      bd_models.teacher_data(bd)[1], bd)
    return [(s.name, s) for s in [control, *subs]]


def neural_cleanse_result(s: Subject, cfg: dict, store: Store | None = None) -> dict:
    """Neural Cleanse on ``s.model`` with the defender's clean images: per class the reversed
    trigger's mask L1 norm, anomaly index, success and the mask and pattern themselves (tensors;
    stored, the computation is a minute of CPU per model)."""
    clean = df_models.clean_set(cfg, "same")
    k = num_classes_of(s.test)
    key = {"model": model_fingerprint(s.model), "clean": data_fingerprint((clean.images, clean.labels)), "classes": k,
           "steps": cfg["nc_steps"], "threshold": cfg["nc_threshold"], "seed": cfg["seed"],
           "code": module_version(neural_cleanse.__name__)}

    def compute():
        r = neural_cleanse.neural_cleanse(s.model, clean.images, k, steps=cfg["nc_steps"],
                                          threshold=cfg["nc_threshold"], seed=cfg["seed"])
        t = r["table"]
        return {"masks": r["masks"], "patterns": r["patterns"],
                **{c: torch.tensor(t[c].to_numpy(dtype=float)) for c in ("mask_l1", "anomaly_index", "success")}}

    return (store or Store()).result("08_neural_cleanse", key, compute)


def neural_cleanse_table(results: dict[str, dict], models: list[tuple[str, Subject]], cfg: dict) -> pd.DataFrame:
    """One row per model and class: mask L1 norm, anomaly index, ``signed_index`` (the index,
    negative for a mask above the median: only small masks can be a backdoor's), flagged (below
    the median and above ``nc_threshold``), whether the class is the target, the reversed
    trigger's success."""
    rows = []
    for name, s in models:
        r = results[name]
        flags = neural_cleanse.flag(r["mask_l1"], cfg["nc_threshold"])
        below = r["mask_l1"] < torch.quantile(r["mask_l1"].double(), 0.5)
        for c in range(len(r["mask_l1"])):
            index = float(r["anomaly_index"][c])
            rows.append({"model": name, "trigger": s.trigger, "class": c, "target": c == s.cfg["target"],
                         "mask_l1": float(r["mask_l1"][c]), "anomaly_index": index,
                         "signed_index": index if below[c] else -index,
                         "flagged": bool(flags[c]), "success": float(r["success"][c])})
    return pd.DataFrame(rows)


def strip_result(s: Subject, cfg: dict, store: Store | None = None) -> dict:
    """STRIP's normalised entropies (:func:`lib.backdoor.strip.strip_entropy`, blends with the
    defender's clean images) of the defender's own clean images (``defender``: they set the
    threshold), the clean test images (``clean``) and the triggered test images of classes other
    than the target (``triggered``). Stored."""
    pool = df_models.clean_set(cfg, "same")
    trig = backdoor.triggered(s.test, bd_models.make_trigger(s.cfg), s.cfg["where"], seed=s.cfg["seed"])
    other = trig.subset((trig.labels != s.cfg["target"]).nonzero().flatten())
    key = {"model": model_fingerprint(s.model), "pool": data_fingerprint((pool.images, pool.labels)),
           "test": data_fingerprint((s.test.images, s.test.labels)), "triggered": data_fingerprint((other.images,
                                                                                                    other.labels)),
           "n_blend": cfg["n_blend"], "seed": cfg["seed"], "code": module_version(strip.__name__)}

    def compute():
        h = {name: strip.strip_entropy(s.model, x, pool, n_blend=cfg["n_blend"], seed=cfg["seed"])
             for name, x in (("defender", pool), ("clean", s.test), ("triggered", other))}
        return {k: v.contiguous() for k, v in h.items()}

    return (store or Store()).result("08_strip", key, compute)


def strip_table(results: dict[str, dict], models: list[tuple[str, Subject]], cfg: dict) -> pd.DataFrame:
    """Per model: STRIP's AUC (triggered vs clean test images) with its Hanley-McNeil interval,
    and FRR / FAR (Wilson intervals) at the threshold set on the defender's own clean images at
    ``strip_frr``."""
    return pd.DataFrame([{"model": name, "trigger": s.trigger,
                          **strip.strip_stats(results[name], frr_target=cfg["strip_frr"])} for name, s in models])


def data_detection_table(cfg: dict, store: Store | None = None, *, progress: bool = False) -> pd.DataFrame:
    """Activation Clustering and Spectral Signatures on the attacker's poisoned set at each of
    ``detect_rates`` (read through the teacher planted on it): precision and recall of the
    poisoned images (Wilson intervals), the poison's share of the target class, and the teacher
    re-planted on the set without the flagged images (clean accuracy, ASR)."""
    rows = []
    for rate in cfg["detect_rates"]:
        bd = {**df_models.backdoor_recipe(cfg), "rate": rate}
        s = Subject(f"teacher at rate {rate:g}", "teacher", bd["trigger"], "same",
                    bd_models.backdoored_teacher(bd, store, progress=progress)[0], bd_models.teacher_data(bd)[1], bd)

        def replant(keep, bd=bd):
            return bd_models.backdoored_teacher(bd, store, keep=keep, progress=progress)[0]

        rows += detection_rows(s, bd_models.poisoned_teacher_data(bd), cfg, store, replant)
    return pd.DataFrame(rows)


def detection_rows(s: Subject, poisoned: ImageSet, cfg: dict, store: Store | None, replant) -> list[dict]:
    """AC and SS on ``poisoned`` read through the teacher ``s.model`` planted on it, and
    ``replant(keep)`` (the teacher planted on the images at ``keep`` only) scored on ``s``."""
    is_poison = poisoned.info["poisoned"]
    feats = representations(s.model, poisoned.images, poisoned.labels)
    in_target = poisoned.labels == s.cfg["target"]
    found = {"activation_clustering": activation_clustering.detect(s.model, poisoned.images, poisoned.labels,
                                                                   feats=feats, seed=cfg["seed"])["flags"],
             "spectral_signatures": spectral_signatures.detect(s.model, poisoned.images, poisoned.labels,
                                                               eps=cfg["ss_poison_fraction"], feats=feats)["flags"]}
    rows = []
    for name, flags in found.items():
        m = metrics(replant((~flags).nonzero().flatten().tolist()), s, store)
        rows.append({"rate": s.cfg["rate"], "detector": name,
                     "poison_share_of_target": float(is_poison[in_target].float().mean()),
                     **detection_scores(flags, is_poison, len(poisoned)),
                     **{k: m[k] for k in ("clean_acc", "clean_acc_low", "clean_acc_high", "clean_acc_n",
                                          "asr_bb", "asr_bb_low", "asr_bb_high", "asr_bb_n")}})
    return rows


# ----------------------------------------------------------------------------- findings
def tag(row) -> str:
    """A subject's short name in finding names: its trigger (teachers) or ``student_<task>``."""
    return row["trigger"] if row["kind"] == "teacher" else f"student_{row['task']}"


def _drop(r: pd.Series) -> tuple[float, float, float]:
    return r["d_asr"], r["d_asr_low"], r["d_asr_high"]


def findings(purification: pd.DataFrame, strips: pd.DataFrame, nc: pd.DataFrame, detection: pd.DataFrame,
             cfg: dict) -> pd.DataFrame:
    """The notebook's findings (:func:`lib.studies.findings.finding`: a value with its 95%
    interval against a margin; ``shown`` when the whole interval reaches it):

    - ``<defence>_removes_<subject>``: the defence lowers the subject's ASR (new task: the
      untargeted rate) by at least ``asr_margin`` (subjects: each trigger's teacher,
      ``student_same``, ``student_new``);
    - ``<defence>_keeps_accuracy_<subject>``: it costs at most ``acc_margin`` of clean accuracy
      (value: ``acc_margin`` minus the drop, margin 0);
    - ``strip_detects_<trigger>``: STRIP's AUC on that teacher exceeds 0.5 by ``auc_margin``;
    - ``nc_flags_<trigger>``: Neural Cleanse flags that teacher's target class (value: the
      target's anomaly index minus ``nc_threshold``; one number per model, no interval);
    - ``<detector>_recall_<rate>``: AC / SS recover at least half of the poisoned images.
    """
    out = []
    am, cm = cfg["asr_margin"], cfg["acc_margin"]
    for r in purification[~purification["defence"].isin(["none", "control"])].to_dict("records"):
        t, d = tag(r), r["defence"]
        metric = "ASR" if r["asr_metric"] == "asr_bb" else "untargeted rate"
        out.append(finding(f"{d}_removes_{t}", f"{d} lowers the {r['subject']}'s {metric} by >= {am:.0%}",
                           _drop(r), am, f"{metric} {pct(pd.Series(r), r['asr_metric'])} after; DER {r['der']:.2f} "
                           f"[{r['der_low']:.2f}, {r['der_high']:.2f}]"))
        out.append(finding(f"{d}_keeps_accuracy_{t}", f"{d} costs the {r['subject']} <= {cm:.0%} clean accuracy",
                           (cm - r["d_acc"], cm - r["d_acc_high"], cm - r["d_acc_low"]), 0.0,
                           f"clean {pct(pd.Series(r), 'clean_acc')} after, drop {r['d_acc'] * 100:+.1f} points"))
    for r in strips[strips["model"].str.startswith("teacher")].to_dict("records"):
        out.append(finding(f"strip_detects_{r['trigger']}", f"STRIP's AUC on the {r['model']} >= 0.5 + "
                           f"{cfg['auc_margin']:.2f}", (r["auc"] - 0.5, r["auc_low"] - 0.5, r["auc_high"] - 0.5),
                           cfg["auc_margin"], f"AUC {r['auc']:.3f} [{r['auc_low']:.3f}, {r['auc_high']:.3f}] "
                           f"(n={r['n_triggered']} triggered, {r['n_clean']} clean)"))
    for model, g in nc[nc["model"].str.startswith("teacher")].groupby("model", sort=False):
        target = g[g["target"]].iloc[0]
        v = target["anomaly_index"] - cfg["nc_threshold"]
        smallest = bool(target["mask_l1"] == g["mask_l1"].min())
        out.append(finding(f"nc_flags_{target['trigger']}", f"Neural Cleanse flags the {model}'s target class",
                           (v, float("nan"), float("nan")), 0.0,
                           f"target anomaly index {target['anomaly_index']:.2f}; its mask the smallest: {smallest}; "
                           f"flagged classes {g[g['flagged']]['class'].tolist()}"))
    for r in detection.to_dict("records"):
        out.append(finding(f"{r['detector']}_recall_{r['rate']:g}", f"{r['detector']} finds >= half the poison "
                           f"at rate {r['rate']:g}", (r["recall"] - 0.5, r["recall_low"] - 0.5, r["recall_high"] - 0.5),
                           0.0, f"recall {r['recall']:.1%} precision {r['precision']:.1%} (poison "
                           f"{r['poison_share_of_target']:.0%} of the target class)"))
    return pd.DataFrame(out)


def finding_names(cfg: dict) -> list[str]:
    """Every finding :func:`findings` can name under ``cfg`` (the names ``asserted`` may take)."""
    from ..artifacts.defences import METHODS

    triggers = cfg.get("triggers", ("emblem", "badnets", "blended"))
    subjects = [*triggers, "student_same", "student_new"]
    names = [f"{d}_{what}_{s}" for d in cfg.get("methods", METHODS) for what in ("removes", "keeps_accuracy")
             for s in subjects]
    names += [f"{k}_{t}" for k in ("strip_detects", "nc_flags") for t in triggers]
    return names + [f"{d}_recall_{r:g}" for d in ("activation_clustering", "spectral_signatures")
                    for r in cfg.get("detect_rates", ())]


def _removal_line(d: str, found: pd.DataFrame, purification: pd.DataFrame, cfg: dict) -> str:
    """One defence's line: where it removed the backdoor (by the interval, by the point estimate
    only, not), each with the clean accuracy it cost, and where that cost exceeded ``acc_margin``."""
    rows = purification[purification["defence"] == d].to_dict("records")
    drop = {tag(r): r["d_acc"] for r in rows}
    mine = found[found["finding"].str.startswith(f"{d}_removes_")]
    by = {r.finding.removeprefix(f"{d}_removes_"): r for r in mine.itertuples()}

    def named(ts):
        return ", ".join(f"{t} ({-drop[t] * 100:+.1f} points of accuracy)" for t in ts) or "none"

    shown = [t for t, r in by.items() if r.shown]
    point = [t for t, r in by.items() if r.held and not r.shown]
    missed = [t for t, r in by.items() if not r.held]
    costly = [t for t in drop if drop[t] > cfg["acc_margin"]]
    text = (f"- **{d}** removed the backdoor (ASR drop >= {cfg['asr_margin'] * 100:.0f} points, whole 95% "
            f"interval) from: ")
    text += named(shown)
    text += f"; by the point estimate only: {named(point)}" if point else ""
    text += f"; not from: {', '.join(missed)}" if missed else ""
    text += f". It cost more than {cfg['acc_margin'] * 100:.0f} points of clean accuracy on: {', '.join(costly)}" \
        if costly else ""
    return text + "."


def verdict_paragraph(purification: pd.DataFrame, strips: pd.DataFrame, nc: pd.DataFrame, detection: pd.DataFrame,
                      found: pd.DataFrame, cfg: dict) -> str:
    """Per defence, where it removed the backdoor (:func:`findings`) and at what cost in clean
    accuracy (a removal is only worth what the victim can still ship); then what each detector
    showed, from its table."""
    from ..artifacts.defences import METHODS

    lines = [_removal_line(d, found, purification, cfg) for d in METHODS if d in cfg["methods"]]
    auc = "; ".join(f"{r['model']} {r['auc']:.2f} [{r['auc_low']:.2f}, {r['auc_high']:.2f}]"
                    for r in strips.to_dict("records"))
    lines.append(f"\n**STRIP**'s AUC, triggered against clean test images (0.5: chance): {auc}.")
    rates = "; ".join(f"{r['model']} rejects {r['frr']:.1%} [{r['frr_low']:.1%}, {r['frr_high']:.1%}] of the clean "
                      f"and lets {r['far']:.1%} [{r['far_low']:.1%}, {r['far_high']:.1%}] of the triggered through"
                      for r in strips.to_dict("records"))
    lines.append(f" At the threshold set for a {cfg['strip_frr']:.0%} false-rejection rate on the defender's own "
                 f"{int(strips['n_defender'].max())} clean images (a quantile of that few images: the test images' "
                 f"rate is its own measurement, not the target), on the test images: {rates}.")
    flagged = []
    for model, g in nc.groupby("model", sort=False):
        t = g[g["target"]].iloc[0]
        flagged.append(f"{model} flags classes {g[g['flagged']]['class'].tolist()} (target {int(t['class'])}: "
                       f"anomaly index {t['anomaly_index']:.2f}, signed {t['signed_index']:+.2f})")
    lines.append(f"**Neural Cleanse** (threshold {cfg['nc_threshold']:g}, masks below the median only; one run "
                 f"per model, no interval): " + "; ".join(flagged) + ".")
    for r in detection.to_dict("records"):
        lines.append(f"**{r['detector']}** at poison rate {r['rate']:g} (the poison is "
                     f"{r['poison_share_of_target']:.0%} of the target class): recall {r['recall']:.1%} "
                     f"[{r['recall_low']:.1%}, {r['recall_high']:.1%}], "
                     f"precision {r['precision']:.1%}; the teacher re-planted without what it flagged: ASR "
                     f"{r['asr_bb']:.1%} at clean accuracy {r['clean_acc']:.1%}.")
    return "\n".join(lines)
