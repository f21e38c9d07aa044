"""lib.studies.backdoor: the names notebook 06 relies on, the data split it states, and that
every teacher and student is trained once and then loaded from the store (on a tiny public base
so that base A of notebook 01 is not trained here)."""
from __future__ import annotations

import pytest
import torch

import lib.backdoor as B
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
