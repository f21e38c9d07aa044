"""Notebook 04's models: the continual learners over the task sequence, each method's run cached in
the store.

Smoke: the first ``n_tasks`` tasks of synsigns split into 20 tasks of 5 classes
(:func:`lib.data.task_split`), a four-conv VGG-style :class:`~lib.continual.TaskNet`. Full:
CIFAR-100's 20 superclass tasks with CPG's VGG-16-BN. The real-image check reads the team's
CIFAR-10 JPEG subset (``dataset = "cifar10_shared"``). Every run (the independent per-task models
and the sequence learners: fine-tuning, PackNet, CPG and their adversarial variants) is trained
once and then loaded, under a key that holds the recipe's training entries and the computed code
version of this module.
"""
from __future__ import annotations

import functools

from .. import continual, data, metrics
from ..continual import learn_sequence, task_vgg, val_accuracy
from ..models import model_fingerprint
from ..robustness import make_attack
from ..store import Store
from ..store.versions import module_version
from ..train import random_translate
from .bases import class_data

# adversarial method -> the learner it trains adversarially
BASE = {"independent_adv": "independent", "packnet_adv": "packnet", "cmat": "cpg"}
# entries of notebook 04's recipe that no training reads (the methods to run, the evaluation's
# attacks and sizes, the headline threshold, the recipes of other notebooks): left out of the keys
# and of what training sees, so a training setting cannot be dropped without a KeyError
NOT_TRAINING = ("methods", "eps_list", "pgd_steps", "apgd_steps", "square_queries", "n_eval", "matrix_steps",
                "min_forgetting", "asserted", "report_methods", "needs", "large_eps_steps")


def training_recipe(recipe: dict) -> dict:
    """``recipe`` without :data:`NOT_TRAINING`: what the learners' training reads and their keys hold."""
    return {k: v for k, v in recipe.items() if k not in NOT_TRAINING}


# ----------------------------------------------------------------------------- data
def task_classes(recipe: dict) -> list[list[int]]:
    """The class ids of each task of the sequence."""
    if recipe["dataset"] == "cifar100":
        from ..data.real import cifar100_superclass_tasks
        return cifar100_superclass_tasks()[:recipe["n_tasks"]]
    if recipe["dataset"] == "cifar10_shared":
        per = recipe["classes_per_task"]
        return [list(range(t * per, (t + 1) * per)) for t in range(recipe["n_tasks"])]
    n = len(data.SYNSIGNS_CLASSES)
    return data.task_split(n, n // recipe["classes_per_task"], recipe["task_seed"])[:recipe["n_tasks"]]


def task_data(recipe: dict) -> list[dict]:
    """One dict per task: ``train``, ``val`` (an independent synsigns validation draw: CPG used its
    test split as validation; we do not), ``test``, ``num_classes``, ``classes``."""
    out = []
    for i, classes in enumerate(task_classes(recipe)):
        if recipe["dataset"] == "cifar100":
            train, val, test = _cifar100_task(classes, recipe)
        elif recipe["dataset"] == "cifar10_shared":
            train, val, test = _cifar10_shared_task(classes, recipe)
        else:
            train, test = class_data(classes, recipe["per_class_train"], recipe["per_class_test"],
                                     seed=recipe["data_seed"], tag=f"cl{i + 1}")
            v = data.load_synsigns("val", n=len(classes) * recipe["per_class_val"], seed=recipe["data_seed"],
                                   classes=classes)
            val = data.subset_classes(v, classes, name=f"synsigns-cl{i + 1}-val")
        out.append({"train": train, "val": val, "test": test, "num_classes": len(classes), "classes": classes})
    return out


def _cifar100_task(classes, recipe):
    from ..data import to_imageset
    from ..data.real import load_real

    sets = {}
    for split in ("train", "test"):
        ds = to_imageset(load_real("cifar100", split, size=32), name=f"cifar100-{split}", progress=False)
        sets[split] = data.subset_classes(ds, classes)
    train, val = data.train_val_split(sets["train"], recipe["per_class_val"] / recipe["per_class_train"],
                                      seed=recipe["data_seed"])
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


def _cifar10_shared_task(classes, recipe):
    train = data.subset_classes(_cifar10_shared_split("train"), classes)
    test = data.subset_classes(_cifar10_shared_split("test"), classes)
    train, val = data.train_val_split(train, recipe["per_class_val"] / 500, seed=recipe["data_seed"])
    train = data.stratified_subset(train, recipe["per_class_train"] * len(classes), recipe["data_seed"])
    test = data.stratified_subset(test, recipe["per_class_test"] * len(classes), recipe["data_seed"])
    return train, val, test


# ----------------------------------------------------------------------------- training
def adversarial(recipe: dict) -> dict:
    """The PGD-AT step of the adversarial variants: ``train_steps`` steps of ``2.5 eps / steps``."""
    return {"eps": recipe["eps_train"], "steps": recipe["train_steps"],
            "alpha": 2.5 * recipe["eps_train"] / recipe["train_steps"]}


def val_attack(recipe: dict):
    """CMAT validates (and compares with its goals) on adversarial accuracy: PGD-``val_steps``."""
    return make_attack("pgd", recipe["eps_train"], steps=recipe["val_steps"], seed=recipe["seed"])


def build(recipe: dict):
    """The untrained task network (initial weights from the recipe's seed)."""
    return task_vgg(recipe["cfg"], recipe["fc"], recipe["classes_per_task"], seed=recipe["seed"])


def _fit_kw(recipe):
    return {"batch_size": recipe["batch_size"], "weight_decay": recipe["weight_decay"],
            "augment": random_translate(recipe["translate"]) if recipe["translate"] else None}


def _method_kw(method: str, recipe: dict) -> dict:
    base = BASE.get(method, method)
    kw = {"epochs": recipe["epochs"], "lr": recipe["lr"], "seed": recipe["seed"], **_fit_kw(recipe),
          "adversarial": adversarial(recipe) if method in BASE else None}
    if base == "packnet":
        kw.update(prune=recipe["prune"], retrain_epochs=recipe["retrain_epochs"], retrain_lr=recipe["retrain_lr"])
    if base == "cpg":
        kw.update(sparsities=tuple(recipe["sparsities"]), prune_epochs=recipe["prune_epochs"],
                  prune_lr=recipe["prune_lr"], prune_frequency=recipe["prune_frequency"],
                  prune_ramp=recipe["prune_ramp"], retrain_epochs=recipe["cpg_retrain_epochs"],
                  retrain_lr=recipe["retrain_lr"], lr_mask=recipe["lr_mask"], retrain_lr_mask=recipe["retrain_lr_mask"],
                  grow_factor=recipe["grow_factor"], max_width=recipe["max_width"],
                  allow_acc_loss=recipe["allow_acc_loss"],
                  val_attack=val_attack(recipe) if method == "cmat" else None)
    return kw


def model_key(method: str, recipe: dict) -> dict:
    """The store key of ``method``'s run under notebook 04's ``recipe``: the training entries and
    the code version of this module (and every ``lib`` module it imports)."""
    return {"method": method, **training_recipe(recipe), "code": module_version(__name__)}


def fingerprint(model) -> str | list[str]:
    """The weights' fingerprint of a model (of each, for the independent baselines' list)."""
    return [model_fingerprint(m) for m in model] if isinstance(model, list) else model_fingerprint(model)


def independent_models(recipe: dict, adv: bool = False, store: Store | None = None, progress: bool = True):
    """One model per task trained on that task alone (clean, or PGD-AT with ``adv``), cached;
    returns ``(models, val accuracies)``: CPG's accuracy goals (adversarial ones under
    :func:`val_attack` for CMAT)."""
    cfg = training_recipe(recipe)
    store = store or Store()
    method = "independent_adv" if adv else "independent"
    tasks = task_data(cfg)
    models = []
    for i, t in enumerate(tasks):
        kw = _method_kw(method, cfg)
        kw["seed"] += i

        def train_fn(net, t=t, kw=kw):
            info = continual.independent_task(net, t["train"], t["num_classes"], progress=progress, **kw)
            return {"info": info}

        net, _ = store.model(f"cl_{method}_task{i + 1}", {**model_key(method, cfg), "task": i + 1},
                             lambda: build(cfg), train_fn)
        models.append(net)
    # the goals are measured once and stored (keyed by the models' weights): CPG and CMAT ask again
    goals = store.result(f"cl_{method}_goals", {**model_key(method, cfg), "models": fingerprint(models)},
                         lambda: [val_accuracy(m.task_model(1), t["val"], val_attack(cfg) if adv else None)
                                  for m, t in zip(models, tasks)])
    return models, goals


def continual_run(method: str, recipe: dict, store: Store | None = None, progress: bool = True):
    """The model of ``method`` after the whole sequence and its log (accuracy matrix, prediction
    digests, per-task details), trained once and cached; independent baselines return a list of
    models and a log computed from them."""
    cfg = training_recipe(recipe)
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

    model, meta = store.model(f"cl_{method}", model_key(method, cfg), lambda: build(cfg), train_fn)
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
