"""The function behind notebook 08's STRIP explorer: at the recipe's threshold rule it is the
notebook's table, the threshold moves both error rates the way STRIP says, and the explorer holds only
its two controls."""
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lib.backdoor.strip import strip_roc  # noqa: E402
from lib.metrics import binomial_interval  # noqa: E402
from lib.studies import defences_report  # noqa: E402
from lib.studies.defences import recipe  # noqa: E402
from lib.widgets.defences import strip_explorer, strip_panel, strip_stats  # noqa: E402


def _entropies(gap: float, seed: int = 0, n=(60, 100, 90)) -> dict:
    """What ``defences_report.strip_result`` returns: CPU float tensors of the defender's clean,
    clean test and triggered test entropies (triggered ``gap`` bits lower on average)."""
    g = torch.Generator().manual_seed(seed)
    normal = lambda k, mu, sd: (mu + sd * torch.randn(k, generator=g)).clamp(min=0)
    return {"defender": normal(n[0], 1.5, 0.3), "clean": normal(n[1], 1.5, 0.3),
            "triggered": normal(n[2], 1.5 - gap, 0.3)}


@pytest.fixture(scope="module")
def entropies():
    return {"clean teacher (control)": _entropies(0.0, seed=1), "teacher (badnets)": _entropies(0.8, seed=2),
            "teacher (blended)": _entropies(3.0, seed=3)}


def test_at_the_recipes_frr_the_panel_is_the_notebooks_table(entropies):
    """strip_table's row (the same stored-entropy type, the recipe's strip_frr) is what the panel
    reports: threshold, FRR and FAR with their intervals and n, and the AUC with its interval."""
    cfg = {"strip_frr": recipe("smoke")["strip_frr"]}
    models = [(name, SimpleNamespace(trigger=name)) for name in entropies]
    table = defences_report.strip_table(entropies, models, cfg).set_index("model")
    cols = ["threshold", "auc", "auc_low", "auc_high", "n_clean", "n_triggered"] + \
        [f"{m}{x}" for m in ("frr", "far") for x in ("", "_low", "_high", "_n")]
    for name in entropies:
        fig, s = strip_panel(entropies, model=name, frr_target=cfg["strip_frr"])
        plt.close(fig)
        assert {c: s[c] for c in cols} == table.loc[name, cols].to_dict(), name
        assert len(fig.axes) == 2


def test_rates_match_an_independent_count_with_wilson_intervals(entropies):
    h = entropies["teacher (badnets)"]
    t = float(np.quantile(h["defender"].numpy(), 0.1))
    fig, s = strip_panel(entropies, model="teacher (badnets)", frr_target=0.1)
    plt.close(fig)
    assert s["threshold"] == pytest.approx(t)
    k_frr, k_far = int((h["clean"] < t).sum()), int((h["triggered"] >= t).sum())
    assert (s["frr_n"], s["far_n"]) == (100, 90) and (s["frr_k"], s["far_k"]) == (k_frr, k_far)
    assert s["frr"] == k_frr / 100 and s["far"] == k_far / 90
    assert (s["frr_low"], s["frr_high"]) == binomial_interval(k_frr, 100)
    assert (s["far_low"], s["far_high"]) == binomial_interval(k_far, 90)
    for m in ("frr", "far", "auc"):
        assert s[f"{m}_low"] <= s[m] <= s[f"{m}_high"], m
    # the operating point is a vertex of the ROC the panel draws
    fpr, tpr, _ = strip_roc(h["clean"], h["triggered"])
    assert np.isclose(fpr, s["frr"]).__and__(np.isclose(tpr, 1 - s["far"])).any()


def test_a_higher_threshold_rejects_more_of_both(entropies):
    """Raising the threshold (directly, or through the target FRR) never lowers the FRR nor the
    share of triggered inputs caught; a threshold at 0 bits rejects nothing."""
    rows = []
    for t in (0.0, 0.5, 1.0, 1.3, 1.6, 2.0, 5.0):
        fig, s = strip_panel(entropies, model="teacher (badnets)", threshold=t)
        plt.close(fig)
        rows.append((s["frr"], 1 - s["far"]))
    assert rows[0] == (0.0, 0.0) and rows[-1] == (1.0, 1.0)
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(rows, rows[1:]))
    by_frr = [strip_stats(entropies["teacher (badnets)"], frr_target=f) for f in (0.01, 0.05, 0.2, 0.5)]
    assert [s["threshold"] for s in by_frr] == sorted(s["threshold"] for s in by_frr)
    assert all(a["frr"] <= b["frr"] and a["far"] >= b["far"] for a, b in zip(by_frr, by_frr[1:]))
    assert by_frr[0]["frr_target"] == 0.01 and by_frr[-1]["frr"] > by_frr[0]["frr"]


def test_auc_tracks_the_separation(entropies):
    aucs = {}
    for name in entropies:
        fig, s = strip_panel(entropies, model=name)
        plt.close(fig)
        aucs[name] = s
    assert aucs["teacher (blended)"]["auc"] > 0.99 and aucs["teacher (blended)"]["far"] < 0.05
    assert abs(aucs["clean teacher (control)"]["auc"] - 0.5) < 0.15
    assert aucs["clean teacher (control)"]["auc"] < aucs["teacher (badnets)"]["auc"] < aucs["teacher (blended)"]["auc"]


def test_explorer_has_only_its_controls_and_redraws(entropies, capsys):
    import ipywidgets as W

    box = strip_explorer(entropies, model="teacher (badnets)", frr_target=0.05)
    controls = box.children[0]
    assert set(controls.kwargs) == {"model", "frr"}
    widgets = [c for c in controls.children if not isinstance(c, W.Output)]
    assert {type(c) for c in widgets} == {W.Dropdown, W.SelectionSlider}
    slider = next(c for c in widgets if isinstance(c, W.SelectionSlider))
    assert not slider.continuous_update and slider.style.description_width == "initial"
    assert controls.kwargs == {"model": "teacher (badnets)", "frr": 0.05}
    menu = next(c for c in widgets if isinstance(c, W.Dropdown))
    assert list(menu.options) == list(entropies)
    capsys.readouterr()
    controls.f(model="teacher (blended)", frr=0.2)
    out = capsys.readouterr().out
    assert "\nteacher (blended): reject H <" in out and "FAR" in out and "AUC" in out
    plt.close("all")


def test_explorer_builds_no_widgets_in_a_headless_run(entropies, capsys, monkeypatch):
    from lib import notebook_run
    from lib.stall import HEADLESS_ENV

    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    made = _widgets_made()
    with notebook_run.headless():
        assert strip_explorer(entropies, ["teacher (badnets)"], frr_target=0.05) is None
    assert _widgets_made() == made  # not one control made: each would open a comm
    assert "open this notebook in JupyterLab" in capsys.readouterr().out
    assert strip_explorer(entropies) is not None
    plt.close("all")


def _widgets_made() -> int:
    """How many ipywidgets exist in this process (a headless explorer must make none)."""
    from ipywidgets.widgets import widget

    return len(widget._instances)
