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
each held at 0.2 by its point estimate); ``notebook_margins.json`` (notebooks 01-05 and 07: every
asserted estimate's margin per whole-notebook run, :func:`notebook_margins`; a check measured there
replaces the older files' values of it). ``python benchmarks/flip_margins.py`` writes
``results/flip_margins.json`` and the table of ``docs/reproducibility.md``; it trains nothing.
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


# notebook 05's findings a recipe may assert (lib.studies.backdoor's "asserted")
FINDINGS_05 = ("survives_targeted", "survives_new_task", "retrain_removes", "renofeation_removes")


def notebook_05_margins(values: dict) -> dict[tuple, list[float]]:
    """Notebook 05's asserted findings (held by the point estimate at margin 0.2) per run; its
    ``planted_clean`` is reported, not asserted, so it is left out."""
    out = defaultdict(list)
    for r in values["runs"]:
        for name in FINDINGS_05:
            check = name
            if r["size"] == "test" and name == "retrain_removes":  # the test's overrides of be08cf6
                check += " (superseded: recorded at 6 re-training epochs; since e1ab34e the test keeps the recipe's 12)"
            out[("05", r["size"], check)].append(r[name] - 0.2)
    return out


def notebook_margins(runs: list[dict]) -> tuple[dict[tuple, list[float]], set[tuple]]:
    """Notebooks 01-05 and 07: the margin of each asserted estimate per whole-notebook run
    (``bench_notebook_flips.py --result notebook_margins``). A run that failed counts with the
    margins it recorded (a failed check's is negative); one that wrote no tables is left out, and
    its failure shows in that file's summary. Also the checks the runs recorded as reported."""
    from bench_notebook_flips import test_overrides

    # a notebook whose test runs the smoke recipe (01; 07, which adds only a classifier of the reader's
    # own beside the study's) has one set of runs for both sizes
    same = {nb for nb in {r["notebook"] for r in runs} if not test_overrides(nb)}
    out, reported = defaultdict(list), set()
    for r in runs:
        sizes = ("test", "smoke") if r["notebook"] in same else (r["size"],)
        for check, margin in r.get("margins", {}).items():
            for size in sizes if check != "error" else ():
                out[(r["notebook"], size, check)].append(margin)
                if check in r.get("reported", []):
                    reported.add((r["notebook"], size, check))
    return out, reported


def reported_by_tests(keys, kinds: dict[str, str]) -> set[tuple]:
    """The (notebook, "test", check) of ``keys`` that today's notebook tests report rather than assert,
    from the tests' own overrides, whatever the recorded runs asserted: notebook 05's findings
    (:data:`FINDINGS_05`) its ``bd_asserted`` leaves out, notebook 04's checks of a kind (``kinds``:
    check name -> kind, as the runs recorded it from ``04_headline_check``) its ``cl_asserted`` leaves out, and
    notebook 03's PGD-AT gain where the test sets its floor to 0. Also, at smoke, notebook 05's findings
    that today's smoke recipe does not assert (runs of an older recipe recorded them as asserted)."""
    from bench_notebook_flips import test_overrides  # puts the repository on sys.path
    from lib.studies import backdoor

    floor_03 = test_overrides("03").get("adv_min_pgd_at_gain")  # 03's test sets the gain's floor to 0: reported
    out = {k for k in keys if k == ("03", "test", "pgd_at_gain") and floor_03 == 0}
    asserted_05, asserted_04 = test_overrides("05").get("bd_asserted"), test_overrides("04").get("cl_asserted")
    smoke_05 = backdoor.recipe("smoke")["asserted"]
    out |= {k for k in keys if k[:2] == ("05", "smoke") and k[2] in FINDINGS_05 and k[2] not in smoke_05}
    for nb, size, check in keys:
        if size != "test":
            continue
        if nb == "05" and asserted_05 is not None and check in FINDINGS_05:
            out |= {(nb, size, check)} if check not in asserted_05 else set()
        if nb == "04" and asserted_04 is not None:
            out |= {(nb, size, check)} if kinds[check] not in asserted_04 else set()
    return out


def main() -> None:
    flips = json.loads((RESULTS / "notebook_flips.json").read_text())
    sources = ["defence_flips.json", "flip_rates.json", "notebook_flips.json (notebook_05_values)"]
    reported = set(REPORTED)
    margins = {**defence_margins(json.loads((RESULTS / "defence_flips.json").read_text())["runs"]),
               **flip_rate_margins(json.loads((RESULTS / "flip_rates.json").read_text())["runs"]),
               **notebook_05_margins(flips["notebook_05_values"])}
    kinds = {}
    if (RESULTS / "notebook_margins.json").is_file():
        sources.append("notebook_margins.json")
        runs = json.loads((RESULTS / "notebook_margins.json").read_text())["runs"]
        kinds = {check: kind for r in runs if r["notebook"] == "04" for check, kind in r.get("kinds", {}).items()}
        new, more = notebook_margins(runs)
        reported |= more
        # a check measured again there replaces what the older files recorded of it (a superseded row too)
        margins = {k: v for k, v in margins.items()
                   if not any(k[:2] == n[:2] and k[2].startswith(n[2]) for n in new)} | new
    reported |= reported_by_tests(margins, kinds)
    rows = [{"notebook": nb, "size": size, "check": check, "asserted": (nb, size, check) not in reported,
             **predicted_flip(v)} for (nb, size, check), v in sorted(margins.items())]
    save("flip_margins", {"sources": sources, "checks": rows})
    print(f"{PAGE}: {'rewritten' if write_doc(rows) else 'already up to date'}")


# (notebook, size, check) measured here that the size reports instead of asserting: notebook 06's test runs the
# notebook with att_asserted=["clean"], since its trigger check's predicted failure at those budgets is above 1 in
# 100 (notebook_margins finds those its runs recorded as reported)
REPORTED = {("06", "test", "trigger: attention on the trigger above the clean model's")}
PAGE = Path(__file__).resolve().parent.parent / "docs" / "reproducibility.md"
BEGIN = "<!-- flip margins: generated by benchmarks/flip_margins.py from results/flip_margins.json; do not edit -->"
END = "<!-- end of the generated flip margins -->"


def one_in(p: float) -> str:
    """A probability as "1 in N" runs, the way a reader weighs a flaky check."""
    return "under 1 in 10,000" if p < 1e-4 else f"1 in {round(1 / p):,}"


def doc_block(rows: list[dict]) -> str:
    """The table of :func:`main`'s rows for ``docs/reproducibility.md``: per check and size the seeds,
    how many of them failed, the margin's distance from 0 in standard deviations of a new seed
    (``z``) and the predicted chance of a failure, t and normal. "At or below 0" counts the seeds that
    failed (a margin of exactly 0 fails only the strict checks)."""
    lines = [BEGIN, "", "| notebook | size | check | seeds | at or below 0 | z | predicted failure (t) | (normal) | "
             "t under 1 in 100 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        failed = sum(m <= 0 for m in r["margins"])  # 0 fails the strict checks (04's, 07's augment)
        lines.append(f"| {r['notebook']} | {r['size']} | {r['check']} | {r['seeds']} | {failed} | {r['z']:g} | "
                     f"{one_in(r['p_flip_t'])} | {one_in(r['p_flip_normal'])} | "
                     f"{('yes' if r['p_flip_t'] < 0.01 else 'no') if r['asserted'] else 'reported, not asserted'} |")
    return "\n".join(lines + ["", END])


def write_doc(rows: list[dict], page: Path = PAGE) -> bool:
    """Put :func:`doc_block` between the markers of ``page``; True when the page changed."""
    text = page.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{page} has no generated block: put the lines {BEGIN!r} and {END!r} where it goes")
    head, rest = text.split(BEGIN, 1)
    new = head + doc_block(rows) + rest.split(END, 1)[1]
    page.write_text(new)
    return new != text


if __name__ == "__main__":
    main()
