"""Unit tests of notebook 06's study (lib.studies.attention): the evaluation set's regions, the
label mapping, the checks and the rule that picks the authors' picture, on hand-made tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lib.store import Store
from lib.studies import attention as A


def test_recipe_and_params():
    cfg = A.recipe()
    assert set(A.PARAMS.values()) <= set(cfg) | set(A.RECIPE["full"]) and all(p.startswith("att_") for p in A.PARAMS)
    assert cfg["stage"] == "conv3" and A.recipe("full")["stage"] is None
    with pytest.raises(KeyError, match="unknown recipe keys"):
        A.recipe(epochs=3)


def test_eval_set_regions():
    cfg = A.recipe(n_eval=40, backdoor_recipe={"per_class_test": 10})
    ev = A.eval_set(cfg)
    assert len(ev) == 40 and ev.x.shape == (40, 3, 32, 32) and len(set(ev.indices.tolist())) == 40
    assert torch.bincount(ev.y).tolist() == [4] * 10  # stratified: every class in proportion
    assert not (ev.object & ev.trigger).any()        # the object region leaves the patch out
    assert ev.trigger.flatten(1).any(1).all() and not ev.trigger[:, :24].any() and not ev.trigger[:, :, :24].any()
    # another image's object region, never the image's own
    own = ev.object.flatten(1).float()
    other = ev.other_object.flatten(1).float()
    same = [(own == other[i]).all(1).nonzero().flatten().tolist() for i in range(40)]
    assert all(any(j != i for j in s) for i, s in enumerate(same))
    assert not torch.equal(ev.x, ev.x_trig) and torch.equal(ev.x[~ev.trigger[:, None].expand_as(ev.x)],
                                                             ev.x_trig[~ev.trigger[:, None].expand_as(ev.x)])


def test_teacher_adv_is_crafted_once_and_read_back_from_the_store(tmp_path, monkeypatch):
    # the attention grid of a rerun reads the teacher's feature attack instead of crafting it again
    from lib.evaluate import craft
    from lib.models import build

    monkeypatch.setenv("WORKBOOK_STORE", str(tmp_path))
    cfg = A.recipe(n_eval=20, backdoor_recipe={"per_class_test": 10})
    teacher = build("small_cnn", 10, seed=0, width=8).eval()
    first = A.eval_set(cfg).teacher_adv(teacher)
    assert len(list((tmp_path / "results").glob("06_teacher_adv-*.safetensors"))) == 1
    again = A.eval_set(cfg)  # a new session's set: nothing kept on the object

    def no_crafting(*args, **kwargs):
        raise AssertionError("crafted again")

    import lib.evaluate.crafted as crafted

    monkeypatch.setattr(crafted, "craft", no_crafting)
    loaded = again.teacher_adv(teacher)
    fresh = craft(teacher, (again.x, again.y), again.teacher_attack)[1]
    assert torch.equal(loaded, first) and torch.equal(loaded, fresh)  # the stored images are the crafted ones
    assert (loaded - again.x).abs().max() > 0

class _KeyRecorder(Store):
    """A store that records the key of every model asked for and hands back the untrained model."""

    def __init__(self, root):
        super().__init__(root)
        self.asked = []

    def model(self, name, config, build, train, *, retrain=False, code=None):
        self.asked.append(self.key(name, config))
        return build(), {"cached": True, "history": [], "test_acc": 0.0}


def test_notebook_06_asks_for_the_models_notebook_02_trained_in_its_run(tmp_path):
    """A run with a changed notebook-02 knob (the students' seed) and a changed base: notebook 06
    opened with that run's run.json asks the store for exactly the keys notebook 02 asks for."""
    from lib.artifacts import transfer as transfer_models
    from lib.config import RunConfig, activate
    from lib.studies import open_run, run_config_for, transfer

    run = run_config_for("smoke", {"transfer_seed": 5, "base_epochs": 2, "transfer_methods": ["fine_tune"],
                                   "att_transfer_methods": ["fine_tune"], "att_backdoor_methods": []}, run="r")
    run.write(tmp_path / "run.json")
    try:
        cfg02 = open_run(transfer, str(tmp_path / "run.json"), {}).recipe("02")
        store02 = _KeyRecorder(tmp_path / "store")
        setup = transfer_models.setup(cfg02, store02, progress=False)
        transfer_models.student("fine_tune", cfg02, setup["teacher"], setup["train"], store=store02, progress=False)
        cfg06 = open_run(A, str(tmp_path / "run.json"), {}).recipe("06")
        store06 = _KeyRecorder(tmp_path / "store")
        A.model_zoo(cfg06, store06, progress=False)
        default06 = _KeyRecorder(tmp_path / "store")
        A.model_zoo(A.recipe(transfer_methods=["fine_tune"], backdoor_methods=[]), default06, progress=False)
    finally:
        activate(RunConfig())
    student = [k for k in store02.asked if k.startswith("transfer_fine_tune-")]
    assert len(student) == 1 and student[0] in store06.asked  # the very student notebook 02 trained
    assert [k for k in store02.asked if k.startswith("base_A-")][0] in store06.asked
    assert student[0] not in default06.asked  # the knob matters: without the run file, other keys


def test_label_maps():
    entry = A.Entry(torch.nn.Identity(), "g", ["c", "a", "x", "b"])
    to_eval, to_model = A.label_maps(entry, ["a", "b", "c"])
    assert to_eval.tolist() == [2, 0, -1, 1] and to_model.tolist() == [1, 3, 0]
    assert A.label_maps(A.Entry(torch.nn.Identity(), "g", None), ["a"]) == (None, None)
    with pytest.raises(ValueError, match="no classes"):
        A.label_maps(entry, ["a", "z"])


def _scores(n=40, seed=0):
    """A hand-made per-image table: model "good" attends to the object, "centre" always to the
    same place (mass on its own object no higher than on another image's), a backdoored
    "bd" whose triggered maps go to the trigger and whose triggered predictions are the target."""
    rng = np.random.default_rng(seed)
    rows = []
    for model, group in (("good", "clean"), ("centre", "clean"), (A.CLEAN_MODEL, "notebook 05 (clean)"),
                         ("bd", "notebook 05 (backdoor)")):
        for kind in A.KINDS:
            for i in range(n):
                obj = {"good": 0.8, "centre": 0.5, A.CLEAN_MODEL: 0.7, "bd": 0.7}[model] + rng.normal(0, 0.02)
                other = 0.5 + rng.normal(0, 0.02)
                trig = 0.4 if (model == "bd" and kind == "triggered") else 0.02
                pred = 0 if (model == "bd" and kind == "triggered") else i % 5
                rows.append({"model": model, "group": group, "kind": kind, "map": "gradcam", "image": i,
                             "label": i % 5, "pred": pred, "correct": float(pred == i % 5),
                             "object_mass": obj, "object_hit": True, "object_area": 0.3,
                             "trigger_mass": trig, "trigger_hit": trig > 0.1, "trigger_area": 0.03,
                             "other_object_mass": other if model != "centre" else obj + rng.normal(0, 0.02),
                             "other_object_hit": False, "other_object_area": 0.3})
    return pd.DataFrame(rows)


def test_checks_on_a_hand_made_table():
    scores = _scores()
    clean = A.clean_check(scores).set_index("model")
    assert clean["passed_area"].all()                       # every model is above the area share ...
    assert clean.loc["good", "passed_other"] and not clean.loc["centre", "passed_other"]  # ... not all above the prior
    rates = A.backdoor_table(scores, target=0).set_index("model")
    assert rates.loc["bd", "asr"] == 1.0 and rates.loc[A.CLEAN_MODEL, "asr"] == pytest.approx(8 / 40)
    trig = A.trigger_check(scores, rates.reset_index(), target=0, asserted=("bd",)).set_index("model")
    assert list(trig.index) == ["bd"] and trig.loc["bd", "fires"] and trig.loc["bd", "passed"]
    assert trig.loc["bd", "checked"] and trig.loc["bd", "difference_fired"] == pytest.approx(0.38)
    assert trig.loc["bd", "difference"] == pytest.approx(0.38) and trig.loc["bd", "n_fired"] == 32
    table = A.summary(scores)
    assert len(table) == 4 * len(A.KINDS) and (table["n"] == 40).all()
    row = table.set_index(["model", "kind"]).loc[("bd", "triggered")]
    assert row["trigger_hit"] == 1.0 and row["trigger_mass"] == pytest.approx(0.4)
    assert row["object_mass_low"] < row["object_mass"] < row["object_mass_high"] < row["object_mass"] + 0.02
    text = A.headline_paragraph(table, rates.reset_index(), A.clean_check(scores), trig.reset_index())
    assert "1 backdoored models still fire" in text and "4 of 4 models are clearly above" in text
    assert "The planted teacher is checked: bd +38.0% [" in text
    # a backdoored model outside the asserted ones is reported, whatever it shows
    reported = A.trigger_check(scores, rates.reset_index(), target=0).set_index("model")
    assert reported.loc["bd", "fires"] and not reported.loc["bd", "checked"] and reported.loc["bd", "passed"] is None


def _retarget(scores, model, *, mass=None, fired=None):
    """``model``'s triggered rows with trigger mass ``mass`` and the target predicted on the first
    ``fired`` images only (the rest keep their true labels)."""
    s = scores.copy()
    rows = (s["model"] == model) & (s["kind"] == "triggered")
    if mass is not None:
        s.loc[rows, "trigger_mass"] = mass
    if fired is not None:
        s.loc[rows, "pred"] = np.where(s.loc[rows, "image"] < fired, 0, s.loc[rows, "label"])
    return s


def test_trigger_check_fails_on_a_trigger_that_draws_no_attention():
    # "bd" fires on every image but puts on the trigger what the clean model puts there: a failure
    scores = _retarget(_scores(), "bd", mass=0.02 + np.random.default_rng(1).normal(0, 0.005, 40))
    rates = A.backdoor_table(scores, target=0)
    trig = A.trigger_check(scores, rates, target=0, asserted=("bd",)).set_index("model")
    assert trig.loc["bd", "fires"] and trig.loc["bd", "checked"] and not trig.loc["bd", "passed"]


def test_trigger_check_is_asserted_only_where_enough_images_fire():
    scores = _retarget(_scores(n=200), "bd", fired=120)  # target on 120 images, 96 of them clean-correct and not target
    rates = A.backdoor_table(scores, target=0)
    trig = A.trigger_check(scores, rates, target=0, asserted=("bd",)).set_index("model")
    assert trig.loc["bd", "n_fired"] == 96 and trig.loc["bd", "checked"] and trig.loc["bd", "passed"]
    few = A.trigger_check(scores, rates, target=0, min_fired=97, asserted=("bd",)).set_index("model")
    assert few.loc["bd", "fires"] and not few.loc["bd", "checked"] and few.loc["bd", "passed"] is None
    text = A.headline_paragraph(A.summary(scores), rates, A.clean_check(scores), few.reset_index())
    assert "nothing is checked" in text
    assert "Reported, not asserted" in text and "on its 96 fired" in text


def test_select_images_rule():
    scores = _scores()
    # only images 3 and 7: the baseline and mag students point at the trigger; divmag stays on the object
    for m in ("05 fine_tune", "05 mag", "05 divmag"):
        block = scores[scores["model"] == "bd"].assign(model=m)
        hit = block["image"].isin([3, 7]) & (block["kind"] == "triggered")
        block["trigger_hit"] = hit if m != "05 divmag" else False
        block["trigger_mass"] = np.where(hit, 0.5, 0.02)
        scores = pd.concat([scores, block], ignore_index=True)
    chosen = A.select_images(scores, n_show=3)
    assert chosen["passed"].sum() == 2 and set(chosen[chosen["passed"]]["image"]) == {3, 7}
    assert chosen["chosen"].sum() == 3 and chosen.iloc[:2]["passed"].all()


def test_selection_says_how_few_pass_and_random_pick_is_seeded():
    chosen = pd.DataFrame({"image": np.arange(10), "passed": [True] * 2 + [False] * 8,
                           "clean_ok": True, "trigger_ok": [True] * 2 + [False] * 8, "divmag_ok": True,
                           "chosen": [True] * 4 + [False] * 6})
    assert "2 of 10 images pass" in A.selection_caption(chosen) and "Not typical" in A.selection_caption(chosen)
    assert "not typical" in A.selection_text(chosen, 4) and "Fewer than 4 pass" in A.selection_text(chosen, 4)
    a, b = A.random_images(chosen, 4, seed=1), A.random_images(chosen, 4, seed=1)
    assert a["chosen"].sum() == 4 and a["chosen"].equals(b["chosen"])
    assert "seed 1" in A.selection_caption(a, "random", seed=1)
