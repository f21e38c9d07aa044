"""Models derived from the shared CIFAR-10 ResNet-20 are scored on CIFAR-10's official test split
(``../shared/data/cifar10-jpg-official-test``), never on the shared subset, whose every image (its
``test/`` folder too) comes from the training split that network learnt: notebook 05's real new task
here, notebook 01's real-data check in its notebook test. Skipped without ``../shared``."""
from __future__ import annotations

import pytest
import torch

from lib.paths import shared_dir

OFFICIAL = shared_dir() / "data/cifar10-jpg-official-test" if shared_dir() else None
pytestmark = pytest.mark.skipif(OFFICIAL is None or not OFFICIAL.is_dir(),
                                reason="../shared/data/cifar10-jpg-official-test is absent")


def test_notebook_05_real_new_task_is_scored_on_the_official_test_split():
    from lib.artifacts.backdoor_data import real_sets
    from lib.studies.backdoor import RECIPE

    train, test = real_sets({**RECIPE["real"], "new_per_class_train": 2}, "new")
    assert len(test) == 5000 and torch.bincount(test.labels).tolist() == [500] * 10
    assert "official" in test.name and len(train) == 20  # training images: the subset's, 2 a class here



def test_notebook_08_real_anchor_plants_on_the_subset_and_is_scored_on_the_official_test_split():
    """BackdoorBench's setting at our scale: the attacker's set is the whole shared CIFAR-10 subset,
    the defender's 5% is drawn from it (every class in proportion), the test is the official split."""
    from lib.artifacts import anchor
    from lib.studies import defences

    cfg = defences.recipe("real")
    train, test = anchor.anchor_sets(cfg)
    assert len(train) == 5000 and len(test) == 5000 and torch.bincount(test.labels).tolist() == [500] * 10
    from lib.artifacts.backdoor_data import real_sets
    from lib.studies.backdoor import RECIPE

    official = real_sets({**RECIPE["real"], "new_per_class_train": 2}, "new")[1]  # the test above: the official split
    assert torch.equal(test.images, official.images) and torch.equal(test.labels, official.labels)
    clean = anchor.anchor_clean_set(cfg)
    assert len(clean) == 250 and torch.bincount(clean.labels).tolist() == [25] * 10
    assert int(anchor.anchor_poisoned(cfg).info["poisoned"].sum()) == 500  # BackdoorBench's 10%
