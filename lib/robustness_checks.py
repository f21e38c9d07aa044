"""The sanity checks of a robustness report ("On Evaluating Adversarial Robustness", Carlini et
al. 2019): :func:`sanity_checks` reads a :func:`lib.robustness.robustness_report` table and
returns one row ``check, passed, detail`` per check of :data:`CHECKS`. What each check compares
is in the table of :mod:`lib.robustness`; the transfer check, which needs a second model, is
:func:`lib.robustness.transfer_check` (its row is appended here when given).

The four *order* checks (non-increasing in eps and in steps, PGD <= FGSM, APGD <= PGD) compare
two attacks on the same images, so they are paired tests (:func:`inversion_p`): of the images
only one of the two attacks breaks, the one that should be stronger must not leave significantly
more than it breaks (an exact one-sided sign test, McNemar's). An image that a weaker attack
breaks and the stronger one misses is a finding, reported in ``detail``; a real inversion across
many images is the failure. The comparisons of one report share a family-wise level
(:data:`ORDER_LEVEL`, Bonferroni), so a sound evaluation fails one of them less than once in a
hundred reports, whatever their number. Why not a fixed tolerance of one image: two estimates on
200 images differ by a few images by chance, and such a check failed fresh-clone runs of notebook
03 (PGD-40 two images above FGSM) that per image were a 4-to-2 split.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["sanity_checks", "inversion_p", "CHECKS", "LABELS", "LARGE_EPS_THRESHOLD", "LARGE_EPS_MIN",
           "SQUARE_TOLERANCE", "SQUARE_MIN_IMAGES", "ORDER_LEVEL", "TRANSFER_CHECK", "SQUARE_CHECK"]

LABELS = {"clean": "clean", "fgsm": "FGSM", "pgd": "PGD-{steps}", "apgd": "APGD-CE", "apgd_t": "APGD-T (DLR)",
          "square": "Square", "autoattack": "AutoAttack-style ({stages})", "worst": "worst case"}
SQUARE_CHECK = "Square adds nothing"
TRANSFER_CHECK = "white-box <= transfer"
# Every check, in the order of the output. The transfer row appears only where a transfer result
# is given (it needs an independently trained surrogate, see lib.robustness.transfer_check).
CHECKS = ("eps=0 equals clean", "non-increasing in eps", "non-increasing in steps", "large eps -> ~0",
          "PGD <= FGSM", "APGD <= PGD", SQUARE_CHECK, TRANSFER_CHECK)
ORDER_CHECKS = CHECKS[1], CHECKS[2], CHECKS[4], CHECKS[5]
# Family-wise level of a report's order comparisons: all of them together fail a sound evaluation
# (one where the stronger attack is never the weaker) at most this often.
ORDER_LEVEL = 0.01
LARGE_EPS_THRESHOLD = 0.05   # accuracy allowed at the large-eps row
LARGE_EPS_MIN = 0.25         # the largest eps of a table must be at least this (L-inf) to count as "large"
# "Square adds nothing": the share of images that Square breaks although every gradient attack
# missed them may be at most 1% of n, and never less than 2 images. On models without gradient
# masking Square, run after APGD-CE and APGD-T, lowers robust accuracy by about 0.0-0.5 points
# (Croce & Hein 2020, Table 2); 1% leaves room for that and for a random search's luck on an
# image near the boundary, while a masked model (where gradient attacks fail wholesale) loses
# tens of points to Square. At n = 200 the tolerance is 2 images, at n = 1000, 10.
SQUARE_TOLERANCE = 0.01
SQUARE_MIN_IMAGES = 2


def inversion_p(kept: int, broke: int) -> float:
    """One-sided exact sign test (McNemar's, :func:`scipy.stats.binomtest`) that an attack meant to
    be the stronger of two is the weaker: ``kept`` images it leaves correct that the other breaks,
    ``broke`` images it breaks that the other leaves correct. Returns the p-value of ``kept``
    or more of the ``kept + broke`` discordant images under "equally strong" (1.0 when none)."""
    from scipy.stats import binomtest

    kept, broke = int(kept), int(broke)
    return 1.0 if kept + broke == 0 else float(binomtest(kept, kept + broke, 0.5, alternative="greater").pvalue)


def format_eps(eps: float) -> str:
    """A budget as people write it: ``8/255`` below 1 (in 255ths), else the number itself."""
    v = eps * 255
    return f"{v:.3g}/255" if eps < 1 else f"{eps:.3g}"


def attack_label(attack: str, steps: int = 0, stages: str = "") -> str:
    """The display label of ``attack`` (:data:`LABELS`, filled with ``steps`` and ``stages``)."""
    return LABELS.get(attack, attack).format(steps=int(steps), stages=stages)


def _discordant(r0, r1, per_image, n: int) -> tuple[int, int]:
    """``(kept, broke)`` of row ``r1`` (the attack meant to be at least as strong) against row
    ``r0``: images ``r1`` leaves correct that ``r0`` breaks, and the reverse. From the per-image
    results where ``per_image`` has both rows; else from the accuracies alone, as the least
    discordance they allow (the difference in images on one side, none on the other)."""
    a0, a1 = (None if per_image is None else per_image.get((r.attack, float(r.eps), int(r.steps))) for r in (r0, r1))
    if a0 is not None and a1 is not None:
        a0, a1 = np.asarray(a0, dtype=bool), np.asarray(a1, dtype=bool)
        return int((a1 & ~a0).sum()), int((a0 & ~a1).sum())
    d = int(round((float(r1.acc) - float(r0.acc)) * n))
    return max(d, 0), max(-d, 0)


def sanity_checks(table: pd.DataFrame, *, per_image: dict | None = None, level: float = ORDER_LEVEL,
                  large_eps_threshold: float = LARGE_EPS_THRESHOLD, square_tolerance: float = SQUARE_TOLERANCE,
                  transfer: pd.DataFrame | None = None) -> pd.DataFrame:
    """The checks of Carlini et al. 2019 on a report table (see the table of :mod:`lib.robustness`).

    ``table`` needs columns ``attack, eps, steps, acc, n`` (``norm`` optional; ``square_extra``
    on the ``autoattack`` rows for the Square check). ``per_image``: ``(attack, eps, steps) ->``
    per-image correctness (bool, the same images in the same order for every row), as
    :func:`lib.robustness.robustness_report` keeps them; the order checks then count the images
    each of two attacks breaks alone (without it, from the accuracies: see :func:`_discordant`).
    ``level``: the family-wise level of the order checks (:data:`ORDER_LEVEL`, split over the
    comparisons). ``square_tolerance``: the share of images Square may break beyond every
    gradient attack (default :data:`SQUARE_TOLERANCE`, at least :data:`SQUARE_MIN_IMAGES` images).
    ``transfer``: rows of :func:`lib.robustness.transfer_check`, appended as the last check.
    Returns one row per check in :data:`CHECKS` (the transfer check only when ``transfer`` is
    given) with ``check``, ``passed`` (bool) and ``detail`` (what was compared, or which rows
    violate it). A check with nothing to compare fails, with the reason in ``detail``.
    """
    t = table.copy()
    if "norm" not in t:
        t["norm"] = "linf"
    n = int(t["n"].max())
    out = []

    def add(name, bad, compared, empty_reason, ok_detail=None):
        if compared == 0:
            out.append({"check": name, "passed": False, "detail": f"nothing to check: {empty_reason}"})
        elif bad:
            out.append({"check": name, "passed": False, "detail": "; ".join(bad)})
        else:
            out.append({"check": name, "passed": True, "detail": ok_detail or f"{compared} comparisons hold"})

    def name_of(r):
        label = getattr(r, "label", None)
        return f"{label if isinstance(label, str) else attack_label(r.attack, r.steps)} eps={format_eps(r.eps)}"

    clean_rows = t[t.attack == "clean"]
    clean_acc = float(clean_rows.acc.iloc[0]) if len(clean_rows) else None
    clean_row = next(clean_rows.itertuples()) if len(clean_rows) else None
    attacked = t[t.attack != "clean"]

    # 1. eps = 0 equals clean, exactly
    zero = attacked[attacked.eps == 0]
    if clean_acc is None:
        add(CHECKS[0], [], 0, "no clean row")
    else:
        bad = [f"{name_of(r)}: {r.acc:.4f} != clean {clean_acc:.4f}" for r in zero.itertuples() if r.acc != clean_acc]
        add(CHECKS[0], bad, len(zero), "no eps=0 rows")

    # the order checks: pairs (r0, r1) where r1 should leave no more images correct than r0
    pairs = {c: [] for c in ORDER_CHECKS}
    for (attack, steps, norm), g in attacked.groupby(["attack", "steps", "norm"], sort=False):  # 2. in eps
        rs = list(g.sort_values("eps").itertuples())
        if clean_row is not None and (not rs or rs[0].eps > 0):
            rs.insert(0, clean_row)
        pairs[CHECKS[1]] += list(zip(rs, rs[1:]))
    pgd = attacked[(attacked.attack == "pgd") & (attacked.eps > 0)]
    for _, g in pgd.groupby(["eps", "norm"], sort=False):  # 3. PGD in steps
        rs = list(g.sort_values("steps").itertuples())
        pairs[CHECKS[2]] += list(zip(rs, rs[1:]))
    for eps, g in attacked[attacked.eps > 0].groupby("eps"):
        f, p = g[g.attack == "fgsm"], g[g.attack == "pgd"]
        if len(p):
            longest = next(p.sort_values("steps").iloc[[-1]].itertuples())
            # 5. PGD with the most steps against FGSM. Not every PGD-k: a short PGD from a random
            # start can trail FGSM's one full-eps step at a small eps on a robust model, which says
            # nothing about the evaluation; "non-increasing in steps" covers the rest.
            if len(f):
                pairs[CHECKS[4]].append((next(f.sort_values("acc").itertuples()), longest))
            # 6. APGD-CE and APGD-T against PGD with the most steps
            pairs[CHECKS[5]] += [(longest, r) for r in g[g.attack.isin(["apgd", "apgd_t"])].itertuples()]
    m = sum(len(v) for v in pairs.values())
    alpha = level / max(m, 1)
    empty = {CHECKS[1]: "no attack at two budgets", CHECKS[2]: "no eps with two PGD step counts",
             CHECKS[4]: "no eps with both FGSM and PGD", CHECKS[5]: "no eps with both APGD and PGD"}
    order_rows = {}
    for check, todo in pairs.items():
        bad, notes = [], []
        for r0, r1 in todo:
            kept, broke = _discordant(r0, r1, per_image, n)
            pv = inversion_p(kept, broke)
            if pv < alpha:
                bad.append(f"{name_of(r1)}: {r1.acc:.4f} > {name_of(r0)}: {r0.acc:.4f}, {kept} images it leaves "
                           f"correct that the other breaks against {broke} the other way (p = {pv:.2g} < {alpha:.2g})")
            elif kept:
                notes.append(f"{name_of(r0)} breaks {kept} image{'s' * (kept != 1)} {name_of(r1)} misses "
                             f"({broke} the other way, p = {pv:.2g})")
        ok = (f"{len(todo)} comparisons hold (paired sign test, family-wise level {level:g} over {m})"
              + (": " + "; ".join(notes) if notes else ""))
        order_rows[check] = (bad, len(todo), empty[check], ok)
    for check in CHECKS[1:3]:
        add(check, *order_rows[check])

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

    for check in CHECKS[4:6]:
        add(check, *order_rows[check])

    # 7. Square breaks (almost) no image that every gradient attack missed, at each eps > 0
    bad, seen = [], []
    aa = attacked[attacked.attack == "autoattack"]
    for r in (aa[aa.square_extra.notna()] if "square_extra" in aa else aa.iloc[:0]).itertuples():
        k, m = int(r.square_extra), int(r.n)
        allowed = max(float(square_tolerance), SQUARE_MIN_IMAGES / m)
        seen.append(f"eps={format_eps(r.eps)}: {k} of {m}")
        if k / m > allowed + 1e-9:
            bad.append(f"eps={format_eps(r.eps)}: Square broke {k} of {m} images ({k / m:.1%}) that every gradient "
                       f"attack missed, more than {allowed:.1%}: possible gradient masking")
    if not seen:
        add(CHECKS[6], [], 0, "no AutoAttack-style row with Square (square_queries=0 or apgd=False)")
    elif bad:
        add(CHECKS[6], bad, len(seen), "")
    else:
        out.append({"check": CHECKS[6], "passed": True,
                    "detail": f"images only Square broke: {'; '.join(seen)} (allowed: {square_tolerance:.0%} of n, "
                              f"at least {SQUARE_MIN_IMAGES})"})
    if transfer is not None:
        out.extend(transfer[["check", "passed", "detail"]].to_dict("records"))
    return pd.DataFrame(out)
