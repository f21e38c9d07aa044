"""Notebook 03's study (lib.studies.adversarial) beyond the smoke profile: the full profile end to
end on tiny fixtures of the CIFAR-10 (the release's pickles), CIFAR-100 and GTSRB layouts, with
the recipe's PreActResNet-18 and the papers' schedules cut to one epoch; and the learning-rate
schedules those recipes name; the recipe's cross-key check and what the robust models' keys hold."""
from __future__ import annotations

import pytest
import torch

from lib.artifacts import robust
from lib.config import ConfigError
from lib.robustness import compact_table, robustness_report
from lib.store import Store
from lib.studies import adversarial, adversarial_figures, run_config_for
from lib.train import _scheduler
from lib.data.fixtures import write_data_dir

ONE_EPOCH = {m: {**kw, "epochs": 1} for m, kw in adversarial.RECIPE["full"]["method_kw"].items()}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_data_dir(root, per_class=4)
    return root


def _cfg(dataset, root, **kw):
    return adversarial.recipe("full", dataset=dataset, data_root=str(root / dataset), n_val=6, batch_size=4, n_eval=8,
                              **kw)


# PreActResNet-18 (the recipe's) on CIFAR-10; the other two layouts with the small CNN, which keeps
# the test in seconds on a CPU (the layouts, not the network, are what differs between them)
@pytest.mark.parametrize("dataset,arch", [("cifar10", "preact_resnet18"), ("cifar100", "small_cnn"),
                                          ("gtsrb", "small_cnn")])
def test_full_profile_runs_end_to_end_on_each_layout(dataset, arch, data_root, tmp_path):
    method_kw = {m: {**kw, "steps": 1} if "steps" in kw else kw for m, kw in ONE_EPOCH.items()}
    cfg = _cfg(dataset, data_root, arch=arch, width=8 if arch == "small_cnn" else None, method_kw=method_kw,
               methods=["standard", "pgd_at"])
    train, test = robust.robust_study_data(cfg)
    val = robust.robust_val_data(cfg)
    classes, with_images = {"cifar10": (10, 10), "cifar100": (100, 100), "gtsrb": (43, 3)}[dataset]
    assert train.num_classes == classes and train.size == 32 and test.size == 32
    # validation images are held out of the training images, never drawn from the test split
    assert len(val) >= 6 and len(train) + len(val) == 4 * with_images
    store = Store(tmp_path / "store")
    models = {}
    for m in cfg["methods"]:
        models[m], meta = robust.robust_model(m, cfg, store, progress=False)
        assert models[m].arch == arch and len(meta["history"]) == 1
        # normalisation inside the model, from the training images (eps stays in pixel units)
        assert torch.allclose(models[m].normalize.mean.flatten(), train.float_images().mean((0, 2, 3)), atol=1e-4)
    report, checks = robustness_report(models["pgd_at"], test, eps_list=[8 / 255], pgd_steps=[1, 2], apgd_steps=1,
                                       square_queries=3, n=cfg["n_eval"], large_eps_steps=2, progress=False)
    assert {"autoattack", "worst"} <= set(report["attack"])
    compact = compact_table(report.assign(method="pgd_at", seed=0), [8 / 255], 2)
    assert set(compact["attack"]) >= {"clean", "worst case"}
    best_last = adversarial.best_and_last(models, {**cfg, "apgd_steps": 1, "square_queries": 3}, test, store=store)
    assert list(best_last["method"]) == ["pgd_at"] and best_last["last_epoch"].iloc[0] == 1


def test_full_recipe_is_the_papers():
    full = adversarial.RECIPE["full"]
    assert full["dataset"] == "cifar10" and full["arch"] == "preact_resnet18" and full["square_queries"] == 5000
    kw = full["method_kw"]
    assert kw["pgd_at"]["epochs"] == 200 and kw["pgd_at"]["schedule"] == "piecewise"      # Rice et al.
    assert kw["fgsm_rs"]["epochs"] == 15 and kw["fgsm_rs"]["schedule"] == "cyclic"        # Wong et al.
    assert kw["trades"]["beta"] == 6.0                                                    # Zhang et al.
    assert robust.train_kw("fgsm_rs", full)["lr"] == 0.2
    assert robust.train_kw("standard", adversarial.recipe("smoke"))["epochs"] == 20


def _lrs(name, steps=200):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = _scheduler(name, opt, 0.1, steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_piecewise_and_cyclic_schedules():
    lr = _lrs("piecewise")
    assert lr[99] == pytest.approx(0.1) and lr[100] == pytest.approx(0.01) and lr[150] == pytest.approx(0.001)
    lr = _lrs("piecewise:0.97368", steps=76)  # the TRADES script, one step per epoch: x 0.1 for epochs 75 and 76
    assert lr[73] == pytest.approx(0.1) and lr[74] == pytest.approx(0.01) and lr[75] == pytest.approx(0.01)
    lr = _lrs("cyclic")  # Wong et al.: 0 -> peak at half-way -> 0
    assert lr[0] == 0.0 and max(lr) == pytest.approx(0.1) and lr.index(max(lr)) == 100 and lr[-1] < 0.002
    with pytest.raises(ValueError, match="piecewise"):
        _lrs("stepwise")


def test_run_configuration_checks_the_recipes_cross_keys():
    # a training eps that is not in the eps list: every model would be trained and attacked before the
    # transfer check (the worst case at the training eps) failed; the run configuration refuses it up front
    with pytest.raises(ConfigError, match=r"notebook 03 .*adv_eps_list"):
        run_config_for("smoke", {"adv_eps": 4 / 255})
    fixed = run_config_for("smoke", {"adv_eps": 4 / 255, "adv_eps_list": [4 / 255, 8 / 255]})
    assert fixed.recipe("03")["eps"] == 4 / 255
    run_config_for("smoke")  # the defaults pass
    for profile in adversarial.RECIPE:
        assert adversarial.check(adversarial.recipe(profile)) is None, profile
    assert "adv_methods" in adversarial.check(adversarial.recipe(methods=["standard", "madry"]))
    assert "adv_n_eval" in adversarial.check(adversarial.recipe(n_eval=0))
    assert adversarial.check({**adversarial.recipe(), "n_eval": None}) is None  # None: every test image
    with pytest.raises(ConfigError, match="adv_methods"):
        run_config_for("smoke", {"adv_methods": ["pgd_at", "pgdat"]})


def test_robust_models_key_on_training_entries_only(tmp_path):
    smoke = adversarial.recipe("smoke")
    evaluation = adversarial.recipe("smoke", eps_list=[8 / 255], pgd_steps=[10], n_eval=50, methods=["standard"],
                                    seeds=3, min_pgd_at_gain=0.5, large_eps_steps=5, transfer_steps=5, sweep_steps=5)
    assert robust.training_recipe(evaluation) == robust.training_recipe(smoke)
    assert set(robust.training_recipe(smoke)) == set(smoke) - set(robust.NOT_TRAINING)
    # a training setting that is missing is an error, never silently the smoke profile's
    with pytest.raises(KeyError, match="epochs"):
        robust.robust_model("standard", {k: v for k, v in smoke.items() if k != "epochs"}, Store(tmp_path),
                            progress=False)


# --- notebook 03's figures and headline text, on small synthetic tables (no training) ---------------
def _compact():
    import pandas as pd

    rows = []
    for method, clean, worst, pgd40 in (("standard", 158, 1, 2), ("pgd_at", 109, 44, 65), ("fgsm_rs", 107, 45, 61)):
        for attack, eps, k in (("clean", 0.0, clean), ("worst case", 8.0, worst), ("PGD-40", 8.0, pgd40)):
            rows.append({"method": method, "attack": attack, "eps_255": eps, "correct": k})
    t = pd.DataFrame(rows).assign(n=200, seeds=1, interval="Wilson, test images")
    t["acc"] = t["correct"] / 200
    ci = [adversarial_figures.binomial_interval(k, 200) for k in t["correct"]]
    return t.assign(low=[c[0] for c in ci], high=[c[1] for c in ci])


def test_class_labels_stay_distinct_and_short():
    names = ["circle/blue-white/bar", "circle/blue-white/arrow", "circle/blue-white/cross", "stop"]
    labels = adversarial.class_labels(names)
    assert len(set(labels)) == len(names) and all(len(s) <= adversarial_figures.LABEL_WIDTH for s in labels)
    assert labels[0].startswith("0 ") and labels[3] == "3 stop"
    # cut to the width, names differing only in their tail collided before the index was added
    assert len({n.replace("/", " ")[:18] for n in names[:3]}) == 1


def test_tradeoff_figure_draws_both_intervals_in_percent():
    import matplotlib
    matplotlib.use("Agg")
    compact = _compact()
    table = adversarial.tradeoff_table(compact, 8 / 255)
    assert list(table["method"]) == ["standard", "pgd_at", "fgsm_rs"]
    assert (table["worst_low"] < table["worst"]).all() and (table["clean"] < table["clean_high"]).all()
    fig, saved = adversarial.tradeoff_figure(compact, 8 / 255)
    ax = fig.axes[0]
    assert "n = 200" in ax.get_title() and "Wilson" in ax.get_title() and saved["n"].startswith("200")
    assert ax.xaxis.get_major_formatter()(0.5, 0) == "50%"
    assert len(ax.containers) == 3 and all(c.has_xerr and c.has_yerr for c in ax.containers)


def test_accuracy_figures_draw_wilson_intervals():
    import matplotlib
    import pandas as pd
    matplotlib.use("Agg")
    rows = [{"attack": "pgd", "eps": e / 255, "eps_255": e, "steps": s, "acc": k / 200, "correct": k, "n": 200,
             "method": m} for m, k in (("standard", 20), ("pgd_at", 60)) for e in (0, 2, 8) for s in (7, 40)]
    report = pd.DataFrame(rows)
    fig, saved = adversarial.pgd_steps_figure(report, [2 / 255, 8 / 255])
    assert "Wilson" in fig._suptitle.get_text() and "n = 200" in fig._suptitle.get_text()
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "eps = 2/255"
    sweep = report[report["steps"] == 7]
    fig, saved = adversarial.eps_sweep_figure(sweep, 8 / 255)
    assert "Wilson" in fig.axes[0].get_title() and "200" in saved["n"]
    hist = pd.DataFrame({"epoch": [1, 2, 3], "val_acc": [0.2, 0.4, 0.5], "val_robust_acc": [0.1, 0.2, 0.3],
                         "selected": [False, True, False]})
    fig, saved = adversarial.training_curves_figure({"pgd_at": hist}, {"pgd_at": {"val_n": 300}}, 8 / 255, 300)
    assert "Wilson" in saved["caption"] and "300" in saved["n"]
    assert len(fig.axes[0].collections) >= 1  # the band


def test_headline_names_the_asserted_quantity():
    cfg = adversarial.recipe("smoke", methods=["standard", "pgd_at", "fgsm_rs"])
    head = adversarial.headline(_compact(), cfg)
    assert head["gain"] == pytest.approx(43 / 200) and head["floor"] == cfg["min_pgd_at_gain"]
    assert head["slack"] == pytest.approx(0.5 / 200)
    text = head["text"]
    assert "per-image worst-case accuracy at 8/255" in text and "+21.5 points" in text
    assert "Not asserted" in text and "PGD-40 accuracy alone" in text and "+31.5 points" in text
    assert head["pgd_at"].low > head["standard"].high and "are disjoint" in text
