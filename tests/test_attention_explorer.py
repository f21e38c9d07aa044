"""Notebook 06's explorer (lib.studies.attention_explorer): the masses it draws are lib.explain's over the same
maps, accuracy follows the models' own class order, and the dropdowns redraw it."""
import dataclasses

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lib import explain  # noqa: E402
from lib.attacks import attack_fn  # noqa: E402
from lib.evaluate import craft  # noqa: E402
from lib.models import build  # noqa: E402
from lib.studies import attention as A  # noqa: E402
from lib.studies.attention_explorer import attention_explorer, attention_panel  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    """A real 30-image evaluation set of the study and three untrained small CNNs: the pretrained
    teacher (head over another task), a model over the evaluation classes in their order, and one
    whose head lists them reversed (so its labels must be mapped by name). The teacher's feature
    attack is crafted here, shortened to 2 steps, and kept on the set as ``ev.teacher_adv`` keeps it
    (the store's copy is the study's test)."""
    ev = A.eval_set(A.recipe(n_eval=30, backdoor_recipe={"per_class_test": 3}))
    zoo = {"pretrained teacher": A.Entry(build("small_cnn", 10, seed=0, width=8).eval(), "pretrained", None),
           "05 backdoored teacher": A.Entry(build("small_cnn", 10, seed=1, width=8).eval(), "nb05",
                                            list(ev.classes), True),
           "reversed": A.Entry(build("small_cnn", 10, seed=2, width=8).eval(), "nb05", ev.classes[::-1])}
    short = attack_fn("feature", eps=6 / 255, alpha=3 / 255, steps=2)
    adv = craft(zoo["pretrained teacher"].model, (ev.x, ev.y), short)[1]
    yield zoo, dataclasses.replace(ev, teacher_attack=short, _teacher_adv=adv)
    plt.close("all")


def _accuracy(entry, x, ev):
    with torch.no_grad():
        pred = entry.model(x).argmax(1)
    return sum(entry.classes[p] == ev.classes[y] for p, y in zip(pred.tolist(), ev.y.tolist())) / len(ev)


@pytest.mark.parametrize("method, fn", [("gradcam", explain.gradcam), ("activation", explain.activation_map)])
def test_masses_and_accuracy_match_a_direct_computation(setup, method, fn):
    zoo, ev = setup
    entry = zoo["reversed"]
    fig, s = attention_panel(zoo, ev, model="reversed", kind="triggered", stage="conv3", method=method)
    plt.close(fig)
    cam = fn(entry.model, ev.x_trig, stage="conv3")
    for region, masks in (("object", ev.object), ("trigger", ev.trigger)):
        direct = explain.attention_mass(cam, masks)
        assert s[f"{region}_mass"] == pytest.approx(float(direct.nanmean()), abs=1e-6)
        assert s[f"{region}_mass_low"] < s[f"{region}_mass"] < s[f"{region}_mass_high"]
        assert s[f"{region}_area"] == pytest.approx(float(masks.float().mean()), abs=1e-6)
    assert s["acc"] == pytest.approx(_accuracy(entry, ev.x_trig, ev))
    assert s["acc_low"] <= s["acc"] <= s["acc_high"]
    assert (s["model"], s["kind"], s["stage"], s["method"], s["n"]) == ("reversed", "triggered", "conv3", method, 30)


def test_first_n_images_and_the_pictured_ones(setup):
    """``n`` measures the first n images only; ``images`` (test-set positions) picks the pictures,
    one axis each beside the mass axis, even where they lie beyond the first n."""
    zoo, ev = setup
    m = zoo["05 backdoored teacher"].model
    picked = ev.indices[[3, 20, 25]].tolist()
    fig, s = attention_panel(zoo, ev, model="05 backdoored teacher", kind="clean", stage=None, images=picked, n=15)
    cam = explain.gradcam(m, ev.x[:15])  # stage None: the model's last stage
    assert s["n"] == 15 and s["stage"] == m.stages[-1]
    assert s["object_mass"] == pytest.approx(float(explain.attention_mass(cam, ev.object[:15]).nanmean()), abs=1e-6)
    assert len(fig.axes) == 3 + 1
    assert [ax.get_title() for ax in fig.axes[:3]] == [f"#{i}" for i in picked]
    plt.close(fig)
    fig, _ = attention_panel(zoo, ev, model="05 backdoored teacher", kind="clean", stage=None, show=4)
    assert len(fig.axes) == 4 + 1
    plt.close(fig)
    with pytest.raises(ValueError, match="not in the evaluation set"):
        attention_panel(zoo, ev, model="05 backdoored teacher", kind="clean", stage=None, images=[10**6])


def test_a_different_stage_changes_the_map(setup):
    zoo, ev = setup
    drawn = {}
    for stage in ("conv2", "conv3"):
        fig, s = attention_panel(zoo, ev, model="05 backdoored teacher", kind="triggered", stage=stage, show=2)
        drawn[stage] = (fig.axes[0].get_images()[0].get_array(), s["trigger_mass"])
        plt.close(fig)
    assert (drawn["conv2"][0] != drawn["conv3"][0]).any()
    assert drawn["conv2"][1] != drawn["conv3"][1]


def test_attacked_kinds(setup, monkeypatch):
    """teacher_adv is the study's crafted set; own_pgd stays within the study's budget, changes the
    images, and is crafted once per model when a cache is given (the explorer's)."""
    import lib.studies.attention_explorer as W

    zoo, ev = setup
    teacher = zoo["pretrained teacher"].model
    fig, s = attention_panel(zoo, ev, model="pretrained teacher", kind="teacher_adv", stage="conv3")
    cam = explain.gradcam(teacher, ev.teacher_adv(teacher), stage="conv3")
    assert s["object_mass"] == pytest.approx(float(explain.attention_mass(cam, ev.object).nanmean()), abs=1e-6)
    assert s["acc"] != s["acc"]  # NaN: the pretrained teacher's head is over another task
    plt.close(fig)
    crafted = {}
    for name in ("pretrained teacher", "05 backdoored teacher"):
        attention_panel(zoo, ev, model=name, kind="own_pgd", stage="conv3", n=10, crafted=crafted)
    (_, x_own), (_, x_bd) = crafted.items()
    for x in (x_own, x_bd):
        delta = (x - ev.x[:10]).abs().amax()
        assert 0 < delta <= ev.pgd.params["eps"] + 1e-6
    monkeypatch.setattr(W, "own_pgd", lambda *a, **k: pytest.fail("crafted again"))
    fig, again = attention_panel(zoo, ev, model="05 backdoored teacher", kind="own_pgd", stage="conv2", n=10,
                                 crafted=crafted)
    plt.close(fig)
    assert again["n"] == 10


def test_explorer_has_only_its_dropdowns_and_redraws(setup, capsys):
    import ipywidgets as W

    zoo, ev = setup
    box = attention_explorer(zoo, ev, show=2, stage="conv3", n=10)
    controls = box.children[0]
    assert set(controls.kwargs) == {"model", "kind", "stage", "method"}
    dropdowns = [c for c in controls.children if not isinstance(c, W.Output)]
    assert len(dropdowns) == 4 and all(isinstance(c, W.Dropdown) for c in dropdowns)
    assert controls.kwargs == {"model": "05 backdoored teacher", "kind": "triggered", "stage": "conv3",
                               "method": "gradcam"}
    assert list(dropdowns[1].options) == ["clean", "teacher_adv", "own_pgd", "triggered"]
    assert [v for _, v in dropdowns[2].options] == ["", "conv1", "conv2", "conv3", "conv4"]
    capsys.readouterr()
    controls.f(model="reversed", kind="clean", stage="", method="activation")
    out = capsys.readouterr().out
    assert "reversed, clean, activation at conv4, n=10" in out and "mass on the object" in out
    plt.close("all")


def test_explorer_builds_no_widgets_in_a_headless_run(setup, capsys, monkeypatch):
    from lib import notebook_run
    from lib.stall import HEADLESS_ENV

    zoo, ev = setup
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    made = _widgets_made()
    with notebook_run.headless():
        assert attention_explorer(zoo, ev, n=10) is None
    assert _widgets_made() == made  # not one control made: each would open a comm
    assert "open this notebook in JupyterLab" in capsys.readouterr().out


def _widgets_made() -> int:
    """How many ipywidgets exist in this process (a headless explorer must make none)."""
    from ipywidgets.widgets import widget

    return len(widget._instances)
