"""Study of notebook 04: continual adversarial learning. CPG's compact-pick-grow learner trained
adversarially (CMAT), against PackNet (clean and adversarial), one independent model per task
and sequential fine-tuning, over a sequence of 5-class tasks (task-incremental).

Smoke: the first ``n_tasks`` tasks of synsigns split into 20 tasks of 5 classes
(:func:`lib.data.task_split`), a four-conv VGG-style :class:`~lib.continual.TaskNet`. Full:
CIFAR-100's 20 superclass tasks with CPG's VGG-16-BN (``cfg``/``fc`` = ``VGG16``/``VGG16_FC``)
and the papers' schedules. Every run is cached in the store; :func:`evaluate_methods` caches
its attack tables.
"""
from __future__ import annotations

import functools
import math

import pandas as pd
import torch

from .. import adversarial_training, attacks, continual, metrics, robustness_checks
from .. import data as D
from ..continual import learn_sequence, parameter_use, task_vgg, val_accuracy
from ..continual.network import VGG16, VGG16_FC
from ..models import model_fingerprint
from ..robustness import make_attack, robustness_report
from ..store import Store
from ..train import predict, random_translate
from . import bases
from . import recipe as _recipe

METHODS = ["independent", "independent_adv", "finetune", "packnet", "packnet_adv", "cpg", "cmat"]
BASE = {"independent_adv": "independent", "packnet_adv": "packnet", "cmat": "cpg"}  # adversarial -> learner
_SMOKE = {
    "dataset": "synsigns", "n_tasks": 4, "classes_per_task": 5, "task_seed": 0, "data_seed": 0,
    "per_class_train": 64, "per_class_val": 20, "per_class_test": 20,
    "cfg": [12, "M", 24, "M", 48, "M", 48], "fc": [], "seed": 0,
    "epochs": 6, "lr": 0.1, "batch_size": 64, "weight_decay": 5e-4, "translate": 2,
    "prune": 0.6, "retrain_epochs": 2, "retrain_lr": 0.01,                        # PackNet
    "sparsities": [0.5, 0.7], "prune_epochs": 1, "prune_lr": 0.01, "prune_frequency": 2, "prune_ramp": 0.5,
    "cpg_retrain_epochs": 1, "lr_mask": 5e-4, "retrain_lr_mask": 1e-4,             # CPG
    "grow_factor": 1.5 ** 0.5, "max_width": 1.5 ** 0.5,
    # CPG's allow_acc_loss (0 in its scripts, with 500 validation images per task): here 100, whose
    # sampling error (about +-0.09 at 95%) would otherwise decide every compaction step
    "allow_acc_loss": 0.05,
    "eps_train": 2 / 255, "train_steps": 2, "val_steps": 10,                        # PGD-AT (CMAT: PGD-7 at 2/255)
    "methods": METHODS,
    # evaluation: n_eval test images per task (stratified), the same for every model and attack
    "eps_list": [2 / 255, 4 / 255, 8 / 255], "pgd_steps": [7, 10, 20, 40], "apgd_steps": 20, "n_eval": 25,
    "square_queries": 100,  # Square (gradient-free) on the images APGD left robust; the paper's 5,000 in full
    # (100: 3 budgets x 12 task reports of per-query Python overhead; 500 made the smoke run 10x slower)
    # the full robustness report (with sanity checks) runs on the continual learners' final models;
    # every method gets PGD-matrix_steps at eps_train on the same images (the adversarial accuracy row)
    "report_methods": ["packnet", "packnet_adv", "cpg", "cmat"], "matrix_steps": 20,
    "min_forgetting": 0.05,  # headline: sequential fine-tuning forgets at least this much
}
_FULL = {**_SMOKE, "dataset": "cifar100", "n_tasks": 20, "cfg": list(VGG16), "fc": list(VGG16_FC),
         "per_class_train": 500, "per_class_val": 20, "per_class_test": 100,
         "epochs": 100, "lr": 1e-2, "batch_size": 32, "weight_decay": 4e-5, "translate": 4,
         "retrain_epochs": 30, "retrain_lr": 1e-3,
         "sparsities": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95], "prune_epochs": 20, "prune_lr": 1e-3,
         "prune_frequency": 10, "prune_ramp": 0.2, "cpg_retrain_epochs": 30, "allow_acc_loss": 0.0,
         "train_steps": 7, "val_steps": 40, "apgd_steps": 100, "square_queries": 5000, "n_eval": 500}
RECIPE = {"smoke": _SMOKE, "full": _FULL}
PARAMS = {"cl_n_tasks": "n_tasks", "cl_per_class_train": "per_class_train", "cl_per_class_test": "per_class_test",
          "cl_epochs": "epochs", "cl_retrain_epochs": "retrain_epochs", "cl_sparsities": "sparsities",
          "cl_prune_epochs": "prune_epochs", "cl_eps_train": "eps_train", "cl_train_steps": "train_steps",
          "cl_eps_list": "eps_list", "cl_pgd_steps": "pgd_steps", "cl_apgd_steps": "apgd_steps",
          "cl_square_queries": "square_queries", "cl_n_eval": "n_eval", "cl_methods": "methods", "cl_seed": "seed"}
_EVAL_KEYS = ("methods", "eps_list", "pgd_steps", "apgd_steps", "square_queries", "n_eval", "matrix_steps",
              "min_forgetting", "report_methods")
ANCHORS = {  # CPG README (clean VGG-16, CIFAR-100 20 tasks, mean accuracy); CMAT README bar chart (PGD-k, 2/255)
    "clean": {"packnet": 0.675, "cpg": 0.809},
    "adversarial": {"cmat": {7: 0.615, 10: 0.545, 20: 0.520}, "packnet_adv": {7: 0.561, 10: 0.514, 20: 0.490}},
}


def recipe(profile: str = "smoke", **overrides) -> dict:
    """Notebook 04's recipe for ``profile`` with ``overrides`` (``None`` keeps the recipe's)."""
    return _recipe(RECIPE, profile, **overrides)


# ----------------------------------------------------------------------------- data
def real_check_recipe(**overrides) -> dict:
    """The real-image check: the team's CIFAR-10 JPEG subset (``../shared/data``) as
    ``n_tasks`` tasks of 2 classes (airplane/automobile, bird/cat, ...), smoke settings
    otherwise; ``None`` when the shared folder is absent."""
    from ..paths import shared_dir

    if shared_dir() is None or not (shared_dir() / "data/cifar10-jpg-subset").is_dir():
        return None
    cfg = {**_SMOKE, "dataset": "cifar10_shared", "n_tasks": 5, "classes_per_task": 2, "per_class_train": 400,
           "per_class_val": 50, "per_class_test": 100, "translate": 4}
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise KeyError(f"unknown recipe keys {sorted(unknown)}")
    return {**cfg, **{k: v for k, v in overrides.items() if v is not None}}


def task_classes(cfg: dict) -> list[list[int]]:
    if cfg["dataset"] == "cifar100":
        return D.cifar100_superclass_tasks()[:cfg["n_tasks"]]
    if cfg["dataset"] == "cifar10_shared":
        per = cfg["classes_per_task"]
        return [list(range(t * per, (t + 1) * per)) for t in range(cfg["n_tasks"])]
    n = len(D.SYNSIGNS_CLASSES)
    return D.task_split(n, n // cfg["classes_per_task"], cfg["task_seed"])[:cfg["n_tasks"]]


def task_data(cfg: dict) -> list[dict]:
    """One dict per task: ``train``, ``val`` (an independent synsigns validation draw: CPG used its
    test split as validation; we do not), ``test``, ``num_classes``, ``classes``."""
    out = []
    for i, classes in enumerate(task_classes(cfg)):
        if cfg["dataset"] == "cifar100":
            train, val, test = _cifar100_task(classes, cfg)
        elif cfg["dataset"] == "cifar10_shared":
            train, val, test = _cifar10_shared_task(classes, cfg)
        else:
            train, test = bases.class_data(classes, cfg["per_class_train"], cfg["per_class_test"],
                                           seed=cfg["data_seed"], tag=f"cl{i + 1}")
            v = D.load_synsigns("val", n=len(classes) * cfg["per_class_val"], seed=cfg["data_seed"], classes=classes)
            val = D.subset_classes(v, classes, name=f"synsigns-cl{i + 1}-val")
        out.append({"train": train, "val": val, "test": test, "num_classes": len(classes), "classes": classes})
    return out


def _cifar100_task(classes, cfg):
    from ..data import to_imageset
    from ..data.real import load_real

    sets = {}
    for split in ("train", "test"):
        ds = to_imageset(load_real("cifar100", split, size=32), name=f"cifar100-{split}", progress=False)
        sets[split] = D.subset_classes(ds, classes)
    train, val = D.train_val_split(sets["train"], cfg["per_class_val"] / cfg["per_class_train"], seed=cfg["data_seed"])
    return train, val, sets["test"]


@functools.lru_cache(maxsize=4)
def _cifar10_shared_split(split: str):
    """The shared CIFAR-10 JPEG subset's ``split``, decoded once per process (every task and
    method reads it)."""
    from ..data import to_imageset
    from ..data.real import load_real
    from ..paths import shared_dir

    root = shared_dir() / "data/cifar10-jpg-subset"
    return to_imageset(load_real("cifar10_folder", split, root=root, size=32), name=f"cifar10-{split}", progress=False)


def _cifar10_shared_task(classes, cfg):
    train = D.subset_classes(_cifar10_shared_split("train"), classes)
    test = D.subset_classes(_cifar10_shared_split("test"), classes)
    train, val = D.train_val_split(train, cfg["per_class_val"] / 500, seed=cfg["data_seed"])
    train = D.stratified_subset(train, cfg["per_class_train"] * len(classes), cfg["data_seed"])
    test = D.stratified_subset(test, cfg["per_class_test"] * len(classes), cfg["data_seed"])
    return train, val, test


# ----------------------------------------------------------------------------- training
def adversarial(cfg: dict) -> dict:
    """The PGD-AT step of the adversarial variants: ``train_steps`` steps of ``2.5 eps / steps``."""
    return {"eps": cfg["eps_train"], "steps": cfg["train_steps"], "alpha": 2.5 * cfg["eps_train"] / cfg["train_steps"]}


def val_attack(cfg: dict):
    """CMAT validates (and compares with its goals) on adversarial accuracy: PGD-``val_steps``."""
    return make_attack("pgd", cfg["eps_train"], steps=cfg["val_steps"], seed=cfg["seed"])


def build(cfg: dict):
    return task_vgg(cfg["cfg"], cfg["fc"], cfg["classes_per_task"], seed=cfg["seed"])


def _fit_kw(cfg):
    return {"batch_size": cfg["batch_size"], "weight_decay": cfg["weight_decay"],
            "augment": random_translate(cfg["translate"]) if cfg["translate"] else None}


def _method_kw(method: str, cfg: dict) -> dict:
    base = BASE.get(method, method)
    kw = {"epochs": cfg["epochs"], "lr": cfg["lr"], "seed": cfg["seed"], **_fit_kw(cfg),
          "adversarial": adversarial(cfg) if method in BASE else None}
    if base == "packnet":
        kw.update(prune=cfg["prune"], retrain_epochs=cfg["retrain_epochs"], retrain_lr=cfg["retrain_lr"])
    if base == "cpg":
        kw.update(sparsities=tuple(cfg["sparsities"]), prune_epochs=cfg["prune_epochs"], prune_lr=cfg["prune_lr"],
                  prune_frequency=cfg["prune_frequency"], prune_ramp=cfg["prune_ramp"],
                  retrain_epochs=cfg["cpg_retrain_epochs"], retrain_lr=cfg["retrain_lr"], lr_mask=cfg["lr_mask"],
                  retrain_lr_mask=cfg["retrain_lr_mask"], grow_factor=cfg["grow_factor"], max_width=cfg["max_width"],
                  allow_acc_loss=cfg["allow_acc_loss"],
                  val_attack=val_attack(cfg) if method == "cmat" else None)
    return kw


def _key(method: str, cfg: dict) -> dict:
    return {"method": method, **{k: v for k, v in cfg.items() if k not in _EVAL_KEYS}}


def independent_models(cfg: dict, adv: bool = False, store: Store | None = None, progress: bool = True):
    """One model per task trained on that task alone (clean, or PGD-AT with ``adv``), cached;
    returns ``(models, val accuracies)``: CPG's accuracy goals (adversarial ones under
    :func:`val_attack` for CMAT)."""
    store = store or Store()
    method = "independent_adv" if adv else "independent"
    tasks = task_data(cfg)
    models, goals = [], []
    for i, t in enumerate(tasks):
        kw = _method_kw(method, cfg)
        kw["seed"] += i

        def train_fn(net, t=t, kw=kw):
            info = continual.independent_task(net, t["train"], t["num_classes"], progress=progress, **kw)
            return {"info": info}

        net, _ = store.model(f"cl_{method}_task{i + 1}", {**_key(method, cfg), "task": i + 1}, lambda: build(cfg),
                             train_fn, code=CODE)
        models.append(net)
    # the goals are measured once and stored (keyed by the models' weights): CPG and CMAT ask again
    goals = store.result(f"cl_{method}_goals", {**_key(method, cfg), "models": _fingerprint(models)},
                         lambda: [val_accuracy(m.task_model(1), t["val"], val_attack(cfg) if adv else None)
                                  for m, t in zip(models, tasks)], code=(independent_models, *CODE))
    return models, goals


def continual_run(method: str, cfg: dict, store: Store | None = None, progress: bool = True):
    """The model of ``method`` after the whole sequence and its log (accuracy matrix, prediction
    digests, per-task details), trained once and cached; independent baselines return a list of
    models and a log computed from them."""
    store = store or Store()
    tasks = task_data(cfg)
    if method in ("independent", "independent_adv"):
        models, goals = independent_models(cfg, method == "independent_adv", store, progress)
        return models, _independent_log(models, tasks, goals)
    if BASE.get(method, method) == "cpg":
        _, goals = independent_models(cfg, method == "cmat", store, progress)
        tasks = [{**t, "goal": g} for t, g in zip(tasks, goals)]
    learner = BASE.get(method, method)

    def train_fn(net):
        _, log = learn_sequence(learner, lambda: net, tasks, progress=progress, **_method_kw(method, cfg))
        return {"log": log}

    model, meta = store.model(f"cl_{method}", _key(method, cfg), lambda: build(cfg), train_fn, code=CODE)
    return model, {**meta["log"], "cached": meta["cached"]}


def _independent_log(models, tasks, goals) -> dict:
    from ..continual.sequence import predictions_digest, task_predictions

    R = metrics.AccuracyMatrix(len(tasks))
    evals = []
    for j, (m, t) in enumerate(zip(models, tasks)):
        pred, y = task_predictions(m.task_model(1), t["test"])
        acc = metrics.accuracy(pred, y)
        for i in range(j, len(tasks)):
            R.record(i, j, acc)
            evals.append({"after_task": i + 1, "task": j + 1, "acc": acc, "n": len(y),
                          "digest": predictions_digest(pred)})
    return {"matrix": R.to_frame().to_dict("records"), "evals": evals, "summary": R.summary(),
            "tasks": [{"task": j + 1, "val_acc": g} for j, g in enumerate(goals)]}


# the code behind the cached models: a change to any of these retrains them
CODE = (task_data, task_classes, _cifar100_task, _cifar10_shared_task, _cifar10_shared_split, adversarial, val_attack,
        build, _fit_kw, _method_kw, continual.network, continual.ownership, continual.training, continual.packnet,
        continual.cpg, continual.baselines, continual.sequence, adversarial_training, attacks.core, attacks.projected,
        bases.class_data, *bases.TRAINING_CODE)


# ----------------------------------------------------------------------------- evaluation
def task_views(method: str, model) -> list:
    """The plain per-task models of a trained method (the independent models' own)."""
    if isinstance(model, list):
        return [m.task_model(1) for m in model]
    return [model.task_model(k) for k in range(1, model.num_tasks + 1)]


def evaluate_methods(runs: dict, cfg: dict, store: Store | None = None, progress: bool = False) -> dict:
    """Per task of each method in ``report_methods``: the robustness report of
    :func:`lib.robustness.robustness_report` (clean, FGSM, PGD-k over ``pgd_steps`` x
    ``eps_list``, APGD-CE, APGD-T, worst case, sanity checks) on ``n_eval`` test images; per task
    of every method: precision / recall / F1 per class and macro-F1 over the task's **whole**
    test set. Cached. Returns ``{"report", "checks", "f1"}`` DataFrames."""
    store = store or Store()
    tasks = task_data(cfg)
    attacked = {m: runs[m] for m in cfg["report_methods"] if m in runs}
    key = {**{k: cfg[k] for k in ("eps_list", "pgd_steps", "apgd_steps", "n_eval", "seed")},
           "train": {m: _key(m, cfg) for m in runs}, "attacked": sorted(attacked)}

    def reports():
        reps, chks = [], []
        for method, model in attacked.items():
            for j, (view, t) in enumerate(zip(task_views(method, model), tasks)):
                rep, chk = robustness_report(view, t["test"], eps_list=cfg["eps_list"], pgd_steps=cfg["pgd_steps"],
                                             apgd_steps=cfg["apgd_steps"], square_queries=cfg["square_queries"],
                                             n=cfg["n_eval"], seed=cfg["seed"], progress=progress)
                reps.append(rep.assign(method=method, task=j + 1))
                chks.append(chk.assign(method=method, task=j + 1))
        return {"report": pd.concat(reps, ignore_index=True), "checks": pd.concat(chks, ignore_index=True)}

    def f1_table():
        rows = []
        for method, model in runs.items():
            for j, (view, t) in enumerate(zip(task_views(method, model), tasks)):
                logits, y = predict(view, t["test"])
                pc = metrics.per_class(logits, y, t["num_classes"])
                rows.append(pc.assign(method=method, task=j + 1, macro_f1=metrics.macro_f1(logits, y),
                                      acc=metrics.accuracy(logits, y)))
        return pd.concat(rows, ignore_index=True)

    code = (robustness_report, robustness_checks, metrics, attacks.core, attacks.projected, attacks.auto_pgd, *CODE)
    out, computed = {}, {}

    def part_of(name):  # one pass of attacks fills both tables
        if not computed:
            computed.update(reports())
        return computed[name]

    for part in ("report", "checks"):
        out[part] = store.result(f"cl_eval_{part}", key, lambda part=part: part_of(part), code=code)
    out["f1"] = store.result("cl_eval_f1", key, f1_table, code=code)
    return out


def adversarial_matrix(method: str, model, cfg: dict, store: Store | None = None) -> list[float]:
    """The final row of the accuracy matrix under PGD-``matrix_steps`` at ``eps_train`` (earlier
    rows of the masked methods equal it: their task views never change, see the digests).
    Stored, keyed by the model's weights, its recipe and the attack."""
    def compute():
        tasks = task_data(cfg)
        attack = make_attack("pgd", cfg["eps_train"], steps=cfg["matrix_steps"], seed=cfg["seed"])
        return [val_accuracy(v, D.stratified_subset(t["test"], cfg["n_eval"], cfg["seed"]), attack)
                for v, t in zip(task_views(method, model), tasks)]

    key = {**_key(method, cfg), "model": _fingerprint(model), "n_eval": cfg["n_eval"],
           "matrix_steps": cfg["matrix_steps"]}
    return (store or Store()).result("cl_adv_matrix", key, compute,
                                     code=(adversarial_matrix, task_views, make_attack, *CODE))


def _fingerprint(model) -> str | list[str]:
    """The weights' fingerprint of a model (of each, for the independent baselines' list)."""
    return [model_fingerprint(m) for m in model] if isinstance(model, list) else model_fingerprint(model)


def paired_difference(a: torch.Tensor, b: torch.Tensor, level: float = 0.95) -> dict:
    """Accuracy difference of two models on the same images (``a``, ``b``: bool correct per
    image) with the Wald interval for paired proportions: ``d = (n10 - n01) / n``,
    ``se = sqrt(n10 + n01 - (n10 - n01)^2 / n) / n`` (Agresti, Categorical Data Analysis, 10.1)."""
    from statistics import NormalDist

    n = len(a)
    n10, n01 = int((a & ~b).sum()), int((~a & b).sum())
    d = (n10 - n01) / n
    se = math.sqrt(max(n10 + n01 - (n10 - n01) ** 2 / n, 0.0)) / n
    z = NormalDist().inv_cdf((1 + level) / 2)
    return {"diff": d, "low": d - z * se, "high": d + z * se, "n": n, "a_only": n10, "b_only": n01}


def model_sizes(runs: dict) -> pd.DataFrame:
    """Parameters per method: shared body (final width), per-task heads and BN, against one
    separate model per task (CPG's argument), and how many shared weights each task uses."""
    rows = []
    for method, model in runs.items():
        if isinstance(model, list):
            per = sum(p.numel() for p in model[0].task_model(1).parameters())
            for k, m in enumerate(model, 1):
                rows.append({"method": method, "task": k, "used": sum(p.numel() for n, p in m.named_parameters()
                                                                       if n in m.shared_layers()),
                             "total_params": per * len(model)})
            continue
        use = parameter_use(model)
        body = int(use["body_size"].iloc[0])
        total = body + int((use["bn_params"] + use["head_params"]).sum())
        for r in use.itertuples():
            rows.append({"method": method, "task": r.task, "used": r.used, "total_params": total})
    return pd.DataFrame(rows)
