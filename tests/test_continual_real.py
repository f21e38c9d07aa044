"""The continual machinery on real photographs: 2 tasks of 2 classes of the team's CIFAR-10 JPEG
subset (``../shared/data``; skipped in a user's clone). PackNet must leave task 1's predictions
identical after task 2 and learn both tasks above chance (the lower 95% Wilson bound of the
pooled test accuracy above 0.5). The 5-task check of every method is in the README."""
import pandas as pd
import pytest

from lib.artifacts.continual import continual_run
from lib.metrics import binomial_interval
from lib.studies.continual import real_check_recipe

CFG = real_check_recipe(n_tasks=2, classes_per_task=2, per_class_train=250, per_class_test=50, retrain_epochs=1)
pytestmark = pytest.mark.skipif(CFG is None, reason="../shared/data/cifar10-jpg-subset is absent")


def test_packnet_zero_forgetting_on_real_images():
    _, log = continual_run("packnet", CFG, progress=False)
    ev = pd.DataFrame(log["evals"])
    final = ev[ev["after_task"] == CFG["n_tasks"]].set_index("task")
    earlier = ev[ev["after_task"] < CFG["n_tasks"]]
    assert (earlier["digest"] == earlier["task"].map(final["digest"])).all()
    correct = int(round((final["acc"] * final["n"]).sum()))
    low, _ = binomial_interval(correct, int(final["n"].sum()))
    assert low > 0.5, final["acc"].tolist()  # 2-way tasks: chance is 0.5
