"""The continual machinery on real photographs: tasks of 2 classes of the team's CIFAR-10 JPEG
subset (``../shared/data``; skipped in a user's clone). PackNet and CPG must leave every earlier
task's predictions identical and learn each task above chance; sequential fine-tuning must not."""
import pandas as pd
import pytest

from lib.studies import continual as S

CFG = S.real_check_recipe(n_tasks=2, per_class_train=150, per_class_test=50, epochs=4, retrain_epochs=1,
                          sparsities=[0.5], cpg_retrain_epochs=0)
pytestmark = pytest.mark.skipif(CFG is None, reason="../shared/data/cifar10-jpg-subset is absent")


@pytest.mark.parametrize("method", ["packnet", "cpg"])
def test_zero_forgetting_on_real_images(method):
    _, log = S.continual_run(method, CFG, progress=False)
    ev = pd.DataFrame(log["evals"])
    final = ev[ev["after_task"] == CFG["n_tasks"]].set_index("task")
    earlier = ev[ev["after_task"] < CFG["n_tasks"]]
    assert (earlier["digest"] == earlier["task"].map(final["digest"])).all()
    assert (final["acc"] > 0.6).all(), final["acc"].tolist()  # 2-way tasks: chance is 0.5
