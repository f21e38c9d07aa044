"""Study of notebook 05: does a backdoor planted in a public model survive transfer learning, and
which way of transferring or which defence removes it? (The Renofeation authors' backdoor
pipeline, ``../shared/PROTOCOLS.md`` section 2.6, with BackdoorBench's BadNets anchor.)

Smoke profile (embedded ``synsigns``, 32 px). The public pretrained model is **base A** of
notebook 01 (synsigns half A). The attacker's teacher set and both victim sets come from the
*other* half (B), which base A never saw, as GTSRB is new to an ImageNet model:

- teacher set: the first ``teacher_classes`` classes of half B, drawn with ``data_seed``;
- student task ``"same"``: the same classes, the victim's own images (``student_seed``; the
  authors' final scripts reuse the teacher's dataset), and the teacher's test set;
- student task ``"new"``: the next ``new_classes`` classes of half B (disjoint from the teacher's:
  the authors' earlier GTSRB -> MIT-67 / CUB plan).

Full profile: ImageNet ResNet-18 (``lib.artifacts.bases.imagenet_base``) planted on GTSRB at 224 px, students
on GTSRB (same) and a new task (``full_new``: MIT-67 or CUB-200), file-backed with the trigger
pasted after the 224-px crop (:class:`PoisonedImages`).

The models are :mod:`lib.artifacts.backdoor` (one row of its ``METHOD_TABLE`` per transfer
method); this module holds the recipe and the figures drawn from the tables (poison rate,
clean accuracy against ASR), and :mod:`.backdoor_report` the tables, findings and generated
paragraphs.
"""
from __future__ import annotations

from ..artifacts.backdoor import METHODS
from . import notebook_params, with_needs
from . import recipe as _recipe

_COMMON = {
    # data (smoke): synsigns half B of the bases' split; the public base: base A of notebook 01
    "dataset": "synsigns", "new_dataset": "synsigns", "base": "A", "base_epochs": None, "size": 32,
    "new_per_class_train": None, "split_seed": 0, "teacher_classes": 10, "new_classes": 10, "per_class_train": 60,
    "per_class_test": 30,
    "data_seed": 0, "student_seed": 1,
    # the attack (the authors' defaults: 0.2 all-to-one to class 0, logo at the bottom-right corner)
    "trigger": "emblem", "trigger_size": 40 / 224, "where": "bottom_right", "target": 0, "rate": 0.2,
    "rates": [0.01, 0.05, 0.1, 0.2], "update_ratios": [0.0, 0.5, 0.7, 0.9], "flip_rate": 0.2,
    # transfer
    "methods": METHODS, "ratio_methods": ["fine_tune", "mag", "divmag"],  # run at every update ratio
    "mag_ratio": 0.5, "mag_ratios": [0.05, 0.5, 0.8], "divmag_fraction": 0.05, "prune_ratio": 0.5,
    "flip_methods": ["fine_tune", "divmag", "fine_pruning"],
    # your own public pretrained network in place of `base` (lib.evaluate.own_teacher: {"factory": "pkg.mod:fn",
    # "weights": FILE, "norm": ...} or {"arch": NAME, "weights": FILE}); its findings are reported, not asserted
    "yours": None,
    "batch_size": 64,  # every training run (the authors' batch)
    "seed": 0,
    # the headline: planted teacher ASR >= min_asr at clean accuracy within clean_margin of the
    # unpoisoned teacher; survival and defence findings need asr_margin between the rates compared
    "min_asr": 0.9, "clean_margin": 0.05, "asr_margin": 0.2,
}
RECIPE = {
    "smoke": {**_COMMON,
              # the attacker plants in ~110 iterations (the authors: 10,000), so at a larger lr
              # with momentum (fit's one-cycle defaults) than the authors' 5e-3
              "teacher_epochs": 12, "teacher_kw": {"lr": 0.05, "head_lr_mult": 10.0},
              # the victim: the authors' optimiser (lr 5e-3 cosine, momentum 0, weight decay 1e-4,
              # head at 10x, batch 64) for 5 epochs (45 iterations; the authors: 10,000)
              "student_epochs": 5, "fit_kw": {"lr": 0.005, "momentum": 0.0, "weight_decay": 1e-4,
                                              "schedule": "cosine", "head_lr_mult": 10.0},
              # divmag's trial: the authors' 3,000 of 10,000 iterations, lr 5e-3, momentum 0.9, no decay
              "trial_epochs": 2, "trial_kw": {"lr": 0.005, "momentum": 0.9, "weight_decay": 0.0},
              # re-training and Renofeation at notebook 02's smoke settings (Renofeation shortened)
              "retrain_epochs": 12, "retrain_kw": {"lr": 0.1},
              "distill_epochs": 8, "swa_epochs": 2,
              "renofeation_kw": {"lr": 0.2, "swa_lr": 0.1, "feat_weight": 5.0, "dropout": 0.1, "beta": 0.01},
              # asserted: the backdoor survives into a new task. Reported, not asserted: survives_targeted,
              # retrain_removes, renofeation_removes: over 10 plantings each held, but how much backdoor
              # survives fine-tuning varies so much between plantings that each is predicted to fail
              # more often than one run in a hundred (docs/reproducibility.md)
              "asserted": ["survives_new_task"]},
}
# the check on real photographs (CPU-sized): the shared GTSRB subset planted on the team's real
# CIFAR-10 ResNet-20, victims on the other half of GTSRB and on the shared CIFAR-10 subset (scored on
# CIFAR-10's official test split: the teacher learnt the training split the subset is drawn from)
# (1,290 images a half: 20 iterations an epoch, so 8 teacher epochs plant in 160 iterations)
# The victim fine-tunes for 20 epochs at lr 0.01 with momentum 0.9: the authors' optimiser for 5
# epochs (the smoke budget) left the fine-tuned victim far below its clean control, where neither a
# surviving nor a removed backdoor means anything (measurements/05_real_victim_budget.csv, written by
# python -m lib.studies.backdoor_real). Re-training and Renofeation are budgeted the same way, in that
# table: smoke's 8 epochs of re-training and 6 + 1 of Renofeation left them far below the control;
# re-training trains 40 epochs, and Renofeation distils stages 1-2 only for 26 + 6 epochs (notebook
# 02's real-data finding: distilling the last stage costs the clean accuracy). The asserts keep
# smoke's margins; the profile asserts the findings whose 95% interval cleared them in the first whole
# real run of notebook 05 (the planted teacher fires; on the new task the trigger still costs the
# victim its labels); the others are reported (docs/results_real.md once published)
# The teachers and every victim that starts from the teacher's weights train under bf16 autocast where
# the CPU runs bf16 natively ("amp": "auto"; fp32 elsewhere, evaluation always fp32): the fine-tuned
# victim stayed within 1 point of fp32 over paired seeds at about 1.5x the speed. Re-training and
# Renofeation (from random weights) stay fp32: over the same seeds re-training's interval reached past
# -1 point (benchmarks/bench_precision_real.py, docs/performance.md)
_BF16 = {"amp": "auto"}
RECIPE["real"] = {**RECIPE["smoke"], "dataset": "gtsrb_shared", "new_dataset": "cifar10_folder",
                  "base": "resnet20_shared", "per_class_train": 30, "new_per_class_train": 100,
                  "teacher_epochs": 8, "student_epochs": 20, "teacher_kw": {**RECIPE["smoke"]["teacher_kw"], **_BF16},
                  "fit_kw": {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "cosine",
                             "head_lr_mult": 10.0, **_BF16},
                  "trial_kw": {**RECIPE["smoke"]["trial_kw"], **_BF16},
                  "retrain_epochs": 40,
                  "distill_epochs": 26, "swa_epochs": 6,
                  "renofeation_kw": {**RECIPE["smoke"]["renofeation_kw"], "stages": ["layer1_2", "layer2_2"]},
                  # the sweeps at their ends (each point is a teacher and its students at these budgets):
                  # no masked planting and the largest update ratio; a small poison rate and the recipe's.
                  # The full sweeps took half the notebook's time (docs/performance.md)
                  "update_ratios": [0.0, 0.9], "rates": [0.05, 0.2],
                  # label flipping read through fine-tuning only: in real-s49 divmag and fine-pruning
                  # students of both teachers were within a point of it (four students fewer)
                  "flip_methods": ["fine_tune"],
                  "asserted": ["survives_new_task"]}
# the authors' setting (GPU-sized): ImageNet ResNet-18 planted on GTSRB at 224 px; their 10,000
# iterations at batch 64 over GTSRB's 39,209 training images are 16 epochs (the new task gets as
# many epochs, not iterations); divmag's 3,000-iteration trial 5; re-training (retrain.sh) 30,000
# iterations at lr 1e-2, weight decay 5e-3, momentum 0.9; Renofeation 90,000 iterations, feature
# weight 5, dropout 0.1 (their backdoor script has no SWA stage: one SWA epoch here)
_AUTHORS = {"lr": 0.005, "momentum": 0.0, "weight_decay": 1e-4, "schedule": "cosine", "head_lr_mult": 10.0}
RECIPE["full"] = {**_COMMON, "dataset": "gtsrb", "new_dataset": "mit67", "base": "imagenet_resnet18", "size": 224,
                  "teacher_epochs": 16, "teacher_kw": _AUTHORS, "student_epochs": 16, "fit_kw": _AUTHORS,
                  "trial_epochs": 5, "trial_kw": {**_AUTHORS, "momentum": 0.9, "weight_decay": 0.0},
                  "retrain_epochs": 49, "retrain_kw": {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-3,
                                                       "schedule": "cosine"},
                  "distill_epochs": 147, "swa_epochs": 1,
                  "renofeation_kw": {"lr": 0.01, "swa_lr": 0.005, "feat_weight": 5.0, "dropout": 0.1, "beta": 0.01,
                                     "momentum": 0.9, "weight_decay": 5e-3, "schedule": "cosine"},
                  "asserted": ["survives_targeted", "retrain_removes"]}


def recipe(profile: str = "smoke", **overrides) -> dict:
    """Notebook 05's recipe for ``profile`` with ``overrides`` (``None`` keeps the recipe's), with
    the default recipes of the notebooks it needs (``cfg["needs"]``: :func:`lib.studies.with_needs`)."""
    return with_needs(_recipe(RECIPE, profile, **overrides), NEEDS, profile)


PREFIX, NEEDS = "bd", ("01",)  # notebook parameters bd_<key>; base A of notebook 01
PARAMS = notebook_params(PREFIX, RECIPE)


def check(cfg: dict) -> str | None:
    """The recipe's cross-key rules (checked before any notebook runs): every method list names
    known methods, the trigger is a known one and the target class is one of the teacher's."""
    for key in ("methods", "ratio_methods", "flip_methods"):
        unknown = sorted(set(cfg[key]) - set(METHODS))
        if unknown:
            return f"bd_{key} has unknown methods {unknown}; known: {METHODS}"
    if cfg["trigger"] not in ("emblem", "badnets", "blended"):
        return f"bd_trigger must be 'emblem', 'badnets' or 'blended', got {cfg['trigger']!r}"
    if not 0 <= cfg["target"] < cfg["teacher_classes"]:
        return f"bd_target {cfg['target']} is not one of the teacher's {cfg['teacher_classes']} classes"
    return None


def rate_figure(rates):
    """ASR (BackdoorBench) against the poison rate, one line per model of
    :func:`lib.studies.backdoor_report.rate_table` (the teacher and its fine-tuned student), each
    point with its 95% Wilson interval over the triggered non-target test images."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for (model, g), mk in zip(rates.groupby("model", sort=False), "osD^v"):
        ax.errorbar(g["rate"] * 100, g["asr_bb"] * 100, yerr=[(g["asr_bb"] - g["asr_bb_low"]) * 100,
                                                             (g["asr_bb_high"] - g["asr_bb"]) * 100],
                    marker=mk, capsize=3, label=model)
    ticks = sorted(set(rates["rate"]))
    ax.set(xscale="log", xlabel="poison rate (% of the teacher's training images)", ylabel="ASR, BackdoorBench (%)",
           ylim=(0, 102), title=f"ASR vs poison rate (n={_n(rates, 'asr_bb')} triggered test images, 95% Wilson)")
    ax.set_xticks([r * 100 for r in ticks], [f"{r * 100:g}" for r in ticks])
    ax.minorticks_off()
    ax.legend()
    fig.tight_layout()
    return fig


_MARKERS = "osD^vP"
_COLOURS = [0, 1, 2, 3, 4, 5, 9, 8, 7]  # the colour-blind palette without its second pink


def tradeoff_figure(transfer):
    """Clean accuracy against ASR, one point per student of
    :func:`lib.studies.backdoor_report.transfer_table` (colour: method, marker: update ratio), both
    95% Wilson intervals as error bars; the control (fine-tuning of the clean teacher) is the black
    star. Same task: BackdoorBench ASR; new task, where the target names an unrelated class: the
    untargeted rate. A defence is good where it sits at the control's corner (low ASR, high accuracy)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    t = transfer.copy()
    t["model"] = [("control (clean teacher)" if r.teacher == "clean" else f"mag {r.mag_ratio:g}" if r.method == "mag"
                   else r.method) for r in t.itertuples()]
    models = [m for m in dict.fromkeys(t["model"]) if not m.startswith("control")]
    colour = {m: f"C{i}" for i, m in zip(_COLOURS, models)} | {"control (clean teacher)": "k"}
    ratios = sorted(set(t["update_ratio"]))
    marker = {r: _MARKERS[i % len(_MARKERS)] for i, r in enumerate(ratios)}
    panels = [("same", "asr_bb", "ASR, BackdoorBench (%)"), ("new", "untargeted_asr", "untargeted rate (%)")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, (task, x, xlabel) in zip(axes, panels):
        d = t[t["task"] == task]
        for r in d.itertuples():
            r = r._asdict()
            ctrl = r["teacher"] == "clean"
            ax.errorbar(r[x] * 100, r["clean_acc"] * 100, xerr=_err(r, x), yerr=_err(r, "clean_acc"),
                        marker="*" if ctrl else marker[r["update_ratio"]], ms=16 if ctrl else 7,
                        mfc="none" if ctrl else None, mew=1.5 if ctrl else 1,  # hollow: points under it show
                        color=colour[r["model"]], capsize=2, lw=0.9, alpha=0.9, zorder=2 if ctrl else 3)
        ax.set(xlim=(-3, 103), ylim=(0, 100), xlabel=xlabel, ylabel="clean accuracy (%)",
               title=f"{task} task\n(n={_n(d, 'clean_acc')} clean test images; {_n(d, x)} triggered"
                     + (")" if task == "same" else ", clean-correct)"))
    handles = [Line2D([], [], color=c, marker="*" if c == "k" else "o", ms=10 if c == "k" else 6, ls="", label=m,
                      mfc="none" if c == "k" else c) for m, c in colour.items()]
    handles += [Line2D([], [], color="grey", marker=marker[r], ls="", label=f"update ratio {r:g}") for r in ratios]
    axes[1].legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("students of the backdoored teacher and the control: clean accuracy vs backdoor "
                 "(95% Wilson intervals)")
    fig.tight_layout()
    return fig


def _err(r: dict, m: str) -> list:
    """Matplotlib's ``[[below], [above]]`` error of column ``m`` of row ``r``, in percent."""
    return [[(r[m] - r[m + "_low"]) * 100], [(r[m + "_high"] - r[m]) * 100]]


def _n(table, m: str) -> str:
    """The ``n`` of column ``m`` in ``table``: one number, or the range when the rows differ."""
    lo, hi = int(table[m + "_n"].min()), int(table[m + "_n"].max())
    return f"{lo}" if lo == hi else f"{lo}-{hi}"
