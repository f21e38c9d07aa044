"""Notebook 07's models: the AC-GAN and the four classifiers of the augmentation study (clean,
least-likely-class FGSM, GAN samples, unrestricted examples), and the data they train on.

The AC-GAN is trained with WGAN-GP (:func:`lib.gan.train_acgan`), checkpointed as it goes so that
a killed run resumes; the classifiers share one architecture, initialisation and budget and
differ only in what is mixed into every batch (half of it, weight 0.3). Smoke: five synsigns
classes at 16 px and a small CNN; full: CIFAR-100 with DenseNet-BC (:class:`DenseNetBC`). Each
model is trained once and then loaded, under a key built from the recipe entries its training
reads (the GAN's key holds the GAN's settings only, so a classifier setting never retrains the
GAN) and the computed code version of this module.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .. import data
from ..adversarial_training import LLFGSMMixLoss
from ..gan import (ACGANState, AuxClassifier, Critic, GeneratedMixLoss, Generator, gan_maker, train_acgan,
                   unrestricted_maker)
from ..models import archs, build
from ..store import Store
from ..store.versions import module_version
from ..train import fit, pick_device, random_translate
from .bases import class_data

# the classifiers' training sets: clean, + LL-FGSM, + GAN samples, + unrestricted examples
METHODS = ("clean", "fgsm", "gan", "unrestricted")
# entries of notebook 07's recipe that no training reads (how many samples and examples the
# evaluation crafts, its attacks and sizes, the headline margins, the recipes of other notebooks, the
# reader's own classifier):
# left out of what training sees, so a training setting cannot be dropped without a KeyError
NOT_TRAINING = ("per_class_samples", "per_class_unrestricted", "attack_steps", "eval_eps", "pgd_steps", "n_eval",
                "min_sample_acc", "max_unrestricted_acc", "min_aux_agree", "max_gan_clean_drop", "needs", "yours")


def training_recipe(recipe: dict) -> dict:
    """``recipe`` without :data:`NOT_TRAINING`: what the GAN's and the classifiers' training reads."""
    return {k: v for k, v in recipe.items() if k not in NOT_TRAINING}


def study_data(recipe: dict) -> tuple[data.ImageSet, data.ImageSet]:
    """Train and test sets: the recipe's synsigns classes relabelled ``0..K-1`` (smoke), the shared
    CIFAR-10 subset (real, ``cifar10_shared``) or CIFAR-100 from ``data/cifar100`` (full;
    :class:`lib.data.DatasetNotFoundError` names the layout when absent),
    where the recipe's ``classes`` (None: all, else relabelled ``0..K-1``) and per-class counts
    (None: all; else a stratified draw with ``data_seed``) apply too."""
    if recipe["dataset"] == "synsigns":
        return class_data(recipe["classes"], recipe["per_class_train"], recipe["per_class_test"],
                          size=recipe["size"], seed=recipe["data_seed"], tag="unrestricted")
    from ..data.real import load_real
    out = []
    for split, per_class in (("train", recipe["per_class_train"]), ("test", recipe["per_class_test"])):
        if recipe["dataset"] == "cifar10_shared":  # real: the team's CIFAR-10 subset at the recipe's size
            raw = load_real("cifar10_folder", split, root=_shared_cifar10(), size=recipe["size"])
        else:
            raw = load_real(recipe["dataset"], split)
        ds = data.to_imageset(raw, name=f"{recipe['dataset']}-{split}")
        if recipe["classes"] is not None:
            ds = data.subset_classes(ds, recipe["classes"])
        if per_class is not None:
            ds = data.stratified_subset(ds, per_class * ds.num_classes, recipe["data_seed"])
        out.append(ds)
    return tuple(out)


def _shared_cifar10():
    """``../shared/data/cifar10-jpg-subset`` (the real profile's images), or a FileNotFoundError
    that says where it belongs. The models here train from scratch, so its test folder (drawn from
    CIFAR-10's training split) holds images they never saw."""
    from ..paths import shared_dir

    root = shared_dir() / "data/cifar10-jpg-subset" if shared_dir() else None
    if root is None or not root.is_dir():
        raise FileNotFoundError("notebook 07's real recipe reads ../shared/data/cifar10-jpg-subset: put the team's "
                                "shared folder beside the project (or set WORKBOOK_SHARED)")
    return root


class DenseNetBC(nn.Module):
    """DenseNet-BC for 32-px images (Huang et al. 2017; the study's depth 100, growth 12,
    compression 0.5: three dense blocks of 16 bottleneck layers, a 3x3 stem of 24 filters), built
    from torchvision's DenseNet with its ImageNet stem replaced; ImageNet normalisation inside, so
    it takes pixels in [0, 1] like every classifier here. Full profile only."""

    def __init__(self, num_classes: int):
        super().__init__()
        from torchvision.models import DenseNet
        net = DenseNet(growth_rate=12, block_config=(16, 16, 16), num_init_features=24, bn_size=4,
                       num_classes=num_classes)
        net.features.conv0 = nn.Conv2d(3, 24, 3, padding=1, bias=False)
        net.features.pool0 = nn.Identity()
        self.net = net
        self.register_buffer("mean", torch.tensor(archs.IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(archs.IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


def build_classifier(recipe: dict, num_classes: int) -> nn.Module:
    """The study's classifier, initial weights from the recipe's seed."""
    if recipe["arch"] == "densenet_bc100":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe["seed"])
            return DenseNetBC(num_classes)
    return build(recipe["arch"], num_classes, width=recipe["clf_width"], seed=recipe["seed"])


def gan_key(recipe: dict) -> dict:
    """The AC-GAN's store key: the entries of notebook 07's ``recipe`` that its data and training
    read (not ``gan_checkpoint_every``, which changes when it saves, not what it learns; not the
    test set's size, which it never sees) and the code version of this module."""
    cfg = training_recipe(recipe)
    return {"dataset": cfg["dataset"], "classes": cfg["classes"], "size": cfg["size"],
            "per_class_train": cfg["per_class_train"], "data_seed": cfg["data_seed"], "seed": cfg["seed"],
            "gan_z_dim": cfg["gan_z_dim"], "gan_width": cfg["gan_width"], "gan_steps": cfg["gan_steps"],
            "gan_batch": cfg["gan_batch"], "gan_n_critic": cfg["gan_n_critic"], "gan_lr": cfg["gan_lr"],
            "gan_dropout": cfg["gan_dropout"], "gan_aux_weight_g": cfg["gan_aux_weight_g"],
            "code": module_version(__name__)}


def gan_model(recipe: dict, store: Store | None = None, *, progress: bool = True, stop_at: int | None = None):
    """The AC-GAN of notebook 07's ``recipe``, trained with :func:`lib.gan.train_acgan` and cached
    in the store.

    A checkpoint (both networks and optimisers) is saved every ``gan_checkpoint_every`` steps under
    ``gan_acgan_ckpt``; a killed run resumes from it. ``stop_at`` stops early on purpose (only the
    checkpoint is then written). Returns ``(G, aux, meta)`` with the loss history in ``meta``."""
    cfg = training_recipe(recipe)
    store = store or Store()
    key = gan_key(cfg)
    train, _ = study_data(cfg)

    def build_fn():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg["seed"])
            return ACGANState(Generator(train.num_classes, cfg["gan_z_dim"], cfg["gan_width"], cfg["size"]),
                              Critic(train.num_classes, cfg["gan_width"], cfg["gan_dropout"]))

    def save(state, history):
        store.save_model("gan_acgan_ckpt", key, state, {"history": history})

    def train_fn(state):
        history, resumed = [], 0
        if store.has_model("gan_acgan_ckpt", key):
            history = store.load_model("gan_acgan_ckpt", key, state)["history"]
            resumed = state.step
            print(f"[gan] resuming from the checkpoint at step {resumed}")
        hist = train_acgan(state, train, cfg["gan_steps"], n_critic=cfg["gan_n_critic"], batch_size=cfg["gan_batch"],
                           lr=cfg["gan_lr"], aux_weight_g=cfg["gan_aux_weight_g"], seed=cfg["seed"],
                           history=history, checkpoint_every=cfg["gan_checkpoint_every"], save=save,
                           stop_at=stop_at, progress=progress)
        if stop_at is not None and stop_at < cfg["gan_steps"]:
            raise InterruptedError(f"stopped at step {stop_at} on request; the checkpoint holds the state")
        return {"history": hist.to_dict("records"), "resumed_from": resumed, "classes": train.classes}

    state, meta = store.model("gan_acgan", key, build_fn, train_fn)
    state.to(pick_device()).eval()
    return state.G, AuxClassifier(state.D).eval(), meta


class StudyLLFGSM(LLFGSMMixLoss):
    """The study's FGSM arm: :class:`lib.adversarial_training.LLFGSMMixLoss` (least-likely-class FGSM
    on half the batch, weight 0.3) with one eps per *batch* from U(1e-4, eps_max) (the study's
    ``fgsm_tf_11``) instead of Kurakin et al.'s truncated normal per image."""

    def sample_eps(self, k: int, device) -> torch.Tensor:
        e = float(torch.empty(()).uniform_(1e-4, self.eps_max))
        return torch.full((k,), e, device=device)


def attack_kw(recipe: dict) -> dict:
    """The latent-optimisation settings (:func:`lib.gan.unrestricted_attack`'s keywords but the
    steps) of notebook 07's ``recipe``: the unrestricted arm's and the evaluation attack's."""
    return {"eps": recipe["attack_eps"], "eps_z": recipe["attack_eps_z"], "z_bound": recipe["attack_z_bound"],
            "lambda_z": recipe["attack_lambda_z"], "lambda_aux": recipe["attack_lambda_aux"],
            "lr": recipe["attack_lr"], "noise": recipe["attack_noise"]}


def training_loss(method: str, recipe: dict, G=None, aux=None):
    """The ``fit`` loss of one augmentation arm (``None`` = cross-entropy on clean batches)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    cfg = training_recipe(recipe)
    if method == "clean":
        return None
    if method == "fgsm":
        return StudyLLFGSM(eps_max=cfg["fgsm_eps_max"], adv_fraction=cfg["adv_fraction"], adv_weight=cfg["adv_weight"])
    make = gan_maker(G) if method == "gan" else unrestricted_maker(G, aux, cfg["aug_steps"], **attack_kw(cfg))
    return GeneratedMixLoss(make, cfg["adv_fraction"], cfg["adv_weight"], name=method)


def classifier_key(method: str, recipe: dict) -> dict:
    """The store key of the ``method`` classifier: the entries of notebook 07's ``recipe`` that its
    data, network and training read (the GAN arms: the GAN's key too; the unrestricted arm: the
    latent optimisation's settings) and the code version of this module."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    cfg = training_recipe(recipe)
    key = {"method": method, "dataset": cfg["dataset"], "classes": cfg["classes"], "size": cfg["size"],
           "per_class_train": cfg["per_class_train"], "data_seed": cfg["data_seed"], "seed": cfg["seed"],
           "arch": cfg["arch"], "clf_width": cfg["clf_width"], "clf_epochs": cfg["clf_epochs"],
           "clf_lr": cfg["clf_lr"], "clf_batch": cfg["clf_batch"], "translate": cfg["translate"],
           "adv_fraction": cfg["adv_fraction"], "adv_weight": cfg["adv_weight"], "code": module_version(__name__)}
    if method == "fgsm":
        key["fgsm_eps_max"] = cfg["fgsm_eps_max"]
    if method in ("gan", "unrestricted"):
        key["gan"] = gan_key(cfg)
    if method == "unrestricted":
        key.update(aug_steps=cfg["aug_steps"], attack=attack_kw(cfg))
    return key


def classifier_model(method: str, recipe: dict, store: Store | None = None, G=None, aux=None, *,
                     progress: bool = True):
    """A classifier trained with the ``method`` augmentation (see :data:`METHODS`) under notebook
    07's ``recipe``, cached in the store (the GAN arms need the generator ``G`` and its ``aux``
    classifier: :func:`gan_model`). Returns ``(model, meta)``."""
    cfg = training_recipe(recipe)
    key = classifier_key(method, cfg)
    if method in ("gan", "unrestricted") and (G is None or aux is None):
        raise ValueError(f"method {method!r} needs the generator G and its aux classifier")
    store = store or Store()
    train, test = study_data(cfg)

    def train_fn(model):
        hist = fit(model, train, val=test, epochs=cfg["clf_epochs"], lr=cfg["clf_lr"], batch_size=cfg["clf_batch"],
                   loss=training_loss(method, cfg, G, aux), seed=cfg["seed"],
                   augment=random_translate(cfg["translate"]) if cfg["translate"] else None,
                   progress=progress, desc=f"classifier {method}")
        return {"method": method, "history": hist.to_dict("records")}

    model, meta = store.model(f"gan_clf_{method}", key, lambda: build_classifier(cfg, train.num_classes), train_fn)
    return model.eval(), meta
