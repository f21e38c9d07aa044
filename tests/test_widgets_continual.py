"""Notebook 04's explorer (lib.widgets.continual) on tiny real continual learners (one independent
model per task, PackNet, CPG) over a 2-task synsigns split: eps 0 shows clean accuracy, a large
budget hurts every learner more than a small one, the numbers are the study's own evaluation
(lib.studies.continual.correct_vector on the same images), and the sliders redraw."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lib import continual as C  # noqa: E402
from lib import data as D  # noqa: E402
from lib.artifacts import continual as learners  # noqa: E402
from lib.metrics import binomial_interval  # noqa: E402
from lib.studies import continual as study  # noqa: E402
from lib.widgets.continual import COLUMNS, continual_explorer, continual_panel  # noqa: E402

N_TEST = 5 * 8  # 5 classes x 8 test images per task: fewer than the panel's default n=50


@pytest.fixture(scope="module")
def learnt():
    cfg = study.recipe("smoke", n_tasks=2, per_class_train=24, per_class_test=8, per_class_val=4)
    tasks = learners.task_data(cfg)

    def build():
        return C.task_vgg((8, "M", 16, "M", 16), (), 5, seed=0)

    kw = dict(epochs=3, lr=0.05, batch_size=32, progress=False)
    runs = {"independent": C.learn_sequence("independent", build, tasks, **kw)[0],
            "packnet": C.learn_sequence("packnet", build, tasks, prune=0.5, retrain_epochs=1, **kw)[0],
            "cpg": C.learn_sequence("cpg", build, [{**t, "goal": 0.0} for t in tasks], sparsities=(0.5,),
                                    prune_epochs=1, retrain_epochs=1, **kw)[0]}
    return runs, tasks


def test_eps_zero_or_no_steps_is_clean_accuracy_on_every_test_image_available(learnt):
    runs, tasks = learnt
    for eps, steps in ((0.0, 10), (8 / 255, 0)):
        fig, table = continual_panel(runs, tasks, task=2, eps=eps, steps=steps, methods=["cpg", "independent"])
        assert list(table.columns) == COLUMNS
        assert list(table["method"]) == ["cpg", "independent"]  # the order asked for, packnet left out
        assert (table["n"] == N_TEST).all() and (table["task"] == 2).all()
        assert (table["adv_acc"] == table["clean_acc"]).all()
        assert len(fig.axes) == 1 and len(fig.axes[0].patches) == 2 * len(table)  # a bar pair per method
        assert f"n={N_TEST}" in fig.axes[0].get_title()
        plt.close(fig)


def test_a_large_budget_hurts_every_learner_more_than_a_small_one(learnt):
    runs, tasks = learnt
    adv = {}
    for eps in (1 / 255, 64 / 255):
        fig, table = continual_panel(runs, tasks, task=1, eps=eps, steps=10)
        plt.close(fig)
        assert list(table["method"]) == list(runs)
        assert (table["adv_acc"] <= table["clean_acc"]).all()
        assert ((table["adv_low"] <= table["adv_acc"]) & (table["adv_acc"] <= table["adv_high"])).all()
        adv[eps] = table["adv_acc"]
    assert adv[64 / 255].mean() < adv[1 / 255].mean()
    assert (adv[64 / 255] <= 0.1).all()


@pytest.mark.parametrize("task", [1, 2])
def test_numbers_are_the_studys_evaluation_of_each_task_view(learnt, task):
    """The study's correct_vector (its images, views and PGD) on every task, cut at this task's images."""
    runs, tasks = learnt
    cfg = {"eps_train": 3 / 255, "n_eval": 20, "seed": 1}
    fig, table = continual_panel(runs, tasks, task=task, eps=cfg["eps_train"], steps=5, n=cfg["n_eval"],
                                 seed=cfg["seed"])
    plt.close(fig)
    for r in table.itertuples():
        correct = study.correct_vector(r.method, runs[r.method], tasks, cfg, steps=5)
        mine = correct[(task - 1) * cfg["n_eval"]:task * cfg["n_eval"]]
        assert r.n == cfg["n_eval"] and r.adv_acc == int(mine.sum()) / r.n, r.method
        assert (r.adv_low, r.adv_high) == binomial_interval(int(mine.sum()), r.n)
        view = study.task_views(r.method, runs[r.method])[task - 1]
        images = D.stratified_subset(tasks[task - 1]["test"], cfg["n_eval"], cfg["seed"])
        assert r.clean_acc == C.val_accuracy(view, images), r.method


def test_task_outside_the_sequence_is_refused(learnt):
    runs, tasks = learnt
    with pytest.raises(ValueError, match="task must be in 1..2"):
        continual_panel(runs, tasks, task=3, eps=0.0)


def test_explorer_has_only_its_sliders_and_redraws(learnt, capsys):
    import ipywidgets as W

    runs, tasks = learnt
    box = continual_explorer(runs, tasks, n=10, eps=2 / 255, steps=2)
    controls = box.children[0]
    assert set(controls.kwargs) == {"task", "eps255", "steps"}
    assert controls.kwargs == {"task": 2, "eps255": 2.0, "steps": 2}
    sliders = [c for c in controls.children if not isinstance(c, W.Output)]
    assert all(isinstance(c, (W.FloatSlider, W.IntSlider)) and not c.continuous_update for c in sliders)
    assert [s.max for s in sliders] == [2, 16, 20]
    capsys.readouterr()
    controls.f(task=1, eps255=4.0, steps=3)
    out = capsys.readouterr().out
    assert "task 1, 10 images, PGD-3 at eps 4/255" in out and out.count("accuracy") == len(runs)
    plt.close("all")


def test_explorer_builds_no_widgets_in_a_headless_run(learnt, capsys):
    from lib import notebook_run

    runs, tasks = learnt
    made = _widgets_made()
    with notebook_run.headless():
        assert continual_explorer(runs, tasks, n=10) is None
    assert _widgets_made() == made  # not one control made: each would open a comm
    assert "open this notebook in JupyterLab" in capsys.readouterr().out
    plt.close("all")


def _widgets_made() -> int:
    """How many ipywidgets exist in this process (a headless explorer must make none)."""
    from ipywidgets.widgets import widget

    return len(widget._instances)
