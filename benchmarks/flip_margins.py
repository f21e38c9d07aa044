"""How far each asserted check sits from failing, across training seeds: the per-seed margins that
the flip-rate benchmarks recorded, and the chance that a new seed fails, estimated from them.

A flip rate of 0 in 5 seeds bounds the rate only below about 45%; the results issue asks for
under 1%. Where a benchmark recorded the asserted quantity per seed (not only pass or fail), the
margin ``value - threshold`` of each seed says more: with its mean ``m`` and standard deviation
``s`` over ``n`` seeds, a new seed's margin is predicted by a Student t with ``n - 1`` degrees of
freedom around ``m`` with scale ``s * sqrt(1 + 1/n)``, so the estimated flip probability is
``P(T < -m / (s sqrt(1 + 1/n)))`` (``p_flip_t``); ``p_flip_normal`` is the same with a normal
(what the t tends to with more seeds). Both assume the margins are roughly normal over seeds.

Read from ``results/``: ``defence_flips.json`` (notebook 08's asserted findings: the lower end of
each 95% interval minus its margin; its seeds are the defender's draws, clean set and defence
seeds, on notebook 05's one smoke teacher), ``flip_rates.json`` (notebook 06's trigger check: the lower
end of the attention difference's interval, the smallest over the checked models; notebook 03's
transfer check: surrogate accuracy minus white-box accuracy plus the tolerance, the smallest over
the models); ``notebook_flips.json``'s ``notebook_05_values`` (notebook 05's asserted findings,
each held at 0.2 by its point estimate). ``python benchmarks/flip_margins.py`` writes
``results/flip_margins.json``; it trains nothing.
"""
from __future__ import annotations

import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

from scipy import stats

sys.path[:0] = [str(Path(__file__).resolve().parent)]

from common import RESULTS, save  # noqa: E402


def predicted_flip(margins: list[float]) -> dict:
    """Mean and sd of the margins over seeds, and the estimated chance a new seed's is below 0."""
    n = len(margins)
    m = sum(margins) / n
    s = math.sqrt(sum((x - m) ** 2 for x in margins) / (n - 1))
    z = m / (s * math.sqrt(1 + 1 / n)) if s > 0 else math.inf
    return {"seeds": n, "margins": [round(x, 4) for x in margins], "min": round(min(margins), 4),
            "mean": round(m, 4), "sd": round(s, 4), "z": round(z, 2),
            "p_flip_t": float(stats.t.cdf(-z, n - 1)), "p_flip_normal": float(stats.norm.cdf(-z))}


def defence_margins(runs: list[dict]) -> dict[tuple, list[float]]:
    out = defaultdict(list)
    for r in runs:
        out[("08", "smoke", r["finding"])].append(r["low"] - r["margin"])
    return out


_TRANSFER = re.compile(r"surrogate leaves ([\d.]+) .*white-box ([\d.]+), n=\d+, tolerance ([\d.]+)")


def flip_rate_margins(runs: list[dict]) -> dict[tuple, list[float]]:
    per_seed = defaultdict(dict)
    for r in runs:
        if r["notebook"] == "06":
            low = min(m["difference_low"] for m in r["models"] if m["checked"])
            per_seed[("06", r["size"], "trigger: attention on the trigger above the clean model's")][r["seed"]] = low
        elif r["notebook"] == "03-transfer":
            got = _TRANSFER.search(r["detail"])
            if got:
                surrogate, white, tol = map(float, got.groups())
                key = ("03", r["size"], "transfer: a surrogate's attack leaves at least white-box accuracy")
                seed = per_seed[key]
                seed[r["seed"]] = min(seed.get(r["seed"], math.inf), surrogate - white + tol)
    return {k: list(v.values()) for k, v in per_seed.items()}


def notebook_05_margins(values: dict) -> dict[tuple, list[float]]:
    """Notebook 05's asserted findings (held by the point estimate at margin 0.2) per run; its
    ``planted_clean`` is reported, not asserted, so it is left out."""
    out = defaultdict(list)
    for r in values["runs"]:
        for name in ("survives_targeted", "survives_new_task", "retrain_removes", "renofeation_removes"):
            check = name
            if r["size"] == "test" and name == "retrain_removes":  # the test's overrides of be08cf6
                check += " (superseded: recorded at 6 re-training epochs; since e1ab34e the test keeps the recipe's 12)"
            out[("05", r["size"], check)].append(r[name] - 0.2)
    return out


def main() -> None:
    flips = json.loads((RESULTS / "notebook_flips.json").read_text())
    margins = {**defence_margins(json.loads((RESULTS / "defence_flips.json").read_text())["runs"]),
               **flip_rate_margins(json.loads((RESULTS / "flip_rates.json").read_text())["runs"]),
               **notebook_05_margins(flips["notebook_05_values"])}
    rows = [{"notebook": nb, "size": size, "check": check, **predicted_flip(v)}
            for (nb, size, check), v in sorted(margins.items())]
    save("flip_margins", {"sources": ["defence_flips.json", "flip_rates.json", "notebook_flips.json "
                                      "(notebook_05_values)"], "checks": rows})


if __name__ == "__main__":
    main()
