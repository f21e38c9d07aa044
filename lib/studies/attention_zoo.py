"""The models notebook 06 measures (:func:`model_zoo`): the pretrained teacher, notebook 02's
students and notebook 05's teachers and students, from the store with the recipes those notebooks
ran with, each as an :class:`Entry`. The measurements are :mod:`lib.studies.attention`'s."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..artifacts import backdoor as bd_models
from ..artifacts import transfer as transfer_models
from ..artifacts.bases import half_data
from ..store import Store

CLEAN_MODEL = "05 clean teacher"  # the clean-trained reference of the trigger check


@dataclass
class Entry:
    """One model of the study: ``group`` (pretrained / notebook 02 / notebook 05), ``classes``
    (its class names, ``None`` for the pretrained teacher, whose head is over another task),
    ``backdoored`` (trained from the planted teacher, or the planted teacher itself)."""

    model: torch.nn.Module
    group: str
    classes: list[str] | None
    backdoored: bool = False
    meta: dict = field(default_factory=dict)


def recipe_05(cfg: dict) -> dict:
    """Notebook 05's recipe as this run trained it (``cfg["needs"]["05"]``), with this study's
    ``backdoor_recipe`` overrides (tests: short budgets) and your teacher (``yours``) as its public model."""
    return {**cfg["needs"]["05"], **(cfg["backdoor_recipe"] or {}), **_yours(cfg)}


def recipe_02(cfg: dict) -> dict:
    """Notebook 02's recipe as this run trained it (``cfg["needs"]["02"]``), with your teacher (``yours``)."""
    return {**cfg["needs"]["02"], **_yours(cfg)}


def _yours(cfg: dict) -> dict:
    return {"yours": cfg["yours"]} if cfg.get("yours") else {}


def map_stage(cfg: dict, zoo: dict) -> str | None:
    """The stage both maps read: the recipe's ``stage`` (smoke: conv3 of the small CNN), or ``None``
    (each model's last stage) when your teacher has no block of that name; says so."""
    blocks = zoo["pretrained teacher"].model.block_names
    if cfg["stage"] is None or cfg["stage"] in blocks:
        return cfg["stage"]
    print(f"[06] your teacher has no block {cfg['stage']!r}: the maps read each model's last stage "
          f"(att_stage picks one of {zoo['pretrained teacher'].model.stages})")
    return None


def _transfer_setup(cfg: dict, cfg05: dict, store: Store, progress: bool):
    """The pretrained teacher (notebook 05's public base: base A of notebook 01 in smoke, ImageNet
    ResNet-18 in full, the same model notebook 02 starts from) and notebook 02's target training
    set (smoke: synsigns half B, as :func:`lib.artifacts.transfer.setup` makes it; real: the shared
    GTSRB subset; full: GTSRB)."""
    teacher = bd_models.public_base(cfg05, store, progress=progress)
    if cfg["needs"]["02"].get("base") == "resnet20_shared":  # real: the shared GTSRB subset
        return teacher, transfer_models.shared_gtsrb()[0]
    if "transfer_dataset" not in cfg:
        return teacher, half_data("B", cfg["needs"]["02"]["needs"]["01"])[0]
    from ..data.real import load_real

    # at the size of notebook 05's sets, which the attention maps are measured on
    return teacher, load_real(cfg["transfer_dataset"], "train", size=cfg["needs"]["05"]["size"], train_augment=True)


def model_zoo(cfg: dict, store: Store | None = None, *, progress: bool = True) -> dict[str, Entry]:
    """Every model of the study by display name, from the store (trained if absent) with the
    recipes notebooks 02 and 05 ran with (``cfg["needs"]``): the pretrained teacher, notebook 02's
    ``transfer_methods`` students, notebook 05's clean and backdoored teachers and its
    ``backdoor_methods`` students (same task, update ratio 0). ``backdoor_recipe`` overrides reach
    the pretrained teacher too (``base_epochs``), so every model descends from the same base."""
    store = store or Store()
    cfg02, cfg05 = recipe_02(cfg), recipe_05(cfg)
    teacher, train02 = _transfer_setup(cfg, cfg05, store, progress)
    zoo = {"pretrained teacher": Entry(teacher, "pretrained", None)}
    for m in cfg["transfer_methods"]:
        model, meta = transfer_models.student(m, cfg02, teacher, train02, store=store, progress=progress,
                                              **(cfg["transfer_kw"] or {}).get(m, {}))
        zoo[f"02 {m}"] = Entry(model, "notebook 02 (clean)", list(train02.classes), meta=meta)
    classes05 = list(bd_models.student_data(cfg05, "same")[0].classes)
    model, meta = bd_models.clean_teacher(cfg05, store, progress=progress)
    zoo[CLEAN_MODEL] = Entry(model, "notebook 05 (clean)", classes05, meta=meta)
    model, meta = bd_models.backdoored_teacher(cfg05, store, progress=progress)
    zoo["05 backdoored teacher"] = Entry(model, "notebook 05 (backdoor)", classes05, True, meta)
    for m in cfg["backdoor_methods"]:
        model, meta = bd_models.student(m, cfg05, store, task="same", progress=progress)
        zoo[f"05 {m}"] = Entry(model, "notebook 05 (backdoor)", classes05, True, meta)
    return zoo
