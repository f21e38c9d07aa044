"""The function behind the attack explorer: what the sliders show is what is measured."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lib import data as D  # noqa: E402
from lib.models import build  # noqa: E402
from lib.train import fit  # noqa: E402
from lib.widgets import attack_panel  # noqa: E402


@pytest.fixture(scope="module")
def trained():
    classes = [0, 21, 42, 63, 84]
    tr = D.subset_classes(D.load_synsigns("train", n=300, classes=classes), classes)
    te = D.subset_classes(D.load_synsigns("test", n=40, classes=classes), classes)
    model = build("small_cnn", 5, width=8)
    fit(model, tr, epochs=5, lr=0.1, batch_size=32, progress=False)
    return model, te.float_images(), te.labels, te.classes


def test_eps_zero_shows_clean_accuracy(trained):
    model, x, y, classes = trained
    fig, stats = attack_panel(model, x, y, eps=0, steps=10, classes=classes)
    assert stats["adv_acc"] == stats["clean_acc"] and stats["max_perturbation"] == 0
    assert len(fig.axes) == 3 * 8
    assert fig.axes[2 * 8].get_ylabel() == "δ = 0"  # not a magnification of nothing (δ × 5e11)
    plt.close(fig)


def test_accuracy_falls_with_eps_and_perturbation_stays_in_budget(trained):
    model, x, y, classes = trained
    accs = []
    for eps in (1 / 255, 8 / 255, 64 / 255):
        fig, stats = attack_panel(model, x, y, eps=eps, alpha=eps / 4, steps=10, classes=classes)
        plt.close(fig)
        assert stats["max_perturbation"] <= eps + 1e-6
        accs.append(stats["adv_acc"])
    assert stats["clean_acc"] > 0.5
    assert accs[0] >= accs[1] >= accs[2] and accs[2] <= 0.1


def test_transfer_panel_feature_attack_hits_a_copy_more_than_an_independent_model(trained):
    """The fine-tuned stand-in (the teacher itself) is hit harder than an independently trained model;
    eps 0 changes nothing."""
    import torch

    from lib.widgets import transfer_panel

    model, x, y, classes = trained
    torch.manual_seed(5)
    other = build("small_cnn", 5, width=8)
    tr = D.subset_classes(D.load_synsigns("train", n=300, classes=[0, 21, 42, 63, 84]), [0, 21, 42, 63, 84])
    fit(other, tr, epochs=5, lr=0.1, batch_size=32, progress=False, seed=5)
    fig, table = transfer_panel(model, {"copy": model, "independent": other}, x, y, eps=0, classes=classes)
    plt.close(fig)
    assert (table["asr"] == 0).all() and (table["adv_acc"] == table["clean_acc"]).all()
    fig, table = transfer_panel(model, {"copy": model, "independent": other}, x, y, eps=16 / 255, steps=20,
                                classes=classes)
    plt.close(fig)
    t = table.set_index("method")
    assert t.loc["copy", "asr"] > t.loc["independent", "asr"]


def test_explorers_have_only_their_sliders_and_redraw(trained, capsys):
    """The sliders update on release (no stray 'continuous_update' control), show their whole labels,
    and a redraw at new values draws without error outside a notebook too, with the numbers it drew
    as a line of text under the figure."""
    import ipywidgets as W

    from lib.widgets import attack_explorer, transfer_explorer

    model, x, y, classes = trained
    boxes = {"attack": attack_explorer(model, x[:8], y[:8], classes=classes),
             "transfer": transfer_explorer(model, {"copy": model}, x[:8], y[:8], classes=classes)}
    for name, box in boxes.items():
        controls = box.children[0]
        sliders = [c for c in controls.children if not isinstance(c, W.Output)]
        assert all(isinstance(c, (W.FloatSlider, W.IntSlider)) and not c.continuous_update for c in sliders), name
        assert all(c.style.description_width == "initial" for c in sliders), name
        capsys.readouterr()
        controls.f(**{k: v / 2 if isinstance(v, float) else 2 for k, v in controls.kwargs.items()})
        assert "accuracy" in capsys.readouterr().out, name
    assert set(boxes["attack"].children[0].kwargs) == {"eps255", "alpha255", "steps"}
    assert set(boxes["transfer"].children[0].kwargs) == {"eps255", "steps"}
    plt.close("all")


def test_explorers_build_no_widgets_in_a_headless_run(trained, capsys, monkeypatch):
    """papermill's kernels (``WORKBOOK_HEADLESS=1``, set by lib.workbook.run_notebook and restored after it):
    no sliders, whose widget messages are where ipykernel's lost replies wedged runs, and one line instead."""
    import os

    from lib import notebook_run
    from lib.stall import HEADLESS_ENV
    from lib.widgets import attack_explorer, transfer_explorer

    model, x, y, classes = trained
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    made = _widgets_made()
    with notebook_run.headless():
        assert attack_explorer(model, x[:8], y[:8], classes=classes) is None
        assert transfer_explorer(model, {"copy": model}, x[:8], y[:8], classes=classes) is None
    assert _widgets_made() == made  # not one control made: each would open a comm
    assert capsys.readouterr().out.count("open this notebook in JupyterLab") == 2
    assert HEADLESS_ENV not in os.environ  # a JupyterLab started later by the same process shows the sliders
    assert attack_explorer(model, x[:8], y[:8], classes=classes) is not None
    plt.close("all")


def _widgets_made() -> int:
    """How many ipywidgets exist in this process (a headless explorer must make none)."""
    from ipywidgets.widgets import widget

    return len(widget._instances)
