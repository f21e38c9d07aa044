"""Notebook 02's seeds, figures and real-data ablation helpers (lib.studies.transfer,
transfer_figures, transfer_real) and Renofeation's BatchNorm recalibration, on tiny models."""
from __future__ import annotations

import copy

import matplotlib
import pandas as pd
import pytest
import torch

from lib import transfer as T
from lib.store import Store
from lib.studies import transfer as ST
from lib.studies import transfer_figures as TF
from lib.studies import transfer_real as R
from lib.transfer.renofeation import NoisyStudent, recalibrate_bn

from transfer_setting import FAST, make_setting

matplotlib.use("Agg")

@pytest.fixture(scope="module")
def setting():
    return make_setting()


def _bn_stats(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}


def test_bn_recalibration_without_dropout_matches_the_flag_and_differs_from_the_official_pass(setting):
    A, tr = setting["A"], setting["train"]
    kw = dict(epochs_distill=1, epochs_swa=1, lr=0.1, swa_lr=0.05, dropout=0.5, **FAST)
    official, _ = T.renofeation(A, tr, **kw)
    fixed, _ = T.renofeation(A, tr, bn_dropout=False, **kw)
    for (k, p), q in zip(official.named_parameters(), fixed.parameters()):  # the same training
        assert torch.equal(p, q), k
    derived = recalibrate_bn(copy.deepcopy(official), tr, 32)
    a, b, c = _bn_stats(official), _bn_stats(fixed), _bn_stats(derived)
    assert all(torch.allclose(b[k], c[k], atol=1e-6) for k in b)  # flag == post-hoc recalibration
    # with half the channels dropped, the running variance after the first stage is not the test-time one
    assert any(not torch.allclose(a[k], b[k], rtol=1e-3) for k in a if k.endswith("running_var"))
    # the recalibrated statistics are the test-time (dropout-free) activations' statistics
    x = tr.float_images(slice(0, len(tr)))
    first_bn = next(m for m in fixed.modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen = {}
    h = first_bn.register_forward_hook(lambda m, i, o: seen.setdefault("x", i[0].detach()))
    with torch.no_grad():
        fixed.eval()(x)
    h.remove()
    torch.testing.assert_close(first_bn.running_mean, seen["x"].mean((0, 2, 3)), atol=1e-4, rtol=1e-4)
    assert isinstance(NoisyStudent(fixed, fixed.stages).dropout[fixed.stages[0]], torch.nn.Dropout2d)


def test_anb_sweep_seeds_rows_and_reference(setting, tmp_path):
    from lib import attacks as Att

    A, B, tr, te = setting["A"], setting["B"], setting["train"], setting["test"]
    atk = {"fgsm": Att.with_own_labels(Att.attack_fn("fgsm", eps=8 / 255))}
    table = T.anb_sweep(A, B, tr, te, ns=[1, 4], epochs=1, variants=("AnB", "BnB"), store=Store(tmp_path / "s"),
                        progress=False, batch_size=32, transfer_attacks=atk, attack_n=30, seed=5, seeds=[5, 6],
                        seed_rows=[("AnB", 4)], reference=B)
    ref = table[table["variant"] == "base B"]
    assert len(ref) == 1 and ref["n"].iloc[0] == 0 and ref["fgsm_acc"].between(0, 1).all()
    assert set(table.loc[table["seed"] == 5, "variant"]) == {"AnB", "BnB", "base B"}
    again = table[table["seed"] == 6]
    assert list(zip(again["variant"], again["n"])) == [("AnB", 4)]
    one = table[(table["variant"] == "AnB") & (table["n"] == 4)]
    assert one["model_key"].nunique() == 2  # a different model per seed, not the cached first one
    checks = ST.anb_check(table, margin=-1.0, column="fgsm_acc")  # the base B row is no claim's
    assert set(checks.columns) >= {"difference", "low", "high", "seeds", "passed"}
    assert checks["seeds"].tolist() == [1, 0, 1] and checks["passed"].tolist() == [True, False, True]


def test_anb_check_means_over_seeds():
    rows = []
    for seed, d in ((0, 0.30), (1, 0.20), (2, 0.25)):
        rows += [{"variant": "AnB", "n": 1, "pgd_acc": 0.6, "seed": seed}, {"variant": "AnB", "n": 4, "pgd_acc": 0.2,
                  "seed": seed}, {"variant": "BnB", "n": 4, "pgd_acc": 0.2 + d, "seed": seed},
                 {"variant": "AnB+", "n": 4, "pgd_acc": 0.3, "seed": seed}]
    rows.append({"variant": "BnB", "n": 1, "pgd_acc": 0.5, "seed": 0})  # first seed only: not in a claim
    checks = ST.anb_check(pd.DataFrame(rows).assign(attack_n=100), margin=0.1)
    first = checks.iloc[0]
    assert first["difference"] == pytest.approx(0.25) and first["seeds"] == 3 and first["low"] < 0.25 < first["high"]
    assert checks["passed"].all() and (checks["n"] == 100).all()
    assert not ST.anb_check(pd.DataFrame(rows).assign(attack_n=100), margin=0.3)["passed"].iloc[0]


def test_anb_paragraph_hedges_a_mean_whose_seed_interval_reaches_zero():
    def table(ds):
        rows = []
        for seed, d in enumerate(ds):
            rows += [{"variant": "AnB", "n": 1, "pgd_acc": 0.6, "seed": seed},
                     {"variant": "AnB", "n": 4, "pgd_acc": 0.2, "test_acc": 0.8, "seed": seed},
                     {"variant": "BnB", "n": 4, "pgd_acc": 0.2 + d, "seed": seed},
                     {"variant": "AnB+", "n": 4, "pgd_acc": 0.3, "seed": seed}]
        return pd.DataFrame(rows).assign(attack_n=100)
    steady = table((0.25, 0.24, 0.26))
    text = ST.anb_paragraph(steady, ST.anb_check(steady, margin=0.1), 8 / 255)
    assert "transfer best" in text and "not established" not in text
    noisy = table((0.6, -0.05, 0.05))  # mean 0.2 passes a 0.1 margin; the t interval over 3 seeds spans 0
    checks = ST.anb_check(noisy, margin=0.1)
    assert checks["passed"].all() and checks["low"].iloc[0] < 0
    assert "not established" in ST.anb_paragraph(noisy, checks, 8 / 255)


def test_seed_helpers():
    names = [ST.student_name(m, s, 0) for s in (0, 1) for m in ("fine_tune", "retrain")]
    assert names == ["fine_tune", "retrain", "fine_tune@1", "retrain@1"]
    table = pd.DataFrame({"method": names, "clean_acc": [0.8, 0.6, 0.7, 0.5], "feature_asr": [0.5, 0.1, 0.3, 0.2],
                          "n": 100})
    runs = ST.split_seeds(table, 0)
    assert list(runs["method"]) == ["fine_tune", "retrain"] * 2 and list(runs["seed"]) == [0, 0, 1, 1]
    means = ST.mean_table(runs).set_index("method")
    assert means.loc["fine_tune", "clean_acc"] == pytest.approx(0.75) and means.loc["retrain", "seeds"] == 2
    text = ST.seed_sentences(runs, ["fine_tune"], {"clean_acc": "clean accuracy"})
    assert "fine tune over 2 seeds: clean accuracy 75.0%" in text and "sd 7.1%" in text


def test_attack_figure_panels_intervals_and_paper_marks():
    runs = pd.DataFrame({"method": ["fine_tune", "renofeation"] * 2, "seed": [0, 0, 1, 1],
                         "clean_acc": [0.8, 0.7, 0.82, 0.72], "whitebox_acc": [0.1, 0.1, 0.1, 0.12],
                         "feature_asr": [0.5, 0.1, 0.55, 0.12], "teacher_pgd_asr": [0.4, 0.1, 0.42, 0.1], "n": 200})
    s = TF.method_summary(runs, TF.ASR_METRICS).set_index(["method", "metric"])
    assert s.loc[("fine_tune", "feature_asr"), "interval"] == "t over 2 seeds"
    one = TF.method_summary(runs[runs["seed"] == 0], {"feature_asr": ""}).set_index("method")
    assert one.loc["fine_tune", "interval"] == "Wilson over 160 images"  # the clean-correct images
    fig = TF.attack_figure(runs, 5.8 / 255)
    ax_acc, ax_asr = fig.axes
    marks = sorted(round(seg[0][1], 3) for c in ax_asr.collections for seg in c.get_segments() if len(seg) == 2
                   and seg[0][1] == seg[1][1])
    assert 0.069 in marks and 0.743 in marks
    assert "5.8/255" in fig._suptitle.get_text() and "n = 200" in fig._suptitle.get_text()
    assert "accuracy" in ax_acc.get_ylabel() and "success" in ax_asr.get_ylabel()


def test_anb_figure_base_b_and_chance_on_every_panel():
    rows = [{"variant": v, "n": n, "test_acc": 0.5, "pgd_acc": 0.3, "seed": 0} for v in TF.ANB_COLOURS for n in (1, 2)]
    fig = TF.anb_figure(pd.DataFrame(rows), {"test_acc": 0.9, "pgd_acc": 0.4}, chance=0.1, attacks=["pgd"],
                        eps=8 / 255)
    for ax in fig.axes:
        ys = {round(float(line.get_ydata()[0]), 3) for line in ax.get_lines()}
        assert {0.1} <= ys and (0.9 in ys or 0.4 in ys)
    colours = {line.get_label(): line.get_color() for line in fig.axes[0].get_lines()}
    assert colours["AnB"] != colours["AnB+"] and "8/255" in fig.axes[1].get_title()


def test_ablation_helpers_on_a_tiny_setting(setting, tmp_path, monkeypatch):
    tr, te, A = setting["train"], setting["test"], setting["A"]
    monkeypatch.setitem(R.ABLATION, "tiny_ft", ("fine_tune", {"epochs": 1, "batch_size": 32}, "tiny"))
    monkeypatch.setitem(R.ABLATION, "tiny_reno", ("renofeation", {"epochs_distill": 1, "epochs_swa": 1,
                                                                  "batch_size": 32}, "tiny"))
    store = Store(tmp_path / "store")
    out = tmp_path / "abl.csv"
    table = R.ablation_table(["tiny_ft", "tiny_reno"], sets=(tr, te), teacher=A, store=store,
                             progress=False, out=out)
    assert out.is_file() and list(table["config"]) == ["tiny_ft", "tiny_reno", "tiny_reno+bn"]
    assert R.config_kw("tiny_reno+bn")[1]["bn_dropout"] is False and "bn_dropout" not in R.config_kw("tiny_reno")[1]
    assert (table["n"] == len(te)).all() and (table["clean_low"] <= table["clean_acc"]).all()
    assert (table["feature_asr_low"] <= table["feature_asr"]).all()
    assert (table["feature_asr"] <= table["feature_asr_high"]).all()
    assert table["budget_x_ft"].tolist() == pytest.approx([1 / 8, 2 / 8, 2 / 8])
    # the bn variant was derived from its twin's weights: same parameters, other BN statistics
    twin = R.student("tiny_reno", A, tr, store=store, progress=False)
    derived = R.student("tiny_reno+bn", A, tr, store=store, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(twin.parameters(), derived.parameters()))
    text = R.ablation_paragraph(table.assign(config=["fine_tune", "reno_smoke", "reno_bn"]))
    assert "fine-tuning the CIFAR-10 ResNet-20" in text and "%" in text
    assert set(R.compact(table).columns) >= {"clean accuracy", "feature-attack ASR", "n"}
    assert R.load_tables([tmp_path])["ablation"] is None


def test_ablation_stage_names_and_seed_verdicts():
    """The smoke recipe's stages are the small CNN's, and the GTSRB ablation (ResNet-20) keeps the
    authors' every-stage reference; the target is judged on seed means against fine-tuning at the
    same budget, met or not by the numbers."""
    from lib.models import build
    from lib.studies import transfer as ST

    stages = ST.RECIPE["smoke"]["method_kw"]["renofeation"]["stages"]
    small = build("small_cnn", 10).stages
    assert set(stages) < set(small) and small[-1] not in stages
    assert "stages" not in R.config_kw("reno_smoke")[1]
    assert R.config_kw("reno_early_x4")[1]["stages"] == ["layer1_2", "layer2_2"]
    rows = lambda c, clean, asr: [{"config": c, "metric": "clean_acc", "mean": clean},
                                  {"config": c, "metric": "feature_asr", "mean": asr}]
    met = pd.DataFrame(rows("fine_tune_x4", 0.89, 0.27) + rows("reno_early_x4+bn", 0.88, 0.09)
                       + rows("reno_early+bn", 0.80, 0.10))
    text = R._seed_verdicts(met, 0.03, 0.10)
    assert "`reno_early_x4+bn` is 1.0 points below `fine_tune_x4`" in text and "**met**" in text
    assert "reno_early+bn`" not in text  # no seeded fine-tuning at its 2.5x budget: nothing to judge
    missed = R._seed_verdicts(pd.DataFrame(rows("fine_tune_x4", 0.89, 0.27) + rows("reno_early_x4+bn", 0.88, 0.12)),
                              0.03, 0.10)
    assert "**not met**" in missed


def test_budgets_beside_accuracies_and_unequal_budget_wording():
    kw = ST.recipe("smoke")["method_kw"]
    b = ST.budgets(kw)
    assert b["fine_tune"] == f"{kw['fine_tune']['epochs']} epochs, lr {kw['fine_tune']['lr']:g}"
    assert "distil" in b["renofeation"] and "SWA" in b["renofeation"]
    assert "iterations" in ST.budgets(ST.recipe("full")["method_kw"])["fine_tune"]
    table = pd.DataFrame({"method": ["fine_tune", "retrain", "renofeation"], "clean_acc": [0.70, 0.72, 0.81],
                          "feature_asr": [0.45, 0.12, 0.09]})
    with_b = ST.with_budget(table, kw, reference="fine_tune")
    assert list(with_b.columns[:4]) == ["method", "budget", "epochs", "lr"] and "fine_tune_budget" in with_b
    assert with_b.set_index("method").loc["renofeation", "epochs"] == (kw["renofeation"]["epochs_distill"]
                                                                       + kw["renofeation"]["epochs_swa"])
    assert ST.with_budget(with_b, kw, reference="fine_tune").shape == with_b.shape  # idempotent
    text = ST.headline_paragraph(table, "a test", budget=b)
    assert f"81.0% (renofeation: {b['renofeation']})" in text and "unequal budgets" in text
    assert "11.0 points above fine-tuning" in text and "do not rank" in text


def test_anb_reading_states_what_base_b_loses():
    rows = [{"variant": v, "n": n, "test_acc": 0.7, "pgd_acc": p, "seed": 0}
            for v, n, p in (("AnB", 1, 0.22), ("AnB", 4, 0.08), ("BnB", 1, 0.24), ("BnB", 4, 0.45))]
    rows.append({"variant": "base B", "n": 0, "test_acc": 0.714, "pgd_acc": 0.454, "seed": 0})
    text = ST.anb_reading(pd.DataFrame(rows).assign(attack_n=500), n_natural=1000)
    assert "26.0 points lower" in text and "transfers in part" in text and "-14.0 points" in text
    assert "does not transfer" not in text


def test_sweep_paragraph_groups_and_intervals():
    rows = [{"method": m, "eps255": e, "clean_acc": 0.7, "n": 200,
             "feature_asr": (0.1 if m in ST.FRESH_START else 0.6) * e / 4} for m in ST.KEPT_WEIGHTS + ST.FRESH_START
            for e in (2.0, 4.0)]
    text = ST.sweep_paragraph(pd.DataFrame(rows))
    assert "2/255: 30.0%-30.0% against 5.0%-5.0%" in text and "apart at 2/255, 4/255" in text


def test_attack_figure_hatches_single_seed_bars_and_tradeoff_and_eps_figures():
    runs = pd.DataFrame({"method": ["fine_tune", "delta", "renofeation", "fine_tune", "renofeation"],
                         "seed": [0, 0, 0, 1, 1], "clean_acc": [0.8, 0.7, 0.75, 0.82, 0.74],
                         "whitebox_acc": 0.1, "feature_asr": [0.5, 0.45, 0.1, 0.55, 0.12],
                         "teacher_pgd_asr": 0.4, "n": 200})
    fig = TF.attack_figure(runs, 5.8 / 255, budgets=ST.budgets(ST.recipe("smoke")["method_kw"]))
    hatched = {round(p.get_x(), 2) for p in fig.axes[1].patches if p.get_hatch()}
    assert hatched and all(0.5 < x < 1.5 for x in hatched)  # only delta's bars (x = 1) rest on one seed
    caption = fig._suptitle.get_text()
    assert "single seed, 95% Wilson" in caption and "mean of 2 seeds, 95% t" in caption and "(delta)" in caption
    from lib.studies import transfer_tradeoff as TT
    fig = TT.tradeoff_figure(runs, None, budgets={"fine_tune": "8 epochs, lr 0.02"})
    assert "%" in fig.axes[0].get_xlabel() and "n = 200" in fig.axes[0].get_title()
    assert any("fine tune; 8 epochs, lr 0.02 (2 seeds)" == t.get_text() for t in fig.axes[0].get_legend().get_texts())
    sweep = runs[runs["seed"] == 0].assign(eps255=4.0)
    fig = TF.feature_eps_figure(pd.concat([sweep, sweep.assign(eps255=8.0)]))
    assert "n = 200" in fig.axes[0].get_title() and "Wilson" in fig.axes[0].get_legend().get_title().get_text()


def test_each_repeat_starts_from_a_base_of_its_own():
    from lib.studies import run_config_for, transfer

    cfg = run_config_for("smoke", {}).recipe("02")
    assert transfer.seed_bases(cfg, cfg["seed"]) is None  # the first seed: notebook 01's base A itself
    later = [transfer.seed_bases(cfg, cfg["seed"] + k) for k in (1, 2)]
    assert [b["seed"] for b in later] == [cfg["needs"]["01"]["seed"] + 1, cfg["needs"]["01"]["seed"] + 2]
    assert all({k: v for k, v in b.items() if k != "seed"} ==
               {k: v for k, v in cfg["needs"]["01"].items() if k != "seed"} for b in later)  # only the seed moves
    assert transfer.seed_bases({**cfg, "arch": "resnet18"}, cfg["seed"] + 1) is None  # one public ImageNet model


def test_with_intervals_for_a_student_with_no_test_image_right():
    """A student that gets no test image right has no clean-correct image to attack: its attack
    rates are NaN and get no interval, while its clean accuracy still gets one (issue 35's
    "cannot convert float NaN to integer")."""
    t = R.with_intervals(pd.DataFrame([{"clean_acc": 0.0, "feature_asr": float("nan"), "n": 50},
                                       {"clean_acc": 0.5, "feature_asr": 0.2, "n": 50}]))
    assert t["n_correct"].tolist() == [0, 25]
    assert t.loc[0, "clean_low"] == 0.0 and 0.0 < t.loc[0, "clean_high"] < 0.1
    assert pd.isna(t.loc[0, "feature_asr_low"]) and pd.isna(t.loc[0, "feature_asr_high"])
    assert t.loc[1, "feature_asr_low"] < 0.2 < t.loc[1, "feature_asr_high"]


def test_cli_test_images_score_on_another_gtsrb_root(tmp_path, capsys):
    """``--test-images ROOT`` takes the test set from another GTSRB root (read at 32 px) and needs
    ``--out``, so the committed tables of the shared test set are never overwritten."""
    from lib.data.fixtures import write_gtsrb
    a = write_gtsrb(tmp_path / "a", per_class=2, n_test=3)
    b = write_gtsrb(tmp_path / "b", per_class=2, n_test=7)
    train, test = R.gtsrb_sets(a, test_root=b)
    assert (len(train), len(test)) == (6, 7) and tuple(test.images.shape[-2:]) == (32, 32)
    assert len(R.gtsrb_sets(a)[1]) == 3
    with pytest.raises(SystemExit) as err:
        R.main(["--test-images", str(b)])
    assert err.value.code == 2 and "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        R.main(["--test-images", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert err.value.code == 2 and "not a folder" in capsys.readouterr().err
