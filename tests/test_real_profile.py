"""The real profile's own pieces that need no ../shared: notebook 00's checks of the shared sets,
notebook 01's per-class table of the shared teacher, and which studies have a real recipe."""
import pytest
import torch
from torch import nn

from lib import studies
from lib.config import ConfigError
from lib.data import ImageSet
from lib.studies import bases, continual, datasets


def _set(pixels, labels, name):
    images = torch.tensor(pixels, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 2, 2).contiguous()
    return ImageSet(images, torch.tensor(labels), ["a", "b"], name=name)


def test_shared_summary_counts_repeats_and_leaks(monkeypatch):
    sets = {("gtsrb", "train"): _set([1, 2, 3, 3], [0, 0, 1, 1], "g-train"),  # one repeat
            ("gtsrb", "test"): _set([3, 9], [1, 0], "g-test"),                 # one image leaked from train
            ("cifar10_folder", "train"): _set([10, 11, 12, 13], [0, 1, 0, 1], "c-train"),
            ("cifar10_folder", "test"): _set([20, 21], [0, 1], "c-test"),
            ("cifar10_official", "test"): _set([20, 12, 30, 31], [0, 0, 1, 1], "o-test")}  # one of each
    splits, leaks = datasets.shared_summary(sets)
    assert splits.set_index(["set", "split"])["repeated_images"].to_dict() == {
        ("gtsrb", "train"): 1, ("gtsrb", "test"): 0, ("cifar10_folder", "train"): 0, ("cifar10_folder", "test"): 0,
        ("cifar10_official", "test"): 0}
    assert splits["min_per_class"].tolist() == [2, 1, 2, 1, 2]
    assert leaks["shared_images"].tolist() == [1, 0, 1, 1] and leaks["n"].tolist() == [2, 2, 4, 4]


def test_shared_sets_without_the_shared_folder_says_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBOOK_SHARED", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="WORKBOOK_SHARED"):
        datasets.shared_sets()
    with pytest.raises(FileNotFoundError, match="WORKBOOK_SHARED"):
        bases.shared_resnet20(required=True)
    assert bases.shared_resnet20() is None and continual.real_check_recipe() is None


class _Fixed(nn.Module):
    """Predicts class 0 for dark images and class 1 for bright ones."""

    def forward(self, x):
        bright = (x.flatten(1).mean(1) > 0.5).float()
        return torch.stack([1 - bright, bright], 1)


def test_class_accuracy_is_each_class_own_rate_with_its_interval():
    test = _set([0, 0, 0, 255, 255, 0, 255, 255], [0, 0, 0, 0, 1, 1, 1, 1], "t")
    table = bases.class_accuracy(_Fixed(), test)
    assert table["n"].tolist() == [4, 4] and table["acc"].tolist() == [0.75, 0.75]
    assert (table["acc_low"] < 0.75).all() and (table["acc_high"] > 0.75).all()


def test_the_real_recipes_are_their_own_not_smoke():
    modules = studies.study_modules()
    own = [n for n in modules if n not in studies.without_recipe("real", list(modules))]
    assert {"00", "01", "03", "04", "05", "08"} <= set(own)
    for n in own:
        assert modules[n].RECIPE["real"] != modules[n].RECIPE["smoke"], n
    assert continual.RECIPE["real"]["dataset"] == "cifar10_shared"


def test_a_trigger_recipe_changes_only_its_own_teacher_and_names_a_bad_entry():
    from lib.studies import defences
    from lib.studies.defences_report import trigger_cfg

    cfg = defences.recipe("real")
    badnets, emblem = trigger_cfg(cfg, "badnets"), trigger_cfg(cfg, "emblem")
    assert badnets["trigger"] == "badnets"
    assert badnets["teacher_epochs"] == cfg["trigger_recipes"]["badnets"]["teacher_epochs"]
    assert emblem["teacher_epochs"] == cfg["needs"]["05"]["teacher_epochs"] != badnets["teacher_epochs"]
    assert defences.check(cfg) is None
    # a run parameter is checked with the whole run's recipes, before any notebook starts
    with pytest.raises(ConfigError, match="defence_trigger_recipes names 'square'"):
        studies.resolve_recipes("real", studies.check_params({"defence_trigger_recipes": {"square": {}}}, "real"))
    with pytest.raises(ConfigError, match=r"keys \['epochs'\] that notebook 05's recipe does not have"):
        studies.resolve_recipes("smoke", studies.check_params({"defence_trigger_recipes": {"badnets": {"epochs": 16}}},
                                                              "smoke"))


def test_the_anchor_is_notebook_05s_recipe_with_its_overrides_and_names_a_bad_entry():
    from lib.artifacts.anchor import anchor_recipe
    from lib.artifacts.defences import backdoor_recipe
    from lib.studies import defences
    from lib.studies.defences_anchor import anchor_purification

    assert anchor_purification(defences.recipe("smoke")).empty  # the embedded data has no CIFAR-10
    real = defences.recipe("real")
    bd = anchor_recipe(real)
    assert (bd["dataset"], bd["trigger"], bd["rate"], real["anchor_clean_fraction"]) == \
        ("cifar10_shared", "badnets", 0.1, 0.05)
    assert bd["base"] == real["needs"]["05"]["base"] and backdoor_recipe(real)["dataset"] == "gtsrb_shared"
    with pytest.raises(ConfigError, match=r"anchor_recipe has keys \['poison'\]"):
        studies.resolve_recipes("real", studies.check_params({"defence_anchor_recipe": {"poison": 0.1}}, "real"))
