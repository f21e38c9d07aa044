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
method); this module holds the recipe, and :mod:`.backdoor_report` the tables, findings and
generated paragraphs.
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
              "asserted": ["survives_targeted", "survives_new_task", "retrain_removes", "renofeation_removes"]},
}
# the check on real photographs (CPU-sized): the shared GTSRB subset planted on the team's real
# CIFAR-10 ResNet-20, victims on the other half of GTSRB and on the shared CIFAR-10 subset
# (1,290 images a half: 20 iterations an epoch, so 8 teacher epochs plant in 160 iterations)
RECIPE["real"] = {**RECIPE["smoke"], "dataset": "gtsrb_shared", "new_dataset": "cifar10_folder",
                  "base": "resnet20_shared", "per_class_train": 30, "new_per_class_train": 100,
                  "teacher_epochs": 8, "retrain_epochs": 8, "distill_epochs": 6, "swa_epochs": 1}
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
