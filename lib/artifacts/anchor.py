"""Notebook 08's BackdoorBench anchor models: the run's public base (notebook 05's ``base``)
planted at BackdoorBench's settings on a task of its own, and its clean control.

Under the recipe's ``anchor_recipe`` (notebook 05's recipe with those overrides on top; the
``real`` profile: BadNets at 10% on CIFAR-10 into the shared CIFAR-10 ResNet-20):

- the attacker's training set is the whole task (``dataset = "cifar10_shared"``: the shared
  CIFAR-10 subset's 5,000 training images; any other dataset: notebook 05's teacher set), and the
  defender's clean images are ``anchor_clean_fraction`` of it, as BackdoorBench draws its clean
  data from the training set (notebook 05's victims hold images of their own instead);
- the test set is CIFAR-10's official test split (the shared ResNet-20 learnt the training split the
  subset comes from), or notebook 05's teacher test set.

The planted teacher and the control are trained like notebook 05's teachers (``backdoor.plant``
and ``fine_tune`` with its teacher settings); they live in their own module, not as a dataset of
:mod:`lib.artifacts.backdoor`, so that adding the anchor left notebook 05's store keys, and every
model of notebooks 05, 06 and 08 built on them, as they were.
"""
from __future__ import annotations

from functools import lru_cache

from .. import backdoor
from ..data import DatasetNotFoundError, ImageSet, data_fingerprint, num_classes_of, stratified_subset, to_imageset
from ..data.real import load_real
from ..models import fresh_like, model_fingerprint
from ..paths import shared_dir
from ..store import Store
from ..store.versions import module_version
from ..transfer import finetune
from . import backdoor as bd_models
from .defences import backdoor_recipe

_SHARED = {"train": ("cifar10-jpg-subset", "train"), "test": ("cifar10-jpg-official-test", "test")}


def anchor_recipe(cfg: dict) -> dict:
    """Notebook 05's recipe (as notebook 08 resolved it) with ``anchor_recipe`` on top."""
    return {**backdoor_recipe(cfg), **(cfg.get("anchor_recipe") or {})}


@lru_cache(maxsize=4)
def _shared_cifar10(split: str) -> ImageSet:
    folder, sub = _SHARED[split]
    root = shared_dir() / "data" / folder if shared_dir() else None
    if root is None or not root.is_dir():
        raise DatasetNotFoundError(folder, root or f"../shared/data/{folder}",
                                   "the team's shared subsets (../shared/data/README.md)",
                                   "The anchor on CIFAR-10 needs ../shared; set anchor_recipe=None without it.")
    return to_imageset(load_real("cifar10_folder", sub, root=root), name=f"cifar10-anchor-{split}", progress=False)


def anchor_sets(cfg: dict) -> tuple[ImageSet, ImageSet]:
    """The anchor task's ``(train, test)`` under notebook 08's recipe ``cfg``."""
    bd = anchor_recipe(cfg)
    if bd["dataset"] == "cifar10_shared":
        return _shared_cifar10("train"), _shared_cifar10("test")
    return bd_models.teacher_data(bd)


def anchor_clean_set(cfg: dict) -> ImageSet:
    """The defender's clean images: ``anchor_clean_fraction`` of the anchor's training set (every
    class in proportion, at least one image each), drawn with ``clean_seed``."""
    train, _ = anchor_sets(cfg)
    n = max(num_classes_of(train), round(cfg["anchor_clean_fraction"] * len(train)))
    return stratified_subset(train, n, seed=cfg["clean_seed"])


def anchor_poisoned(cfg: dict) -> ImageSet:
    """The anchor's training set with ``rate`` of it triggered and relabelled ``target``."""
    bd = anchor_recipe(cfg)
    train, _ = anchor_sets(cfg)
    return backdoor.poison(train, bd_models.make_trigger(bd), bd["rate"], bd["target"], where=bd["where"],
                           seed=bd["seed"])


def _fit(bd: dict) -> dict:
    """Notebook 05's teacher training settings (as :mod:`lib.artifacts.backdoor` plants)."""
    return {**bd["teacher_kw"], "epochs": bd["teacher_epochs"], "seed": bd["seed"], "batch_size": bd["batch_size"]}


def _model(name: str, key: dict, base, train: ImageSet, make, store: Store | None):
    def train_fn(net):
        trained, hist = make()
        net.load_state_dict(trained.state_dict())
        return {"history": hist.to_dict("records")}

    key = {**key, "base": model_fingerprint(base), "data": data_fingerprint((train.images, train.labels)),
           "code": module_version(__name__)}
    model, meta = (store or Store()).model(name, key, lambda: fresh_like(base, num_classes_of(train)), train_fn)
    return model.eval(), meta


def anchor_teacher(cfg: dict, store: Store | None = None, *, keep=None, progress: bool = False):
    """The public base planted on :func:`anchor_poisoned` (``keep``: indices into it, the set a
    data curator left after a detector; ``None``: all). ``(model, meta)``."""
    bd = anchor_recipe(cfg)
    base = bd_models.public_base(bd, store, progress=progress)
    poisoned = anchor_poisoned(cfg)
    train = poisoned if keep is None else poisoned.subset(sorted(int(i) for i in keep), name="anchor-cleaned")
    key = {"kind": "anchor_backdoor", "trigger": bd_models.make_trigger(bd).config(), "where": bd["where"],
           "target": bd["target"], "rate": bd["rate"], "fit": _fit(bd)}
    return _model("anchor_teacher", key, base, train,
                  lambda: backdoor.plant(base, train, progress=progress, **_fit(bd)), store)


def anchor_control(cfg: dict, store: Store | None = None, *, progress: bool = False):
    """The public base fine-tuned on the anchor's clean training set with the same settings (the
    clean accuracy a planted teacher is compared with). ``(model, meta)``."""
    bd = anchor_recipe(cfg)
    base = bd_models.public_base(bd, store, progress=progress)
    train, _ = anchor_sets(cfg)
    return _model("anchor_control", {"kind": "anchor_clean", "fit": _fit(bd)}, base, train,
                  lambda: finetune.fine_tune(base, train, progress=progress, desc="anchor control", **_fit(bd)),
                  store)
