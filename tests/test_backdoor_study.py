"""lib.studies.backdoor: the names notebook 06 relies on, the data split it states, and that
every teacher and student is trained once and then loaded from the store (on a tiny public base
so that base A of notebook 01 is not trained here)."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

import lib.backdoor as B
from lib import findings
from lib.models import build, model_fingerprint
from lib.store import Store
from lib.artifacts import backdoor as bd_models
from lib.studies import backdoor as S
from lib.studies import backdoor_report as R
from lib.train import fit

TINY = dict(teacher_classes=3, new_classes=3, per_class_train=22, per_class_test=6, teacher_epochs=1,
            student_epochs=1, trial_epochs=1, retrain_epochs=1, distill_epochs=1, swa_epochs=1,
            update_ratios=[0.0, 0.5], rates=[0.2], mag_ratios=[0.5])


@pytest.fixture(scope="module")
def tiny_base():
    from lib import data as D

    cls = [1, 2, 4, 5]
    ds = D.subset_classes(D.load_synsigns("train", n=40, classes=cls), cls)
    m = build("small_cnn", len(cls), width=8, seed=0)
    fit(m, ds, epochs=1, batch_size=20, progress=False)
    return m.eval()


@pytest.fixture()
def study(tiny_base, monkeypatch, tmp_path):
    monkeypatch.setattr(bd_models, "public_base", lambda cfg, store=None, progress=True: tiny_base)
    return S.recipe("smoke", **TINY), Store(tmp_path / "store")


def test_recipe_and_params():
    cfg = S.recipe()
    assert set(S.PARAMS.values()) <= set(cfg) and all(k.startswith("bd_") for k in S.PARAMS)
    assert cfg["rate"] == 0.2 and cfg["target"] == 0 and cfg["where"] == "bottom_right"  # the authors' defaults
    assert cfg["update_ratios"] == [0.0, 0.5, 0.7, 0.9] and cfg["mag_ratios"] == [0.05, 0.5, 0.8]
    with pytest.raises(KeyError):
        S.recipe(nonsense=1)


def test_data_split_classes_and_masks():
    cfg = S.recipe(**TINY)
    tr, te = bd_models.teacher_data(cfg)
    s_tr, s_te = bd_models.student_data(cfg, "same")
    n_tr, n_te = bd_models.student_data(cfg, "new")
    assert tr.info["class_ids"] == s_tr.info["class_ids"]
    assert not set(tr.info["class_ids"]) & set(n_tr.info["class_ids"])
    assert not torch.equal(tr.images, s_tr.images) and torch.equal(te.images, s_te.images)  # victim's own images
    for ds in (te, s_te, n_te):
        assert ds.masks is not None and ds.masks.shape == (len(ds), ds.size, ds.size)
    assert len(tr) == 3 * 22 and len(n_te) == 3 * 6
    with pytest.raises(ValueError, match="task"):
        bd_models.student_data(cfg, "other")
    assert isinstance(bd_models.make_trigger(cfg), B.Trigger)
    assert bd_models.make_trigger({**cfg, "trigger": "badnets"}).size == 3


def test_teachers_and_students_train_once_then_load(study):
    cfg, store = study
    t, meta = bd_models.backdoored_teacher(cfg, store, update_ratio=0.5, progress=False)
    assert not meta["cached"] and meta["fixed"] > 0 and t.num_classes == 3
    t2, meta2 = bd_models.backdoored_teacher(cfg, store, update_ratio=0.5, progress=False)
    assert meta2["cached"] and model_fingerprint(t2) == model_fingerprint(t)
    c, _ = bd_models.clean_teacher(cfg, store, progress=False)
    assert model_fingerprint(c) != model_fingerprint(t)
    for method in bd_models.METHODS:
        m, meta = bd_models.student(method, cfg, store, task="new", update_ratio=0.5, progress=False)
        assert not meta["cached"] and m.num_classes == 3, method
        again, meta = bd_models.student(method, cfg, store, task="new", update_ratio=0.5, progress=False)
        assert meta["cached"] and model_fingerprint(again) == model_fingerprint(m), method
    with pytest.raises(ValueError, match="method"):
        bd_models.student("prune_everything", cfg, store)


def test_report_tables_and_findings(study):
    cfg, store = study
    cfg = {**cfg, "methods": ["fine_tune", "mag", "retrain"], "ratio_methods": ["fine_tune"],
           "flip_methods": ["fine_tune"]}
    teachers = R.teacher_table(cfg, store, progress=False)
    assert list(teachers["teacher"]) == ["clean", "backdoor", "backdoor"] and (teachers["clean_acc_n"] == 18).all()
    transfer = R.transfer_table(cfg, store, progress=False)
    assert len(transfer) == len(R.transfer_runs(cfg)) and set(transfer["task"]) == {"same", "new"}
    found = R.findings(teachers, transfer, cfg)
    assert {"planted", "planted_clean", "survives_targeted", "retrain_removes"} <= set(found["finding"])
    text = R.headline_paragraph(teachers, transfer, found, cfg)
    assert "BackdoorBench" in text and f"{transfer.iloc[1]['asr_bb']:.1%}" in text
    flips = R.flip_table(cfg, store, progress=False)
    assert list(flips["model"]) == ["teacher", "fine_tune"] * 2


def _rates(**cols):
    """One table row per entry of ``cols``' lists, with Wilson intervals and n for each rate."""
    from lib.metrics import binomial_interval

    df = pd.DataFrame({k: v for k, v in cols.items() if not isinstance(v, tuple)})
    for m, (ks, n) in {k: v for k, v in cols.items() if isinstance(v, tuple)}.items():
        df[m], df[m + "_n"] = [k / n for k in ks], n
        df[m + "_low"], df[m + "_high"] = zip(*[binomial_interval(k, n) for k in ks])
    return df


def test_gap_interval_and_findings_sentence():
    t = _rates(asr_bb=([150, 140, 10], 270))
    d, lo, hi = findings.gap(t.iloc[0], t.iloc[1], "asr_bb")
    assert d == pytest.approx(10 / 270) and lo < 0 < hi  # 150 vs 140 of 270: not separated
    d, lo, hi = findings.gap(t.iloc[0], t.iloc[2], "asr_bb")
    shown = findings.pts((d, lo, hi))
    assert 0 < lo < d < hi and shown.endswith("separated") and "not" not in shown
    found = pd.DataFrame([findings.finding("a", "", (0.5, 0.4, 0.6), 0.2, "x"),
                          findings.finding("b", "", (0.04, -0.02, 0.1), 0.0, "y"),
                          findings.finding("c", "", (-0.1, -0.2, 0.0), 0.0, "z")])
    assert list(found["held"]) == [True, True, False] and list(found["shown"]) == [True, False, False]
    text = findings.findings_sentence(found)
    assert "margin: a." in text and "point estimate only" in text and "b (" in text and "Not shown here: c" in text


def test_tradeoff_and_rate_figures():
    transfer = _rates(method=["fine_tune", "fine_tune", "mag", "retrain", "fine_tune", "fine_tune"],
                      task=["same", "same", "same", "same", "new", "new"], update_ratio=[0.0, 0.0, 0.9, 0.0, 0.0, 0.0],
                      teacher=["clean", "backdoor", "backdoor", "backdoor", "clean", "backdoor"],
                      mag_ratio=[float("nan"), float("nan"), 0.5, float("nan"), float("nan"), float("nan")],
                      clean_acc=([250, 240, 245, 255, 140, 130], 300), asr_bb=([8, 160, 60, 7, 3, 50], 270),
                      untargeted_asr=([5, 120, 50, 4, 8, 70], 240))
    fig = S.tradeoff_figure(transfer)
    assert "n=300 clean" in fig.axes[0].get_title() and "270 triggered" in fig.axes[0].get_title()
    assert len(fig.axes[0].lines) >= 4  # one marker per same-task student
    rates = _rates(model=["teacher", "fine-tuned student"] * 2, rate=[0.05, 0.05, 0.2, 0.2],
                   asr_bb=([100, 40, 268, 150], 270))
    fig = S.rate_figure(rates)
    assert "n=270" in fig.axes[0].get_title() and len(fig.axes[0].get_legend().get_texts()) == 2
