"""lib.continual: ownership masks keep earlier tasks bit-identical through fit, PackNet's prune,
CPG's pick mask and growth, save/load of a continual model, and the continual metrics checked
against Avalanche's and scikit-learn's definitions; notebook 04's summary row and pooled PGD
lookup (lib.studies.continual) on a hand-made log."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib import continual as C
from lib import metrics as M
from lib.studies import continual as study

CFG = (4, "M", 8, "M", 8)
KW = dict(batch_size=16, progress=False, momentum=0.9, weight_decay=5e-3)


def net(seed=0):
    return C.task_vgg(CFG, (6,), num_classes=3, seed=seed)


def task_data(seed, n=48, classes=3, size=12):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    y = torch.arange(n) % classes
    x[:, 0] += 0.3 * y.view(-1, 1, 1).float()  # learnable: a colour cue per class
    return x.clamp(0, 1), y


def tasks(n=3):
    return [{"train": task_data(10 + i), "val": task_data(20 + i, 24), "test": task_data(30 + i, 24),
             "num_classes": 3, "goal": 0.0} for i in range(n)]


def shared(model):
    return {n: model.get_parameter(n).detach().clone() for n in model.shared_layers()}


def logits_of(model, task, x):
    with torch.no_grad():
        return model.task_model(task)(x)


# ------------------------------------------------------------------ ownership through fit
def test_earlier_weights_stay_bit_identical_through_fit_with_momentum_and_weight_decay():
    model = net()
    data = tasks(2)
    C.packnet_task(model, data[0]["train"], 3, prune=0.5, epochs=1, retrain_epochs=1, lr=0.1, **KW)
    before = shared(model)
    owners1 = {n: model.owners(n).clone() for n in model.shared_layers()}
    bn1 = {k: v.clone() for k, v in model.task_state._buffers.items()}
    head1 = model.heads["task1"].fc.weight.detach().clone()
    C.packnet_task(model, data[1]["train"], 3, prune=0.5, epochs=2, retrain_epochs=1, lr=0.1, **KW)
    moved = 0
    for n, w in shared(model).items():
        own = model.owners(n)
        assert torch.equal(own[owners1[n] == 1], owners1[n][owners1[n] == 1])  # task 1 keeps its weights
        assert torch.equal(w[owners1[n] == 1], before[n][owners1[n] == 1])  # bit-identical
        assert (w[own == 0] == 0).all()  # pruned weights are held at zero
        moved += int((w[own == 2] != before[n][own == 2]).sum())
    assert moved > 0  # the new task did train its own weights
    assert all(torch.equal(model.task_state._buffers[k], v) for k, v in bn1.items())  # task 1's BN untouched
    assert torch.equal(model.heads["task1"].fc.weight, head1)


def test_without_the_guard_momentum_and_weight_decay_move_earlier_weights():
    model = net()
    C.independent_task(model, task_data(1), 3, epochs=1, lr=0.1, **KW)
    before = shared(model)
    C.finetune_task(model, task_data(2), 3, epochs=1, lr=0.1, **KW)
    assert any(not torch.equal(before[n], w) for n, w in shared(model).items())


# ------------------------------------------------------------------ PackNet
@pytest.mark.parametrize("fraction", [0.6, 0.25])
def test_packnet_prunes_exactly_the_fraction_per_layer_by_magnitude(fraction):
    model = net()
    k = model.add_task(3)
    C.claim_free(model, k)
    before = shared(model)
    counts = C.prune_fraction(model, k, fraction)
    for n, w in shared(model).items():
        total = before[n].numel()
        assert counts[n] == round(fraction * total)
        own = model.owners(n)
        assert int((own == 0).sum()) == round(fraction * total) and int((own == k).sum()) == total - counts[n]
        assert (w[own == 0] == 0).all() and torch.equal(w[own == k], before[n][own == k])
        assert before[n][own == 0].abs().max() <= before[n][own == k].abs().min()  # the smallest went
    # CPG's sparsity target counts the free weights too and never un-prunes
    C.prune_to_sparsity(model, k, 0.8)
    for n in model.shared_layers():
        assert int((model.owners(n) == 0).sum()) == max(round(0.8 * model.owners(n).numel()),
                                                        round(fraction * model.owners(n).numel()))


def test_cubic_schedule():
    assert C.cubic_sparsity(0, 10, 0.2, 0.6) == pytest.approx(0.2)
    assert C.cubic_sparsity(10, 10, 0.2, 0.6) == pytest.approx(0.6)
    assert C.cubic_sparsity(5, 10, 0.0, 0.8) == pytest.approx(0.8 - 0.8 * 0.125)


# ------------------------------------------------------------------ CPG's pick mask
def test_pick_mask_straight_through_gradient_on_a_hand_made_case():
    conv = C.SharedConv2d(1, 1, 2, bias=False)
    w = torch.tensor([[[[1.0, -2.0], [3.0, 0.5]]]])
    with torch.no_grad():
        conv.weight.copy_(w)
    conv.pick = torch.nn.Parameter(torch.tensor([[[[0.01, 0.001], [0.004, 0.02]]]]))  # > 5e-3: 1, 0, 0, 1
    conv.pickable = torch.tensor([[[[True, True, False, True]]]]).view(1, 1, 2, 2)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    out = conv(x)
    # forward: weights where pickable and not picked are dropped; not pickable (own task) kept
    assert out.item() == pytest.approx(1 * 1 + 0 * 2 + 3 * 3 + 0.5 * 4)
    out.sum().backward()
    # straight through: d out / d pick = d out / d w_eff * w = x * w where pickable, 0 elsewhere
    expected = torch.tensor([[[[1.0 * 1, 2.0 * -2], [0.0, 4.0 * 0.5]]]])
    assert torch.allclose(conv.pick.grad, expected)
    assert torch.allclose(conv.weight.grad, torch.tensor([[[[1.0, 0.0], [3.0, 4.0]]]]))
    assert torch.equal(C.binarize_ste(torch.tensor([0.004, 0.006])), torch.tensor([0.0, 1.0]))


def test_cpg_task_reuses_a_picked_subset_and_stores_it():
    model = net()
    data = tasks(2)
    for t in data:
        C.cpg_task(model, t["train"], t["val"], 3, goal=0.0, epochs=1, lr=0.1, sparsities=(0.5,), prune_epochs=1,
                   prune_frequency=1, retrain_epochs=1, lr_mask=0.05, **KW)
    picks = [model.get_pick(2, n) for n in model.shared_layers()]
    assert all(p is not None for p in picks)
    own = [model.owners(n) for n in model.shared_layers()]
    n_task1 = sum(int((o == 1).sum()) for o in own)
    n_picked = sum(int((p & (o == 1)).sum()) for p, o in zip(picks, own))
    assert 0 < n_picked <= n_task1
    assert all(conv.pick is None for conv in model.shared_layers().values())  # no live mask left
    use = C.parameter_use(model)
    assert use.loc[1, "used"] == use.loc[1, "owned"] + n_picked


# ------------------------------------------------------------------ growth
def test_growing_keeps_every_earlier_task_unchanged():
    model = net()
    data = tasks(3)
    for t in data[:2]:
        C.packnet_task(model, t["train"], 3, prune=0.5, epochs=1, retrain_epochs=0, lr=0.1, **KW)
    x = data[0]["test"][0]
    before = [logits_of(model, k, x) for k in (1, 2)]
    old = model.channels
    chans = model.grow(1.5)
    assert chans == [int(np.ceil(c * 1.5)) for c in old] and model.channels == chans
    for n in model.shared_layers():
        o = model.get_parameter(n)
        assert (model.owners(n)[old[0]:] == 0).all() if n.endswith("conv1.conv.weight") else True
        assert o.shape[0] in chans
    after = [logits_of(model, k, x) for k in (1, 2)]
    for a, b in zip(before, after):
        assert torch.allclose(a, b, atol=1e-5) and torch.equal(a.argmax(1), b.argmax(1))
    C.packnet_task(model, data[2]["train"], 3, prune=0.5, epochs=1, retrain_epochs=0, lr=0.1, **KW)
    for k, b in zip((1, 2), after):
        assert torch.equal(logits_of(model, k, x), b)  # the grown network's new task changes nothing


def test_cpg_grows_when_the_goal_is_missed_and_forgets_nothing():
    data = tasks(2)
    model, log = C.learn_sequence("cpg", net, [{**t, "goal": 1.01} for t in data], epochs=1, lr=0.1,
                                  sparsities=(0.5,), prune_epochs=1, retrain_epochs=0, max_width=1.5 ** 0.5, **KW)
    assert log["tasks"][0]["grows"] == 1 and log["tasks"][1]["grows"] == 0  # the width cap is global
    assert model.width == pytest.approx(1.5 ** 0.5)
    assert log["tasks"][0]["sparsity"] == 0.0  # below the goal: not compacted
    _assert_zero_forgetting(log)


def _assert_zero_forgetting(log):
    ev = {(e["after_task"], e["task"]): e for e in log["evals"]}
    last = max(a for a, _ in ev)
    for (a, t), e in ev.items():
        assert e["digest"] == ev[(last, t)]["digest"] and e["acc"] == ev[(last, t)]["acc"]


@pytest.mark.parametrize("method", ["packnet", "cpg"])
def test_zero_forgetting_predictions_identical(method):
    kw = dict(epochs=1, lr=0.1, retrain_epochs=1, **KW)
    kw.update(prune=0.5) if method == "packnet" else kw.update(sparsities=(0.5,), prune_epochs=1)
    _, log = C.learn_sequence(method, net, tasks(3), **kw)
    _assert_zero_forgetting(log)
    R = M.AccuracyMatrix(3)
    for e in log["matrix"]:
        R.record(e["after_task"], e["task"], e["acc"])
    assert R.summary()["forgetting"] == 0.0 and R.summary()["backward_transfer"] == 0.0


def test_sequential_finetuning_changes_earlier_tasks():
    model = net()
    data = tasks(2)
    C.finetune_task(model, data[0]["train"], 3, epochs=2, lr=0.1, **KW)
    x = data[0]["test"][0]
    before = logits_of(model, 1, x)
    C.finetune_task(model, data[1]["train"], 3, epochs=2, lr=0.1, **KW)
    assert (logits_of(model, 1, x) - before).abs().max() > 1e-3  # task 1's function moved
    assert all((model.owners(n) == 1).all() for n in model.shared_layers())


# ------------------------------------------------------------------ save / load
def test_save_load_keeps_masks_heads_bn_picks_and_growth(tmp_path):
    from lib.store import Store

    data = tasks(2)
    model, _ = C.learn_sequence("cpg", net, [{**t, "goal": [1.01, 0.0][i]} for i, t in enumerate(data)], epochs=1,
                                lr=0.1, sparsities=(0.5,), prune_epochs=1, retrain_epochs=1, **KW)
    assert model.width > 1  # grown, with a pick mask for task 2
    store = Store(tmp_path)
    store.save_model("cl_test", {"a": 1}, model, {"note": "x"})
    fresh = net(seed=5)
    assert store.load_model("cl_test", {"a": 1}, fresh) == {"note": "x"}
    assert fresh.channels == model.channels and fresh.num_tasks == 2
    x = data[0]["test"][0]
    for k in (1, 2):
        assert torch.equal(logits_of(fresh, k, x), logits_of(model, k, x))
        for n in model.shared_layers():
            assert torch.equal(fresh.owners(n), model.owners(n))
    with pytest.raises(KeyError, match="unknown task id 3: this model has learnt tasks 1..2"):
        fresh.task_model(3)
    with pytest.raises(KeyError, match="unknown task id 0"):
        fresh.task_model(0)


# ------------------------------------------------------------------ metrics vs Avalanche and scikit-learn
def test_accuracy_matrix_metrics_against_avalanche_definitions():
    # R[i, j]: accuracy on task j after training task i (hand-made; task 0 peaks after task 1)
    R = np.array([[0.8, np.nan, np.nan], [0.9, 0.7, np.nan], [0.5, 0.6, 0.9]])
    # Avalanche (evaluation/metrics/forgetting_bwt.py): ExperienceForgetting = the value recorded
    # right after training on the experience minus the last value; StreamForgetting averages it
    # over experiences seen before the last; BWT = -forgetting.
    aval_forgetting = np.mean([R[0, 0] - R[2, 0], R[1, 1] - R[2, 1]])  # (0.3 + 0.1) / 2 = 0.2
    assert M.backward_transfer(R) == pytest.approx(-aval_forgetting)  # Avalanche's StreamBWT
    # lib.metrics.forgetting is Chaudhry et al.'s (max over earlier rows), not Avalanche's
    assert M.forgetting(R) == pytest.approx(np.mean([0.9 - 0.5, 0.7 - 0.6]))  # 0.25, not 0.2
    assert M.average_accuracy(R) == pytest.approx((0.5 + 0.6 + 0.9) / 3)


def test_per_task_f1_over_the_whole_test_set_matches_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (200,), generator=g)
    pred = torch.where(torch.rand(200, generator=g) < 0.6, y, torch.randint(0, 5, (200,), generator=g))
    table = M.per_class(pred, y, 5)
    p, r, f, _ = sk.precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    assert np.allclose(table["precision"], p) and np.allclose(table["recall"], r) and np.allclose(table["f1"], f)
    assert M.macro_f1(pred, y) == pytest.approx(sk.f1_score(y, pred, average="macro"))
    # CMAT logged the macro-F1 of the last mini-batch only: a different (and noisy) number
    assert M.macro_f1(pred[-8:], y[-8:]) != pytest.approx(M.macro_f1(pred, y))


def test_task_model_is_plain_and_attackable():
    from lib.attacks import pgd

    model = net()
    C.independent_task(model, task_data(1), 3, epochs=1, lr=0.1, **KW)
    view = model.task_model(1)
    x, y = task_data(2, 8)
    adv = pgd(view, x, y, eps=8 / 255, alpha=2 / 255, steps=3)
    assert (adv - x).abs().max() <= 8 / 255 + 1e-6
    assert not any(p.requires_grad for p in view.parameters())
    assert torch.allclose(view(x), F.linear(view.penultimate(x), view.head.fc.weight, view.head.fc.bias), atol=1e-5)


def test_study_summary_row_and_pgd_accuracy_on_a_hand_made_log():
    # R (0-based): task 1 learnt to 0.8, then 0.6 after task 2 (learnt to 0.9); the evals' digests (1-based)
    # say task 1's predictions changed once
    log = {"matrix": [{"after_task": 0, "task": 0, "acc": 0.8}, {"after_task": 1, "task": 0, "acc": 0.6},
                      {"after_task": 1, "task": 1, "acc": 0.9}],
           "evals": [{"after_task": 1, "task": 1, "digest": "a"}, {"after_task": 2, "task": 1, "digest": "b"},
                     {"after_task": 2, "task": 2, "digest": "c"}]}
    R = study.accuracy_matrix(log, 2)
    assert R[0, 0] == 0.8 and R[1, 0] == 0.6 and np.isnan(R[0, 1])
    row = study.summary_row("finetune", log, 2)
    assert row["average_accuracy"] == pytest.approx(0.75) and row["backward_transfer"] == pytest.approx(-0.2)
    assert row["forgetting"] == pytest.approx(0.2) and row["avalanche_forgetting"] == pytest.approx(0.2)
    assert row["earlier_evals"] == 1 and row["earlier_evals_changed"] == 1
    import pandas as pd
    pooled = pd.DataFrame([{"method": "cmat", "attack": "pgd", "eps": 2 / 255, "steps": s, "acc": a}
                           for s, a in ((7, 0.5), (20, 0.4))] +
                          [{"method": "cmat", "attack": "fgsm", "eps": 2 / 255, "steps": 1, "acc": 0.6}])
    assert study.pgd_accuracy(pooled, "cmat", 20, 2 / 255) == 0.4


def test_report_tables_and_generated_text_of_notebook_04():
    # the reporting of lib.studies.continual_report / continual_figures on hand-made tables
    import matplotlib
    matplotlib.use("Agg")
    import pandas as pd

    from lib.studies import continual_figures as fig_
    from lib.studies import continual_report as rep

    log = {"matrix": [{"after_task": 0, "task": 0, "acc": 0.8}, {"after_task": 1, "task": 0, "acc": 0.6},
                      {"after_task": 1, "task": 1, "acc": 0.9}],
           "evals": [{"after_task": a, "task": t, "n": 40} for a, t in ((1, 1), (2, 1), (2, 2))]}
    matrix = rep.matrix_table({"finetune": log, "cmat": log}, ["finetune", "cmat"])
    assert (matrix["n"] == 40).all() and len(matrix) == 6
    final = pd.DataFrame([{"method": m, "task": t, "pgd_acc": a} for m in ("finetune", "cmat")
                          for t, a in ((1, 0.5), (2, 0.25))])
    summary = pd.DataFrame([{"method": "finetune", "earlier_evals_changed": 1},
                            {"method": "cmat", "earlier_evals_changed": 0}])
    adv = rep.adversarial_matrix_table(final, summary, 20).set_index(["method", "after_task", "task"])
    assert adv.loc[("cmat", 0, 0), "acc"] == 0.5 and adv.loc[("cmat", 1, 0), "measured"]
    assert np.isnan(adv.loc[("finetune", 0, 0), "acc"]) and not adv.loc[("finetune", 0, 0), "measured"]
    _, caption = fig_.adversarial_matrices(matrix, adv.reset_index(), ["finetune", "cmat"], 2, 40, 20, "PGD-20")
    assert "n = 40" in caption and "n = 20" in caption
    # attack gaps: PGD-40 vs APGD-T and worst case, in images; the largest named
    eps = 2 / 255
    pooled = pd.DataFrame([{"method": "cmat", "attack": a, "eps": eps, "steps": s, "correct": c, "n": 100}
                           for a, s, c in (("pgd", 7, 50), ("pgd", 40, 48), ("apgd_t", 20, 42), ("worst", 0, 41))])
    gaps = rep.attack_gaps(pooled, [eps])
    assert gaps.loc[0, "gap_apgd_t"] == 6 and gaps.loc[0, "gap_worst"] == 7
    # a method whose ladder stops earlier (the test's PGD-7/10 beside another's PGD-20) uses its own longest PGD
    short = pooled.assign(method="packnet", steps=pooled["steps"].replace(40, 10))
    both = rep.attack_gaps(pd.concat([pooled, short], ignore_index=True), [eps]).set_index("method")
    assert both.loc["packnet", "pgd_steps"] == 10 and both.loc["packnet", "gap_apgd_t"] == 6
    assert "6 of 100 images" in rep.attack_gap_markdown(gaps) and "7 of 100" in rep.attack_gap_markdown(gaps)
    # a ranking only where the paired interval excludes zero
    row = {"diff": 0.02, "low": -0.05, "high": 0.09, "n": 100, "a_only": 7, "b_only": 5, "steps": 20, "eps": eps}
    assert rep.paired_verdict(row).startswith("not separated")
    assert rep.paired_verdict({**row, "low": 0.01}).startswith("CMAT is more robust")
    assert "not separated" in rep.paired_markdown(row, 4)
    paired = pd.DataFrame([{**row, "task": "all"}, {**row, "task": "1", "n": 25}])
    assert "[-5.0, +9.0]" in rep.paired_note(paired, eps) and rep.paired_note(paired, 8 / 255) == ""
    _, caption = fig_.cmat_vs_packnet(paired, 20)
    assert "n = 25 per task, 100 pooled" in caption


def test_recipe_paragraph_is_generated_from_the_recipe():
    from lib.studies import continual_report as rep

    cfg = study.recipe("smoke", per_class_train=80, train_steps=3, n_eval=30)
    text = rep.recipe_markdown(cfg)
    assert "80 training" in text and "PGD-3 at" in text and "30 stratified test images" in text
    assert "64 training" not in rep.recipe_markdown(study.recipe("full"))
