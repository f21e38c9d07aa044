"""Notebook 08's models: a backdoored model purified by a defence, the teacher purified before
transfer and its students, and the attacker's teacher re-planted on a set a detector cleaned.

The defender holds a small clean set of their own (:func:`clean_set`: ``clean_fraction`` of the
victim's training images of that task, drawn with ``clean_seed``; BackdoorBench's default is 5%
of the training data). Every purification is one row of :data:`DEFENCES`: the method's function
from :mod:`lib.backdoor` and its settings under a recipe, which are the model's store key too (with
the purified model's weights and the clean images), so adding a defence is adding its row here.
Every defence returns a copy: the model it purifies is never changed.
"""
from __future__ import annotations

from ..backdoor import anp, fine_pruning, ft_sam, ibau, nad
from ..data import ImageSet, data_fingerprint, num_classes_of, stratified_subset
from ..models import fresh_like, model_fingerprint
from ..store import Store
from ..store.versions import module_version
from . import backdoor as bd_models


def backdoor_recipe(cfg: dict) -> dict:
    """Notebook 05's recipe as this run resolved it (``cfg["needs"]["05"]``), with notebook 08's
    ``backdoor_recipe`` overrides on top (empty by default: the models notebook 05 trained; the
    tests shorten them)."""
    return {**cfg["needs"]["05"], **(cfg.get("backdoor_recipe") or {})}


def clean_set(cfg: dict, task: str = "same") -> ImageSet:
    """The defender's clean images of ``task`` (``"same"``: the teacher's classes; ``"new"``: the
    new task's): ``clean_fraction`` of the victim's training set of that task, at least one image
    per class, drawn with ``clean_seed`` by :func:`lib.data.stratified_subset` (every class in
    proportion)."""
    train, _ = bd_models.student_data(backdoor_recipe(cfg), task)
    n = max(num_classes_of(train), round(cfg["clean_fraction"] * len(train)))
    return stratified_subset(train, n, seed=cfg["clean_seed"])


def _nad(model, clean, kw):
    return nad.nad(model, clean, **kw)[0]


def _fine_tune(model, clean, kw):
    return nad.fine_tune_clean(model, clean, **kw)[0]


def _fine_pruning(model, clean, kw):
    fit_kw = nad.authors_fit_kw(kw["epochs"], kw["lr"], kw["batch_size"], seed=kw["seed"])
    return fine_pruning(model, clean, ratio=kw["ratio"], keep_head=True, **fit_kw)[0]


def _anp(model, clean, kw):
    return anp.anp(model, clean, **kw)[0]


def _ibau(model, clean, kw):
    return ibau.ibau(model, clean, **kw)


def _ft_sam(model, clean, kw):
    return ft_sam.ft_sam(model, clean, **kw)


def _seeded(cfg: dict, key: str) -> dict:
    return {**cfg[key], "seed": cfg["seed"]}


# defence -> (purify(model, clean set, settings) -> model, settings under a recipe)
DEFENCES = {
    "fine_tune": (_fine_tune, lambda cfg: _seeded(cfg, "ft_kw")),
    "fine_pruning": (_fine_pruning, lambda cfg: {**_seeded(cfg, "ft_kw"), "ratio": cfg["prune_ratio"]}),
    "nad": (_nad, lambda cfg: _seeded(cfg, "nad_kw")),
    "anp": (_anp, lambda cfg: _seeded(cfg, "anp_kw")),
    "ibau": (_ibau, lambda cfg: _seeded(cfg, "ibau_kw")),
    "ft_sam": (_ft_sam, lambda cfg: _seeded(cfg, "ft_sam_kw")),
}
METHODS = list(DEFENCES)


def purified(defence: str, model, clean: ImageSet, cfg: dict, store: Store | None = None):
    """``model`` purified by ``defence`` (one of :data:`METHODS`) on the clean images ``clean``,
    stored under the model's weights, the clean images, the defence's settings and this
    module's code version. ``(model in eval mode, meta)``."""
    if defence not in DEFENCES:
        raise ValueError(f"defence must be one of {METHODS}, got {defence!r}")
    fn, settings = DEFENCES[defence]
    kw = settings(cfg)
    key = {"defence": defence, "model": model_fingerprint(model),
           "clean": data_fingerprint((clean.images, clean.labels)), "settings": kw, "code": module_version(__name__)}

    def train_fn(net):
        net.load_state_dict(fn(model, clean, kw).state_dict())

    out, meta = (store or Store()).model(f"defence_{defence}", key, lambda: fresh_like(model), train_fn)
    return out.eval(), meta


def purified_student(defence: str, cfg: dict, task: str, store: Store | None = None, *, progress: bool = False):
    """The victim's fine-tuned student (notebook 05's ``fine_tune`` method, on ``task``'s data)
    of the planted teacher purified by ``defence`` *before* transfer (with the clean images of the
    teacher's task). ``(model, meta)``."""
    bd = backdoor_recipe(cfg)
    teacher, _ = bd_models.backdoored_teacher(bd, store, progress=progress)
    clean_teacher, _ = purified(defence, teacher, clean_set(cfg, "same"), cfg, store)
    return bd_models.student_from(clean_teacher, "fine_tune", bd, store, task, progress=progress)
