"""Study of notebook 06: where do clean, adversarial and triggered inputs send each model's attention?

The Renofeation and ReMoS authors drew attention maps (``../shared/PROTOCOLS.md`` section 2.6,
item 7); this study measures them against regions whose pixels are known.

**Models**, asked from the store with their own notebooks' recipes (trained there if absent):
the public pretrained teacher (base A; full: ImageNet ``arch``), notebook 02's students of it
(:data:`TRANSFER_METHODS`; smoke: on synsigns half B, full: on GTSRB) and notebook 05's clean and
backdoored teachers and their students on the same task (:data:`lib.artifacts.backdoor.METHODS`).

**Images**: notebook 05's student test set (``task="same"``), the same images for every model
(notebook 02's students, trained on all of half B, read them through their class names). Smoke:
10 classes of synsigns half B at 32 px with their object masks; real: the shared GTSRB subset's
test set at 32 px, full: GTSRB's at 224 px, each with its ROI boxes as the object. Four **input
kinds**: ``clean``; ``teacher_adv``, notebook 02's
feature attack crafted once on the pretrained teacher and sent to every model; ``own_pgd``, each
model's own white-box PGD at notebook 02's budget; ``triggered``, notebook 05's trigger at its
position.

**Regions**: ``object`` (the object mask without the trigger's pixels, so the regions are the same
for every input kind), ``trigger`` (where the patch lands) and ``other_object`` (the object region
of *another* image of the set: a chance line that keeps the centre prior, since objects sit near
the centre of most images and a map that always looks at the centre scores well on the area share
alone). Measured per image, model, input kind and map (:func:`lib.explain.gradcam`,
:func:`lib.explain.activation_map`): attention mass, pointing hit and area share
(:func:`lib.explain.attention_scores`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .. import evaluate, explain
from ..artifacts import backdoor as bd_models
from ..attacks import attack_fn, with_own_labels
from ..backdoor import apply_trigger, backdoor_rates
from ..cache import cached
from ..data import ImageSet, data_fingerprint, labels_of, stratified_order
from ..evaluate.crafted import craft, craft_sets
from ..metrics import binomial_interval
from ..models import model_fingerprint
from ..store import Store
from ..store.versions import module_version
from ..train import predict
from . import notebook_params, with_needs
from . import recipe as _recipe
from .attention_zoo import (  # noqa: F401 (the notebook's and the explorer's)
    CLEAN_MODEL, Entry, map_stage, model_zoo, recipe_02, recipe_05)
from .attention_figures import (  # noqa: F401 (the notebook's)
    KINDS, attention_grid, mass_figure, mean_interval, random_images, select_images, selection_caption,
    selection_text)

TRANSFER_METHODS = ["fine_tune", "retrain", "renofeation"]
REGIONS = ("object", "trigger", "other_object")
MAPS = ("gradcam", "activation")
_COMMON = {
    "transfer_methods": TRANSFER_METHODS,     # notebook 02's students shown
    "backdoor_methods": list(bd_models.METHODS),  # notebook 05's students shown
    "transfer_kw": None,     # {method: {setting: value}} over notebook 02's (None: its models as they are)
    "backdoor_recipe": None,  # overrides of notebook 05's recipe (None: its models as they are)
    "n_eval": None,          # images of the evaluation set (None: all of it), stratified by class
    "stage": None,           # feature stage of both maps (None: each model's last, the authors' layer4)
    "pointing_tolerance": 15 / 224,  # pointing-game hits within this share of the side (Zhang et al.: 15 px at 224)
    "n_show": 4,             # images in the authors' picture
    "seed": 0,               # evaluation subset and white-box PGD start
    # your own pretrained teacher, as notebook 02's teacher and notebook 05's public model (lib.evaluate.own_teacher:
    # {"factory": "pkg.mod:fn", "weights": FILE, "norm": ...} or {"arch": NAME, "weights": FILE}); None: base A
    "yours": None,
    # the checks the notebook asserts (the others are reported): "clean" (attention on the object beats its area
    # share and another image's object), "trigger" (the planted models look at the trigger)
    "asserted": ["clean", "trigger"],
}
RECIPE = {
    # conv3 (8x8 cells at 32 px) matches the resolution of the authors' layer4 map (7x7 at 224 px);
    # the small CNN's last stage (conv4) has 4x4 cells, each larger than the trigger patch
    "smoke": {**_COMMON, "stage": "conv3"},
    # GTSRB at 224 px (notebook 05's full student task; notebook 02's students trained on it too)
    "full": {**_COMMON, "n_eval": 1000, "transfer_dataset": "gtsrb"},
    # the shared GTSRB subset at 32 px (notebook 02's and 05's real task) with its ROI boxes as the object;
    # ResNet-20's last stage (8x8 cells) matches the authors' layer4 (7x7 at 224 px). The trigger check is
    # asserted (the planted teacher's Grad-CAM mass on the trigger against the clean model's: in the published
    # real run its interval lies far from zero, docs/results_real.md); the object check is reported. 300
    # images, not 500: at 500 the difference's interval was a small fraction of the difference itself
    "real": {**_COMMON, "n_eval": 300, "asserted": ["trigger"]},
}
PREFIX, NEEDS = "att", ("01", "02", "05")  # notebook parameters att_<key>; the models of 02 and 05
PARAMS = notebook_params(PREFIX, RECIPE)


def recipe(profile: str = "smoke", **overrides) -> dict:
    """Notebook 06's recipe for ``profile`` with ``overrides`` (``None`` keeps the recipe's), with
    the default recipes of the notebooks it needs (``cfg["needs"]``: :func:`lib.studies.with_needs`)."""
    return with_needs(_recipe(RECIPE, profile, **overrides), NEEDS, profile)


# ----------------------------------------------------------------------------------- the images
@dataclass
class EvalSet:
    """The evaluation images and everything measured against them (CPU tensors): ``x`` clean
    images, ``y`` labels and ``classes`` names; ``x_trig`` with the trigger; ``object`` and
    ``trigger`` bool region masks ``(N, H, W)`` and ``other_object`` (each image's object region
    taken from another image: a seeded shuffle rolled by one, so never its own); ``target`` the
    backdoor's class; ``indices`` the positions in the test set; ``teacher_attack`` / ``pgd`` the
    attacks (``AttackFn``)."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    x_trig: torch.Tensor
    object: torch.Tensor
    trigger: torch.Tensor
    other_object: torch.Tensor
    target: int
    indices: torch.Tensor
    teacher_attack: object
    pgd: object
    fingerprint: str
    _teacher_adv: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)

    def teacher_adv(self, teacher) -> torch.Tensor:
        """Notebook 02's feature attack crafted once on ``teacher``: kept on this object and in
        the store (keyed by the teacher's weights, the images and the attack), so a rerun that
        loads the attention table does not craft all images again for the few it pictures."""
        if self._teacher_adv is None:
            self._teacher_adv = cached("06_teacher_adv", craft_sets, teacher, self.x, self.y,
                                       {"adv": self.teacher_attack})["adv"]
        return self._teacher_adv


def _object_masks(test, indices: torch.Tensor) -> torch.Tensor:
    if isinstance(test, ImageSet):
        if test.masks is None:
            raise ValueError(f"{test.name} has no object masks to measure attention against")
        return test.masks[indices].bool()
    if hasattr(test, "roi_masks"):  # GTSRB: the ROI box at the loaded size
        return test.roi_masks(indices)
    base = getattr(test, "dataset", None)
    if base is not None and hasattr(base, "roi_masks"):
        return base.roi_masks(torch.as_tensor(test.indices)[indices])
    raise ValueError(f"{type(test).__name__} has neither object masks nor ROI boxes")


def _with_roi_masks(test, cfg05: dict):
    """``test`` with the shared GTSRB subset's ROI boxes as masks when it is that subset's test set
    (notebook 05's real recipe reads it without them); checked image for image."""
    if cfg05["dataset"] != "gtsrb_shared" or getattr(test, "masks", None) is not None:
        return test
    from .attention_real import gtsrb_sets
    boxed = gtsrb_sets()[1]
    if not torch.equal(boxed.images, test.images):
        raise ValueError("the shared GTSRB test images differ from notebook 05's: no ROI boxes to measure against")
    return ImageSet(test.images, test.labels, list(test.classes), boxed.masks, test.name)


def eval_set(cfg: dict) -> EvalSet:
    """Notebook 05's student test set (same task), ``n_eval`` images stratified by class (all by
    default), with the trigger applied as notebook 05 applies it and notebook 02's attacks."""
    cfg05 = recipe_05(cfg)
    _, test = bd_models.student_data(cfg05, "same")
    n = len(test) if cfg["n_eval"] is None else min(cfg["n_eval"], len(test))
    x, y = evaluate.eval_images(test, n, cfg["seed"])
    indices = stratified_order(labels_of(test), cfg["seed"])[:n]  # the positions eval_images took
    obj = _object_masks(_with_roi_masks(test, cfg05), indices)
    x_trig, mask = apply_trigger(x, bd_models.make_trigger(cfg05), where=cfg05["where"], seed=cfg05["seed"])
    trig = mask[:, 0].cpu()
    cfg02 = cfg["needs"]["02"]
    eps = cfg02["feature_eps"]
    feature = attack_fn("feature", eps=eps, alpha=eps / 10, steps=cfg02["feature_steps"], seed=cfg02["seed"])
    pgd = attack_fn("pgd", eps=eps, alpha=eps / 4, steps=cfg02["pgd_steps"], seed=cfg["seed"])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg["seed"]))
    other = torch.empty(n, dtype=torch.long)
    other[order] = order.roll(1)  # image order[k] borrows the region of order[k - 1]
    obj = obj & ~trig
    return EvalSet(x, y, list(test.classes), x_trig, obj, trig, obj[other], int(cfg05["target"]), indices,
                   feature, pgd, data_fingerprint((x, y)))


# -------------------------------------------------------------------------------- measurements
def label_maps(entry: Entry, classes: list[str]):
    """``(to_eval, to_model)``: the model's label -> the evaluation label (-1 for a class the
    evaluation set lacks), and the evaluation label -> the model's; ``(None, None)`` for a
    model over another task (the pretrained teacher)."""
    if entry.classes is None:
        return None, None
    pos = {c: i for i, c in enumerate(entry.classes)}
    missing = [c for c in classes if c not in pos]
    if missing:
        raise ValueError(f"the model has no classes {missing[:3]}...: it cannot be scored on the evaluation set")
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index.get(c, -1) for c in entry.classes]), torch.tensor([pos[c] for c in classes])


def own_pgd(entry: Entry, ev: EvalSet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The model's own white-box PGD (``ev.pgd``) of images ``x`` with evaluation labels ``y``: towards
    its wrong classes, or away from its own predictions when its head is over another task."""
    to_model = label_maps(entry, ev.classes)[1]
    if to_model is None:
        return craft(entry.model, (x, y), with_own_labels(ev.pgd))[1]
    return craft(entry.model, (x, to_model[y]), ev.pgd)[1]


def model_inputs(entry: Entry, ev: EvalSet, teacher) -> dict[str, torch.Tensor]:
    """The four input kinds for one model: clean, the teacher's feature attack (shared), the
    model's own white-box PGD (:func:`own_pgd`) and the triggered images."""
    return {"clean": ev.x, "teacher_adv": ev.teacher_adv(teacher), "own_pgd": own_pgd(entry, ev, ev.x, ev.y),
            "triggered": ev.x_trig}


def measure_model(name: str, entry: Entry, ev: EvalSet, teacher, stage: str | None = None,
                  tolerance: float = 0.0) -> pd.DataFrame:
    """One row per image, input kind and map for one model: the prediction (as an evaluation
    label, -1 outside its classes), ``correct`` (NaN for a model over another task) and the
    attention scores on the three regions (:func:`lib.explain.attention_scores`, pointing hits
    within ``tolerance`` times the image side)."""
    to_eval, _ = label_maps(entry, ev.classes)
    regions = {"object": ev.object, "trigger": ev.trigger, "other_object": ev.other_object}
    frames = []
    for kind, x in model_inputs(entry, ev, teacher).items():
        pred = predict(entry.model, (x, ev.y))[0].argmax(1)
        pred_eval = to_eval[pred] if to_eval is not None else torch.full_like(pred, -1)
        correct = (pred_eval == ev.y).float().numpy() if to_eval is not None else np.full(len(pred), np.nan)
        for map_name, fn in (("gradcam", explain.gradcam), ("activation", explain.activation_map)):
            cam = fn(entry.model, x, stage=stage)
            frame = explain.attention_scores(cam, regions, tolerance * x.shape[-1])
            frame.insert(0, "correct", correct)
            frame.insert(0, "pred", pred_eval.numpy())
            frame.insert(0, "label", ev.y.numpy())
            frame.insert(0, "image", ev.indices.numpy())
            for col, value in (("map", map_name), ("kind", kind), ("group", entry.group), ("model", name)):
                frame.insert(0, col, value)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def attention_table(zoo: dict[str, Entry], ev: EvalSet, cfg: dict, store: Store | None = None, *,
                    progress: bool = True) -> pd.DataFrame:
    """:func:`measure_model` for every model, concatenated; computed once and then loaded from
    the store (keyed by the models' weights, the images, regions, attacks and stage)."""
    from tqdm.auto import tqdm

    store = store or Store()
    teacher = zoo["pretrained teacher"].model
    key = {"models": {n: model_fingerprint(e.model) for n, e in zoo.items()}, "images": ev.fingerprint,
           "triggered": data_fingerprint((ev.x_trig, ev.y)),
           "regions": [data_fingerprint((r, ev.y)) for r in (ev.object, ev.trigger, ev.other_object)],
           "attacks": [repr(ev.teacher_attack), repr(ev.pgd)], "stage": cfg["stage"],
           "tolerance": cfg["pointing_tolerance"], "code": module_version(__name__)}

    def compute():
        return pd.concat([measure_model(n, e, ev, teacher, cfg["stage"], cfg["pointing_tolerance"])
                          for n, e in tqdm(zoo.items(), desc="models", disable=not progress)], ignore_index=True)

    return store.result("attention_scores", key, compute)


def summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per model, input kind and map: ``n`` images, ``n_flat`` (all-zero maps, left out of the
    means), the mean attention mass on each region with its 95% interval, the mean area share
    (the chance line), the pointing-game hit rate with its Wilson interval, and accuracy."""
    rows = []
    for (model, group, kind, map_name), g in scores.groupby(["model", "group", "kind", "map"], sort=False):
        row = {"model": model, "group": group, "kind": kind, "map": map_name, "n": len(g),
               "n_flat": int(g["object_mass"].isna().sum()), "acc": g["correct"].mean()}
        for region in REGIONS:
            m, lo, hi = mean_interval(g[f"{region}_mass"])
            k = int(g[f"{region}_hit"].astype(bool).sum())
            h_lo, h_hi = binomial_interval(k, len(g))
            row.update({f"{region}_mass": m, f"{region}_mass_low": lo, f"{region}_mass_high": hi,
                        f"{region}_area": g[f"{region}_area"].mean(), f"{region}_hit": k / len(g),
                        f"{region}_hit_low": h_lo, f"{region}_hit_high": h_hi})
        rows.append(row)
    return pd.DataFrame(rows)


def backdoor_table(scores: pd.DataFrame, target: int) -> pd.DataFrame:
    """Per model scored on the evaluation classes: clean accuracy and the backdoor's success on
    these images (:func:`lib.backdoor.backdoor_rates`: ASR as the authors count it, among
    clean-correct images), from the predictions the maps were computed on."""
    rows = []
    g = scores[scores["map"] == "gradcam"]
    for model, m in g.groupby("model", sort=False):
        if m["correct"].isna().all():
            continue
        clean = m[m["kind"] == "clean"].sort_values("image")
        trig = m[m["kind"] == "triggered"].sort_values("image")
        r = backdoor_rates(torch.tensor(clean["pred"].to_numpy()), torch.tensor(trig["pred"].to_numpy()),
                           torch.tensor(clean["label"].to_numpy()), target)
        rows.append({"model": model, "group": m["group"].iloc[0], "clean_acc": r["clean_acc"]["value"],
                     "asr": r["asr"]["value"], "asr_low": r["asr"]["low"], "asr_high": r["asr"]["high"],
                     "asr_n": r["asr"]["n"]})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------- checks
def clean_check(scores: pd.DataFrame, map_name: str = "gradcam") -> pd.DataFrame:
    """On clean inputs, per model: the mean attention mass on the object and its 95% interval,
    against (``passed_area``) the object's mean area share, which the interval's lower end must
    clear, and (``passed_other``) the mass the same maps put on another image's object region
    (the centre prior), which the paired difference's interval must clear."""
    s = scores[(scores["kind"] == "clean") & (scores["map"] == map_name)]
    rows = []
    for model, g in s.groupby("model", sort=False):
        m, lo, _ = mean_interval(g["object_mass"])
        d, d_lo, d_hi = mean_interval(g["object_mass"] - g["other_object_mass"])
        rows.append({"model": model, "n": len(g), "object_mass": m, "object_mass_low": lo,
                     "object_area": g["object_area"].mean(), "other_object_mass": g["other_object_mass"].mean(),
                     "difference": d, "difference_low": d_lo, "difference_high": d_hi,
                     "passed_area": bool(lo > g["object_area"].mean()), "passed_other": bool(d_lo > 0)})
    return pd.DataFrame(rows)


# The trigger check is asserted on the planted teacher only, and only where its backdoor fired on
# at least MIN_FIRED images (fewer, and the difference is mostly images the backdoor did not
# decide). Measured over five seeds of notebook 05's models at the test size and at smoke
# (benchmarks/bench_flip_rates.py, results/flip_rates.json): the teacher's interval cleared zero
# in every run, while the students' did not hold from seed to seed. A student that fired on 80 of
# 300 images put less Grad-CAM mass on the trigger than the clean model on the images where it
# fired, and at the test size fine-tuning fired on 10 of 100 images with a difference of
# [-0.003, +0.012]. So for students the check is a reported finding, not an assert.
MIN_FIRED = 30
ASSERTED_MODELS = ("05 backdoored teacher",)


def trigger_check(scores: pd.DataFrame, rates: pd.DataFrame, *, target: int, clean_model: str = CLEAN_MODEL,
                  map_name: str = "gradcam", min_fired: int = MIN_FIRED,
                  asserted: tuple[str, ...] = ASSERTED_MODELS) -> pd.DataFrame:
    """On triggered inputs, does a backdoored model that still fires put more mass on the trigger
    than ``clean_model`` does on the same images? ``difference``: the paired difference over all
    triggered images with its 95% interval; ``difference_fired``: the same over the images where
    the backdoor fired (clean-correct, triggered prediction the target, true class not the target).
    A model *fires* when its ASR's Wilson interval lies above the clean model's (whose "ASR" is how
    often an occluded corner alone sends a clean-correct image to the target class). The check is
    made (``checked``, ``passed``: the interval of ``difference`` above 0) for the ``asserted``
    models (:data:`ASSERTED_MODELS`) that fire on at least ``min_fired`` images
    (:data:`MIN_FIRED`); elsewhere ``passed`` is None and the numbers are reported all the same.
    Beside it, the mean trigger mass on the images where the backdoor fired and on the others."""
    s = scores[(scores["kind"] == "triggered") & (scores["map"] == map_name)]
    c = scores[(scores["kind"] == "clean") & (scores["map"] == map_name)]
    ref = s[s["model"] == clean_model].set_index("image")["trigger_mass"]
    ref_high = rates.set_index("model").loc[clean_model, "asr_high"]
    rows = []
    for _, r in rates[rates["model"].isin(_backdoored(scores))].iterrows():
        mine = s[s["model"] == r["model"]].set_index("image")
        right = c[c["model"] == r["model"]].set_index("image")["correct"].reindex(mine.index) == 1
        fired = right & (mine["pred"] == target) & (mine["label"] != target)
        gap = mine["trigger_mass"] - ref.reindex(mine.index)
        diff, lo, hi = mean_interval(gap)
        f_diff, f_lo, f_hi = mean_interval(gap[fired])
        fires = bool(r["asr_low"] > ref_high)
        checked = fires and int(fired.sum()) >= min_fired and r["model"] in asserted
        rows.append({"model": r["model"], "asr": r["asr"], "asr_low": r["asr_low"], "clean_model_asr_high": ref_high,
                     "fires": fires, "trigger_mass": mine["trigger_mass"].mean(), "clean_model_mass": ref.mean(),
                     "difference": diff, "difference_low": lo, "difference_high": hi,
                     "difference_fired": f_diff, "difference_fired_low": f_lo, "difference_fired_high": f_hi,
                     "n": int(mine["trigger_mass"].notna().sum()), "n_fired": int(fired.sum()),
                     "mass_fired": mine.loc[fired, "trigger_mass"].mean(),
                     "mass_not_fired": mine.loc[~fired, "trigger_mass"].mean(),
                     "checked": checked, "passed": bool(lo > 0) if checked else None})
    return pd.DataFrame(rows)


def _backdoored(scores: pd.DataFrame) -> list[str]:
    return sorted(scores.loc[scores["group"].str.contains("backdoor"), "model"].unique())


def _verdict(d: float, lo: float, hi: float) -> str:
    """A paired difference in words: clearly more or less than the clean model, or not separated."""
    if not np.isfinite(lo):
        return f"{d:+.1%} (too few images for an interval)" if np.isfinite(d) else "no image"
    word = "clearly more" if lo > 0 else "clearly less" if hi < 0 else "not separated from the clean model"
    return f"{d:+.1%} [{lo:+.1%}, {hi:+.1%}] ({word})"


def headline_paragraph(table: pd.DataFrame, rates: pd.DataFrame, clean: pd.DataFrame, trig: pd.DataFrame) -> str:
    """Markdown sentences stating the measured result (Grad-CAM; the activation map beside it)."""
    pct = lambda v: f"{v:.0%}"
    c = table[(table["kind"] == "clean") & (table["map"] == "gradcam")].set_index("model")
    ca = table[(table["kind"] == "clean") & (table["map"] == "activation")].set_index("model")
    text = (f"On clean images Grad-CAM puts {pct(c['object_mass'].min())} to {pct(c['object_mass'].max())} of its "
            f"mass on the object, whose area share is {pct(c['object_area'].mean())} (n = {int(c['n'].iloc[0])} "
            f"images); {int(clean['passed_area'].sum())} of {len(clean)} models are clearly above that share. The "
            f"same maps put {pct(clean['other_object_mass'].min())} to {pct(clean['other_object_mass'].max())} on "
            f"another image's object region (the centre prior), and {int(clean['passed_other'].sum())} of "
            f"{len(clean)} models clearly more on their own image's object. The authors' activation map gives "
            f"{pct(ca['object_mass'].min())} to {pct(ca['object_mass'].max())} on the object. ")
    g = table[table["map"] == "gradcam"].groupby("kind")
    mass, acc = g["object_mass"].mean(), g["acc"].mean()
    text += (f"Adversarial inputs move the attention less than they move the decision: averaged over the models, "
             f"the object's share is {pct(mass['clean'])} clean, {pct(mass['teacher_adv'])} under the teacher's "
             f"feature attack and {pct(mass['own_pgd'])} under each model's own PGD, where accuracy falls from "
             f"{pct(acc['clean'])} to {pct(acc['teacher_adv'])} and {pct(acc['own_pgd'])}. ")
    if len(trig):
        fire, quiet = trig[trig["fires"]], trig[~trig["fires"]]
        chk = fire[fire["checked"].astype(bool)]
        area = table[(table["kind"] == "triggered")]["trigger_area"].mean()
        if len(fire):
            text += (f"On triggered images, {len(fire)} backdoored models still fire (ASR interval above the "
                     f"clean-trained {CLEAN_MODEL}'s, which reaches {pct(fire['clean_model_asr_high'].iloc[0])} at "
                     "most: " + ", ".join(f"{m} {pct(a)}" for m, a in zip(fire["model"], fire["asr"]))
                     + f"). They put {pct(fire['trigger_mass'].min())} to {pct(fire['trigger_mass'].max())} of "
                     f"their Grad-CAM mass on the trigger patch (area share {pct(area)}), against "
                     f"{pct(fire['clean_model_mass'].iloc[0])} for the clean-trained model on the same images, and "
                     f"{pct(fire['mass_fired'].min())} to {pct(fire['mass_fired'].max())} on the images where the "
                     f"backdoor fired. The planted teacher is checked: "
                     + ("; ".join(f"{m} {_verdict(d, lo, hi)}" for m, d, lo, hi in zip(
                         chk["model"], chk["difference"], chk["difference_low"], chk["difference_high"]))
                        if len(chk) else "it did not fire on enough images, so nothing is checked")
                     + ". ")
            rest = fire[~fire["checked"].astype(bool)]
            if len(rest):
                text += ("Reported, not asserted (whether a student's Grad-CAM follows the trigger changes with the "
                         "training seed; or too few images fired), over all triggered images and over those where "
                         "the backdoor fired: " + "; ".join(
                             f"{m} {_verdict(d, lo, hi)}, {_verdict(fd, flo, fhi)} on its {k} fired"
                             for m, d, lo, hi, fd, flo, fhi, k in zip(
                                 rest["model"], rest["difference"], rest["difference_low"], rest["difference_high"],
                                 rest["difference_fired"], rest["difference_fired_low"],
                                 rest["difference_fired_high"], rest["n_fired"])) + ". ")
            tg = table[table["map"] == "gradcam"].set_index(["model", "kind"])["object_mass"]
            text += (f"Their attention leaves the object: its share falls from "
                     f"{pct(min(tg[(m, 'clean')] for m in fire['model']))}-"
                     f"{pct(max(tg[(m, 'clean')] for m in fire['model']))} on clean images to "
                     f"{pct(min(tg[(m, 'triggered')] for m in fire['model']))}-"
                     f"{pct(max(tg[(m, 'triggered')] for m in fire['model']))} on triggered ones, while the "
                     f"clean-trained model keeps {pct(tg[(CLEAN_MODEL, 'triggered')])}. ")
        if len(quiet):
            text += ("Where the backdoor no longer fires ("
                     + ", ".join(f"{m} ASR {pct(a)}" for m, a in zip(quiet["model"], quiet["asr"]))
                     + "), the trigger gets " + ", ".join(pct(v) for v in quiet["trigger_mass"]) + " of the mass. ")
    act = table[(table["map"] == "activation") & (table["kind"] == "triggered")].set_index("model")["trigger_mass"]
    clean_models = [m for m in act.index if m not in set(trig["model"])]
    if clean_models:
        text += (f"The authors' activation map, which shows where features respond rather than what decides, puts "
                 f"{pct(act[clean_models].min())} to {pct(act[clean_models].max())} of its mass on the trigger in "
                 f"the models never trained with it ({', '.join(clean_models)}) and {pct(act.max())} at most in "
                 "any model: a bright patch draws activation whether or not it decides the class.")
    return text

