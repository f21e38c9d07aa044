"""Robustness reports that check themselves ("On Evaluating Adversarial Robustness", Carlini et al. 2019).

:func:`robustness_report` runs a ladder of attacks on one fixed subset (``n`` images with every
class in proportion, :func:`lib.data.stratified_subset`,
the same for every attack, so numbers are comparable image for image) and returns a tidy table
plus the sanity checks of :func:`sanity_checks`:

- ``clean``; per budget ``eps`` in ``(0, *eps_list)``: FGSM, PGD-k for each ``k`` in
  ``pgd_steps``, APGD-CE and APGD-T with the targeted DLR loss (Croce & Hein 2020), and for
  ``eps > 0`` a ``worst`` row (an image counts only if it survives clean and every attack at that ``eps``,
  the per-image worst case as in AutoAttack);
- one large-budget row, PGD-20 at ``large_eps`` (0.5 in L-inf: enough to turn any image into
  mid-grey), which any correctly working attack must drive to (near) zero accuracy.

Step-size rule for PGD: ``alpha = 2.5 * eps / steps`` unless ``alpha`` is given (Madry et al.
2018's rule of thumb, also the MadryLab ``robustness`` library's: the steps can travel 2.5 times
the radius, so the walk can cross the ball and reach its boundary from the random start).

The checks (each a row ``check, passed, detail``; tolerance ``slack``, default one image, 1/n):

=============================  ===========================================================
``eps=0 equals clean``         every attack at eps = 0 (its iterations run; PGD with the step
                               size of the largest eps) gives exactly the clean accuracy
``non-increasing in eps``      per attack (and steps), accuracy never rises with eps (+ slack)
``non-increasing in steps``    per eps, PGD accuracy never rises with more steps (+ slack)
``large eps -> ~0``            accuracy at the largest eps (>= 0.25) is <= 0.05
``PGD <= FGSM``                at each eps > 0, every PGD-k is at most FGSM (+ slack)
``APGD <= PGD``                at each eps > 0, APGD-CE and APGD-T are at most PGD with the
                               most steps (+ slack)
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
from .attacks.core import _check, _model_device, _saved_modes, attack_mode
from .data import stratified_subset
from .train import Batches, model_device, predict

__all__ = ["robustness_report", "sanity_checks", "eps_sweep", "make_attack", "default_alpha", "autoattack_eval",
           "LABELS", "CHECKS", "LARGE_EPS_THRESHOLD"]

LABELS = {"clean": "clean", "fgsm": "FGSM", "pgd": "PGD-{steps}", "apgd": "APGD-CE", "apgd_t": "APGD-T (DLR)",
          "worst": "worst case"}
CHECKS = ("eps=0 equals clean", "non-increasing in eps", "non-increasing in steps", "large eps -> ~0",
          "PGD <= FGSM", "APGD <= PGD")
LARGE_EPS_THRESHOLD = 0.05   # accuracy allowed at the large-eps row
LARGE_EPS_MIN = 0.25         # the largest eps of a table must be at least this (L-inf) to count as "large"


def default_alpha(eps: float, steps: int) -> float:
    """PGD step size ``2.5 * eps / steps`` (Madry et al. 2018 rule of thumb)."""
    return 2.5 * eps / max(int(steps), 1)


def make_attack(name: str, eps: float, *, steps: int = 10, alpha: float | None = None, norm: str = "linf",
                seed: int = 0, restarts: int = 1) -> Callable:
    """An ``attack_fn`` for ``name`` in ``fgsm | pgd | apgd | apgd_t`` at ``eps`` (``steps`` and
    ``alpha`` for PGD, ``steps`` for APGD)."""
    if name == "fgsm":
        return attack_fn("fgsm", eps=eps)
    if name == "pgd":
        return attack_fn("pgd", eps=eps, alpha=default_alpha(eps, steps) if alpha is None else alpha, steps=steps,
                         norm=norm, random_start=True, seed=seed)
    if name in ("apgd", "apgd_t"):
        return attack_fn(name, eps=eps, norm=norm, steps=steps, restarts=restarts, seed=seed)
    raise ValueError(f"attack must be fgsm, pgd, apgd or apgd_t, got {name!r}")


def _fmt_eps(eps: float) -> str:
    v = eps * 255
    return f"{v:.3g}/255" if eps < 1 else f"{eps:.3g}"


def _row(attack, eps, steps, alpha, norm, correct: torch.Tensor, seconds: float) -> dict:
    label = LABELS.get(attack, attack).format(steps=steps)
    return {"attack": attack, "label": label, "eps": float(eps), "eps_255": float(eps) * 255, "steps": int(steps),
            "alpha": alpha, "norm": norm, "acc": int(correct.sum()) / max(len(correct), 1),
            "correct": int(correct.sum()),
            "n": len(correct), "seconds": seconds}


def robustness_report(model: nn.Module, data, *, eps_list: Sequence[float] = (2 / 255, 8 / 255),
                      pgd_steps: Sequence[int] = (7, 10, 20, 40), alpha: float | None = None, apgd: bool = True,
                      apgd_steps: int = 100, n: int | None = None, batch_size: int = 256, seed: int = 0,
                      norm: str = "linf", large_eps: float | None = None, large_eps_steps: int = 20,
                      slack: float | None = None, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accuracy of ``model`` (eval mode) under a ladder of attacks, and its sanity checks.

    Returns ``(table, checks)``. ``table``: one row per evaluation with ``attack`` (``clean``,
    ``fgsm``, ``pgd``, ``apgd``, ``apgd_t``, ``worst``), ``label`` (e.g. ``PGD-20``), ``eps``,
    ``eps_255``, ``steps``, ``alpha``, ``norm``, ``acc``, ``correct``, ``n``, ``seconds``.
    ``checks``: :func:`sanity_checks` of the table. All attacks see ``n`` images (stratified by
    class, seeded with ``seed``) of ``data`` (all when None) in the same batches; ``alpha`` None = ``2.5 eps / steps``;
    ``large_eps`` None = 0.5 (L-inf) or half the image's L2 diameter (L2); FGSM (an L-inf
    attack) is skipped for ``norm="l2"``. Attack randomness is seeded with ``seed``.
    """
    device = model_device(model)
    model.eval()
    subset = stratified_subset(data, n, seed)
    batches = Batches(subset, batch_size, device)
    x0, _ = next(iter(batches))
    if large_eps is None:
        large_eps = 0.5 if norm == "linf" else 0.5 * math.sqrt(x0[0].numel())
    torch.manual_seed(seed)

    jobs: list[tuple[str, float, int, float | None]] = [("clean", 0.0, 0, None)]
    for eps in (0.0, *eps_list):
        if norm == "linf":
            jobs.append(("fgsm", eps, 1, eps))
        # at eps 0, PGD takes the steps of the largest budget, so the check "eps=0 equals clean"
        # runs real steps that the projection must undo (a projection bug then shows)
        step_eps = eps or max(eps_list, default=0.0)
        for k in pgd_steps:
            jobs.append(("pgd", eps, k, default_alpha(step_eps, k) if alpha is None else alpha))
        if apgd:
            jobs.append(("apgd", eps, apgd_steps, None))
            jobs.append(("apgd_t", eps, apgd_steps, None))
    jobs.append(("pgd", float(large_eps), large_eps_steps, default_alpha(large_eps, large_eps_steps)))

    rows, per_image = [], {}
    for attack, eps, steps, a in tqdm(jobs, desc="robustness", disable=not progress, leave=False):
        t0 = time.perf_counter()
        if attack == "clean":
            hook = None
        else:
            atk = make_attack(attack, eps, steps=steps, alpha=a, norm=norm, seed=seed)
            hook = as_batch_hook(atk)
        logits, y = predict(model, batches, batch_hook=hook)
        correct = logits.argmax(1) == y
        per_image[(attack, eps, steps)] = correct
        rows.append(_row(attack, eps, steps, a, norm, correct, time.perf_counter() - t0))
    clean = per_image[("clean", 0.0, 0)]
    for eps in eps_list:
        if eps > 0:
            worst = clean.clone()
            for (attack, e, _), c in per_image.items():
                if e == eps and attack != "clean":
                    worst &= c
            rows.append(_row("worst", eps, 0, None, norm, worst, 0.0))
    table = pd.DataFrame(rows)
    return table, sanity_checks(table, slack=slack)


def sanity_checks(table: pd.DataFrame, *, slack: float | None = None,
                  large_eps_threshold: float = LARGE_EPS_THRESHOLD) -> pd.DataFrame:
    """The checks of Carlini et al. 2019 on a report table (see the module docstring).

    ``table`` needs columns ``attack, eps, steps, acc, n`` (``norm`` optional). ``slack``: the
    tolerance of the monotonicity and attack-order checks (default one image, ``1 / n``).
    Returns one row per check in :data:`CHECKS` with ``check``, ``passed`` (bool) and ``detail``
    (what was compared, or which rows violate it). A check with nothing to compare fails, with
    the reason in ``detail``.
    """
    t = table.copy()
    if "norm" not in t:
        t["norm"] = "linf"
    n = int(t["n"].max())
    tol = (1.0 / n if slack is None else float(slack)) + 1e-9
    out = []

    def add(name, bad, compared, empty_reason):
        if compared == 0:
            out.append({"check": name, "passed": False, "detail": f"nothing to check: {empty_reason}"})
        elif bad:
            out.append({"check": name, "passed": False, "detail": "; ".join(bad)})
        else:
            out.append({"check": name, "passed": True, "detail": f"{compared} comparisons hold (tolerance {tol:.4f})"})

    def name_of(r):
        return f"{LABELS.get(r.attack, r.attack).format(steps=int(r.steps))} eps={_fmt_eps(r.eps)}"

    clean_rows = t[t.attack == "clean"]
    clean_acc = float(clean_rows.acc.iloc[0]) if len(clean_rows) else None
    attacked = t[t.attack != "clean"]

    # 1. eps = 0 equals clean, exactly
    zero = attacked[attacked.eps == 0]
    if clean_acc is None:
        add(CHECKS[0], [], 0, "no clean row")
    else:
        bad = [f"{name_of(r)}: {r.acc:.4f} != clean {clean_acc:.4f}" for r in zero.itertuples() if r.acc != clean_acc]
        add(CHECKS[0], bad, len(zero), "no eps=0 rows")

    # 2. non-increasing in eps, per (attack, steps, norm); clean counts as eps = 0
    bad, compared = [], 0
    for (attack, steps, norm), g in attacked.groupby(["attack", "steps", "norm"], sort=False):
        g = g.sort_values("eps")
        pts = [(float(r.eps), float(r.acc), name_of(r)) for r in g.itertuples()]
        if clean_acc is not None and (not pts or pts[0][0] > 0):
            pts.insert(0, (0.0, clean_acc, "clean"))
        for (e0, a0, n0), (e1, a1, n1) in zip(pts, pts[1:]):
            compared += 1
            if a1 > a0 + tol:
                bad.append(f"{n1}: {a1:.4f} > {n0}: {a0:.4f}")
    add(CHECKS[1], bad, compared, "no attack at two budgets")

    # 3. non-increasing in steps, PGD per (eps, norm), eps > 0
    bad, compared = [], 0
    pgd = attacked[(attacked.attack == "pgd") & (attacked.eps > 0)]
    for _, g in pgd.groupby(["eps", "norm"], sort=False):
        g = g.sort_values("steps")
        rs = list(g.itertuples())
        for r0, r1 in zip(rs, rs[1:]):
            compared += 1
            if r1.acc > r0.acc + tol:
                bad.append(f"{name_of(r1)}: {r1.acc:.4f} > {name_of(r0)}: {r0.acc:.4f}")
    add(CHECKS[2], bad, compared, "no eps with two PGD step counts")

    # 4. large eps drives accuracy to ~0
    emax = float(attacked.eps.max()) if len(attacked) else 0.0
    if emax < LARGE_EPS_MIN:
        add(CHECKS[3], [], 0, f"largest eps {emax:.3g} < {LARGE_EPS_MIN}")
    else:
        big = attacked[attacked.eps == emax]
        bad = [f"{name_of(r)}: {r.acc:.4f} > {large_eps_threshold}" for r in big.itertuples()
               if r.acc > large_eps_threshold]
        if not bad:
            out.append({"check": CHECKS[3], "passed": True,
                        "detail": f"eps={emax:.3g}: accuracy {big.acc.max():.4f} <= {large_eps_threshold}"})
        else:
            add(CHECKS[3], bad, len(big), "")

    # 5. PGD no weaker than FGSM at each eps > 0
    bad, compared = [], 0
    for eps, g in attacked[attacked.eps > 0].groupby("eps"):
        f = g[g.attack == "fgsm"]
        if not len(f):
            continue
        fa = float(f.acc.min())
        for r in g[g.attack == "pgd"].itertuples():
            compared += 1
            if r.acc > fa + tol:
                bad.append(f"{name_of(r)}: {r.acc:.4f} > FGSM {fa:.4f}")
    add(CHECKS[4], bad, compared, "no eps with both FGSM and PGD")

    # 6. APGD no weaker than PGD with the most steps, at each eps > 0
    bad, compared = [], 0
    for eps, g in attacked[attacked.eps > 0].groupby("eps"):
        p = g[g.attack == "pgd"]
        if not len(p):
            continue
        ref = p.sort_values("steps").iloc[-1]
        for r in g[g.attack.isin(["apgd", "apgd_t"])].itertuples():
            compared += 1
            if r.acc > ref.acc + tol:
                bad.append(f"{name_of(r)}: {r.acc:.4f} > PGD-{int(ref.steps)} {ref.acc:.4f}")
    add(CHECKS[5], bad, compared, "no eps with both APGD and PGD")
    return pd.DataFrame(out)


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
                    evaluator: str = "ours", version: str = "standard", steps: int = 100,
                    n_target_classes: int = 9, seed: int = 0, batch_size: int = 256) -> dict:
    """Robust accuracy under an AutoAttack-style ensemble.

    ``evaluator="ours"``: APGD-CE, then APGD-T (targeted DLR, ``n_target_classes`` targets) on
    the points still robust, each with ``steps`` iterations and one restart: the two gradient
    attacks of AutoAttack "standard". FAB-T and Square are not included (on models without
    gradient masking they rarely change the result, Croce & Hein 2020, Table 2).
    ``evaluator="autoattack"``: the reference implementation (``autoattack`` package,
    https://github.com/fra31/auto-attack) with ``version``; raises ImportError when it is not
    installed.

    Returns ``{"clean_acc", "robust_acc", "acc_after": {attack: acc}, "n", "evaluator", "x_adv"}``
    (``x_adv`` on the CPU, clean images where the model was already wrong or robust).
    """
    _check(eps, norm)
    if evaluator not in ("ours", "autoattack"):
        raise ValueError(f"evaluator must be 'ours' or 'autoattack', got {evaluator!r}")
    device = _model_device(model)
    x, y = x.detach(), torch.as_tensor(y).long()

    def accuracy(images) -> tuple[float, Tensor]:
        with _saved_modes(model), torch.no_grad():
            model.eval()
            pred = torch.cat([model(images[i:i + batch_size].to(device)).argmax(1).cpu()
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
                              "it is not installed. evaluator='ours' runs APGD-CE + APGD-T from lib.attacks.") from err
        with attack_mode(model):
            adversary = AutoAttack(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, version=version,
                                   seed=seed, verbose=False, device=device)
            x_adv = adversary.run_standard_evaluation(x.to(device), y.to(device), bs=batch_size).detach().cpu()
        robust_acc, _ = accuracy(x_adv)
        return {"clean_acc": clean_acc, "robust_acc": robust_acc, "acc_after": {"autoattack": robust_acc},
                "n": len(y), "evaluator": "autoattack", "x_adv": x_adv}

    x_adv = x.clone().cpu()
    acc_after = {}
    stages = [("apgd_ce", dict(loss="ce")),
              ("apgd_t", dict(loss="dlr", targeted=True, n_target_classes=n_target_classes))]
    _, robust = accuracy(x_adv)
    for name, kw in stages:
        idx = robust.nonzero().squeeze(1)
        for i in range(0, len(idx), batch_size):
            part = idx[i:i + batch_size]
            x_adv[part] = _apgd(model, x[part], y[part], eps, norm=norm, steps=steps, seed=seed, **kw).cpu()
        acc_after[name], robust = accuracy(x_adv)
    return {"clean_acc": clean_acc, "robust_acc": acc_after["apgd_t"], "acc_after": acc_after, "n": len(y),
            "evaluator": "ours", "x_adv": x_adv}
