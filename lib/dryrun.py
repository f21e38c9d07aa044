"""A dry run of a profile's code path: ``python -m lib.workbook --profile full --dry-run``.

The ``full`` profile (the seeds' datasets and ImageNet architectures at their sizes, on a GPU)
cannot be run here: its datasets and weights cannot be downloaded and a CPU would take days. A
dry run executes every notebook's ``full`` code path end to end anyway, in minutes on a CPU, the
way PyTorch Lightning's ``fast_dev_run`` does for one model:

- **data**: tiny copies of every dataset a ``full`` recipe reads, written in the dataset's real
  on-disk format by :mod:`lib.data.fixtures` (CIFAR-100 with its 20 superclasses), under the run
  folder; the loaders read them at the recipe's image sizes (shrunk: :data:`STRUCTURE`).
- **models**: the recipes' real architectures. The ImageNet weights of the torchvision ones are
  *random initialisations* written where :func:`lib.models.pretrained_path` reads them (a
  ``TORCH_HOME`` under the run folder): the loading code runs, no weight is fetched, and no
  accuracy of a dry run means anything.
- **budgets**: every recipe entry that is a budget (epochs, iterations, attack steps and queries,
  batch sizes, evaluation and per-class counts, seed repeats) shrunk by :data:`BUDGETS`, so a
  training loop runs one or two batches and an attack one or two steps; every other entry
  (architecture, classes, ...) keeps its ``full`` value but the sizes of :data:`STRUCTURE` (image
  size 224 -> 64, notebook 04's number of tasks and VGG-16's classifier width, notebook 07's
  classes), shrunk where a CPU and its disk cannot hold the full ones; each says why.
  :func:`budget_keys` finds the entries, and a test fails when a recipe gains a whole-number entry
  that is neither a budget here nor listed in :data:`NOT_BUDGETS`.
- **asserts**: a notebook's headline asserts are reported, not enforced
  (:mod:`lib.reported_asserts`): on random weights they say nothing.

The store, the data and the weights live under ``<run folder>/dry_run/``, never in ``data/``: a
dry run cannot put a model into the store a real run reads. Its parameters differ from the
recipes', so :mod:`lib.publish` never publishes it.
"""
from __future__ import annotations

import os
from pathlib import Path

from .read_log import READS_LOG  # noqa: F401  (what each kernel of a dry run records, lib.read_log)

# recipe key -> the dry run's value (a key ending in one of SUFFIXES takes that suffix's value); the
# attacked and evaluated images are one batch (4, the dry run's batch size: 8 ran every attack twice)
BUDGETS: dict[str, object] = {
    "n_eval": 4, "n_attack": 4, "n_sweep": 4, "n_val": 8, "n_blend": 2, "n_show": 2,
    "per_class": 2, "per_class_train": 2, "per_class_test": 2, "per_class_val": 1,
    "per_class_samples": 1, "per_class_unrestricted": 1,
    "square_queries": 2, "rounds": 1, "attention_batches": 1, "gan_checkpoint_every": 1, "gan_n_critic": 1,
    "prune_frequency": 1, "swa_freq_iterations": 1, "seeds": 1,
}
# structure the dry run shrinks too, and why (the code path does not depend on these sizes)
STRUCTURE: dict[str, tuple[object, str]] = {
    "size": (64, "224 px -> 64 (32 px stays 32): the same loaders, resizing and models, at a twelfth of "
                 "the CPU time of 224"),
    "n_tasks": (2, "20 tasks -> 2: tasks 3 to 20 run the code of task 2 again (the first with earlier tasks)"),
    "fc": ([64, 64], "VGG-16's 4096-wide classifier -> 64: at 4096 each task's model is 0.5 GB on disk"),
    "classes": (list(range(10)), "notebook 07's 100 CIFAR-100 classes -> the first 10: every class runs "
                                 "the same code, and an epoch of 100 classes is 100 batches"),
}
# sweeps: the dry run keeps the first two values (each further value runs the same code again)
SWEEPS = frozenset({"sparsities", "rates", "update_ratios", "mag_ratios", "sweep_eps"})
SUFFIXES: dict[str, object] = {"epochs": 1, "iterations": 2, "steps": 2, "batch_size": 4, "batch": 4}
# whole-number recipe entries that are structure, not budget: they keep their full-profile value
NOT_BUDGETS = frozenset({
    "seed", "data_seed", "split_seed", "task_seed", "student_seed", "clean_seed",  # which draw
    "translate", "classes_per_task", "teacher_classes", "new_classes", "target",
    "clf_width", "gan_width", "gan_z_dim", "min_over_chance", "cfg",
})
DATASET_KEYS = ("dataset", "new_dataset", "transfer_dataset")
ARCH_KEYS = ("arch", "base", "imagenet_archs")
# read by a full-profile code path without a recipe key naming it
ALSO_READ = {"imagenet_r": ("01", "02")}  # 01: each base's ImageNet-R accuracy; 02: the AnB task


def _shrunk(key: str, value):
    """The dry run's value of one recipe entry (``value`` itself when it is not a budget)."""
    if key in STRUCTURE:
        new = STRUCTURE[key][0]
        return min(value, new) if isinstance(new, int) and isinstance(value, int) else new
    if isinstance(value, bool) or value is None:
        return value
    if key in SWEEPS:
        return value[:2]
    if isinstance(value, dict):
        return {k: _shrunk(k, v) for k, v in value.items()}
    new = BUDGETS.get(key, next((v for s, v in SUFFIXES.items() if key.endswith(s)), None))
    if new is None:
        return value
    if isinstance(value, list):  # a ladder (PGD steps 7, 10, 20, 40): its first rungs, shrunk
        return sorted({min(int(v), int(new) + i) for i, v in enumerate(value)})[:2]
    return min(value, new) if isinstance(value, (int, float)) else value


def shrink(cfg: dict) -> dict:
    """``cfg`` (one notebook's recipe) with every budget entry at its dry-run value."""
    return {k: _shrunk(k, v) for k, v in cfg.items()}


def budget_keys(cfg: dict) -> set[str]:
    """The keys of ``cfg`` (nested dicts included) that the dry run shrinks."""
    out = set()
    for k, v in cfg.items():
        if isinstance(v, dict):
            out |= budget_keys(v)
        elif _shrunk(k, v) != v:
            out.add(k)
    return out


def unclassified(cfg: dict) -> set[str]:
    """Whole-number entries of ``cfg`` over 2 that are neither budgets nor :data:`NOT_BUDGETS`:
    an entry a new recipe added that the dry run would leave at its full size."""
    out = set()
    for k, v in cfg.items():
        if isinstance(v, dict):
            out |= unclassified(v)
        elif (isinstance(v, int) and not isinstance(v, bool) and v > 2 and k not in NOT_BUDGETS
              and k not in BUDGETS and k not in STRUCTURE and not any(k.endswith(s) for s in SUFFIXES)):
            out.add(k)
    return out


def dry_params(profile: str = "full") -> dict:
    """The run parameters of a dry run of ``profile``: every study's budget entries, shrunk."""
    from .studies import study_modules

    params = {}
    for module in study_modules().values():
        table = module.RECIPE.get(profile, module.RECIPE["smoke"])
        small = shrink(table)
        for name, key in module.PARAMS.items():
            if key in table and key != "seeds" and small[key] != table[key]:
                params[name] = small[key]
    if any(m.RECIPE.get(profile, {}).get("seeds", 1) > 1 for m in study_modules().values()):
        params["seeds"] = 1
    return params


def run_params(profile: str, params: dict) -> dict:
    """A dry run's parameters: every budget of ``profile``'s recipes shrunk (:func:`dry_params`),
    under the run's own ``params`` (which win); ConfigError outside ``full``."""
    from .studies import ConfigError, check_params

    if profile != "full":
        raise ConfigError(f"--dry-run exercises the full profile's code path; give --profile full (not {profile!r})")
    return check_params({**dry_params(profile), **params}, profile)


def named_by_recipes(profile: str = "full") -> dict[str, dict[str, set[str]]]:
    """The datasets and architectures the ``profile`` recipes name, each with the notebooks whose
    recipe names it: what a dry run must exercise, and where."""
    from .studies import study_modules

    found = {"datasets": {}, "archs": {}}

    def visit(cfg, number):
        for k, v in cfg.items():
            if isinstance(v, dict):
                visit(v, number)
            elif k in DATASET_KEYS and isinstance(v, str):
                found["datasets"].setdefault(v, set()).add(number)
            elif k in ARCH_KEYS and v:
                for arch in [v] if isinstance(v, str) else v:
                    found["archs"].setdefault(arch.removeprefix("imagenet_"), set()).add(number)
    for number, module in study_modules().items():
        if profile in module.RECIPE:
            visit(module.RECIPE[profile], number)
    for name, numbers in ALSO_READ.items():
        found["datasets"].setdefault(name, set()).update(numbers)
    return found


def write_weights(torch_home: Path, archs) -> list[Path]:
    """Random ImageNet-shaped weights of each torchvision ``arch`` where the hub cache under
    ``torch_home`` is read (:func:`lib.models.pretrained_path`); files already there are kept."""
    import torch

    from .models import TORCHVISION_ARCHS, pretrained_path
    from .models.archs import torchvision_net

    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(torch_home)
    try:
        paths = []
        for arch in sorted(set(archs) & set(TORCHVISION_ARCHS)):
            path = pretrained_path(arch)
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.manual_seed(0)
                torch.save(torchvision_net(arch, 1000).state_dict(), path.with_suffix(".tmp"))
                path.with_suffix(".tmp").replace(path)
            paths.append(path)
        return paths
    finally:
        if old is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = old


def prepare(folder: Path, profile: str = "full") -> dict[str, str]:
    """Write the dry run's data and weights under ``folder`` (once) and return the environment
    its notebooks run with: ``WORKBOOK_DATA``, ``WORKBOOK_STORE`` and ``TORCH_HOME`` there."""
    from .data.fixtures import write_full_data_dir

    folder = Path(folder)
    data, home, store = folder / "data", folder / "torch_home", folder / "store"
    if not (data / ".complete").is_file():
        write_full_data_dir(data)
        (data / ".complete").write_text("")
    write_weights(home, set(named_by_recipes(profile)["archs"]))
    store.mkdir(parents=True, exist_ok=True)
    return {"WORKBOOK_DATA": str(data), "WORKBOOK_STORE": str(store), "TORCH_HOME": str(home)}


BANNER = ("dry run of the {profile} profile: its architectures at RANDOM initialisation (no weights "
          "fetched), tiny fixtures in each dataset's on-disk format, one or two batches per training loop "
          "and steps per attack; asserts are reported, not enforced. No number of this run means anything.")
