"""Notebook 07's reporting of the unrestricted attack (:mod:`lib.studies.unrestricted`): the step-0
baseline (how many starting samples the classifier already got wrong), a judge the attack did not
optimise against, the pixel term's measured size, the attack-steps figure with Wilson bands and the
generated paragraph. Why: "x% are unrestricted adversarial examples" counts samples that were wrong
before any optimisation, and validity judged by the auxiliary head the attack optimises toward y
says little; the numbers here separate both.
"""
from __future__ import annotations

import pandas as pd

from ..metrics import binomial_interval, rate_interval
from .unrestricted import interval_text, predictions


def _row(quantity: str, k: int, n: int, **extra) -> dict:
    low, high = binomial_interval(int(k), int(n))
    return {"quantity": quantity, "k": int(k), "n": int(n), "share": k / n if n else float("nan"),
            "low": low, "high": high, **extra}


def step0_baseline(attack, classifier) -> pd.DataFrame:
    """One row per quantity (``k`` of ``n``, share and Wilson interval) of the attack against
    ``classifier``: wrong at step 0 (on ``G(z0, y)``, the image of step 0: the pixel term starts at
    0), unrestricted at the end over all codes (the study's count), and among the codes right at
    step 0, those the optimisation made wrong and those it made unrestricted examples (wrong, the
    aux head still says y): the attack's own effect."""
    y = attack.y
    right0 = predictions(classifier.eval(), attack.clean) == y
    wrong_end, ok = attack.pred != y, attack.success.bool()
    n, n_right = len(y), int(right0.sum())
    return pd.DataFrame([
        _row("wrong at step 0", int((~right0).sum()), n),
        _row("unrestricted at the end (all codes)", int(ok.sum()), n),
        _row("made wrong (right at step 0)", int((right0 & wrong_end).sum()), n_right),
        _row("made unrestricted (right at step 0)", int((right0 & ok).sum()), n_right)])


def judge_table(attack, models: dict, attacked: str = "clean") -> pd.DataFrame:
    """Per classifier of ``models`` other than ``attacked`` (the attack optimised against
    ``attacked`` and the GAN's aux head only): the share of the successful unrestricted examples it
    still labels as the source class y, and, for reference, the share of the same codes' starting
    samples ``G(z0, y)`` it labels y, each with its Wilson interval. ``real_only``: trained on real
    images only (the FGSM arm), so independent of the generator too; the GAN arms saw its images."""
    ok = attack.success.bool()
    rows = []
    for name, model in models.items():
        if name == attacked:
            continue
        says_y = predictions(model.eval(), attack.images) == attack.y
        start_y = predictions(model, attack.clean) == attack.y
        s = _row(name, int((says_y & ok).sum()), int(ok.sum()), real_only=name in ("clean", "fgsm"))
        s0 = _row(name, int(start_y.sum()), len(start_y))
        rows.append({"judge": name, **{k: v for k, v in s.items() if k != "quantity"},
                     "start_share": s0["share"], "start_low": s0["low"], "start_high": s0["high"], "start_n": s0["n"]})
    return pd.DataFrame(rows)


def pixel_linf(attack, cfg: dict) -> dict:
    """The pixel term's measured size: per image ``max |x~ - G(z, y)|`` in pixels (``images`` minus
    ``samples``), its median and maximum in /255, and the budget the recipe allows it
    (``attack_eps`` is in the GAN's [-1, 1] units: ``attack_eps / 2`` in pixels), beside the
    ``eval_eps`` of the eps-ball attacks."""
    per = (attack.images - attack.samples).abs().flatten(1).amax(1) * 255
    return {"median": float(per.median()), "max": float(per.max()), "n": len(per),
            "budget": cfg["attack_eps"] / 2 * 255, "eval_eps": cfg["eval_eps"] * 255}


def linf_text(linf: dict) -> str:
    """One line for captions: the pixel term's measured L-inf against its budget and ``eval_eps``."""
    return (f"pixel term L-inf {linf['median']:.2f}/255 median, {linf['max']:.2f}/255 max over {linf['n']} images "
            f"(budget attack_eps/2 = {linf['budget']:.2f}/255; the eps-ball attacks use {linf['eval_eps']:.0f}/255)")


def attack_steps_figure(trace: pd.DataFrame, n: int, num_classes: int):
    """The attack's trace (classifier accuracy, aux agreement, success per step on the same ``n``
    codes), each with its 95% Wilson band over the ``n`` images."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for col, label in (("acc", "classifier accuracy on the images"), ("aux_agree", "aux classifier says y"),
                       ("success", "success (wrong and aux says y)")):
        bands = [rate_interval(v, n) for v in trace[col]]
        line, = ax.plot(trace["step"], trace[col], label=label)
        ax.fill_between(trace["step"], [b[0] for b in bands], [b[1] for b in bands], color=line.get_color(),
                        alpha=0.2, lw=0)
    ax.axhline(1 / num_classes, ls=":", c="grey", label="chance")
    ax.set(xlabel="latent-optimisation step", ylabel="fraction of images", ylim=(0, 1),
           title=f"latent optimisation against the clean classifier\n(n = {n} codes; bands: 95% Wilson intervals)")
    ax.legend(fontsize=8)
    return fig


def _pct(r) -> str:
    return f"{r['share']:.1%} [{r['low']:.1%}, {r['high']:.1%}]"


def attack_text(q_all, t: pd.DataFrame, base: pd.DataFrame, judges: pd.DataFrame, linf: dict, steps: int,
                aux_agree: float, num_classes: int) -> str:
    """Markdown on the clean classifier's three accuracies on GAN samples (each named: which
    samples, n), the attack's effect net of the step-0 baseline, the judges it did not optimise
    against and the pixel term's size. ``q_all``: the ``all`` row of the sample-quality table;
    ``t``: the augmentation table indexed by method (the clean model's accuracy on its GAN samples)."""
    b = base.set_index("quantity")
    w0, mw = b.loc["wrong at step 0"], b.loc["made wrong (right at step 0)"]
    made = b.loc["made unrestricted (right at step 0)"]
    n_q, n0 = int(q_all["n"]), int(w0["n"])
    text = (
        f"The clean classifier (trained on real images only) labels correctly **{q_all['clf_acc']:.1%}** "
        f"[{q_all['clf_low']:.1%}, {q_all['clf_high']:.1%}] of the sample-quality set ({n_q} GAN samples, "
        f"{n_q // num_classes} per class; chance {1 / num_classes:.0%}; the study: 89%), where the GAN's auxiliary "
        f"head gets {q_all['aux_acc']:.1%}; {interval_text(t, 'clean', 'gan_samples')} of the augmentation table's "
        f"fixed set ({int(t.loc['clean', 'gan_samples_n'])} samples from other codes); and "
        f"{1 - w0['share']:.1%} of the attack's {n0} starting samples G(z0, y) (codes of their own, "
        f"{n0 // num_classes} per class): these three differ only by which samples were drawn. So "
        f"**{_pct(w0)}** ({int(w0['k'])} of {n0}) of the attack's samples are wrong before any optimisation. "
        f"After {steps} latent-optimisation steps, of the {int(made['n'])} the classifier got right at step 0, "
        f"the optimisation made {_pct(mw)} wrong and **{_pct(made)}** unrestricted adversarial examples (wrong "
        f"while the aux head still says y). Counted over all {n0} codes, step-0 failures included, as the study "
        f"counts: {_pct(b.loc['unrestricted at the end (all codes)'])}; aux agreement {aux_agree:.1%}. ")
    if len(judges):
        j = judges.set_index("judge")
        main = j.loc["fgsm"] if "fgsm" in j.index else j.iloc[0]
        others = "; ".join(f"{name} {_pct(r)}" for name, r in j.iterrows() if name != main.name)
        text += (f"Validity judged by a classifier the attack did not optimise against: the {main.name}-augmented "
                 f"model (real images only) still labels **{_pct(main)}** of the {int(main['n'])} successful "
                 f"examples as the source class y (and {main['start_share']:.1%} [{main['start_low']:.1%}, "
                 f"{main['start_high']:.1%}] of the same codes' starting samples)"
                 + (f"; the models trained with GAN images: {others}" if others else "")
                 + ". A model of the attacked one's architecture and data is fooled by transfer too, so a low "
                 "share does not show that the images left class y; only a human or an unrelated model could. ")
    else:
        text += ("No classifier the attack did not optimise against is available here, so validity rests on the "
                 "GAN's own auxiliary head alone. ")
    text += ("Besides the latent change the images carry a pixel term added to G(z, y): "
             f"{linf_text(linf).replace('pixel term ', '', 1)}; the recipe sets its "
             "budget with `attack_eps` (notebook parameter `gan_attack_eps`); the ablation below turns it off.")
    return text


def ablation_table(attacks: dict, classifier) -> pd.DataFrame:
    """The attack with and without its pixel term (``attacks``: label -> result on the same codes
    and labels): per variant, among the codes ``classifier`` got right at step 0, the share made
    wrong and made unrestricted (Wilson), and the pixel term's measured L-inf in /255."""
    rows = []
    for label, attack in attacks.items():
        b = step0_baseline(attack, classifier).set_index("quantity")
        linf = float((attack.images - attack.samples).abs().flatten(1).amax(1).max() * 255)
        for q in ("made wrong (right at step 0)", "made unrestricted (right at step 0)"):
            r = b.loc[q]
            rows.append({"variant": label, "quantity": q, "k": int(r["k"]), "n": int(r["n"]), "share": r["share"],
                         "low": r["low"], "high": r["high"], "pixel_linf_max": round(linf, 2)})
    return pd.DataFrame(rows)


def ablation_text(table: pd.DataFrame) -> str:
    """Markdown: how much of the attack's effect the pixel term carries, worded by the intervals."""
    q = "made unrestricted (right at step 0)"
    rows = table[table["quantity"] == q].set_index("variant")
    (full_name, full), (lat_name, lat) = list(rows.iterrows())[:2]
    apart = full["low"] > lat["high"] or lat["low"] > full["high"]
    return (f"**Pixel-term ablation** (the same {int(full['n'])} codes right at step 0): {full_name} (pixel change "
            f"up to {full['pixel_linf_max']:.2f}/255) makes **{_pct(full)}** unrestricted examples; {lat_name} "
            f"({lat['pixel_linf_max']:.2f}/255) makes **{_pct(lat)}**. "
            + ("The 95% intervals are apart: the pixel term carries part of the effect, so the examples are not "
               "purely latent (unrestricted) changes." if apart else
               "The 95% intervals overlap: the data do not separate the two, so the latent change alone accounts "
               "for the effect within this sample's precision."))
