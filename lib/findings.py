"""Findings as a table: each a measured value with its 95% interval against a margin, ``held`` by
the point estimate and ``shown`` by the interval, and the sentence that says which (notebooks 05
and 08 build their findings from these). Infrastructure: it knows nothing of any study."""
from __future__ import annotations

import pandas as pd

from .metrics import difference_interval


def gap(a: pd.Series, b: pd.Series, m: str) -> tuple[float, float, float]:
    """``a[m] - b[m]`` and its 95% interval (:func:`lib.metrics.difference_interval`, Newcombe's
    hybrid score method from the two rows' Wilson intervals over ``m_n`` images). It treats the
    rows as independent; where both are measured on the same images (as here) a paired interval
    would be narrower, so this one is conservative."""
    return difference_interval(a[m], a[m + "_n"], b[m], b[m + "_n"])


def pts(g: tuple[float, float, float]) -> str:
    """A gap from :func:`gap` in points with its interval and whether that excludes zero."""
    sep = "separated" if g[1] > 0 or g[2] < 0 else "not separated"
    return f"{g[0] * 100:+.1f} points [{g[1] * 100:+.1f}, {g[2] * 100:+.1f}], {sep}"


def finding(name: str, claim: str, g: tuple[float, float, float], margin: float, detail: str) -> dict:
    """``held``: the point estimate reaches ``margin`` (what the notebook asserts); ``shown``: the
    whole 95% interval ``[low, high]`` of the value does."""
    value, low, high = g
    return {"finding": name, "claim": claim, "value": value, "low": low, "high": high, "margin": margin,
            "held": bool(value >= margin), "shown": bool(low >= margin), "detail": detail}


def pct(r: pd.Series, m: str) -> str:
    return f"{r[m]:.1%} [{r[m + '_low']:.1%}, {r[m + '_high']:.1%}] (n={int(r[m + '_n'])})"


def findings_sentence(found: pd.DataFrame) -> str:
    """Which findings the intervals show (95% interval of the value at or above its margin), which
    reach the margin by the point estimate only (the interval does not separate them), which not."""
    shown = found[found["shown"]]["finding"].tolist()
    point = found[found["held"] & ~found["shown"]]
    missed = found[~found["held"]]
    text = f"Findings whose 95% interval lies at or above their margin: {', '.join(shown) if shown else 'none'}. "
    if len(point):
        text += ("At their margin by the point estimate only (the 95% interval reaches below it, so not "
                 "separated from it): " + "; ".join(
            f"{r.finding} ({r.value * 100:+.1f} points [{r.low * 100:+.1f}, {r.high * 100:+.1f}] against "
            f"{r.margin * 100:.0f}; {r.detail})" for r in point.itertuples()) + ". ")
    if len(missed):
        text += "Not shown here: " + "; ".join(f"{r.finding} ({r.detail})" for r in missed.itertuples()) + "."
    return text
