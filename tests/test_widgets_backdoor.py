"""Notebook 05's explorer (lib/widgets/backdoor.py): what it shows of a planted model is what
lib.backdoor measures, a trigger moved or shrunk away from the planted one fires less, and the
stored poison-rate sweep is read, not recomputed."""
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lib import data as D  # noqa: E402
from lib.backdoor import Trigger, backdoor_metrics, poison  # noqa: E402
from lib.metrics import binomial_interval  # noqa: E402
from lib.models import build  # noqa: E402
from lib.train import fit, predict  # noqa: E402
from lib.widgets.backdoor import own_size, stored_rate, trigger_explorer, trigger_panel  # noqa: E402

CLASSES = [3, 11, 27, 40]
TARGET = 0
TRIGGER = Trigger.badnets(4)  # 4 px of 32: own size 0.125


@pytest.fixture(scope="module")
def models():
    """A small CNN planted with a 4-px square at the bottom right on 20% of 240 synsigns images,
    and its clean twin (about 5 s of CPU on one thread: measured ASR 0.86 planted, 0.22 with a
    1-px square, 0.23 at the top left, 0.10 for the clean twin)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same weights whatever the caller's thread count
    try:
        tr = D.subset_classes(D.load_synsigns("train", n=4 * 60, classes=CLASSES, seed=0), CLASSES)
        te = D.subset_classes(D.load_synsigns("test", n=4 * 30, classes=CLASSES, seed=0), CLASSES)
        out = {}
        for name, ds in (("planted", poison(tr, TRIGGER, 0.2, TARGET, seed=0)), ("clean", tr)):
            model = build("small_cnn", len(CLASSES), width=8, seed=0)
            fit(model, ds, epochs=6, batch_size=32, lr=0.05, progress=False)
            out[name] = model.eval()
    finally:
        torch.set_num_threads(threads)
    return SimpleNamespace(**out, test=te, x=te.float_images(), y=te.labels)


def _rates() -> pd.DataFrame:
    """A stored sweep as notebook 05 saves it (``05_poison_rate``: model, rate, asr_bb with n and interval)."""
    rows = []
    for model, ks in (("teacher", (30, 60, 85)), ("fine-tuned student", (5, 20, 40))):
        for rate, k in zip((0.01, 0.1, 0.2), ks):
            low, high = binomial_interval(k, 90)
            rows.append({"model": model, "rate": rate, "asr_bb": k / 90, "asr_bb_n": 90, "asr_bb_low": low,
                         "asr_bb_high": high, "clean_acc": 0.7})
    return pd.DataFrame(rows)


def test_planted_trigger_matches_backdoor_metrics(models):
    """At the planted size and corner the panel's ASR and accuracy are lib.backdoor's on the same
    images, the ASR counts only images of other classes, and it fires far more than on the clean twin."""
    m, x, y = models, models.x, models.y
    ref = backdoor_metrics(m.planted, m.test, TRIGGER, TARGET)
    assert own_size(TRIGGER, x) == 4 / 32
    for size in (None, 0.125):
        fig, s = trigger_panel(m.planted, x, y, TRIGGER, size=size, where="bottom_right", target=TARGET)
        plt.close(fig)
        assert s["side_px"] == 4 and s["asr"] == pytest.approx(ref["asr_bb"])
        assert s["clean_acc"] == pytest.approx(ref["clean_acc"]) and s["clean_acc_n"] == len(y)
        assert s["asr_n"] == int((y != TARGET).sum()) == ref["asr_bb_n"] < len(y)
        assert (s["asr_low"], s["asr_high"]) == pytest.approx(binomial_interval(s["asr_k"], s["asr_n"]))
    fig, clean = trigger_panel(m.clean, x, y, TRIGGER, size=0.125, where="bottom_right", target=TARGET)
    plt.close(fig)
    assert s["asr"] > 0.7 and clean["asr"] < 0.3 and clean["asr_high"] < s["asr_low"]


def test_a_smaller_or_moved_trigger_fires_less(models):
    m, x, y = models, models.x, models.y
    got = {}
    for key, size, where in (("planted", 0.125, "bottom_right"), ("1px", 0.03, "bottom_right"),
                             ("top_left", 0.125, "top_left")):
        fig, got[key] = trigger_panel(m.planted, x, y, TRIGGER, size=size, where=where, target=TARGET)
        plt.close(fig)
    assert got["1px"]["side_px"] == 1
    assert got["1px"]["asr"] < got["planted"]["asr"] - 0.3
    assert got["top_left"]["asr"] < got["planted"]["asr"] - 0.3
    assert got["1px"]["clean_acc"] == got["planted"]["clean_acc"]  # clean images do not move
    # the clean predictions handed in (as the explorer does, once) change nothing
    fig, given = trigger_panel(m.planted, x, y, TRIGGER, size=0.03, where="bottom_right", target=TARGET,
                               clean_pred=predict(m.planted, (x, y))[0].argmax(1))
    plt.close(fig)
    assert given == got["1px"]


def test_image_row_shows_other_classes_with_the_target_in_red(models):
    m, x, y = models, models.x, models.y
    fig, s = trigger_panel(m.planted, x, y, TRIGGER, size=0.125, where="bottom_right", target=TARGET, show=5)
    assert len(fig.axes) == 5 + 1  # five images and the bars (no sweep given)
    shown = (y != TARGET).nonzero().flatten()[:5]
    for ax, i in zip(fig.axes[:5], shown.tolist()):
        assert ax.get_xlabel() == f"true {int(y[i])}"  # never an image of the target class
        fired = ax.get_title().startswith("→ 0")
        assert (ax.title.get_color() == "red") == fired
    assert "red when it is the target" in fig._suptitle.get_text()
    plt.close(fig)


def test_blended_trigger_ignores_size_and_says_so(models):
    m, x, y = models, models.x, models.y
    blend = Trigger.blended()
    got = []
    for size in (0.05, 0.5):
        fig, s = trigger_panel(m.planted, x, y, blend, size=size, where="top_left", target=TARGET)
        got.append(s)
        assert "size and position have no effect" in fig._suptitle.get_text()
        plt.close(fig)
    assert got[0]["asr"] == got[1]["asr"] and got[0]["size"] == got[1]["size"] == 1.0


def test_stored_sweep_is_read_and_the_chosen_rate_marked(models):
    m, x, y = models, models.x, models.y
    rates = _rates()
    fig, s = trigger_panel(m.planted, x[:40], y[:40], TRIGGER, size=0.125, where="bottom_right", target=TARGET,
                           rates=rates, rate=0.1, show=4)
    assert len(fig.axes) == 4 + 2
    assert s["rate"] == 0.1 and s["stored"]["teacher"]["asr"] == pytest.approx(60 / 90)
    assert s["stored"]["fine-tuned student"]["n"] == 90
    curve = fig.axes[-1]
    marks = [ln for ln in curve.get_lines() if ln.get_label() == "chosen rate 10%"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [10, 10]
    plt.close(fig)
    with pytest.raises(ValueError, match="not in the stored sweep"):
        trigger_panel(m.planted, x[:40], y[:40], TRIGGER, size=0.125, where="bottom_right", target=TARGET,
                      rates=rates, rate=0.05)
    assert stored_rate(rates, 0.05) == 0.01 and stored_rate(rates, 0.3) == 0.2 and stored_rate(rates) == 0.2
    plt.close("all")


def test_explorer_has_only_its_controls_and_redraws(models, capsys):
    import ipywidgets as W

    m, x, y = models, models.x[:40], models.y[:40]
    box = trigger_explorer(m.planted, x, y, TRIGGER, target=TARGET, rates=_rates(), rate=0.2)
    controls = box.children[0]
    assert set(controls.kwargs) == {"size", "where", "rate"}
    widgets = [c for c in controls.children if not isinstance(c, W.Output)]
    kinds = {type(c) for c in widgets}
    assert kinds == {W.FloatSlider, W.Dropdown, W.SelectionSlider}
    assert all(c.style.description_width == "initial" for c in widgets)
    assert controls.kwargs["size"] == 0.125 and controls.kwargs["rate"] == 0.2
    assert not any(c.continuous_update for c in widgets if isinstance(c, (W.FloatSlider, W.SelectionSlider)))
    capsys.readouterr()
    controls.f(size=0.05, where="top_left", rate=0.01)
    out = capsys.readouterr().out
    assert "ASR" in out and "top_left" in out and "poison rate 1%" in out
    plain = trigger_explorer(m.planted, x, y, Trigger.blended(), target=TARGET)
    assert set(plain.children[0].kwargs) == {"size", "where"}
    assert plain.children[0].children[0].disabled  # the blended pattern has no size to move
    plt.close("all")


def test_explorer_builds_no_widgets_in_a_headless_run(models, capsys, monkeypatch):
    from lib import notebook_run
    from lib.stall import HEADLESS_ENV

    m, x, y = models, models.x[:8], models.y[:8]
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    made = _widgets_made()
    with notebook_run.headless():
        assert trigger_explorer(m.planted, x, y, TRIGGER, target=TARGET, rates=_rates()) is None
    assert _widgets_made() == made  # not one control made: each would open a comm
    assert "open this notebook in JupyterLab" in capsys.readouterr().out
    plt.close("all")


def _widgets_made() -> int:
    """How many ipywidgets exist in this process (a headless explorer must make none)."""
    from ipywidgets.widgets import widget

    return len(widget._instances)
