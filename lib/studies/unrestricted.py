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
The GAN, the classifiers and their data are :mod:`lib.artifacts.gan`'s; this module holds the
recipe, the unrestricted attack's evaluation, the augmentation table and the headline's pieces.
"""
from __future__ import annotations

import pandas as pd
import torch

from .. import train
from ..artifacts.gan import attack_kw
from ..cache import cached
from ..gan import UnrestrictedResult, balanced_labels, generate, latent, unrestricted_batches
from ..metrics import accuracy_with_interval, binomial_interval, bootstrap_interval, rate_interval
from ..robustness import eps_sweep
from . import notebook_params
from . import recipe as _recipe

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
    # the clean classifier on clean GAN samples: its lower Wilson bound at least twice chance (0.2). How well
    # the GAN's samples are recognised varies between GAN trainings far more than the interval's width, so a
    # higher bar flips between seeds (docs/reproducibility.md, the flip margins)
    "min_sample_acc": 0.4,
    "max_unrestricted_acc": 0.1,  # ... after latent optimisation: near zero
    "min_aux_agree": 0.5,         # the aux classifier still says y for most of them
    # GAN augmentation's clean-accuracy cost: the check fails when the paired interval of the drop lies
    # wholly above this (six smoke trainings, 2026-12-02: 2.3-6.0 points, mean 4.1; see clean_drop)
    "max_gan_clean_drop": 0.05,
    # your own classifier of the study's classes (lib.studies.yours: {"model": "net.pt2", "norm": "none"}, a
    # factory with weights, or an arch with weights): scored and attacked beside the study's clean model; None: none
    "yours": None,
    # the headline checks asserted (the others are reported): "samples" (the clean classifier recognises GAN
    # samples), "attack" (latent optimisation fools it), "aux" (the aux head still agrees), "augment" (GAN and
    # unrestricted augmentation help against unrestricted examples), "clean_cost" (GAN augmentation's clean cost;
    # reported at smoke: the paired interval's lower end sits within a few points of max_gan_clean_drop, so an
    # assert on it would fail in several runs of a hundred, docs/reproducibility.md)
    "asserted": ["samples", "attack", "aux", "augment"],
}
_FULL = {**_SMOKE, "dataset": "cifar100", "classes": None, "per_class_train": None, "per_class_test": None,
         "size": 32, "gan_z_dim": 256, "gan_width": 256, "gan_steps": 100_000, "gan_batch": 64, "gan_lr": 2e-4,
         "gan_dropout": 0.5, "gan_aux_weight_g": 0.1, "gan_checkpoint_every": 1000,
         "arch": "densenet_bc100", "clf_epochs": 100, "clf_batch": 64, "translate": 0, "aug_steps": 500,
         "attack_steps": 500, "per_class_samples": 10, "per_class_unrestricted": 2, "n_eval": 1000,
         "min_sample_acc": 0.5}
# real: five CIFAR-10 classes of the team's subset (airplane, automobile, frog, horse, ship: unlike in shape and
# colour), all 500 training and 100 test images of each, at smoke's 16 px and network widths with a GAN
# trained 2.5x as many steps (2,500 images, not 1,000). Asserted: the checks whose 95% interval clears its
# margin in the first real run (docs/results_real.md); "attack" is reported: its point estimate met the 10%
# bar, but over 50 unrestricted examples the interval reaches past it
_REAL = {**_SMOKE, "dataset": "cifar10_shared", "classes": [0, 1, 6, 7, 8], "per_class_train": 500,
         "per_class_test": 100, "gan_steps": 1500, "min_sample_acc": 0.6,
         "asserted": ["samples", "aux", "augment", "clean_cost"]}
RECIPE = {"smoke": _SMOKE, "real": _REAL, "full": _FULL}
PREFIX, NEEDS = "gan", ()  # notebook parameters gan_<key> (a key starting gan_ keeps its name)
PARAMS = notebook_params(PREFIX, RECIPE)


def recipe(profile: str = "smoke", **overrides) -> dict:
    """Notebook 07's recipe for ``profile`` with ``overrides`` (``None`` keeps the recipe's)."""
    return _recipe(RECIPE, profile, **overrides)


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
    y = balanced_labels(G.num_classes, cfg["per_class_unrestricted"])
    got = cached("07_attack_curve", _curve_tensors, G, aux, classifier, y, steps or cfg["attack_steps"],
                 cfg["seed"] + 1, attack_kw(cfg), code=(latent,))
    columns = sorted((k for k in got if k.startswith("trace.")), key=lambda k: int(k.split(".")[1]))
    trace = pd.DataFrame({k.split(".", 2)[2]: got[k].numpy() for k in columns})
    return UnrestrictedResult(**{k: got[k] for k in _RESULT}, trace=trace)


def _acc_row(prefix: str, pred, y) -> dict:
    r = accuracy_with_interval(pred, y)
    return {f"{prefix}_acc": r["acc"], f"{prefix}_low": r["low"], f"{prefix}_high": r["high"], f"{prefix}_n": r["n"]}


@torch.no_grad()
def predictions(model, x):
    """The classes ``model`` predicts for ``x``, in batches of 256, on the CPU."""
    device = train.model_device(model)
    return torch.cat([model(x[i:i + 256].to(device)).argmax(1).cpu() for i in range(0, len(x), 256)])


def augmentation_table(models: dict, G, aux, cfg: dict, test, transfer=None) -> tuple[pd.DataFrame, dict]:
    """One row per model: clean test accuracy, FGSM and PGD accuracy at ``eval_eps`` on ``n_eval``
    test images, accuracy on a fixed set of clean GAN samples, on a fixed set of unrestricted
    examples crafted against the *clean* model (transfer), and on unrestricted examples crafted
    against the model itself (white-box; with the success rate), each with a Wilson interval.
    Also returns the transfer set's :class:`~lib.gan.UnrestrictedResult` and the white-box ones.
    ``transfer``: :func:`attack_curve` against ``models["clean"]`` if already crafted (the notebook
    shows it first), so it is not crafted twice."""
    y_s = balanced_labels(G.num_classes, cfg["per_class_samples"])
    samples = generate(G, y_s, seed=cfg["seed"] + 2)
    transfer = attack_curve(G, aux, models["clean"], cfg) if transfer is None else transfer
    rows, whitebox = [], {"clean": transfer}
    for name, model in models.items():
        model.eval()
        row = {"method": name}
        c = train.evaluate(model, test)
        low, high = rate_interval(c["acc"], c["n"])
        row.update(clean_acc=c["acc"], clean_low=low, clean_high=high, clean_n=c["n"])
        for attack in ("fgsm", "pgd"):
            r = eps_sweep(model, test, [cfg["eval_eps"]], attack=attack, steps=cfg["pgd_steps"], n=cfg["n_eval"],
                          seed=cfg["seed"]).iloc[0]
            low, high = binomial_interval(int(r["correct"]), int(r["n"]))
            row.update({f"{attack}_acc": r["acc"], f"{attack}_low": low, f"{attack}_high": high,
                        f"{attack}_n": int(r["n"])})
        row.update(_acc_row("gan_samples", predictions(model, samples), y_s))
        row.update(_acc_row("transfer", predictions(model, transfer.images), transfer.y))
        wb = whitebox.get(name) or attack_curve(G, aux, model, cfg)
        whitebox[name] = wb
        row.update(_acc_row("whitebox", wb.pred, wb.y))
        row["whitebox_success"] = wb.success.float().mean().item()
        rows.append(row)
    return pd.DataFrame(rows), {"transfer": transfer, "whitebox": whitebox}


def interval_text(table: pd.DataFrame, method: str, metric: str) -> str:
    """``"acc% [low%, high%]"`` of ``method``'s ``metric`` in :func:`augmentation_table`'s table
    (indexed by method), as the notebook's paragraphs and checks quote it."""
    row = table.loc[method]
    return f"{row[f'{metric}_acc']:.1%} [{row[f'{metric}_low']:.1%}, {row[f'{metric}_high']:.1%}]"


def short_class_name(classes: list[str], label) -> str:
    """The first part (the shape) of the class name of ``label`` (an int or a 0-d tensor), for
    figure titles: ``"circle/red-white/bar"`` gives ``"circle"``."""
    return classes[int(label)].split("/")[0]


def clean_drop(models: dict, worse: str, test, baseline: str = "clean") -> dict:
    """Clean test accuracy of ``models[baseline]`` minus that of ``models[worse]``, with a paired
    percentile-bootstrap interval over the test images (both models score the same images).

    Why paired and why an interval: the smoke recipe's GAN arm, trained six times with different
    summation orders or seeds (2026-12-02), lost 2.3 to 6.0 points (mean 4.1) against the clean
    arm; one run's point estimate says little about a margin of 5 points, the interval does."""
    correct = {}
    for name in (baseline, worse):
        logits, y = train.predict(models[name].eval(), test)
        correct[name] = (logits.argmax(1) == y).float()
    diff = correct[baseline] - correct[worse]
    low, high = bootstrap_interval(diff)
    return {"drop": float(diff.mean()), "low": low, "high": high, "n": len(diff)}
