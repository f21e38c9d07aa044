"""Robustness reports that check themselves ("On Evaluating Adversarial Robustness", Carlini et al. 2019).

:func:`robustness_report` runs a ladder of attacks on one fixed subset (``n`` images with every
class in proportion, :func:`lib.data.stratified_subset`,
the same for every attack, so numbers are comparable image for image) and returns a tidy table
plus the sanity checks of :func:`sanity_checks`:

- ``clean``; per budget ``eps`` in ``(0, *eps_list)``: FGSM, PGD-k for each ``k`` in
  ``pgd_steps`` (at eps 0 only the fewest), APGD-CE and APGD-T with the targeted DLR loss
  (Croce & Hein 2020);
- for ``eps > 0`` an ``autoattack`` row (:func:`autoattack_eval`: APGD-CE, then APGD-T, then
  the gradient-free Square attack, each on the images still robust, as AutoAttack "standard"
  without FAB-T) with ``square_extra``, the images Square broke that every gradient attack
  missed, and a ``worst`` row (an image counts only if it survives clean and every attack at
  that ``eps``, the per-image worst case as in AutoAttack);
- one large-budget row, PGD-20 at ``large_eps`` (0.5 in L-inf: enough to turn any image into
  mid-grey), which any correctly working attack must drive to (near) zero accuracy.

Step-size rule for PGD: ``alpha = 2.5 * eps / steps`` unless ``alpha`` is given (Madry et al.
2018's rule of thumb, also the MadryLab ``robustness`` library's: the steps can travel 2.5 times
the radius, so the walk can cross the ball and reach its boundary from the random start).

The checks (each a row ``check, passed, detail``; computed by :mod:`lib.robustness_checks`). The
four order checks are paired: of the images only one of two attacks breaks, the one meant to be
stronger must not leave significantly more than it breaks (exact sign test, family-wise level
``ORDER_LEVEL`` = 1% over the report's comparisons); images it leaves are reported in ``detail``.

=============================  ===========================================================
``eps=0 equals clean``         every attack at eps = 0 (FGSM, APGD-CE, APGD-T and PGD with the
                               fewest steps of ``pgd_steps`` and the step size of the largest
                               eps; their iterations run) gives exactly the clean accuracy
``non-increasing in eps``      per attack (and steps), no significant rise with eps (paired)
``non-increasing in steps``    per eps, PGD no significantly weaker with more steps (paired)
``large eps -> ~0``            accuracy at the largest eps (>= 0.25) is <= 0.05
``PGD <= FGSM``                at each eps > 0, PGD with the most steps is no significantly
                               weaker than FGSM, image by image (paired)
``APGD <= PGD``                at each eps > 0, APGD-CE and APGD-T are no significantly weaker
                               than PGD with the most steps (paired)
``Square adds nothing``        at each eps > 0, the images Square breaks although every
                               gradient attack (FGSM, PGD-k, APGD-CE, APGD-T) missed them are
                               at most 1% of n, and at least 2 images are allowed (Square
                               rarely adds more than ~0.5 points on unmasked models, Croce &
                               Hein 2020); more flags possible gradient masking
``white-box <= transfer``      (:func:`transfer_check`, needs an independently trained
                               surrogate) PGD crafted on the surrogate leaves the model at
                               least the white-box accuracy (- ``slack``, default one
                               image): a transfer attack stronger than white-box means the
                               white-box gradients mislead
=============================  ===========================================================

A failing check means the evaluation (not the model) is suspect: gradient masking, a bug, or
too few steps.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.nn as nn
from torch import Tensor
from tqdm.auto import tqdm

from .attacks import apgd as _apgd
from .attacks import as_batch_hook, attack_fn
from .attacks import square as _square
from .attacks.core import attack_mode, check_attack_args, module_device, saved_modes
from .data import stratified_subset
from .evaluate.crafted import craft, eval_images, transfer_scores  # not lib.evaluate: its reports import this module
from .robustness_checks import (CHECKS, LABELS, LARGE_EPS_MIN, LARGE_EPS_THRESHOLD, ORDER_LEVEL, SQUARE_CHECK,
                                SQUARE_TOLERANCE, TRANSFER_CHECK, attack_label, format_eps, sanity_checks)
from .train import Batches, as_channels_last, channels_last_while, model_device, predict

__all__ = ["compact_table", "robustness_report", "sanity_checks", "eps_sweep", "make_attack", "default_alpha",
           "autoattack_eval", "transfer_check", "LABELS", "CHECKS", "LARGE_EPS_THRESHOLD", "LARGE_EPS_MIN",
           "SQUARE_CHECK", "SQUARE_TOLERANCE", "TRANSFER_CHECK", "AA_STAGES", "ORDER_LEVEL"]

AA_STAGES = ("apgd_ce", "apgd_t", "square")  # autoattack_eval's stages, in order


def default_alpha(eps: float, steps: int) -> float:
    """PGD step size ``2.5 * eps / steps`` (Madry et al. 2018 rule of thumb)."""
    return 2.5 * eps / max(int(steps), 1)


def make_attack(name: str, eps: float, *, steps: int = 10, alpha: float | None = None, norm: str = "linf",
                seed: int = 0, restarts: int = 1, queries: int = 5000, n_target_classes: int = 9) -> Callable:
    """An ``attack_fn`` for ``name`` in ``fgsm | pgd | apgd | apgd_t | square`` at ``eps``
    (``steps`` and ``alpha`` for PGD, ``steps`` for APGD, ``n_target_classes`` for APGD-T,
    ``queries`` for Square)."""
    if name == "fgsm":
        return attack_fn("fgsm", eps=eps)
    if name == "pgd":
        return attack_fn("pgd", eps=eps, alpha=default_alpha(eps, steps) if alpha is None else alpha, steps=steps,
                         norm=norm, random_start=True, seed=seed)
    if name == "apgd":
        return attack_fn(name, eps=eps, norm=norm, steps=steps, restarts=restarts, seed=seed)
    if name == "apgd_t":
        return attack_fn(name, eps=eps, norm=norm, steps=steps, restarts=restarts, seed=seed,
                         n_target_classes=n_target_classes)
    if name == "square":
        return attack_fn("square", eps=eps, norm=norm, queries=queries, seed=seed)
    raise ValueError(f"attack must be fgsm, pgd, apgd, apgd_t or square, got {name!r}")


def _row(attack, eps, steps, alpha, norm, correct: torch.Tensor, seconds: float, **extra) -> dict:
    label = extra.pop("label", None) or attack_label(attack, steps)
    return {"attack": attack, "label": label, "eps": float(eps), "eps_255": float(eps) * 255, "steps": int(steps),
            "alpha": alpha, "norm": norm, "acc": int(correct.sum()) / max(len(correct), 1),
            "correct": int(correct.sum()),
            "n": len(correct), "seconds": seconds, **extra}


def robustness_report(model: nn.Module, data, *, eps_list: Sequence[float] = (2 / 255, 8 / 255),
                      pgd_steps: Sequence[int] = (7, 10, 20, 40), alpha: float | None = None, apgd: bool = True,
                      apgd_steps: int = 100, square_queries: int = 5000, n: int | None = None, batch_size: int = 256,
                      seed: int = 0, norm: str = "linf", large_eps: float | None = None, large_eps_steps: int = 20,
                      slack: float | None = None, surrogate: nn.Module | None = None, transfer_steps: int = 20,
                      progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accuracy of ``model`` (eval mode) under a ladder of attacks, and its sanity checks.

    Returns ``(table, checks)``. ``table``: one row per evaluation with ``attack`` (``clean``,
    ``fgsm``, ``pgd``, ``apgd``, ``apgd_t``, ``autoattack``, ``worst``), ``label`` (e.g.
    ``PGD-20``), ``eps``, ``eps_255``, ``steps``, ``alpha``, ``norm``, ``acc``, ``correct``,
    ``n``, ``seconds``; the ``autoattack`` rows also ``queries`` (Square's budget) and
    ``square_extra`` (images Square broke that every gradient attack at that eps missed).
    ``checks``: :func:`sanity_checks` of the table, plus one :func:`transfer_check` row per
    ``eps > 0`` when a ``surrogate`` (an independently trained model of the same task) is given,
    with PGD-``transfer_steps`` crafted on it and the ``worst`` row as the white-box accuracy.

    All attacks see ``n`` images (stratified by class, seeded with ``seed``) of ``data`` (all
    when None) in the same batches; ``alpha`` None = ``2.5 eps / steps``; ``large_eps`` None =
    0.5 (L-inf) or half the image's L2 diameter (L2); FGSM (an L-inf attack) is skipped for
    ``norm="l2"``. Attack randomness is seeded with ``seed``. The ``autoattack`` row (only with
    ``apgd``) is :func:`autoattack_eval` with ``steps=apgd_steps``; its APGD-CE and APGD-T stages
    take the adversarial images of the APGD rows (the same attacks on the same images, so
    nothing is attacked twice) and Square (``square_queries`` per image, 0 = none) then runs on
    the images both left robust; its ``seconds`` are Square's.
    """
    device = model_device(model)
    model.eval()
    subset = stratified_subset(data, n, seed)
    batches = Batches(subset, batch_size, device)
    x_all, y_all = (torch.cat(t) for t in zip(*((x.cpu(), y.cpu()) for x, y in batches)))
    if large_eps is None:
        large_eps = 0.5 if norm == "linf" else 0.5 * math.sqrt(x_all[0].numel())
    torch.manual_seed(seed)

    jobs: list[tuple[str, float, int, float | None]] = [("clean", 0.0, 0, None)]
    for eps in (0.0, *eps_list):
        if norm == "linf":
            jobs.append(("fgsm", eps, 1, eps))
        # at eps 0, PGD takes the steps of the largest budget, so the check "eps=0 equals clean"
        # runs real steps that the projection must undo (a projection bug then shows); one rung
        # of the ladder (the fewest steps) runs that code as well as four would
        step_eps = eps or max(eps_list, default=0.0)
        for k in (pgd_steps if eps > 0 else sorted(pgd_steps)[:1]):
            jobs.append(("pgd", eps, k, default_alpha(step_eps, k) if alpha is None else alpha))
        if apgd:
            jobs.append(("apgd", eps, apgd_steps, None))
            jobs.append(("apgd_t", eps, apgd_steps, None))
    jobs.append(("pgd", float(large_eps), large_eps_steps, default_alpha(large_eps, large_eps_steps)))

    rows, per_image, kept = [], {}, {}
    for attack, eps, steps, a in tqdm(jobs, desc="robustness", disable=not progress, leave=False):
        t0 = time.perf_counter()
        hook = None
        if attack != "clean":
            # at eps 0 one APGD-T target is enough: the check "eps=0 equals clean" needs the attack's
            # iterations and projection to run, not nine runs of them (a quarter of a report's time)
            hook = as_batch_hook(make_attack(attack, eps, steps=steps, alpha=a, norm=norm, seed=seed,
                                             n_target_classes=1 if eps == 0 else 9))
            if attack in ("apgd", "apgd_t") and eps > 0:  # kept for the AutoAttack-style row
                hook = _keeping(hook, kept.setdefault((attack, eps), []))
        logits, y = predict(model, batches, batch_hook=hook)
        correct = logits.argmax(1) == y
        per_image[(attack, eps, steps)] = correct
        rows.append(_row(attack, eps, steps, a, norm, correct, time.perf_counter() - t0))
    clean = per_image[("clean", 0.0, 0)]
    checks_transfer = []
    for eps in (e for e in eps_list if e > 0):
        if apgd:
            t0 = time.perf_counter()
            given = {"apgd_ce": torch.cat(kept[("apgd", eps)]), "apgd_t": torch.cat(kept[("apgd_t", eps)])}
            r = autoattack_eval(model, x_all, y_all, eps, norm, steps=apgd_steps, square_queries=square_queries,
                                seed=seed, batch_size=batch_size, given=given)
            extra = None
            if square_queries > 0:
                gradient = clean.clone()  # survives every gradient attack at this eps
                for (attack, e, _), c in per_image.items():
                    if e == eps and attack in ("fgsm", "pgd", "apgd", "apgd_t"):
                        gradient &= c
                after = r["robust_after"]
                extra = int((gradient & after["apgd_t"] & ~after["square"]).sum())
            stages = ", ".join(LABELS[s] for s in ("apgd", "apgd_t", "square")[:len(r["acc_after"])])
            aa = r["robust_after"][list(r["robust_after"])[-1]]
            per_image[("autoattack", eps, apgd_steps)] = aa
            rows.append(_row("autoattack", eps, apgd_steps, None, norm, aa, time.perf_counter() - t0,
                             label=attack_label("autoattack", stages=stages.replace(" (DLR)", "")),
                             queries=int(square_queries), square_extra=extra))
        worst = clean.clone()
        for (attack, e, _), c in per_image.items():
            if e == eps and attack != "clean":
                worst &= c
        rows.append(_row("worst", eps, 0, None, norm, worst, 0.0))
        per_image[("worst", eps, 0)] = worst  # after this eps's worst case is made (it reads its eps's rows)
        if surrogate is not None:
            checks_transfer.append(transfer_check(model, surrogate, (x_all, y_all), eps, white_box_acc=rows[-1]["acc"],
                                                  steps=transfer_steps, seed=seed, norm=norm, batch_size=batch_size,
                                                  slack=slack))
    table = pd.DataFrame(rows)
    transfer = pd.concat(checks_transfer, ignore_index=True) if checks_transfer else None
    return table, sanity_checks(table, per_image=per_image, transfer=transfer)


def _keeping(hook: Callable, store: list) -> Callable:
    """``hook`` that also appends each batch's adversarial images (on the CPU) to ``store``."""

    def keep(model: nn.Module, x: Tensor, y: Tensor):
        x_adv, y = hook(model, x, y)
        store.append(x_adv.detach().cpu())
        return x_adv, y

    return keep


def transfer_check(model: nn.Module, surrogate: nn.Module, data_or_xy, eps: float, *, white_box_acc: float,
                   steps: int = 20, n: int | None = None, seed: int = 0, norm: str = "linf", batch_size: int = 256,
                   slack: float | None = None) -> pd.DataFrame:
    """The check "white-box <= transfer": PGD-``steps`` (step ``2.5 eps / steps``, random start)
    crafted on ``surrogate`` (an independently trained model of the same task, e.g. another seed)
    with :func:`lib.evaluate.craft`, then scored on ``model``, must leave ``model`` at least its
    white-box accuracy ``white_box_acc`` (e.g. the report's ``worst`` row at ``eps``) minus
    ``slack`` (default one image, ``1 / n``). A transfer attack that beats the white-box attacks
    means the white-box gradients of ``model`` are uninformative: gradient masking (Athalye et
    al. 2018; Carlini et al. 2019, Sec. 5).

    ``data_or_xy``: a data set (``n`` images with every class in proportion are taken,
    :func:`lib.evaluate.eval_images`, the same as :func:`robustness_report`'s for the same ``n``
    and ``seed``) or an ``(x, y)`` pair used as it is. Returns a one-row DataFrame
    ``check, passed, detail`` (the format of :func:`sanity_checks`, to concatenate with it).
    """
    check_attack_args(eps, norm)
    x, y = data_or_xy if isinstance(data_or_xy, (tuple, list)) else eval_images(data_or_xy, n, seed, batch_size)
    if isinstance(data_or_xy, (tuple, list)) and n is not None:
        x, y = x[:n], y[:n]
    attack = make_attack("pgd", eps, steps=steps, norm=norm, seed=seed)
    _, x_adv, y = craft(surrogate, (x, y), attack, batch_size=batch_size)
    got = transfer_scores(model, x, y, {"transfer": x_adv}, batch_size=batch_size)
    own = transfer_scores(surrogate, x, y, {"transfer": x_adv}, batch_size=batch_size)
    m = len(y)
    tol = (1.0 / m if slack is None else float(slack)) + 1e-9
    acc_t = got["transfer_acc"]
    passed = bool(acc_t >= white_box_acc - tol)
    detail = (f"eps={format_eps(eps)}: PGD-{steps} from the surrogate leaves {acc_t:.4f} (surrogate itself "
              f"{own['transfer_acc']:.4f}), white-box {white_box_acc:.4f}, n={m}, tolerance {tol:.4f}")
    if not passed:
        detail += ": the transfer attack is stronger than white-box, possible gradient masking"
    return pd.DataFrame([{"check": TRANSFER_CHECK, "passed": passed, "detail": detail}])


def eps_sweep(model: nn.Module, data, eps_grid: Sequence[float], attack: str = "pgd", steps: int = 10,
              n: int | None = None,
              *, alpha: float | None = None, norm: str = "linf", batch_size: int = 256, seed: int = 0,
              progress: bool = False) -> pd.DataFrame:
    """Accuracy under ``attack`` (``fgsm | pgd | apgd | apgd_t``) for each eps of ``eps_grid`` on
    ``n`` images (stratified by class, seeded): columns ``attack, label, eps, eps_255, steps,
    alpha, norm, acc, correct, n, seconds`` (``alpha`` None = ``2.5 eps / steps`` for PGD)."""
    device = model_device(model)
    model.eval()
    batches = Batches(stratified_subset(data, n, seed), batch_size, device)
    torch.manual_seed(seed)
    rows = []
    for eps in tqdm(list(eps_grid), desc=f"{attack} sweep", disable=not progress, leave=False):
        t0 = time.perf_counter()
        k = 1 if attack == "fgsm" else steps
        a = (default_alpha(eps, k) if alpha is None else alpha) if attack == "pgd" else None
        atk = make_attack(attack, float(eps), steps=k, alpha=a, norm=norm, seed=seed)
        logits, y = predict(model, batches, batch_hook=as_batch_hook(atk))
        rows.append(_row(attack, eps, k, a, norm, logits.argmax(1) == y, time.perf_counter() - t0))
    return pd.DataFrame(rows)


def autoattack_eval(model: nn.Module, x: Tensor, y: Tensor, eps: float, norm: str = "linf", *,
                    evaluator: str = "ours", version: str = "standard", steps: int = 100, square_queries: int = 5000,
                    n_target_classes: int = 9, seed: int = 0, batch_size: int = 256,
                    given: dict[str, Tensor] | None = None) -> dict:
    """Robust accuracy under an AutoAttack-style ensemble.

    ``evaluator="ours"``: APGD-CE, then APGD-T (targeted DLR, ``n_target_classes`` targets), each
    with ``steps`` iterations and one restart, then the gradient-free Square attack
    (:func:`lib.attacks.square`, ``square_queries`` queries, p_init 0.8; 0 skips it), each stage
    only on the images still robust: AutoAttack "standard" without FAB-T (which on models
    without gradient masking rarely changes the result, Croce & Hein 2020, Table 2). ``given``:
    ``stage -> adversarial images for all of x`` of a stage already run on these images (e.g. the
    APGD rows of :func:`robustness_report`); that stage takes them instead of attacking again.
    ``evaluator="autoattack"``: the reference implementation (``autoattack`` package,
    https://github.com/fra31/auto-attack) with ``version``; raises ImportError when it is not
    installed.

    Returns ``{"clean_acc", "robust_acc", "acc_after": {stage: acc}, "robust_after": {stage:
    per-image bool}, "queries", "n", "evaluator", "x_adv"}`` with stages ``apgd_ce``, ``apgd_t``,
    ``square`` (:data:`AA_STAGES`) and ``robust_acc`` the last one's; ``queries``: Square's
    queries per image (0 where it did not run); ``x_adv`` on the CPU (clean images where the model
    was already wrong).
    """
    check_attack_args(eps, norm)
    if evaluator not in ("ours", "autoattack"):
        raise ValueError(f"evaluator must be 'ours' or 'autoattack', got {evaluator!r}")
    if square_queries < 0:
        raise ValueError(f"square_queries must be >= 0 (0 skips Square), got {square_queries}")
    device = module_device(model)
    x, y = x.detach(), torch.as_tensor(y).long()
    for name, images in (given or {}).items():
        if name not in AA_STAGES or images.shape != x.shape:
            raise ValueError(f"given[{name!r}]: expected a stage of {AA_STAGES} with images of shape "
                             f"{tuple(x.shape)}, got {tuple(images.shape)}")

    def accuracy(images) -> tuple[float, Tensor]:
        with saved_modes(model), torch.no_grad(), channels_last_while(model) as cl:
            model.eval()
            pred = torch.cat([model(as_channels_last(images[i:i + batch_size].to(device), cl)).argmax(1).cpu()
                              for i in range(0, len(images), batch_size)])
        correct = pred == y.cpu()
        return correct.float().mean().item(), correct

    clean_acc, _ = accuracy(x)
    if evaluator == "autoattack":
        try:
            from autoattack import AutoAttack
        except ImportError as err:
            raise ImportError("autoattack_eval(evaluator='autoattack') needs the reference package "
                              "`autoattack` (pip install git+https://github.com/fra31/auto-attack); "
                              "it is not installed. evaluator='ours' runs APGD-CE + APGD-T + Square from "
                              "lib.attacks.") from err
        with attack_mode(model):
            adversary = AutoAttack(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, version=version,
                                   seed=seed, verbose=False, device=device)
            x_adv = adversary.run_standard_evaluation(x.to(device), y.to(device), bs=batch_size).detach().cpu()
        robust_acc, _ = accuracy(x_adv)
        return {"clean_acc": clean_acc, "robust_acc": robust_acc, "acc_after": {"autoattack": robust_acc},
                "n": len(y), "evaluator": "autoattack", "x_adv": x_adv}

    stages = {"apgd_ce": lambda xb, yb: _apgd(model, xb, yb, eps, norm=norm, steps=steps, seed=seed, loss="ce"),
              "apgd_t": lambda xb, yb: _apgd(model, xb, yb, eps, norm=norm, steps=steps, seed=seed, loss="dlr",
                                             targeted=True, n_target_classes=n_target_classes)}
    if square_queries > 0:
        # AutoAttack "standard" runs Square with resc_schedule=False: the square size halves at the
        # paper's iterations 10, 50, 200, ... whatever the query budget
        stages["square"] = lambda xb, yb: _square(model, xb, yb, eps, norm, square_queries, seed=seed,
                                                  rescale_schedule=False, return_queries=True)
    # channels-last, as predict() runs the report's other attacks: Square's forward passes (most of
    # this function's time) ran 1.5x faster so on the CPU (small_cnn, 100 images), same arithmetic;
    # one layout switch for all stages (accuracy() finds the model channels-last and leaves it)
    with channels_last_while(model) as cl:
        x_adv, queries, acc_after, robust_after = _run_stages(stages, x, y, given, batch_size, accuracy, cl)
    return {"clean_acc": clean_acc, "robust_acc": acc_after[list(stages)[-1]], "acc_after": acc_after,
            "robust_after": robust_after, "queries": queries, "n": len(y), "evaluator": "ours", "x_adv": x_adv}


def _run_stages(stages: dict, x: Tensor, y: Tensor, given, batch_size: int, accuracy, cl: bool):
    """:func:`autoattack_eval`'s chain: each stage attacks only the images every earlier stage left
    classified right (or takes them from ``given``); returns the final images, Square's queries per
    image, and the accuracy and per-image robustness after each stage."""
    x_adv = x.clone().cpu()
    queries = torch.zeros(len(y), dtype=torch.long)
    acc_after, robust_after = {}, {}
    _, robust = accuracy(x_adv)
    for name, run in stages.items():
        idx = robust.nonzero().squeeze(1)
        if given is not None and name in given:
            x_adv[idx] = given[name][idx].detach().cpu()
        for i in range(0, 0 if given is not None and name in given else len(idx), batch_size):
            part = idx[i:i + batch_size]
            out = run(as_channels_last(x[part], cl), y[part])
            if name == "square":
                out, q = out
                queries[part] = q.cpu()
            x_adv[part] = out.cpu()
        acc_after[name], robust = accuracy(x_adv)
        robust_after[name] = robust
    return x_adv, queries, acc_after, robust_after


COMPACT_ATTACKS = ("clean", "fgsm", "pgd", "apgd", "apgd_t", "autoattack", "worst")


def compact_table(report: pd.DataFrame, eps_list, pgd_steps: int, level: float = 0.95) -> pd.DataFrame:
    """Method x (clean, FGSM, PGD-``pgd_steps``, APGD-CE, APGD-T, the AutoAttack-style chain, worst
    case) x eps from a
    :func:`robustness_report` table with ``method`` and ``seed`` columns (one report per trained
    seed): the mean accuracy with its ``level`` interval and n. One seed: Wilson interval over the
    ``n`` test images (what a new draw of the test set would give this model); several seeds:
    Student-t interval over the seeds (what retraining gives), ``n`` images each. Eps in /255."""
    from .metrics import binomial_interval, seed_interval

    keep = report["attack"].isin(COMPACT_ATTACKS)
    keep &= (report["attack"] != "pgd") | (report["steps"] == pgd_steps)
    keep &= report["eps"].isin([0.0, *eps_list])
    keep &= (report["attack"] == "clean") | (report["eps"] > 0)
    rows = []
    for (method, label, eps255), g in report[keep].groupby(["method", "label", "eps_255"], sort=False):
        seeds = g["seed"].nunique()
        if seeds == 1:
            low, high = binomial_interval(int(g["correct"].iloc[0]), int(g["n"].iloc[0]), level)
            interval = "Wilson, test images"
        else:
            r = seed_interval(g.groupby("seed")["acc"].mean().to_numpy(), level)
            low, high, interval = max(0.0, r["low"]), min(1.0, r["high"]), f"t, {seeds} seeds"  # clipped to [0, 1]
        rows.append({"method": method, "attack": label, "eps_255": eps255, "acc": g["acc"].mean(), "low": low,
                     "high": high, "n": int(g["n"].iloc[0]), "seeds": seeds, "interval": interval})
    return pd.DataFrame(rows)
