"""Notebook 08 beside BackdoorBench's defaults (BadNets, CIFAR-10, PreAct-ResNet18, 10% poison, 5%
clean data): the published clean accuracy and ASR of each defence (:data:`ANCHORS`), ours on the
run's own BadNets teacher, and, where the recipe has an ``anchor_recipe`` (the ``real`` profile),
ours in BackdoorBench's own setting: a CIFAR-10 model planted with BadNets on CIFAR-10 at its
rate, defended with its share of clean training images and scored on CIFAR-10's test images.

The anchor's models are :mod:`lib.artifacts.anchor` (notebook 05's recipe with ``anchor_recipe``
on top); they are purified and scored by the same functions as every other teacher of notebook
08 (:func:`lib.studies.defences_report.purified_rows`, :func:`~lib.studies.defences_report.detection_rows`:
Activation Clustering and Spectral Signatures read its poisoned set at its own rate). The
comparison is one of direction: the model (the shared ResNet-20, fine-tuned with a new head by
the attacker) and the data (the shared 5,000-image subset) are smaller than BackdoorBench's.
"""
from __future__ import annotations

import pandas as pd

from ..artifacts import anchor as anchor_models
from ..artifacts import defences as df_models
from ..store import Store
from .defences_report import Subject, detection_rows, purified_rows

# BackdoorBench's defaults, clean accuracy / ASR in %: the leaderboard CSV, except i-BAU (its row at
# 5% poison) and FT-SAM (its paper, Table 1). NC, AC and Spectral are BackdoorBench's whole defences
# (detect, then unlearn or re-train); fine-pruning is 91.77 / 0.84 in the FT-SAM paper's rerun.
ANCHORS = {"none": (91.32, 95.03, "leaderboard"), "nad": (89.87, 2.14, "leaderboard"),
           "neural_cleanse": (89.05, 1.27, "leaderboard"), "anp": (84.17, 0.73, "leaderboard"),
           "activation_clustering": (88.80, 86.23, "leaderboard"), "spectral_signatures": (89.98, 92.41, "leaderboard"),
           "ibau": (89.21, 0.81, "leaderboard, 5% poison"), "ft_sam": (92.21, 1.63, "FT-SAM paper, Table 1"),
           "fine_pruning": (91.31, 57.13, "leaderboard")}


def anchor_subject(cfg: dict, store: Store | None = None, *, progress: bool = False) -> Subject:
    """The anchor's planted teacher (kind ``"anchor"``) on its task's test images."""
    bd = anchor_models.anchor_recipe(cfg)
    model, _ = anchor_models.anchor_teacher(cfg, store, progress=progress)
    return Subject(f"teacher ({bd['trigger']}, {bd['dataset']})", "anchor", bd["trigger"], "same", model,
                   anchor_models.anchor_sets(cfg)[1], bd)


def anchor_purification(cfg: dict, store: Store | None = None, *, progress: bool = False) -> pd.DataFrame:
    """The anchor teacher's purification rows (undefended, its clean control, every defence on
    the anchor's clean set), scored as :func:`lib.studies.defences_report.purification_table`
    scores the others; empty where the recipe has no ``anchor_recipe``."""
    if not cfg.get("anchor_recipe"):
        return pd.DataFrame()
    s = anchor_subject(cfg, store, progress=progress)
    control, _ = anchor_models.anchor_control(cfg, store, progress=progress)
    return pd.DataFrame(purified_rows(s, anchor_models.anchor_clean_set(cfg), control, cfg, store))


def anchor_detection(cfg: dict, store: Store | None = None, *, progress: bool = False) -> pd.DataFrame:
    """Activation Clustering and Spectral Signatures on the anchor's poisoned set at its own rate,
    and the teacher re-planted without what each flagged; empty without an anchor."""
    if not cfg.get("anchor_recipe"):
        return pd.DataFrame()

    def replant(keep):
        return anchor_models.anchor_teacher(cfg, store, keep=keep, progress=progress)[0]

    s = anchor_subject(cfg, store, progress=progress)
    return pd.DataFrame(detection_rows(s, anchor_models.anchor_poisoned(cfg), cfg, store, replant))


# what the anchor's test images are, per dataset (lib.artifacts.anchor.anchor_sets)
TEST_SETS = {"cifar10_shared": "CIFAR-10's official test split", "synsigns": "notebook 05's teacher test set"}


def _ours(purification: pd.DataFrame, detection: pd.DataFrame, name: str, label: str) -> dict:
    """One setting's numbers for defence ``name``: its purified teacher, or for AC and Spectral
    the teacher re-planted on the set they cleaned at the largest rate; with Wilson intervals."""
    rows = purification.set_index("defence") if len(purification) else pd.DataFrame()
    if name in rows.index:
        r = rows.loc[name]
    elif len(detection) and name in set(detection["detector"]):
        r = detection[detection["detector"] == name].sort_values("rate").iloc[-1]
    else:
        return {}
    out = {}
    for ours, theirs in (("clean_acc", "clean_acc"), ("asr", "asr_bb")):
        for suffix in ("", "_low", "_high"):
            out[f"{label}{ours}{suffix}"] = 100 * r[theirs + suffix]
    out[f"{label}n"] = int(r["clean_acc_n"])
    return out


def anchor_table(purification: pd.DataFrame, detection: pd.DataFrame, anchor: pd.DataFrame | None = None,
                 anchor_detection_rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Ours beside BackdoorBench's defaults (:data:`ANCHORS`, in %), one row per defence:

    - ``clean_acc``, ``asr`` (with 95% Wilson intervals and ``n`` test images): the run's BadNets
      teacher when ``badnets`` is among the triggers (else the first teacher), and for AC and
      Spectral notebook 05's teacher (its own trigger, the one ``08_data_detection`` reads)
      re-planted on the set they cleaned at the largest detected rate;
    - ``anchor_clean_acc``, ``anchor_asr``, ...: the same for the anchor teacher (``anchor``:
      :func:`anchor_purification`, ``anchor_detection_rows``: :func:`anchor_detection`), when given.

    Neural Cleanse runs as a detector only here (``08_neural_cleanse``), so its row has no numbers
    of ours."""
    teachers = purification[purification["kind"] == "teacher"]
    pick = "badnets" if "badnets" in set(teachers["trigger"]) else teachers["trigger"].iloc[0]
    ours = teachers[teachers["trigger"] == pick]
    rows = []
    for name, (acc, asr, source) in ANCHORS.items():
        row = {"defence": name, "bb_clean_acc": acc, "bb_asr": asr, "bb_source": source}
        if name == "neural_cleanse":
            row["our_setting"] = "run as a detector only (08_neural_cleanse); no unlearning"
        elif name in {"activation_clustering", "spectral_signatures"}:
            row["our_setting"] = f"notebook 05's teacher re-planted on the set {name} cleaned (08_data_detection)"
        else:
            row["our_setting"] = f"{pick} teacher " + ("undefended" if name == "none" else f"purified by {name}")
        row.update(_ours(ours, detection, name, ""))
        if anchor is not None and len(anchor):
            row.update(_ours(anchor, anchor_detection_rows if anchor_detection_rows is not None else pd.DataFrame(),
                             name, "anchor_"))
        rows.append(row)
    return pd.DataFrame(rows)


def anchor_setting(cfg: dict, purification: pd.DataFrame, anchor: pd.DataFrame) -> str:
    """The sentence that says what ours are beside BackdoorBench's (model, data, poison, clean set),
    from the run's recipe and tables."""
    bd = df_models.backdoor_recipe(cfg)
    model = {"A": "notebook 01's base A (a small CNN)", "resnet20_shared": "the shared CIFAR-10 ResNet-20",
             "imagenet_resnet18": "torchvision's ImageNet ResNet-18"}.get(bd["base"], bd["base"])
    n_test = int(purification[purification["kind"] == "teacher"]["clean_acc_n"].max())
    text = (f"Ours in the first columns: {model} planted on {bd['dataset']} ({len(df_models.clean_set(cfg))} clean "
            f"images for the defender, {cfg['clean_fraction']:.0%} of the victim's training images; poison rate "
            f"{bd['rate']:g}; {n_test} test images).")
    if cfg.get("anchor_recipe") and len(anchor):
        a = anchor_models.anchor_recipe(cfg)
        text += (f" The `anchor_` columns are BackdoorBench's own setting at our scale: {model} planted with "
                 f"{a['trigger']} on {a['dataset']} at poison rate {a['rate']:g} ({a['teacher_epochs']} epochs, a new "
                 f"head), {len(anchor_models.anchor_clean_set(cfg))} of its clean training images "
                 f"({cfg['anchor_clean_fraction']:.0%}) for the defender, scored on {int(anchor['clean_acc_n'].max())} "
                 f"test images ({TEST_SETS.get(a['dataset'], a['dataset'] + ' test set')}).")
    else:
        text += " This profile has no anchor in BackdoorBench's own setting (the `real` profile runs one on CIFAR-10)."
    return text + " Direction only: a smaller model and fewer images than PreAct-ResNet18 on 50,000."


def anchor_direction(anchors: pd.DataFrame, margin: float) -> str:
    """Where our defences, in BackdoorBench's own setting (the ``anchor_`` columns), move ASR the
    way BackdoorBench's do: each removes the backdoor when it lowers ASR by at least ``margin``
    (ours by the whole 95% interval, theirs by the published value), with the clean accuracy each
    costs. Empty without anchor columns."""
    if "anchor_asr" not in anchors:
        return ""
    rows = anchors.set_index("defence")
    ours0, theirs0 = rows.loc["none", "anchor_asr"], rows.loc["none", "bb_asr"]
    acc0, bb_acc0 = rows.loc["none", "anchor_clean_acc"], rows.loc["none", "bb_clean_acc"]
    groups = {"both remove it": [], "both leave it": [], "only ours removes it": [], "only theirs removes it": []}
    for name, r in rows.drop(index="none").dropna(subset=["anchor_asr"]).iterrows():
        ours = ours0 - r["anchor_asr_high"] >= 100 * margin
        theirs = theirs0 - r["bb_asr"] >= 100 * margin
        key = ("both remove it" if ours and theirs else "both leave it" if not (ours or theirs)
               else "only ours removes it" if ours else "only theirs removes it")
        cost, bb_cost = r["anchor_clean_acc"] - acc0, r["bb_clean_acc"] - bb_acc0
        groups[key].append(f"{name} (ASR {r['anchor_asr']:.1f}% here, {r['bb_asr']:.1f}% there; clean accuracy "
                           f"{cost:+.1f} points here, {bb_cost:+.1f} there)")
    text = "; ".join(f"**{k}**: {', '.join(v)}" for k, v in groups.items() if v)
    return (f"**Direction in BackdoorBench's setting** (a defence removes the backdoor when it lowers ASR by at "
            f"least {100 * margin:.0f} points from the undefended {ours0:.1f}% here, by the whole 95% interval, and "
            f"from {theirs0:.1f}% there): {text}.")
