"""Block transfer (Yosinski, Clune, Bengio & Lipson 2014, "How transferable are features in deep
neural networks?", NeurIPS): ``anb`` copies the first ``n`` blocks of base A into a fresh model,
frozen (AnB) or trained (AnB+), and trains the rest on task B; BnB/BnB+ are the controls with
base B as the source. ``anb_model`` caches one variant in the store and ``anb_sweep`` builds the
table over variants and ``n``, with attacks crafted on base A once and sent to every model.

**What a block is.** One entry of the model's ordered ``model.blocks`` (:mod:`lib.models`); the
normalisation layer (no weights) is not one and the head is never copied: layers n+1.. including
the classifier are re-initialised, as in Yosinski et al. (``n = 0``: training from scratch;
``n = N``: the whole body copied, a linear probe of base A for AnB).

**Frozen BatchNorm.** Copied blocks are frozen with :func:`lib.models.freeze`: no gradients
*and* eval mode while ``fit`` trains the rest, so their BatchNorm layers keep base A's running
statistics and the blocks stay bit-identical. In AnB+ they train normally.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import pandas as pd

from ..data import data_fingerprint, num_classes_of
from ..cache import cached, describe
from ..evaluate.crafted import craft_sets, eval_images, transfer_scores
from ..models import Classifier, freeze, fresh_like, model_fingerprint
from ..store import Store
from ..store.versions import module_version
from ..train import evaluate, fit
from .common import fit_config, with_augment

ANB_VARIANTS = ("AnB", "AnB+", "BnB", "BnB+")


def anb(base_a: Classifier, base_b_template_or_num_classes: Classifier | int, n: int, train, *,
        plus: bool = False, epochs: int, lr: float = 0.01, seed: int = 0, translate="auto",
        **fit_kw) -> tuple[Classifier, pd.DataFrame]:
    """Yosinski et al. (2014) block transfer: copy ``blocks[:n]`` of ``base_a`` into a fresh model
    of the same architecture, re-initialise the rest (and always the head), train on ``train``.

    ``base_b_template_or_num_classes``: the target base (its class count is used; for BnB pass
    base B as both source and template) or the number of target classes; it must agree with
    the classes of ``train``. ``n`` in ``0..len(base_a.blocks)`` (see the module docstring for
    what a block is per architecture). ``plus=False`` (AnB): the copied blocks are frozen with
    :func:`lib.train.freeze` - no gradients, eval-mode BatchNorm, so they stay bit-identical
    including running statistics; the returned model keeps them frozen (``freeze(model, False)``
    to undo). ``plus=True`` (AnB+): every layer trains.

    Yosinski et al. trained AnB/AnB+ with the base networks' own schedule (ImageNet AlexNet,
    lr 0.01); the smoke defaults are the bases' recipe shortened: ``epochs=8``, ``lr=0.1``
    (one-cycle), batch 128, weight decay 5e-4, random shifts of 3 px. ``seed`` seeds the
    re-initialisation and ``fit``. Extra ``fit_kw`` go to :func:`lib.train.fit`.
    Returns ``(model, history)``.
    """
    model = _anb_build(base_a, base_b_template_or_num_classes, n, train, plus=plus, seed=seed)
    kw = with_augment(train, translate, fit_kw)
    kw.setdefault("desc", f"{'AnB+' if plus else 'AnB'} n={n}")
    hist = fit(model, train, epochs=epochs, lr=lr, seed=seed, **kw)
    return model, hist


def _anb_build(source: Classifier, target, n: int, train, *, plus: bool, seed: int) -> Classifier:
    k = target if isinstance(target, int) else target.num_classes
    if isinstance(target, Classifier) and target.arch != source.arch:
        raise ValueError(f"source is {source.arch} but the target template is {target.arch}")
    if train is not None:
        kt = num_classes_of(train)
        if kt != k:
            raise ValueError(f"the target has {k} classes but the training data has {kt}")
    names = source.block_names
    if not 0 <= n <= len(names):
        raise ValueError(f"n must be in 0..{len(names)} (blocks of {source.arch}: {names}), got {n}")
    model = fresh_like(source, k, seed=seed)
    for name in names[:n]:
        model.blocks[name].load_state_dict(source.blocks[name].state_dict())
        if not plus:
            freeze(model.blocks[name])
    model.normalize.load_state_dict(source.normalize.state_dict())
    return model


def _variant(variant: str) -> tuple[str, bool]:
    if variant not in ANB_VARIANTS:
        raise ValueError(f"variant must be one of {ANB_VARIANTS}, got {variant!r}")
    return variant[0], variant.endswith("+")


def anb_model(base_a: Classifier, base_b: Classifier, train, variant: str, n: int, *,
              epochs: int, lr: float = 0.01, seed: int = 0, translate="auto", store: Store | None = None,
              progress: bool = True,
              cache_tag: str | None = None, retrain: bool = False,
              **fit_kw) -> tuple[Classifier, dict]:
    """One AnB variant (``"AnB"``, ``"AnB+"``, ``"BnB"``, ``"BnB+"``) at ``n``, trained once and
    then loaded from the store (``Store().model``). Returns ``(model, meta)``; ``meta`` holds the
    per-epoch ``history`` (records), ``cached`` and the store ``key``.

    The key hashes the variant, ``n``, the source base's weights (:func:`model_fingerprint`),
    the target class count, the training data (:func:`data_fingerprint`), ``epochs``, ``lr``,
    ``seed``, ``translate`` and the other fit options (functions only with a ``cache_tag``). At
    ``n = 0`` nothing is copied, so all four variants share one model (trained from scratch).
    """
    src_letter, plus = _variant(variant)
    source = base_a if src_letter == "A" else base_b
    store = store or Store()
    k = base_b.num_classes
    cfg = {"method": "anb", "n": n, "plus": plus if n else None,
           "source": model_fingerprint(source) if n else None, "arch": source.arch,
           "num_classes": k, "train": data_fingerprint(train), "epochs": epochs, "lr": lr,
           "seed": seed, "translate": translate, "fit": fit_config(fit_kw, cache_tag)}
    if n == 0:
        # nothing is copied but the architecture, its build options and the normalisation
        cfg["template"] = {name: tuple(v.shape) for name, v in source.state_dict().items()
                           if not name.startswith("head.fc.")}
        cfg["build_args"] = {k: v for k, v in (source.build_args or {}).items() if k != "num_classes"}
        cfg["normalize"] = [source.normalize.mean.flatten().tolist(), source.normalize.std.flatten().tolist()]
    name = "anb_scratch" if n == 0 else f"anb_{variant.replace('+', '_plus')}"

    def build_fn():
        return _anb_build(source, k, n, train, plus=plus, seed=seed)

    def train_fn(model):
        kw = with_augment(train, translate, fit_kw)
        kw.setdefault("desc", f"{variant} n={n}")
        hist = fit(model, train, epochs=epochs, lr=lr, seed=seed, progress=progress, **kw)
        return {"variant": variant, "n": n, "history": hist.to_dict("records")}

    cfg["code"] = module_version(__name__)
    model, meta = store.model(name, cfg, build_fn, train_fn, retrain=retrain)  # frozen by build_fn
    meta["key"] = store.key(name, cfg)
    return model, meta


def anb_sweep(base_a: Classifier, base_b: Classifier, train, test, *, ns: Sequence[int] | None = None,
              epochs: int, variants: Sequence[str] = ANB_VARIANTS,
              progress: bool = True, store: Store | None = None,
              transfer_attacks: Mapping[str, Callable] | None = None, attack_n: int | None = None,
              seeds: Sequence[int] | None = None, seed_rows: Sequence[tuple[str, int]] | None = None,
              reference: Classifier | None = None, **fit_kw) -> pd.DataFrame:
    """The AnB table: one row per ``variant`` x ``n`` (``ns`` default ``1..N``, N = number of
    blocks) with the clean ``test_acc`` of each model on ``test``.

    Columns: ``variant``, ``n``, ``source`` (A/B), ``frozen`` (copied blocks frozen), ``block``
    (the last copied block), ``test_acc``, ``train_acc`` and ``train_loss`` (last epoch),
    ``epochs``, ``train_seconds``, ``model_key`` (the store key of the model; its meta holds the
    history: ``anb_model(...)`` with the same arguments returns model and history from the store)
    and ``cached`` (True when the row came from the store without any training).
    Every row is itself a store result keyed by the model's config plus the test data, so a
    second call with the same arguments trains and evaluates nothing. ``fit_kw`` as in
    :func:`anb_model` (``lr``, ``seed``, ``translate``, ``cache_tag``, fit options).

    ``transfer_attacks`` (name -> ``attack(base_a, x, y)``): adversarial test sets crafted *once*
    on base A over ``attack_n`` test images (stratified by class; all by default) and evaluated on every
    transferred model, adding a column ``<name>_acc`` per attack (accuracy on the crafted images)
    and ``attack_n``. Base A's head is over the source classes, so an attack that needs labels
    should take base A's own predictions (:func:`lib.attacks.with_own_labels`).

    ``seeds``: training seeds (default: ``fit_kw``'s ``seed``, else 0); the first seed trains every
    row, the others only the ``(variant, n)`` pairs of ``seed_rows`` (all when None), scored on the
    same crafted images; a ``seed`` column tells them apart. ``reference`` (e.g. base B itself)
    adds one row ``variant="base B"``, ``n=0`` with its accuracies on the same images.
    """
    store = store or Store()
    names = base_a.block_names
    if base_b.block_names != names or base_b.arch != base_a.arch:
        raise ValueError("base A and base B must have the same architecture")
    ns = list(range(1, len(names) + 1)) if ns is None else [int(n) for n in ns]
    prints = {"base_a": model_fingerprint(base_a), "base_b": model_fingerprint(base_b),
              "train": data_fingerprint(train), "test": data_fingerprint(test)}
    if transfer_attacks:
        x, y = eval_images(test, attack_n)
        crafted = _crafted_sets(base_a, x, y, dict(transfer_attacks), store, progress)
        attacked = {"crafted": {name: describe(t)["tensor"] for name, t in crafted.items()},
                    "images": data_fingerprint((x, y))}
    else:
        crafted = {}
    rows = []
    first = fit_kw.pop("seed", 0)
    seeds = [int(first)] if seeds is None else [int(s) for s in seeds]
    if reference is not None:
        row = {"variant": "base B", "n": 0, "source": "B", "frozen": False, "block": "", "seed": seeds[0],
               "test_acc": evaluate(reference, test)["acc"], "epochs": None, "cached": True}
        if crafted:
            scores = transfer_scores(reference, x, y, crafted)
            row.update({f"{name}_acc": scores[f"{name}_acc"] for name in crafted}, attack_n=len(y))
        rows.append(row)
    todo = [(seeds[0], v, n) for v in variants for n in ns]
    todo += [(s, v, n) for s in seeds[1:] for v in variants for n in ns
             if seed_rows is None or (v, n) in {(a, int(b)) for a, b in seed_rows}]
    for seed, variant, n in todo:
        kw = {**fit_kw, "seed": seed}
        src_letter, plus = _variant(variant)
        trained = {"flag": False, "model": None}

        def compute(variant=variant, n=n, kw=kw):
            model, meta = anb_model(base_a, base_b, train, variant, n, epochs=epochs, store=store,
                                    progress=progress, **kw)
            trained["flag"], trained["model"] = not meta.get("cached", False), model
            last = meta["history"][-1] if meta.get("history") else {}
            return {"model_key": meta["key"], "test_acc": evaluate(model, test)["acc"],
                    "train_acc": last.get("train_acc"), "train_loss": last.get("train_loss"),
                    "train_seconds": meta.get("train_seconds")}

        fit_cfg = fit_config({k: v for k, v in kw.items() if k != "cache_tag"}, kw.get("cache_tag"))
        cfg = {"method": "anb_eval", "variant": variant, "n": n, **prints, "epochs": epochs, "fit": fit_cfg,
               "code": module_version(__name__)}
        res = store.result("anb_eval", cfg, compute)
        row = {"variant": variant, "n": n, "source": src_letter, "frozen": not plus and n > 0,
               "block": names[n - 1] if n else "", "seed": seed, **res, "epochs": epochs,
               "cached": not trained["flag"]}
        if crafted:
            def score(variant=variant, n=n, kw=kw):  # stored: a rerun neither loads the model nor predicts
                model = trained["model"] or anb_model(base_a, base_b, train, variant, n, epochs=epochs,
                                                      store=store, progress=progress, **kw)[0]
                scores = transfer_scores(model, x, y, crafted)
                return {f"{name}_acc": scores[f"{name}_acc"] for name in crafted}

            row.update(store.result("anb_transfer", {**cfg, "attacked": attacked}, score))
            row["attack_n"] = len(y)
        rows.append(row)
    cols = ["variant", "n", "source", "frozen", "block", "seed", "test_acc", "train_acc", "train_loss",
            "epochs", "train_seconds", "model_key", "cached"]
    cols += [f"{name}_acc" for name in crafted] + (["attack_n"] if crafted else [])
    return pd.DataFrame(rows)[cols]


def _crafted_sets(model, x, y, attacks: dict, store: Store, progress: bool) -> dict:
    """The transfer attacks crafted once on ``model``: stored (keyed by its weights, the images and
    the attacks' parameters) unless an attack cannot be keyed (a plain function), then crafted."""
    try:
        describe(attacks)
    except TypeError:
        return craft_sets(model, x, y, attacks, progress=progress)
    return cached("anb_crafted", craft_sets, model, x, y, attacks, progress=progress, store=store)

