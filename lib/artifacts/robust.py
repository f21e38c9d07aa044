"""Notebook 03's models: the standard model and the adversarially trained ones (PGD-AT, FGSM-RS,
TRADES, ...), one per method and training seed, asked for through the store.

Each is the recipe's network (a small CNN at smoke, PreActResNet-18 in the full profile) trained
by :func:`lib.adversarial_training.adversarial_train` on :func:`robust_study_data`, its checkpoint
selected on :func:`robust_val_data` (never the test set). The store key holds the recipe's
training entries (the recipe without :data:`NOT_TRAINING`) and the computed code version, so an
evaluation setting (eps list, attacks, number of attacked images, seeds) retrains nothing and an
edit of any code behind the training retrains every model.
"""
from __future__ import annotations

import functools

import torch

from .. import data
from ..adversarial_training import adversarial_train
from ..data import ImageSet
from ..models import build
from ..paths import shared_dir
from ..store import Store
from ..store.versions import module_version
from ..train import random_translate
from .bases import class_data, halves

# entries of notebook 03's recipe that no training reads: the evaluation (eps list, attack
# ladder, attacked images, Square's queries), the methods the notebook trains, the headline floor,
# a checkpoint of the user's to evaluate beside the study's, the number of training seeds, and the
# recipes of other notebooks; left out of the key and of what training sees
NOT_TRAINING = ("eps_list", "pgd_steps", "apgd_steps", "square_queries", "n_eval", "methods", "min_pgd_at_gain",
                "weights", "weights_arch", "seeds", "needs", "large_eps_steps", "transfer_steps", "sweep_steps")


def training_recipe(recipe: dict) -> dict:
    """``recipe`` without :data:`NOT_TRAINING`: what a robust model's training reads and its key holds."""
    return {k: v for k, v in recipe.items() if k not in NOT_TRAINING}


def _classes(recipe: dict) -> list[int]:
    """The synsigns class ids of the task: the first ``n_classes`` of the source half A."""
    return halves(recipe["split_seed"])["A"][:recipe["n_classes"]]


def _real_root(recipe: dict):
    """Where the real dataset lives: ``data_root``; else the team's ``../shared/data/<shared_data>``
    (profile ``real``, the only one whose recipe has ``shared_data``); else the loader's default
    ``data/<name>``."""
    if recipe["data_root"]:
        return recipe["data_root"]
    if recipe.get("shared_data"):  # an entry of the real profile only
        shared = shared_dir()
        if shared is None or not (shared / "data" / recipe["shared_data"]).is_dir():
            raise FileNotFoundError(f"profile 'real' reads ../shared/data/{recipe['shared_data']} (the team's "
                                    "subsets), which is not beside this checkout: set adv_data_root to a copy of "
                                    "that layout, or WORKBOOK_SHARED to the shared folder")
        return shared / "data" / recipe["shared_data"]
    return None


@functools.lru_cache(maxsize=4)
def _real_split(dataset: str, root: str | None, split: str) -> ImageSet:
    """One split of a real dataset at its native size, as an in-memory ImageSet (read once per process)."""
    from ..data.real import load_real
    return data.to_imageset(load_real(dataset, split, root=root), name=f"{dataset}-{split}", progress=False)


def _real_sets(recipe: dict) -> tuple[ImageSet, ImageSet, ImageSet]:
    """Train, validation (``n_val`` training images held out, every class in proportion) and test
    sets of a real dataset at its native size: the first ``n_classes`` classes (None: all),
    ``per_class_train`` / ``per_class_test`` images per class (None: all)."""
    root = _real_root(recipe)
    root = None if root is None else str(root)
    train = _real_split(recipe["dataset"], root, "train")
    test = _real_split(recipe["dataset"], root, "test")
    if recipe["n_classes"] is not None and recipe["n_classes"] < train.num_classes:
        keep = list(range(recipe["n_classes"]))
        train, test = data.subset_classes(train, keep), data.subset_classes(test, keep)
    k = train.num_classes
    n_val = recipe["n_val"] if recipe["n_val"] is not None else recipe["per_class_val"] * k
    train, val = data.train_val_split(train, val_fraction=n_val / len(train), seed=recipe["split_seed"])
    if recipe["per_class_train"] is not None:
        train = data.stratified_subset(train, recipe["per_class_train"] * k, recipe["data_seed"])
    if recipe["per_class_test"] is not None:
        test = data.stratified_subset(test, recipe["per_class_test"] * k, recipe["data_seed"])
    return train, val, test


def robust_study_data(recipe: dict) -> tuple[ImageSet, ImageSet]:
    """Train/test sets of notebook 03's task under its ``recipe``. synsigns: the first
    ``n_classes`` classes of the source half A (the half base A is trained on), relabelled
    ``0..n_classes-1``; a real ``dataset``: see :func:`_real_sets`."""
    if recipe["dataset"] != "synsigns":
        train, _, test = _real_sets(recipe)
        return train, test
    classes = _classes(recipe)
    return class_data(classes, recipe["per_class_train"], recipe["per_class_test"], seed=recipe["data_seed"],
                      tag=f"A{len(classes)}")


def robust_val_data(recipe: dict) -> ImageSet:
    """The validation set that selects checkpoints, never the test set. synsigns:
    ``per_class_val`` images per class from its own validation draw (independent of the training
    and test images); real data: ``n_val`` held-out training images. All of them are used every
    epoch."""
    if recipe["dataset"] != "synsigns":
        return _real_sets(recipe)[1]
    classes = _classes(recipe)
    ds = data.load_synsigns("val", n=len(classes) * recipe["per_class_val"], seed=recipe["data_seed"],
                            classes=classes)
    return data.subset_classes(ds, classes, name=f"synsigns-A{len(classes)}-val")


def train_kw(method: str, recipe: dict) -> dict:
    """:func:`adversarial_train` keywords of ``method`` under ``recipe``: the recipe's epochs, lr and
    schedule, overridden by ``recipe["method_kw"][method]`` (the papers' schedules in ``full``)."""
    return {"epochs": recipe["epochs"], "lr": recipe["lr"], "schedule": recipe["schedule"],
            **(recipe["method_kw"] or {}).get(method, {})}


def build_model(recipe: dict, train: ImageSet):
    """The study's network for ``train`` (initial weights from the recipe's seed). On real data the
    model normalises with the training set's per-channel mean and std (inside the model, so eps
    stays in pixel units)."""
    kw = {"width": recipe["width"]} if recipe["arch"] == "small_cnn" and recipe["width"] else {}
    if recipe["dataset"] != "synsigns":
        x = train.float_images(torch.arange(min(len(train), 5000)))
        kw.update(mean=x.mean((0, 2, 3)).tolist(), std=x.std((0, 2, 3)).tolist())
    return build(recipe["arch"], train.num_classes, seed=recipe["seed"], **kw)


def _augment(recipe: dict):
    """The training augmentation: 2-pixel translations on synsigns; on real data CIFAR's 4-pixel
    crop, with flips where the dataset allows them (none for traffic signs)."""
    if recipe["dataset"] == "synsigns":
        return random_translate(2)
    from ..data.real import REAL_DATASETS
    return random_translate(4, flip=REAL_DATASETS[recipe["dataset"]].flip)


def robust_model(method: str, recipe: dict, store: Store | None = None, *, progress: bool = True,
                 which: str = "selected"):
    """The recipe's network (a small CNN at smoke) trained on :func:`robust_study_data` with ``method``
    (see :data:`lib.adversarial_training.METHODS`) through :func:`adversarial_train`, cached in the
    store under the method, the recipe's training entries and the code version.

    Checkpoints are selected on :func:`robust_val_data` (never the test set; PGD-10 on all its
    images each epoch): adversarially trained models keep their best-robust epoch (Rice et al.
    2020), the standard model its last epoch (selecting a standard model on robust accuracy would
    pick a weak early epoch and flatter the baseline's robustness; it is not attacked during
    training). ``which="last"`` returns the last epoch's weights instead (stored beside the
    selected ones by the same training run; for the standard model the two are the same).
    Returns ``(model, meta)`` with the history (incl. ``val_robust_acc`` and ``selected``)."""
    if which not in ("selected", "last"):
        raise ValueError(f"which must be 'selected' or 'last', got {which!r}")
    store = store or Store()
    cfg = training_recipe(recipe)
    train, _ = robust_study_data(cfg)
    val = robust_val_data(cfg)
    select = "last" if method == "standard" else "best_robust"
    key = {"method": method, "select": select, **cfg, "init": "seeded", "code": module_version(__name__)}
    last_key = key  # under its own name: robust_<method>_last

    def build_fn():  # initial weights from the recipe's seed
        return build_model(cfg, train)

    def train_fn(model):
        last = {}
        hist = adversarial_train(model, train, val, method, eps=cfg["eps"], batch_size=cfg["batch_size"],
                                 seed=cfg["seed"], augment=_augment(cfg), select=select, val_n=None, keep_last=last,
                                 progress=progress, **train_kw(method, cfg))
        meta = {"method": method, "recipe": cfg, "history": hist.to_dict("records"),
                "selected_epoch": hist.attrs.get("selected_epoch"), "stopped_epoch": hist.attrs.get("stopped_epoch"),
                "last_epoch": last["epoch"], "val_n": hist.attrs.get("val_n")}
        last_model = build_fn()
        last_model.load_state_dict(last["state"])
        store.save_model(f"robust_{method}_last", last_key, last_model, meta)
        return meta

    if which == "last":
        cached = store.has_model(f"robust_{method}_last", last_key)
        if not cached:
            store.model(f"robust_{method}", key, build_fn, train_fn, retrain=True)
        model = build_fn()
        return model.eval(), {**store.load_model(f"robust_{method}_last", last_key, model), "cached": cached}
    return store.model(f"robust_{method}", key, build_fn, train_fn)
