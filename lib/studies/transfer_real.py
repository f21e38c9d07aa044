"""Notebook 02 on real images: where Renofeation loses clean accuracy, and what recovers it.

Setting: the team's CIFAR-10 ResNet-20 (``../shared/weights``) is the public pretrained model and
the teacher; the target task is the shared GTSRB subset (``../shared/data/gtsrb-32-subset``: 43
classes, 60 training images per class, its 1,290 ``Final_Test`` images as the test set) at 32 px,
a new label set and a new domain, as in the Renofeation paper (ImageNet -> CUB-200 etc.). The
shared CIFAR-10 subset is *not* used as the target: every one of its images comes from CIFAR-10's
training split, which the teacher was trained on, so it flatters every student that keeps the
teacher's weights.

:data:`ABLATION` names each trained configuration as a change to notebook 02's smoke recipe
(:data:`lib.studies.transfer.RECIPE`); every student is trained through
:func:`lib.transfer.transfer_model` (cached in the store, keyed by its options and the code
version of its method), so a rerun trains nothing. :func:`ablation_table` scores each one on
every test image: clean accuracy, the seed's feature attack and PGD against the teacher's own
head (both crafted once on the teacher, :func:`crafted`, scored by
:func:`lib.evaluate.transfer_scores`), with Wilson intervals (clean accuracy over the test
images, attack success over each student's clean-correct images).
:func:`seed_table` repeats chosen configurations over seeds.

Run it with ``python -m lib.studies.transfer_real`` (``--seeds`` for the seed repeat;
``--test-images ROOT --out DIR`` to score on another GTSRB test set); it writes
``02_renofeation_ablation.csv`` and ``02_renofeation_seeds.csv`` (and the seed runs) under
:func:`lib.paths.measured_dir` (``measurements/``, committed), which notebook 02 reads when present.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from ..attacks import attack_fn, with_own_labels
from ..data import ImageSet, data_fingerprint, to_imageset
from ..data.real import load_real
from ..evaluate.crafted import craft, eval_images, transfer_scores
from ..metrics import binomial_interval, rate_interval, seed_interval
from ..models import fresh_like, load_cifar_resnet20, model_fingerprint
from ..paths import measured_dir, shared_dir
from ..store import Store
from ..store.versions import module_version
from ..transfer import method_version, transfer_model
from ..transfer.renofeation import recalibrate_bn
from . import transfer

ABLATION_CSV, SEEDS_CSV = "02_renofeation_ablation.csv", "02_renofeation_seeds.csv"
PAPER_OPT = {"lr": 0.01, "swa_lr": 0.005, "batch_size": 64, "schedule": "cosine", "momentum": 0.9,
             "weight_decay": 5e-3}  # PROTOCOLS 2.3: the authors' optimiser (lr at their batch of 64)

# name -> (method, changes to the smoke recipe's options of that method, what it tests). Renofeation
# configurations start from the official BatchNorm pass (dropout on) and distil every stage, as the
# authors do (the finding of "reno_early" is what moved the synsigns smoke recipe to all but the last
# stage); each one's "<name>+bn" twin, the BatchNorm recalibrated without dropout (the notebook's
# smoke recipe), is derived from its weights (see :func:`student`) and scored beside it.
ABLATION: dict[str, tuple[str, dict, str]] = {
    "fine_tune": ("fine_tune", {}, "smoke fine-tuning (the reference budget)"),
    "fine_tune_x2": ("fine_tune", {"epochs": 16}, "fine-tuning at twice its budget (is it converged?)"),
    "retrain": ("retrain", {}, "smoke re-training"),
    "reno_smoke": ("renofeation", {}, "smoke Renofeation"),
    "reno_p0": ("renofeation", {"dropout": 0.0}, "no spatial dropout"),
    "reno_fw1": ("renofeation", {"feat_weight": 1.0}, "feature weight 1 (CUB-200's)"),
    "reno_early": ("renofeation", {"stages": ["layer1_2", "layer2_2"]}, "stages 1-2 distilled, not the last"),
    "fine_tune_x4": ("fine_tune", {"epochs": 32}, "fine-tuning at four times its budget"),
    "reno_paper_opt": ("renofeation", dict(PAPER_OPT), "the authors' optimiser (lr 0.01 cosine, wd 5e-3, batch 64)"),
    "reno_swa8": ("renofeation", {"epochs_distill": 12, "epochs_swa": 8}, "longer SWA (12 + 8)"),
    "reno_noaug": ("renofeation", {"translate": 0}, "no augmentation"),
    # at 2.5x seeds 1 and 2 of reno_early ended distillation at 74-76% training accuracy, still rising
    # (seed 0: 92%): fine-tuning's 4x budget, in the smoke recipe's 4:1 split of the two stages
    "reno_early_x4": ("renofeation", {"stages": ["layer1_2", "layer2_2"], "epochs_distill": 26, "epochs_swa": 6},
                      "stages 1-2 distilled, at fine-tuning's 4x budget (26 + 6 epochs)"),
}


def gtsrb_sets(root=None, test_root=None) -> tuple[ImageSet, ImageSet] | None:
    """The shared GTSRB subset's train and test sets at 32 px as in-memory ImageSets; ``None``
    when it is absent (a user's clone has no ``../shared``) and no ``root`` is given.
    ``test_root``: another GTSRB root (the archive layout) whose ``Final_Test`` images, resized to
    32 px, are the test set instead of ``root``'s (e.g. the official 12,630)."""
    if root is None:
        shared = shared_dir()
        root = shared / "data/gtsrb-32-subset" if shared else None
        if root is None or not root.is_dir():
            return None
    roots = {"train": root, "test": test_root or root}
    return tuple(to_imageset(load_real("gtsrb", split, root=roots[split], size=32), name=f"gtsrb32-{split}",
                             progress=False) for split in ("train", "test"))


def teacher_model(path=None):
    """The shared CIFAR-10 ResNet-20 (eval mode); ``None`` when absent."""
    if path is None:
        shared = shared_dir()
        path = shared / "weights/resnet20-cifar10/resnet20-12fca82f.th" if shared else None
    if path is None or not Path(path).is_file():
        return None
    return load_cifar_resnet20(path).eval()


def config_kw(name: str, profile: str = "smoke") -> tuple[str, dict]:
    """``(method, keyword arguments)`` of an :data:`ABLATION` entry (or a plain method name); a
    ``+bn`` suffix on a Renofeation entry sets ``bn_dropout=False``."""
    base, fix = (name[:-3], True) if name.endswith("+bn") else (name, False)
    method, change, _ = ABLATION.get(base, (base, {}, ""))
    kw = copy.deepcopy(transfer.recipe(profile)["method_kw"][method])
    if method == "renofeation":
        kw.pop("bn_dropout", None)  # the official pass unless "+bn"
        # every stage, as the authors distil (the smoke recipe's names are the small CNN's; "reno_early"
        # is this ablation's every-stage-but-the-last on ResNet-20)
        kw.pop("stages", None)
    kw.update(copy.deepcopy(change))
    if fix:
        kw["bn_dropout"] = False
    return method, kw


def describe_config(name: str) -> str:
    base = name[:-3] if name.endswith("+bn") else name
    what = ABLATION.get(base, ("", {}, base))[2]
    return what + (", BatchNorm recalibrated without dropout" if name.endswith("+bn") else "")


def budget(method: str, kw: dict, profile: str = "smoke") -> float:
    """Training images seen, as a multiple of the smoke fine-tuning's (epochs over the same data)."""
    ft = transfer.recipe(profile)["method_kw"]["fine_tune"]["epochs"]
    epochs = kw["epochs_distill"] + kw["epochs_swa"] if method == "renofeation" else kw["epochs"]
    return epochs / ft


def student(name: str, teacher, train, *, seed: int = 0, store: Store | None = None, progress: bool = True):
    """The trained student of configuration ``name`` (from the store, trained if absent).

    A Renofeation configuration with ``bn_dropout=False`` is the same training as its twin with
    the official dropout-on BatchNorm pass; it is made from the twin's weights by
    :func:`recalibrate_bn` (identical to training it with the flag, one data pass instead of a
    training run) and stored under its own key."""
    store = store or Store()
    method, kw = config_kw(name)
    if method == "renofeation" and kw.get("bn_dropout") is False:
        twin_kw = {k: v for k, v in kw.items() if k != "bn_dropout"}
        twin, meta = transfer_model(method, teacher, train, seed=seed, store=store, progress=progress, **twin_kw)
        cfg = {"from": model_fingerprint(twin), "train": data_fingerprint(train),
               "batch_size": kw.get("batch_size", 128), "code": method_version(method),
               "recalibrate": module_version(recalibrate_bn.__module__)}

        def train_fn(model):
            model.load_state_dict(twin.state_dict())
            recalibrate_bn(model, train, kw.get("batch_size", 128))
            return {"history": meta.get("history", [])}

        model, _ = store.model("transfer_renofeation_bn", cfg, lambda: fresh_like(teacher, train.num_classes),
                               train_fn)
        return model.eval()
    model, _ = transfer_model(method, teacher, train, seed=seed, store=store, progress=progress, **kw)
    return model


def attacks(profile: str = "smoke") -> dict:
    """The two transfer attacks of notebook 02 at its recipe's budgets (crafted on the teacher)."""
    cfg = transfer.recipe(profile)
    eps = cfg["feature_eps"]
    return {"feature": attack_fn("feature", eps=eps, alpha=eps / 10, steps=cfg["feature_steps"], seed=cfg["seed"]),
            "teacher_pgd": with_own_labels(attack_fn("pgd", eps=eps, alpha=eps / 4, steps=cfg["pgd_steps"],
                                                     seed=cfg["seed"]))}


_CRAFTED: dict = {}


class _Crafted(nn.Module):
    """The crafted test set as buffers, so the store keeps it as safetensors like a model."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, names):
        super().__init__()
        self.register_buffer("x", torch.zeros_like(x))
        self.register_buffer("y", torch.zeros_like(y))
        for name in names:
            self.register_buffer(f"adv_{name}", torch.zeros_like(x))


def crafted(teacher, test, progress: bool = True, store: Store | None = None) -> tuple:
    """``(x, y, {attack: x_adv})`` over every test image, each attack of :func:`attacks` crafted
    once on ``teacher`` and kept in the store (keyed by the teacher's weights, the test images
    and the attacks' parameters): every configuration and every later run is scored on the same
    adversarial images without crafting them again."""
    from ..cache import describe

    key = (model_fingerprint(teacher), data_fingerprint(test))
    if key not in _CRAFTED:
        x, y = eval_images(test)
        atk = attacks()

        def fill(m):
            for name, a in atk.items():
                getattr(m, f"adv_{name}").copy_(craft(teacher, (x, y), a, progress=progress)[1])
            m.x.copy_(x)
            m.y.copy_(y)

        cfg = {"teacher": key[0], "test": key[1], "attacks": describe(atk), "code": module_version(__name__)}
        m, _ = (store or Store()).model("02_real_crafted", cfg, lambda: _Crafted(x, y, atk), fill)
        _CRAFTED[key] = (m.x, m.y, {name: getattr(m, f"adv_{name}") for name in atk})
    return _CRAFTED[key]


def with_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """A table of :func:`lib.evaluate.transfer_scores` rows (with ``n``) with Wilson intervals:
    ``clean_low/high`` over the ``n`` test images, ``<attack>_asr_low/high`` over each student's
    clean-correct images (``n_correct``)."""
    out = table.copy()
    n = out["n"].astype(int)
    k = (out["clean_acc"] * n).round().astype(int)
    out["n_correct"] = k
    ci = [binomial_interval(a, b) for a, b in zip(k, n)]
    out["clean_low"], out["clean_high"] = [c[0] for c in ci], [c[1] for c in ci]
    for col in [c for c in table.columns if c.endswith("_asr")]:
        ci = [rate_interval(r, m) for r, m in zip(out[col], k)]
        out[f"{col}_low"], out[f"{col}_high"] = [c[0] for c in ci], [c[1] for c in ci]
    return out


def ablation_table(names=None, *, seed: int = 0, store: Store | None = None, sets=None, teacher=None,
                   progress: bool = True, out: Path | None = None) -> pd.DataFrame:
    """One row per configuration of ``names`` (default every :data:`ABLATION` entry): its method,
    what it changes, budget, seed, clean accuracy, feature-attack and teacher-head PGD success,
    with intervals (:func:`with_intervals`). The table is written to ``out`` after each row
    (a killed run keeps what it measured)."""
    store = store or Store()
    train, test = sets or gtsrb_sets()
    teacher = teacher if teacher is not None else teacher_model()
    x, y, adv = crafted(teacher, test, progress, store)
    rows = []
    todo = []
    for name in names or list(ABLATION):
        todo.append(name)
        if config_kw(name)[0] == "renofeation" and not name.endswith("+bn"):
            todo.append(name + "+bn")  # one BatchNorm pass more, no training
    for name in dict.fromkeys(todo):
        method, kw = config_kw(name)
        model = student(name, teacher, train, seed=seed, store=store, progress=progress)
        t = pd.DataFrame([{"method": name, **transfer_scores(model, x, y, adv), "n": len(y)}])
        row = with_intervals(t).iloc[0].to_dict()
        rows.append({"config": name, "method": method, "change": describe_config(name),
                     "budget_x_ft": budget(method, kw), "seed": seed,
                     **{k: v for k, v in row.items() if k != "method"}})
        if out is not None:
            pd.DataFrame(rows).to_csv(out, index=False)
    return pd.DataFrame(rows)


def seed_table(names, seeds=(0, 1, 2), **kw) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`ablation_table` of ``names`` at each seed, and its summary over seeds: per
    configuration and metric the mean with its Student-t interval (:func:`seed_interval`)."""
    runs = pd.concat([ablation_table(names, seed=s, **kw) for s in seeds], ignore_index=True)
    rows = []
    for name, part in runs.groupby("config", sort=False):
        for metric in ("clean_acc", "feature_asr", "teacher_pgd_asr"):
            s = seed_interval(part[metric])
            rows.append({"config": name, "metric": metric, **s, "values": list(part[metric].round(4))})
    return runs, pd.DataFrame(rows)


def load_tables(folders=None) -> dict:
    """``{"ablation", "seeds"}``: the tables :func:`main` wrote (``None`` where absent), looked up in
    ``folders`` (default: :func:`lib.paths.measured_dir`, where the committed copy is)."""
    folders = folders or [measured_dir()]
    out = {}
    for key, name in (("ablation", ABLATION_CSV), ("seeds", SEEDS_CSV)):
        path = next((Path(f) / name for f in folders if (Path(f) / name).is_file()), None)
        out[key] = pd.read_csv(path) if path is not None else None
    return out


def compact(table: pd.DataFrame) -> pd.DataFrame:
    """The ablation table as it is read: per configuration its change, budget, and each rate as
    ``value [low, high]``, with ``n``."""
    fmt = lambda r, c: f"{r[c]:.3f} [{r[c + '_low']:.3f}, {r[c + '_high']:.3f}]"
    rows = [{"config": r["config"], "change": r["change"], "budget (x fine-tuning)": round(r["budget_x_ft"], 2),
             "clean accuracy": fmt(r, "clean"), "feature-attack ASR": fmt(r, "feature_asr"),
             "teacher-head PGD ASR": fmt(r, "teacher_pgd_asr"), "n": int(r["n"])}
            for r in table.assign(clean=table["clean_acc"]).to_dict("records")]
    return pd.DataFrame(rows)


def ablation_paragraph(table: pd.DataFrame, seeds: pd.DataFrame | None = None, *, clean_gap: float = 0.03,
                       max_asr: float = 0.10) -> str:
    """What the ablation says, generated from its numbers: fine-tuning at each budget, the smoke
    Renofeation, what recalibrating BatchNorm without dropout changes, and the most accurate
    Renofeation configuration whose feature-attack success is at most ``max_asr`` judged against
    the target (clean accuracy within ``clean_gap`` of fine-tuning's at 1x and at the largest
    fine-tuning budget measured), else the configuration with the lowest success; ``seeds``
    (:func:`seed_table`'s summary) adds the spread over seeds."""
    r = table.set_index("config")
    pct = lambda v: f"{v:.1%}"
    ci = lambda row: f"{pct(row['clean_acc'])} [{pct(row['clean_low'])}, {pct(row['clean_high'])}]"
    n = int(table["n"].iloc[0])
    fts = table[table["method"] == "fine_tune"].sort_values("budget_x_ft")
    text = (f"On GTSRB ({n} test images; brackets: 95% Wilson intervals), fine-tuning the CIFAR-10 ResNet-20 "
            "reaches " + ", ".join(f"{ci(f)} clean accuracy at {f['budget_x_ft']:g}x" for _, f in fts.iterrows())
            + " of its smoke budget, and the feature attack crafted on the teacher succeeds on "
            + ", ".join(pct(f["feature_asr"]) for _, f in fts.iterrows()) + " of its correct images. ")
    if "reno_smoke" in r.index:
        sm = r.loc["reno_smoke"]
        text += (f"The smoke Renofeation recipe ({sm['budget_x_ft']:g}x) gets {ci(sm)} at feature-attack ASR "
                 f"{pct(sm['feature_asr'])}. ")
    pairs = [(c, c + "+bn") for c in r.index if c + "+bn" in r.index]
    if pairs:
        d_clean = [r.loc[b, "clean_acc"] - r.loc[a, "clean_acc"] for a, b in pairs]
        d_asr = [r.loc[b, "feature_asr"] - r.loc[a, "feature_asr"] for a, b in pairs]
        text += (f"Recalibrating BatchNorm without dropout changes clean accuracy by "
                 f"{min(d_clean) * 100:+.1f} to {max(d_clean) * 100:+.1f} points and feature-attack ASR by "
                 f"{min(d_asr) * 100:+.1f} to {max(d_asr) * 100:+.1f} over the {len(pairs)} configuration(s)")
        half = min((r.loc[a, "clean_high"] - r.loc[a, "clean_low"]) / 2 for a, _ in pairs)
        text += (f", each clean-accuracy change {'inside' if max(map(abs, d_clean)) < half else 'not inside'} "
                 f"one interval half-width ({half * 100:.1f} points). ")
    reno = table[table["method"] == "renofeation"]
    ok = reno[reno["feature_asr"] <= max_asr]
    ft1, ftmax = fts.iloc[0], fts.iloc[-1]
    if len(ok):
        best = ok.loc[ok["clean_acc"].idxmax()]
        text += (f"The most accurate Renofeation configuration with feature-attack ASR at most {pct(max_asr)} is "
                 f"`{best['config']}` ({best['change']}; {best['budget_x_ft']:g}x): {ci(best)} at feature-attack "
                 f"ASR {pct(best['feature_asr'])}, teacher-head PGD ASR {pct(best['teacher_pgd_asr'])}. ")
    elif len(reno):
        best = reno.loc[reno["feature_asr"].idxmin()]
        text += (f"**No Renofeation configuration reaches feature-attack ASR <= {pct(max_asr)}**; the lowest is "
                 f"`{best['config']}` ({best['change']}; {best['budget_x_ft']:g}x): {pct(best['feature_asr'])} at "
                 f"{ci(best)} clean accuracy (teacher-head PGD ASR {pct(best['teacher_pgd_asr'])}). ")
    else:
        return text
    for ref in dict.fromkeys([ft1["config"], ftmax["config"]]):
        f = r.loc[ref]
        gap = f["clean_acc"] - best["clean_acc"]
        verdict = "within" if gap <= clean_gap else "outside"
        text += (f"Against fine-tuning at {f['budget_x_ft']:g}x it is {abs(gap) * 100:.1f} points "
                 f"{'below' if gap >= 0 else 'above'} ({verdict} the {clean_gap * 100:.0f}-point target). ")
    if seeds is not None:
        for name, part in seeds.groupby("config", sort=False):
            m = part.set_index("metric")
            text += (f"Over {int(m.loc['clean_acc', 'n'])} seeds, `{name}`: clean accuracy "
                     f"{pct(m.loc['clean_acc', 'mean'])} (95% t interval {pct(m.loc['clean_acc', 'low'])} to "
                     f"{pct(m.loc['clean_acc', 'high'])}), feature-attack ASR {pct(m.loc['feature_asr', 'mean'])} "
                     f"({pct(m.loc['feature_asr', 'low'])} to {pct(m.loc['feature_asr', 'high'])}). ")
        text += _seed_verdicts(seeds, clean_gap, max_asr)
    return text


def _seed_verdicts(seeds: pd.DataFrame, clean_gap: float, max_asr: float) -> str:
    """The target judged on seed means (one seed can be lucky): each Renofeation configuration
    of :func:`seed_table`'s summary against the seeded fine-tuning at the same budget."""
    mean = seeds.set_index(["config", "metric"])["mean"]
    cfgs = {c: config_kw(c) for c in dict.fromkeys(seeds["config"])}
    fts = {budget(m, kw): c for c, (m, kw) in cfgs.items() if m == "fine_tune"}
    text = ""
    for c, (m, kw) in cfgs.items():
        ref = fts.get(budget(m, kw))
        if m != "renofeation" or ref is None:
            continue
        gap = mean[(ref, "clean_acc")] - mean[(c, "clean_acc")]
        ok = gap <= clean_gap and mean[(c, "feature_asr")] <= max_asr
        text += (f"On the seed means, `{c}` is {abs(gap) * 100:.1f} points {'below' if gap >= 0 else 'above'} "
                 f"`{ref}` at the same {budget(m, kw):g}x budget, at feature-attack ASR "
                 f"{mean[(c, 'feature_asr')]:.1%} against {mean[(ref, 'feature_asr')]:.1%}: the target (within "
                 f"{clean_gap * 100:.0f} points, ASR at most {max_asr:.0%}) is **{'met' if ok else 'not met'}**. ")
    return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="*", default=None, help=f"default: all of {', '.join(ABLATION)}")
    p.add_argument("--seeds", nargs="*", default=None, help="configurations repeated over seeds 0, 1, 2")
    p.add_argument("--test-images", type=Path, default=None, metavar="ROOT",
                   help="a GTSRB root (archive layout) whose Final_Test images score the students; default: the "
                        "shared subset's 1,290")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="folder for the tables; default measurements/ (required with --test-images, so the "
                        "committed tables of the shared test set are not overwritten)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.test_images is not None and a.out is None:
        p.error("--test-images needs --out DIR: measurements/ holds the tables of the shared test set")
    if a.test_images is not None and not a.test_images.is_dir():
        p.error(f"--test-images {a.test_images} is not a folder (give a GTSRB root holding GTSRB/Final_Test)")
    sets, teacher = gtsrb_sets(test_root=a.test_images), teacher_model()
    if sets is None or teacher is None:
        raise SystemExit("needs ../shared/data/gtsrb-32-subset and ../shared/weights/resnet20-cifar10 "
                         "(set WORKBOOK_SHARED to the folder holding them)")
    folder = a.out or measured_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if a.seeds:
        runs, summary = seed_table(a.seeds, sets=sets, teacher=teacher, progress=not a.no_progress)
        runs.to_csv(folder / "02_renofeation_seed_runs.csv", index=False)
        summary.to_csv(folder / SEEDS_CSV, index=False)
        print(summary.round(4).to_string())
        return
    table = ablation_table(a.configs, sets=sets, teacher=teacher, progress=not a.no_progress,
                           out=folder / ABLATION_CSV)
    print(table[["config", "budget_x_ft", "clean_acc", "clean_low", "clean_high", "feature_asr",
                 "teacher_pgd_asr", "n"]].round(4).to_string())


if __name__ == "__main__":
    main()
