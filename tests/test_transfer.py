"""Transfer methods (lib.transfer): each test checks the mechanism of one method on tiny models.

Base A and base B are width-8 small CNNs "pretrained" for two epochs on two disjoint sets of
synsigns classes; the target task is B's classes (4 of them, so a head that kept A's 5 outputs
would be caught).
"""
from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from lib import data as D
from lib import train as train_module
from lib import transfer as T
from lib.evaluate import attack_table, craft
from lib.metrics import attack_success_rate
from lib.store import Store
from lib.artifacts import transfer as transfer_models
from lib.studies import transfer as ST
from lib.transfer.anb import _anb_build
from lib.transfer.delta import _channel_loss_increase

from transfer_setting import FAST, TARGET, make_setting


@pytest.fixture(scope="module")
def setting():
    return make_setting()


def _count_fit(monkeypatch) -> list:
    """Count the calls of ``fit`` from every transfer method's module (each imports it)."""
    import sys

    calls = []
    real_fit = train_module.fit
    for name, mod in list(sys.modules.items()):
        if name.startswith("lib.transfer.") and getattr(mod, "fit", None) is real_fit:
            monkeypatch.setattr(mod, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    return calls


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b, prefix=""):
    return all(torch.equal(a[k], b[k]) for k in a if k.startswith(prefix))


def _differs(a, b, key):
    return not torch.equal(a[key], b[key])


# -------------------------------------------------------------------------------------- AnB
def test_anb_copied_blocks_frozen_bit_identical_rest_reinitialised(setting):
    A, B, tr = setting["A"], setting["B"], setting["train"]
    model, hist = T.anb(A, B, 2, tr, epochs=2, lr=0.1, **FAST)
    a, m = A.state_dict(), model.state_dict()
    for k in a:  # weights AND BatchNorm running statistics (and num_batches_tracked)
        if k.startswith(("blocks.conv1.", "blocks.conv2.", "normalize.")):
            assert torch.equal(a[k], m[k].cpu()), k
    for blk in ("conv1", "conv2"):
        assert all(not p.requires_grad for p in model.blocks[blk].parameters())
    for k in ("blocks.conv3.conv.weight", "blocks.conv4.conv.weight", "blocks.conv3.bn.running_mean"):
        assert _differs(a, m, k), k
    assert model.num_classes == len(TARGET) != A.num_classes
    assert len(hist) == 2 and hist["train_loss"].notna().all()


def test_anb_plus_trains_copied_blocks(setting):
    A, B, tr = setting["A"], setting["B"], setting["train"]
    model, _ = T.anb(A, B, 2, tr, plus=True, epochs=1, lr=0.1, **FAST)
    a, m = A.state_dict(), model.state_dict()
    assert _differs(a, m, "blocks.conv1.conv.weight") and _differs(a, m, "blocks.conv2.bn.running_var")
    assert all(p.requires_grad for p in model.parameters())


def test_anb_n0_is_scratch_and_n_all_copies_whole_body(setting):
    A, B, tr = setting["A"], setting["B"], setting["train"]
    scratch = _anb_build(A, B, 0, tr, plus=False, seed=3)
    fresh = T.fresh_like(A, len(TARGET), seed=3)
    assert {k: v.shape for k, v in scratch.state_dict().items()} == \
           {k: v.shape for k, v in fresh.state_dict().items()}
    assert _same(scratch.state_dict(), fresh.state_dict())  # exactly a from-scratch model
    assert all(p.requires_grad for p in scratch.parameters())
    assert _differs(scratch.state_dict(), A.state_dict(), "blocks.conv1.conv.weight")

    n_all = len(A.blocks)
    model, _ = T.anb(A, len(TARGET), n_all, tr, epochs=1, lr=0.1, **FAST)
    assert _same(A.state_dict(), {k: v.cpu() for k, v in model.state_dict().items()}, "blocks.")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.fc.weight", "head.fc.bias"]
    with pytest.raises(ValueError):
        T.anb(A, B, n_all + 1, tr, epochs=1, **FAST)
    with pytest.raises(ValueError):  # head size must match the training data
        T.anb(A, 7, 1, tr, epochs=1, **FAST)


def test_anb_sweep_rows_and_store_reuse(setting, tmp_path, monkeypatch):
    A, B, tr, te = setting["A"], setting["B"], setting["train"], setting["test"]
    store = Store(tmp_path / "store")
    table = T.anb_sweep(A, B, tr, te, ns=[0, 1, 4], epochs=1, store=store, progress=False, batch_size=32)
    assert len(table) == 12
    assert list(table[["variant", "n"]].itertuples(index=False, name=None)) == \
           [(v, n) for v in T.ANB_VARIANTS for n in (0, 1, 4)]
    assert table["test_acc"].between(0, 1).all()
    # trained once each, except n = 0, which copies nothing: all variants share one model
    assert list(table.loc[table.cached, "n"]) == [0, 0, 0]
    assert list(table.loc[table.n == 1, "frozen"]) == [True, False, True, False]
    assert set(table.loc[table.n == 4, "block"]) == {"conv4"}
    assert table.loc[table.n == 0, "model_key"].nunique() == 1

    calls = _count_fit(monkeypatch)
    again = T.anb_sweep(A, B, tr, te, ns=[0, 1, 4], epochs=1, store=store, progress=False, batch_size=32)
    assert calls == [] and again["cached"].all()
    assert again["test_acc"].tolist() == table["test_acc"].tolist()
    # the stored model and its history come back through anb_model without training
    model, meta = T.anb_model(A, B, tr, "AnB", 1, epochs=1, store=store, progress=False, batch_size=32)
    assert calls == [] and meta["cached"] and len(meta["history"]) == 1
    assert meta["key"] == table.loc[(table.variant == "AnB") & (table.n == 1), "model_key"].item()
    assert not any(p.requires_grad for p in model.blocks["conv1"].parameters())


# ---------------------------------------------------------------------------- fine-tuning
def test_fine_tune_changes_every_layer(setting):
    A, tr = setting["A"], setting["train"]
    model, _ = T.fine_tune(A, tr, epochs=1, lr=0.05, **FAST)
    a, m = A.state_dict(), model.state_dict()
    for k, p in A.named_parameters():
        if not k.startswith("head."):
            assert _differs(a, m, k), k
    assert model.num_classes == len(TARGET)


def test_linear_probe_changes_only_the_head(setting):
    A, tr = setting["A"], setting["train"]
    model, hist = T.linear_probe(A, tr, epochs=2, lr=0.1, **FAST)
    a, m = A.state_dict(), {k: v.cpu() for k, v in model.state_dict().items()}
    assert _same(a, m, "blocks.") and _same(a, m, "normalize.")  # incl. BN running statistics
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    assert model.num_classes == len(TARGET)


def test_l2_sp_pulls_towards_pretrained_and_penalty_is_as_documented(setting):
    A, tr = setting["A"], setting["train"]
    free, h0 = T.l2_sp(A, tr, alpha=0.0, beta=0.0, epochs=2, lr=0.05, **FAST)
    tied, h1 = T.l2_sp(A, tr, alpha=10.0, beta=0.0, epochs=2, lr=0.05, **FAST)
    d_free, d_tied = T.param_distance(free, A), T.param_distance(tied, A)
    assert d_tied < 0.5 * d_free, (d_tied, d_free)
    assert h1["dist_to_pretrained"].iloc[-1] == pytest.approx(d_tied, rel=1e-4)
    assert "l2sp_body" in h0 and (h0["l2sp_body"] > 0).all()

    # alpha/2 * sum ||w_body - w0||^2 + beta/2 * sum ||w_head||^2, BN affine parameters included
    ref = {k: p.detach().clone() for k, p in A.named_parameters() if not k.startswith("head.")}
    pen, body_sq, head_sq = T.l2_sp_penalty(free, ref, alpha=0.3, beta=0.07)
    want_body = sum(((p - ref[k]) ** 2).sum() for k, p in free.named_parameters() if k in ref)
    want_head = (free.head.fc.weight ** 2).sum() + (free.head.fc.bias ** 2).sum()
    assert body_sq.item() == pytest.approx(want_body.item(), rel=1e-5)
    assert head_sq.item() == pytest.approx(want_head.item(), rel=1e-5)
    assert pen.item() == pytest.approx(0.15 * want_body.item() + 0.035 * want_head.item(), rel=1e-5)
    with pytest.raises(ValueError):
        T.l2_sp(A, tr, weight_decay=5e-4, epochs=1, **FAST)


def _feature_distance(model, teacher, x):
    model.eval()
    with torch.no_grad():
        fs, ft = model.features(x), teacher.features(x)
    return sum(((fs[s] - ft[s]) ** 2).mean().item() for s in teacher.stages)


def test_delta_keeps_features_closer_to_the_teacher(setting):
    A, tr, te = setting["A"], setting["train"], setting["test"]
    x = te.float_images()
    plain, _ = T.delta(A, tr, alpha=0.0, beta=0.0, attention=False, epochs=3, lr=0.05, **FAST)
    reg, hist = T.delta(A, tr, alpha=0.01, beta=0.0, attention=False, epochs=3, lr=0.05, **FAST)
    d_plain, d_reg = _feature_distance(plain, A, x), _feature_distance(reg, A, x)
    assert d_reg < 0.5 * d_plain, (d_reg, d_plain)
    assert (hist["feat_reg"] >= 0).all()

    # the paper's formula: 1/2 sum_{i,c} C a_c ||dF_ic||^2 / (HW); uniform a = unweighted L2
    fs = {"s": torch.randn(3, 4, 2, 2)}
    ft = {"s": torch.randn(3, 4, 2, 2)}
    a = {"s": torch.tensor([0.1, 0.2, 0.3, 0.4])}
    d2 = ((fs["s"] - ft["s"]) ** 2).sum((2, 3))
    want = (0.5 * 4 * a["s"] * d2 / 4).sum().item()  # C = 4 channels, H * W = 4
    assert T.delta_penalty(fs, ft, a).item() == pytest.approx(want, rel=1e-5)
    assert T.delta_penalty(fs, ft).item() == pytest.approx(0.5 * (d2 / 4).sum().item(), rel=1e-5)


def test_delta_channel_attention(setting):
    A, tr = setting["A"], setting["train"]
    att = T.delta_channel_attention(A, tr, epochs=1, batches=2, attention_batch_size=16, **FAST)
    assert list(att) == A.stages
    for s, w in att.items():
        assert w.shape == (A.blocks[s].conv.out_channels,) and w.sum().item() == pytest.approx(1, abs=1e-5)
        assert (w > 0).all()
    # the chunked channel ablation equals zeroing one channel by hand
    probe = T.copy_for_target(A, len(TARGET)).eval()
    x, y = tr.float_images(slice(0, 8)), tr.labels[:8]
    inc = _channel_loss_increase(probe, x, y, "conv2", budget=3 * 8 * 16 * 16 * 16)  # 3 channels a chunk
    zero_5 = lambda m, i, o: o.index_fill(1, torch.tensor([5]), 0.0)  # noqa: E731
    hook = probe.blocks["conv2"].register_forward_hook(zero_5)
    with torch.no_grad():
        ablated = F.cross_entropy(probe(x), y)
    hook.remove()
    with torch.no_grad():
        base = F.cross_entropy(probe(x), y)
    assert inc[5].item() == pytest.approx((ablated - base).item(), abs=1e-5)
    model, _ = T.delta(A, tr, attention=att, epochs=1, **FAST)
    assert model.delta_attention is not None


def test_retrain_is_not_derived_from_the_pretrained_weights(setting):
    A, tr = setting["A"], setting["train"]
    init = T.fresh_like(A, len(TARGET), seed=0)
    a = A.state_dict()
    for k, p in init.named_parameters():
        if not k.startswith("head."):
            assert not torch.allclose(p, a[k]), k
    # not even A's own initialisation (A was built right after torch.manual_seed(0)): two
    # independent initialisations are about sqrt(2) * ||w|| apart, A moved far less in pretraining
    body = [p.detach() for k, p in A.named_parameters() if not k.startswith("head.")]
    body_norm = sum(float((p ** 2).sum()) for p in body) ** 0.5
    assert T.param_distance(init, A) > 0.5 * body_norm
    model, hist = T.retrain(A, tr, epochs=1, lr=0.1, **FAST)
    assert _same(init.state_dict(), T.fresh_like(A, len(TARGET), seed=0).state_dict())  # seeded
    assert T.param_distance(model, A) > 0.5 * T.param_distance(init, A)
    assert model.num_classes == len(TARGET) and model.blocks["conv1"].conv.out_channels == 8
    by_name, _ = T.retrain("small_cnn", tr, epochs=1, **FAST)
    assert by_name.blocks["conv1"].conv.out_channels == 32


# -------------------------------------------------------------------------------- Renofeation
def test_noisy_student_dropout_only_in_train_mode(setting):
    A = setting["A"]
    model = copy.deepcopy(A)
    student = T.NoisyStudent(model, model.stages, p=0.5)
    x = setting["test"].float_images(slice(0, 4))
    student.train()
    feats, out1 = student.forward_features(x)
    out2 = student(x)
    assert not torch.allclose(out1, out2)  # channels dropped at random
    assert all(isinstance(d, torch.nn.Dropout2d) and d.training for d in student.dropout.values())
    student.eval()
    with torch.no_grad():
        assert torch.equal(student(x), model(x)) and torch.equal(student(x), student(x))


def test_renofeation_distills_then_averages_snapshots_and_recomputes_bn(setting):
    A, tr = setting["A"], setting["train"]
    snaps = []
    model, hist = T.renofeation(A, tr, epochs_distill=4, epochs_swa=3, lr=0.1, swa_lr=0.05,
                                on_swa_update=lambda k, m: snaps.append(_state(m)), **FAST)
    d = hist[hist.stage == "distill"]
    assert len(d) == 4 and d["feat_loss"].iloc[-1] < d["feat_loss"].iloc[0]
    assert list(hist.stage) == ["distill"] * 4 + ["swa"] * 3 and hist.attrs["swa_updates"] == 3
    assert len(snaps) == 3 and not _same(snaps[0], snaps[-1])
    for k, p in model.named_parameters():  # the SWA model is the mean of the snapshots
        mean = torch.stack([s[k] for s in snaps]).mean(0)
        torch.testing.assert_close(p.detach(), mean, atol=1e-6, rtol=0)
    m = model.state_dict()
    for k in m:  # BatchNorm statistics were recomputed for the averaged weights
        if k.endswith("running_mean"):
            assert _differs(snaps[-1], m, k), k
    assert type(model).__name__ == "Classifier" and not model.training
    assert model.num_classes == len(TARGET)
    # a re-initialised student: not the teacher's weights
    assert T.param_distance(model, A) > 0


# ------------------------------------------------------------------------------- all methods
@pytest.mark.parametrize("name", sorted(T.TRANSFER_METHODS))
def test_pretrained_model_is_never_modified(setting, name):
    A, tr = setting["A"], setting["train"]
    before = _state(A)
    grads = [p.requires_grad for p in A.parameters()]
    A.train()
    kw = {"epochs_distill": 1, "epochs_swa": 1} if name == "renofeation" else {"epochs": 1}
    if name == "delta":
        kw.update(attention_epochs=1, attention_batches=1)
    model, hist = T.TRANSFER_METHODS[name](A, tr, **kw, **FAST)
    assert _same(before, A.state_dict()) and [p.requires_grad for p in A.parameters()] == grads
    assert A.training and not any(getattr(m, "_workbook_frozen", False) for m in A.modules())
    assert model is not A and model.num_classes == len(TARGET) and len(hist) >= 1
    A.eval()


# ------------------------------------------------------------- cached students and attack table
def test_transfer_model_trains_once_then_loads(setting, tmp_path, monkeypatch):
    A, tr = setting["A"], setting["train"]
    store = Store(tmp_path / "store")
    m1, meta1 = T.transfer_model("linear_probe", A, tr, store=store, epochs=1, **FAST)
    assert not meta1["cached"] and meta1["history"] and m1.num_classes == len(TARGET)
    assert not any(p.requires_grad for p in m1.blocks.parameters())  # a probe's body stays frozen
    calls = _count_fit(monkeypatch)
    m2, meta2 = T.transfer_model("linear_probe", A, tr, store=store, epochs=1, **FAST)
    assert calls == [] and meta2["cached"] and meta2["key"] == meta1["key"]
    assert _same(m1.state_dict(), m2.state_dict())
    # any change of method options, seed or pretrained weights is a new model
    _, meta3 = T.transfer_model("linear_probe", A, tr, store=store, epochs=1, seed=1, **FAST)
    assert not meta3["cached"] and meta3["key"] != meta1["key"]
    with pytest.raises(ValueError, match="unknown method"):
        T.transfer_model("finetune", A, tr, store=store)


def test_attack_table_crafts_once_and_counts_success_per_student(setting):
    """The fine-tuned copy shares the teacher's body, a re-trained model shares nothing; the teacher's
    own images are crafted once and ASR is counted over each student's clean-correct images."""
    from lib import attacks as Att

    A, tr, te = setting["A"], setting["train"], setting["test"]
    ft, _ = T.fine_tune(A, tr, epochs=2, lr=0.05, **FAST)
    rt, _ = T.retrain(A, tr, epochs=2, lr=0.1, **FAST)
    calls = []
    feat = Att.attack_fn("feature", eps=8 / 255, alpha=1 / 255, steps=5, seed=0)

    def counting(model, x, y):
        calls.append(len(x))
        return feat(model, x, y)

    wb = Att.attack_fn("pgd", eps=8 / 255, alpha=2 / 255, steps=5, seed=0)
    table = attack_table(A, {"fine_tune": ft, "retrain": rt}, te, transfer_attacks={"feature": counting},
                           whitebox=wb, n=40, batch_size=16, progress=False)
    assert sum(calls) == 40  # crafted once for both students, on n images stratified by class
    assert list(table["method"]) == ["fine_tune", "retrain"] and (table["n"] == 40).all()
    sub = D.stratified_subset(te, 40)
    x, y = sub.float_images(), sub.labels.long()
    x_adv = torch.cat([feat(A, x[i:i + 16], y[i:i + 16]) for i in range(0, 40, 16)])  # as crafted: batches of 16
    for row in table.itertuples():
        model = ft if row.method == "fine_tune" else rt
        with torch.no_grad():
            clean, adv = model(x).argmax(1), model(x_adv).argmax(1)
        assert row.clean_acc == pytest.approx((clean == y).float().mean().item())
        assert row.feature_acc == pytest.approx((adv == y).float().mean().item())
        assert row.feature_asr == pytest.approx(attack_success_rate(clean, adv, y))
        assert row.whitebox_acc <= row.clean_acc and row.whitebox_asr >= row.feature_asr - 1e-9


def test_anb_sweep_with_attacks_crafted_on_base_a(setting, tmp_path):
    from lib import attacks as Att

    A, B, tr, te = setting["A"], setting["B"], setting["train"], setting["test"]
    store = Store(tmp_path / "store")
    atk = {"fgsm": Att.with_own_labels(Att.attack_fn("fgsm", eps=8 / 255))}
    table = T.anb_sweep(A, B, tr, te, ns=[1, 4], epochs=1, variants=("AnB", "BnB"), store=store,
                        progress=False, batch_size=32, transfer_attacks=atk, attack_n=30)
    assert (table["attack_n"] == 30).all() and table["fgsm_acc"].between(0, 1).all()
    # AnB at n = N is a linear probe on A's frozen body: FGSM crafted on A must hurt it
    model, _ = T.anb_model(A, B, tr, "AnB", 4, epochs=1, store=store, progress=False, batch_size=32)
    sub = D.stratified_subset(te, 30)
    _, x_adv, y = craft(A, (sub.images, sub.labels), atk["fgsm"])
    with torch.no_grad():
        acc = (model.eval()(x_adv).argmax(1) == y).float().mean().item()
    assert float(table.query("variant == 'AnB' and n == 4")["fgsm_acc"].iloc[0]) == pytest.approx(acc)
    # a rerun reads the crafted sets and the transfer scores back: no crafting, no scoring, same table
    import sys

    anb_module = sys.modules["lib.transfer.anb"]  # (lib.transfer.anb the attribute is the AnB function)

    def refused(*args, **kwargs):
        raise AssertionError("computed again")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys.modules["lib.evaluate.crafted"], "craft", refused)
        mp.setattr(anb_module, "transfer_scores", refused)
        again = T.anb_sweep(A, B, tr, te, ns=[1, 4], epochs=1, variants=("AnB", "BnB"), store=store,
                            progress=False, batch_size=32, transfer_attacks=atk, attack_n=30)
    pd.testing.assert_frame_equal(again.drop(columns="cached"), table.drop(columns="cached"))
    stronger = {"fgsm": Att.with_own_labels(Att.attack_fn("fgsm", eps=16 / 255))}
    other = T.anb_sweep(A, B, tr, te, ns=[4], epochs=1, variants=("AnB",), store=store, progress=False,
                        batch_size=32, transfer_attacks=stronger, attack_n=30)
    assert float(other["fgsm_acc"].iloc[0]) <= float(table.query("variant == 'AnB' and n == 4")["fgsm_acc"].iloc[0])


def test_headline_check_and_paragraph():
    import pandas as pd

    table = pd.DataFrame({"method": ["fine_tune", "linear_probe", "retrain", "renofeation"],
                          "clean_acc": [0.74, 0.70, 0.70, 0.68], "feature_asr": [0.33, 0.34, 0.11, 0.11],
                          "whitebox_acc": [0.02, 0.02, 0.02, 0.07]})
    checks = ST.headline_check(table)
    assert checks["passed"].all() and checks["ratio"].round(3).tolist() == [0.333, 0.333]
    # each condition can fail on its own; the ratio is reported, not asserted
    ratio = ST.headline_check(table.assign(feature_asr=[0.33, 0.3, 0.2, 0.11]))
    assert not ratio["ratio_ok"].iloc[0] and ratio["passed"].iloc[0] and ratio["ratio_ok"].iloc[1]
    assert not ST.headline_check(table.assign(feature_asr=[0.12, 0.1, 0.05, 0.05]))["passed"].any()  # gap
    assert not ST.headline_check(table.assign(clean_acc=[0.74, 0.7, 0.6, 0.68]))["passed"].iloc[0]  # clean
    text = ST.headline_paragraph(table, "a test", note="A note.")
    assert "74.3%" in text and "6.9%" in text and "33.0%" in text and "3.0x lower" in text
    assert "A note." in text and "linear probe 34.0%" in text and "2.0% to 7.0%" in text


def test_full_kw_uses_the_seed_budgets():
    full = lambda m, n: transfer_models.method_kw(m, ST.recipe("full"), n)
    kw = full("renofeation", 6400)
    assert kw["epochs_distill"] == 900 and kw["epochs_swa"] == 300 and kw["swa_every"] == 5
    assert kw["lr"] == 0.01 and kw["swa_lr"] == 0.005 and kw["weight_decay"] == 5e-3
    assert full("fine_tune", 6400)["epochs"] == 300 and full("l2_sp", 6400)["epochs"] == 90
    for m in T.TRANSFER_METHODS:  # every keyword is one the method accepts
        import inspect
        sig = inspect.signature(T.TRANSFER_METHODS[m])
        fit_params = set(inspect.signature(train_module.fit).parameters)
        assert set(full(m, 1000)) <= set(sig.parameters) | fit_params, m


# ------------------------------------------------------------------- full profile, end to end
def test_full_profile_runs_on_the_real_layouts(tmp_path, monkeypatch):
    """study("full") with an ImageNet ResNet-18 from the torch hub cache (random weights written in
    torchvision's format), CUB-200 and ImageNet-R in their shipped layouts (tiny fixtures): base B,
    a fine-tuned and a Renofeation student, an AnB model and the attack table, at 224 px."""
    import torchvision
    from lib.data.fixtures import write_cub200, write_imagenet_r

    from lib import attacks as Att
    from lib.data.real import IMAGENET_R_WNIDS
    from lib.models import pretrained_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = pretrained_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    cub, _ = write_cub200(tmp_path / "cub", per_class=4)
    inr = write_imagenet_r(tmp_path / "inr", IMAGENET_R_WNIDS[:2], per_class=5)
    store = Store(tmp_path / "store")
    few = dict(epochs=1, batch_size=4, progress=False)

    s = transfer_models.setup(ST.recipe("full", arch="resnet18", dataset="cub200"), store, root=cub, anb_root=inr,
                              progress=False, base_b_kw={"epochs": 1, "batch_size": 4})
    assert s["teacher"].num_classes == 1000 and s["base_b"].num_classes == 200
    assert len(s["train"]) == 6 and len(s["test"]) == 6 and "cub200" in s["target"]
    ft, _ = T.transfer_model("fine_tune", s["teacher"], s["train"], store=store, **few)
    rn, meta = T.transfer_model("renofeation", s["teacher"], s["train"], store=store, epochs_distill=1,
                                epochs_swa=1, batch_size=4, progress=False)
    assert ft.num_classes == rn.num_classes == 3 and meta["history"]
    anb = T.anb_sweep(s["teacher"], s["base_b"], s["anb_train"], s["anb_test"], ns=[4], variants=("AnB",),
                      store=store, **few)
    assert anb["test_acc"].between(0, 1).all()
    table = attack_table(s["teacher"], {"fine_tune": ft, "renofeation": rn}, s["test"],
                           transfer_attacks={"feature": Att.attack_fn("feature", eps=4 / 255, alpha=1 / 255, steps=2)},
                           whitebox=Att.attack_fn("pgd", eps=4 / 255, alpha=1 / 255, steps=2), n=3, batch_size=4,
                           progress=False)
    assert list(table["n"]) == [3, 3] and table["clean_acc"].between(0, 1).all()
    with pytest.raises(ValueError, match="dataset must be one of"):
        transfer_models.setup(ST.recipe("full", dataset="cifar10"))
