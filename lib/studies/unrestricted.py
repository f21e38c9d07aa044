"""Study of notebook 07: unrestricted adversarial examples from a class-conditional GAN, and
training-set augmentation with them (the CS236 project, ``../shared/PROTOCOLS.md`` section 3).

An AC-GAN trained with WGAN-GP (:mod:`lib.gan`) makes class-conditional samples; an independently
trained classifier's accuracy on them measures their quality; latent optimisation turns them into
unrestricted adversarial examples; four classifiers of the same architecture and budget are
trained on clean data, with least-likely-class FGSM, with GAN samples and with unrestricted
examples mixed into every batch (half of it, weight 0.3). The smoke profile uses five synsigns
classes that differ in shape, colour scheme and glyph at 16 px (a generator step at 32 px costs
three times as much, too many for a few-minute CPU budget), a GAN 16 channels wide and a small CNN,
so that a 2-core CPU trains everything in minutes; the full profile is the study's
CIFAR-100 with DenseNet-BC (depth 100, growth 12) and the study's GAN (width 256, 100k steps).
"""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn as nn

from .. import data as D
from .. import gan as _gan
from .. import train as _train
from ..adversarial_training import LLFGSMMixLoss
from ..cache import cached
from ..gan import (ACGANState, AuxClassifier, Critic, GeneratedMixLoss, Generator, gan_maker, generate,
                   UnrestrictedResult, unrestricted_batches, unrestricted_maker)
from ..metrics import accuracy_with_interval, binomial_interval, bootstrap_interval
from ..models import archs, build, classifier as _classifier
from ..robustness import eps_sweep
from ..store import Store, code_version
from ..train import fit, random_translate
from . import bases
from . import recipe as _recipe

METHODS = ("clean", "fgsm", "gan", "unrestricted")
# synsigns ids: circle/red-white/bar, triangle/blue-white/cross, square/yellow-black/dot,
# diamond/green-white/arrow, octagon/orange-blue/bar (every factor differs between any two)
SMOKE_CLASSES = [0, 25, 50, 75, 96]
_SMOKE = {
    "dataset": "synsigns", "classes": SMOKE_CLASSES, "size": 16, "per_class_train": 200, "per_class_test": 60,
    "data_seed": 0, "seed": 0,
    # AC-GAN (the study: z 256, width 256, 100k steps, batch 64; n_critic 5, Adam 2e-4 (0, 0.9))
    # smoke: 16 channels, an aux head without dropout (dropout 0.5 on 16 features stalls it), a 5x higher
    # lr and the generator's aux weight 1 (not 0.1), so that the class conditioning is learnt in about a
    # thousand steps on a CPU (README: the tuning runs)
    "gan_z_dim": 64, "gan_width": 16, "gan_steps": 600, "gan_batch": 32, "gan_n_critic": 5, "gan_lr": 1e-3,
    "gan_dropout": 0.0, "gan_aux_weight_g": 1.0, "gan_checkpoint_every": 100,
    # classifiers: same architecture and budget for every training set
    "arch": "small_cnn", "clf_width": 16, "clf_epochs": 6, "clf_lr": 0.1, "clf_batch": 64, "translate": 2,
    # augmentation (the study: half of each batch, weight 0.3; LL-FGSM eps ~ U(1e-4, 0.1) on [-1, 1] images,
    # i.e. 0.05 in pixels; unrestricted examples from 500 latent steps per batch)
    "adv_fraction": 0.5, "adv_weight": 0.3, "fgsm_eps_max": 0.05, "aug_steps": 5,
    # latent optimisation (the study: 500 steps of SGD 0.1, eps = eps_z = 0.1, lambdas 0.1, noise 0.01)
    "attack_steps": 100, "attack_lr": 0.1, "attack_eps": 0.1, "attack_eps_z": 0.1, "attack_z_bound": 1.0,
    "attack_lambda_z": 0.1, "attack_lambda_aux": 0.1, "attack_noise": 0.01,
    # evaluation
    "per_class_samples": 40,      # clean GAN samples per class (quality and the augmentation table)
    "per_class_unrestricted": 10,  # unrestricted examples per class, crafted against each model
    "eval_eps": 8 / 255, "pgd_steps": 10, "n_eval": 300,
    # headline margins
    "min_sample_acc": 0.6,        # the clean classifier on clean GAN samples (chance 0.2)
    "max_unrestricted_acc": 0.1,  # ... after latent optimisation: near zero
    "min_aux_agree": 0.5,         # the aux classifier still says y for most of them
    # GAN augmentation's clean-accuracy cost: the check fails when the paired interval of the drop lies
    # wholly above this (six smoke trainings, 2026-12-02: 2.3-6.0 points, mean 4.1; see clean_drop)
    "max_gan_clean_drop": 0.05,
}
_FULL = {**_SMOKE, "dataset": "cifar100", "classes": None, "per_class_train": None, "per_class_test": None,
         "size": 32, "gan_z_dim": 256, "gan_width": 256, "gan_steps": 100_000, "gan_batch": 64, "gan_lr": 2e-4,
         "gan_dropout": 0.5, "gan_aux_weight_g": 0.1, "gan_checkpoint_every": 1000,
         "arch": "densenet_bc100", "clf_epochs": 100, "clf_batch": 64, "translate": 0, "aug_steps": 500,
         "attack_steps": 500, "per_class_samples": 10, "per_class_unrestricted": 2, "n_eval": 1000,
         "min_sample_acc": 0.5}
RECIPE = {"smoke": _SMOKE, "full": _FULL}
PARAMS = {"gan_classes": "classes", "gan_per_class_train": "per_class_train", "gan_steps": "gan_steps",
          "gan_width": "gan_width", "gan_clf_epochs": "clf_epochs", "gan_aug_steps": "aug_steps",
          "gan_attack_steps": "attack_steps", "gan_per_class_samples": "per_class_samples",
          "gan_per_class_unrestricted": "per_class_unrestricted", "gan_n_eval": "n_eval", "gan_seed": "seed"}
GAN_KEYS = ("dataset", "classes", "size", "per_class_train", "data_seed", "seed", "gan_z_dim", "gan_width",
            "gan_steps", "gan_batch", "gan_n_critic", "gan_lr", "gan_dropout", "gan_aux_weight_g")
CLF_KEYS = ("dataset", "classes", "size", "per_class_train", "data_seed", "seed", "arch", "clf_width",
            "clf_epochs", "clf_lr", "clf_batch", "translate", "adv_fraction", "adv_weight")


def recipe(profile: str = "smoke", **overrides) -> dict:
    """Notebook 07's recipe for ``profile`` with ``overrides`` (``None`` keeps the recipe's)."""
    return _recipe(RECIPE, profile, **overrides)


def study_data(cfg: dict) -> tuple[D.ImageSet, D.ImageSet]:
    """Train and test sets: the recipe's synsigns classes relabelled ``0..K-1`` (smoke), or CIFAR-100
    from ``data/cifar100`` (full; :class:`lib.data.DatasetNotFoundError` names the layout when absent)."""
    if cfg["dataset"] == "synsigns":
        return bases.class_data(cfg["classes"], cfg["per_class_train"], cfg["per_class_test"], size=cfg["size"],
                                seed=cfg["data_seed"], tag="unrestricted")
    from ..data.real import load_real
    return tuple(D.to_imageset(load_real(cfg["dataset"], split), name=f"{cfg['dataset']}-{split}")
                 for split in ("train", "test"))


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


def build_classifier(cfg: dict, num_classes: int) -> nn.Module:
    """The study's classifier, initial weights from the recipe's seed."""
    if cfg["arch"] == "densenet_bc100":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg["seed"])
            return DenseNetBC(num_classes)
    return build(cfg["arch"], num_classes, width=cfg["clf_width"], seed=cfg["seed"])


def _gan_key(cfg: dict) -> dict:
    return {k: cfg[k] for k in GAN_KEYS}


def gan_model(cfg: dict, store: Store | None = None, *, progress: bool = True, stop_at: int | None = None):
    """The AC-GAN of the recipe, trained with :func:`lib.gan.train_acgan` and cached in the store.

    A checkpoint (both networks and optimisers) is saved every ``gan_checkpoint_every`` steps under
    ``gan_acgan_ckpt``; a killed run resumes from it. ``stop_at`` stops early on purpose (only the
    checkpoint is then written). Returns ``(G, aux, meta)`` with the loss history in ``meta``."""
    store = store or Store()
    train, _ = study_data(cfg)
    key = _gan_key(cfg)
    ckpt_key = {**key, "code": code_version(*GAN_CODE)}

    def build_fn():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg["seed"])
            return ACGANState(Generator(train.num_classes, cfg["gan_z_dim"], cfg["gan_width"], cfg["size"]),
                              Critic(train.num_classes, cfg["gan_width"], cfg["gan_dropout"]))

    def save(state, history):
        store.save_model("gan_acgan_ckpt", ckpt_key, state, {"history": history})

    def train_fn(state):
        history, resumed = [], 0
        if store.has_model("gan_acgan_ckpt", ckpt_key):
            history = store.load_model("gan_acgan_ckpt", ckpt_key, state)["history"]
            resumed = state.step
            print(f"[gan] resuming from the checkpoint at step {resumed}")
        hist = _gan.train_acgan(state, train, cfg["gan_steps"], n_critic=cfg["gan_n_critic"],
                                batch_size=cfg["gan_batch"], lr=cfg["gan_lr"], aux_weight_g=cfg["gan_aux_weight_g"],
                                seed=cfg["seed"], history=history,
                                checkpoint_every=cfg["gan_checkpoint_every"], save=save, stop_at=stop_at,
                                progress=progress)
        if stop_at is not None and stop_at < cfg["gan_steps"]:
            raise InterruptedError(f"stopped at step {stop_at} on request; the checkpoint holds the state")
        return {"history": hist.to_dict("records"), "resumed_from": resumed, "classes": train.classes}

    state, meta = store.model("gan_acgan", key, build_fn, train_fn, code=GAN_CODE)
    state.to(_train.pick_device()).eval()
    return state.G, AuxClassifier(state.D).eval(), meta


class StudyLLFGSM(LLFGSMMixLoss):
    """The study's FGSM arm: :class:`lib.adversarial_training.LLFGSMMixLoss` (least-likely-class FGSM
    on half the batch, weight 0.3) with one eps per *batch* from U(1e-4, eps_max) (the study's
    ``fgsm_tf_11``) instead of Kurakin et al.'s truncated normal per image."""

    def sample_eps(self, k: int, device) -> torch.Tensor:
        e = float(torch.empty(()).uniform_(1e-4, self.eps_max))
        return torch.full((k,), e, device=device)


def _attack_kw(cfg: dict) -> dict:
    return {"eps": cfg["attack_eps"], "eps_z": cfg["attack_eps_z"], "z_bound": cfg["attack_z_bound"],
            "lambda_z": cfg["attack_lambda_z"], "lambda_aux": cfg["attack_lambda_aux"], "lr": cfg["attack_lr"],
            "noise": cfg["attack_noise"]}


def training_loss(method: str, cfg: dict, G=None, aux=None):
    """The ``fit`` loss of one augmentation arm (``None`` = cross-entropy on clean batches)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "clean":
        return None
    if method == "fgsm":
        return StudyLLFGSM(eps_max=cfg["fgsm_eps_max"], adv_fraction=cfg["adv_fraction"], adv_weight=cfg["adv_weight"])
    make = gan_maker(G) if method == "gan" else unrestricted_maker(G, aux, cfg["aug_steps"], **_attack_kw(cfg))
    return GeneratedMixLoss(make, cfg["adv_fraction"], cfg["adv_weight"], name=method)


def classifier_model(method: str, cfg: dict, store: Store | None = None, G=None, aux=None, *, progress: bool = True):
    """A classifier trained with the ``method`` augmentation (see :data:`METHODS`), cached in the
    store (the GAN arms' keys include the GAN's). Returns ``(model, meta)``."""
    store = store or Store()
    train, test = study_data(cfg)
    key = {"method": method, **{k: cfg[k] for k in CLF_KEYS}}
    if method == "fgsm":
        key["fgsm_eps_max"] = cfg["fgsm_eps_max"]
    if method in ("gan", "unrestricted"):
        if G is None or aux is None:
            raise ValueError(f"method {method!r} needs the generator G and its aux classifier")
        key["gan"] = {**_gan_key(cfg), "code": code_version(*GAN_CODE)}
    if method == "unrestricted":
        key.update(aug_steps=cfg["aug_steps"], attack=_attack_kw(cfg))

    def train_fn(model):
        hist = fit(model, train, val=test, epochs=cfg["clf_epochs"], lr=cfg["clf_lr"], batch_size=cfg["clf_batch"],
                   loss=training_loss(method, cfg, G, aux), seed=cfg["seed"],
                   augment=random_translate(cfg["translate"]) if cfg["translate"] else None,
                   progress=progress, desc=f"classifier {method}")
        return {"method": method, "history": hist.to_dict("records")}

    model, meta = store.model(f"gan_clf_{method}", key, lambda: build_classifier(cfg, train.num_classes), train_fn,
                              code=CLF_CODE)
    return model.eval(), meta


_RESULT = ("images", "samples", "clean", "z", "z0", "y", "pred", "aux_pred", "success")


def _curve_tensors(G, aux, classifier, y, steps: int, seed: int, attack: dict) -> dict[str, torch.Tensor]:
    """:func:`lib.gan.unrestricted_batches` as named tensors for the store (the trace's columns
    as ``trace.<position>.<name>``, so their order comes back)."""
    r = unrestricted_batches(G, aux, classifier, y, steps, seed=seed, **attack)
    trace = {f"trace.{i}.{c}": torch.tensor(r.trace[c].to_numpy()) for i, c in enumerate(r.trace.columns)}
    return {**{k: getattr(r, k) for k in _RESULT}, **trace}


def attack_curve(G, aux, classifier, cfg: dict, steps: int | None = None):
    """Latent optimisation against ``classifier`` on ``per_class_unrestricted`` codes per class:
    the :class:`lib.gan.UnrestrictedResult` (its ``trace``: accuracy, aux agreement and success
    per step). Stored (keyed by the three networks' weights, the labels, steps, seed and attack
    settings), so a rerun reads the crafted examples back."""
    y = _gan.balanced_labels(G.num_classes, cfg["per_class_unrestricted"])
    got = cached("07_attack_curve", _curve_tensors, G, aux, classifier, y, steps or cfg["attack_steps"],
                 cfg["seed"] + 1, _attack_kw(cfg), code=(_gan.latent,))
    columns = sorted((k for k in got if k.startswith("trace.")), key=lambda k: int(k.split(".")[1]))
    trace = pd.DataFrame({k.split(".", 2)[2]: got[k].numpy() for k in columns})
    return UnrestrictedResult(**{k: got[k] for k in _RESULT}, trace=trace)


def _acc_row(prefix: str, pred, y) -> dict:
    r = accuracy_with_interval(pred, y)
    return {f"{prefix}_acc": r["acc"], f"{prefix}_low": r["low"], f"{prefix}_high": r["high"], f"{prefix}_n": r["n"]}


@torch.no_grad()
def _pred(model, x):
    device = _train.model_device(model)
    return torch.cat([model(x[i:i + 256].to(device)).argmax(1).cpu() for i in range(0, len(x), 256)])


def augmentation_table(models: dict, G, aux, cfg: dict, test, transfer=None) -> tuple[pd.DataFrame, dict]:
    """One row per model: clean test accuracy, FGSM and PGD accuracy at ``eval_eps`` on ``n_eval``
    test images, accuracy on a fixed set of clean GAN samples, on a fixed set of unrestricted
    examples crafted against the *clean* model (transfer), and on unrestricted examples crafted
    against the model itself (white-box; with the success rate), each with a Wilson interval.
    Also returns the transfer set's :class:`~lib.gan.UnrestrictedResult` and the white-box ones.
    ``transfer``: :func:`attack_curve` against ``models["clean"]`` if already crafted (the notebook
    shows it first), so it is not crafted twice."""
    y_s = _gan.balanced_labels(G.num_classes, cfg["per_class_samples"])
    samples = generate(G, y_s, seed=cfg["seed"] + 2)
    transfer = attack_curve(G, aux, models["clean"], cfg) if transfer is None else transfer
    rows, whitebox = [], {"clean": transfer}
    for name, model in models.items():
        model.eval()
        row = {"method": name}
        c = _train.evaluate(model, test)
        low, high = binomial_interval(round(c["acc"] * c["n"]), c["n"])
        row.update(clean_acc=c["acc"], clean_low=low, clean_high=high, clean_n=c["n"])
        for attack in ("fgsm", "pgd"):
            r = eps_sweep(model, test, [cfg["eval_eps"]], attack=attack, steps=cfg["pgd_steps"], n=cfg["n_eval"],
                          seed=cfg["seed"]).iloc[0]
            low, high = binomial_interval(int(r["correct"]), int(r["n"]))
            row.update({f"{attack}_acc": r["acc"], f"{attack}_low": low, f"{attack}_high": high,
                        f"{attack}_n": int(r["n"])})
        row.update(_acc_row("gan_samples", _pred(model, samples), y_s))
        row.update(_acc_row("transfer", _pred(model, transfer.images), transfer.y))
        wb = whitebox.get(name) or attack_curve(G, aux, model, cfg)
        whitebox[name] = wb
        row.update(_acc_row("whitebox", wb.pred, wb.y))
        row["whitebox_success"] = wb.success.float().mean().item()
        rows.append(row)
    return pd.DataFrame(rows), {"transfer": transfer, "whitebox": whitebox}



def clean_drop(models: dict, worse: str, test, baseline: str = "clean") -> dict:
    """Clean test accuracy of ``models[baseline]`` minus that of ``models[worse]``, with a paired
    percentile-bootstrap interval over the test images (both models score the same images).

    Why paired and why an interval: the smoke recipe's GAN arm, trained six times with different
    summation orders or seeds (2026-12-02), lost 2.3 to 6.0 points (mean 4.1) against the clean
    arm; one run's point estimate says little about a margin of 5 points, the interval does."""
    correct = {}
    for name in (baseline, worse):
        logits, y = _train.predict(models[name].eval(), test)
        correct[name] = (logits.argmax(1) == y).float()
    diff = correct[baseline] - correct[worse]
    low, high = bootstrap_interval(diff)
    return {"drop": float(diff.mean()), "low": low, "high": high, "n": len(diff)}

# the code behind the cached artifacts: a change to any of these retrains them
GAN_CODE = (gan_model, study_data, _gan_key, bases.class_data, D.synsigns, D.splits, _gan.nets, _gan.training)
CLF_CODE = (classifier_model, training_loss, build_classifier, DenseNetBC, StudyLLFGSM, study_data, _attack_kw,
            bases.class_data, D.synsigns, D.splits, _train, archs, _classifier, _gan.augment, _gan.latent,
            _gan.quality, LLFGSMMixLoss)
