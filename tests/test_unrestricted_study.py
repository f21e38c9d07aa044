"""lib.studies.unrestricted and lib.artifacts.gan: the recipe contract (PARAMS <-> notebook
parameters), the models' keys (a GAN key that no classifier or evaluation setting changes; a
missing training setting is a KeyError), the study's FGSM arm (one eps per batch) and its errors."""
import json

import pytest
import torch

from lib.artifacts import gan as gan_models
from lib.studies import unrestricted as S
from lib.workbook import notebooks


def test_params_match_recipe_and_notebook():
    for profile in ("smoke", "full"):
        cfg = S.recipe(profile)
        assert set(S.PARAMS.values()) <= set(cfg)
    assert all(name.startswith("gan_") for name in S.PARAMS)
    nb = json.loads(notebooks(["07"])[0].read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    names = [line.split("=")[0].strip() for line in "".join(cell["source"]).splitlines()
             if "=" in line and not line.startswith("#")]
    assert names[:2] == ["profile", "run_config"] and names[2:] and set(names[2:]) <= set(S.PARAMS)
    with pytest.raises(KeyError):
        S.recipe("smoke", gan_stepz=3)


def test_keys_hold_what_training_reads():
    cfg = S.recipe()
    gan_key = gan_models.gan_key(cfg)
    # classifier, evaluation and checkpointing settings never retrain the GAN
    for other in ({"clf_epochs": 1}, {"n_eval": 7, "attack_steps": 3}, {"gan_checkpoint_every": 7},
                  {"per_class_test": 3}):
        assert gan_models.gan_key({**cfg, **other}) == gan_key, other
    assert gan_models.gan_key({**cfg, "gan_steps": 7}) != gan_key and gan_key["code"]
    clean = gan_models.classifier_key("clean", cfg)
    assert gan_models.classifier_key("clean", {**cfg, "clf_epochs": 1}) != clean
    assert gan_models.classifier_key("clean", {**cfg, "n_eval": 7, "gan_steps": 7}) == clean
    assert gan_models.classifier_key("gan", cfg)["gan"] == gan_key
    assert gan_models.classifier_key("unrestricted", {**cfg, "attack_lr": 1.0}) != gan_models.classifier_key(
        "unrestricted", cfg)
    # a training setting missing from the recipe is an error, not a default
    for key in ("gan_lr", "clf_epochs"):
        with pytest.raises(KeyError, match=key):
            gan_models.classifier_key("gan", {k: v for k, v in cfg.items() if k != key})
    assert set(gan_models.NOT_TRAINING) - {"needs"} <= set(cfg)


def test_study_fgsm_arm_draws_one_eps_per_batch_in_range():
    loss = gan_models.training_loss("fgsm", S.recipe())
    torch.manual_seed(0)
    for _ in range(20):
        e = loss.sample_eps(7, "cpu")
        assert e.shape == (7,) and (e == e[0]).all() and 1e-4 <= e[0] <= S.recipe()["fgsm_eps_max"]
    assert gan_models.training_loss("clean", S.recipe()) is None
    with pytest.raises(ValueError, match="method"):
        gan_models.training_loss("mixup", S.recipe())
    with pytest.raises(ValueError, match="needs the generator"):
        gan_models.classifier_model("gan", S.recipe(per_class_train=2, per_class_test=2))


def test_attack_curve_is_stored_and_read_back_equal(tmp_path, monkeypatch):
    # a rerun reads the crafted unrestricted examples (and the step trace, columns in order) back
    import pandas as pd

    from lib.gan import AuxClassifier, Critic, Generator, unrestricted_batches
    from lib.models import build

    monkeypatch.setenv("WORKBOOK_STORE", str(tmp_path))
    torch.manual_seed(0)
    G, aux = Generator(3, z_dim=8, width=8, size=8).eval(), AuxClassifier(Critic(3, width=8)).eval()
    clf = build("small_cnn", 3, seed=0, width=8).eval()
    cfg = {**S.recipe(), "per_class_unrestricted": 2, "attack_steps": 4}
    first = S.attack_curve(G, aux, clf, cfg)
    monkeypatch.setattr(S, "unrestricted_batches", lambda *a, **k: (_ for _ in ()).throw(AssertionError("again")))
    again = S.attack_curve(G, aux, clf, cfg)
    ref = unrestricted_batches(G, aux, clf, first.y, 4, seed=cfg["seed"] + 1, **gan_models.attack_kw(cfg))
    for name in S._RESULT:
        assert torch.equal(getattr(again, name), getattr(ref, name)) and torch.equal(getattr(first, name),
                                                                                    getattr(ref, name)), name
    pd.testing.assert_frame_equal(again.trace, ref.trace)
    assert list(again.trace.columns) == list(ref.trace.columns) and len(again.trace) == 5
    with pytest.raises(AssertionError, match="again"):
        S.attack_curve(G, aux, clf, cfg, steps=3)  # other steps: crafted anew


def test_clean_drop_is_paired_and_its_interval_flags_a_real_cost():
    """clean_drop scores both models on the same images: a model against itself costs exactly 0;
    a model that always answers one of five classes costs about 80 points, with an interval
    wholly above notebook 07's 5-point margin (the check fails on it)."""
    torch.manual_seed(0)
    x, y = torch.rand(300, 3, 8, 8), torch.arange(300) % 5

    class Oracle(torch.nn.Module):  # right on every image: the label is stored in pixel (0, 0, 0)
        def forward(self, xb):
            return torch.nn.functional.one_hot((xb[:, 0, 0, 0] * 5).long().clamp(0, 4), 5).float()

    class Constant(torch.nn.Module):
        def forward(self, xb):
            return torch.zeros(len(xb), 5).index_fill_(1, torch.tensor([0]), 1.0)

    x[:, 0, 0, 0] = (y.float() + 0.5) / 5
    test = (x, y)
    same = S.clean_drop({"clean": Oracle(), "gan": Oracle()}, "gan", test)
    assert same == {"drop": 0.0, "low": 0.0, "high": 0.0, "n": 300}
    cost = S.clean_drop({"clean": Oracle(), "gan": Constant()}, "gan", test)
    assert cost["drop"] == pytest.approx(0.8) and cost["low"] > S.recipe("smoke")["max_gan_clean_drop"]
    assert cost["low"] <= cost["drop"] <= cost["high"]


def test_step0_baseline_and_judges_count_only_what_the_attack_did():
    from lib.gan import UnrestrictedResult
    from lib.studies import unrestricted_report as R

    class Fixed(torch.nn.Module):  # predicts the class stored in the image's first pixel
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.nn.functional.one_hot((x[:, 0, 0, 0] * 10).round().long(), 5).float() + 0 * self.p

    y = torch.tensor([0, 1, 2, 3])
    clean = torch.zeros(4, 3, 2, 2)
    clean[:, 0, 0, 0] = torch.tensor([0, 1, 0, 3]) / 10  # step 0: codes 0, 1, 3 right, code 2 wrong
    images = clean.clone()
    images[:, 0, 0, 0] = torch.tensor([1, 1, 0, 0]) / 10  # end: 0, 2, 3 wrong
    ok = torch.tensor([True, False, True, True])
    att = UnrestrictedResult(images, images, clean, None, None, y, Fixed()(images).argmax(1), y, ok, None)
    base = R.step0_baseline(att, Fixed()).set_index("quantity")
    assert (base.loc["wrong at step 0", ["k", "n"]] == [1, 4]).all()
    assert (base.loc["made unrestricted (right at step 0)", ["k", "n"]] == [2, 3]).all()
    judges = R.judge_table(att, {"clean": Fixed(), "fgsm": Fixed()})
    assert list(judges["judge"]) == ["fgsm"] and judges["n"].iloc[0] == 3 and judges["k"].iloc[0] == 0
    # the pixel-term ablation: the same codes without the pixel term made nothing wrong
    latent = UnrestrictedResult(clean, clean, clean, None, None, y, Fixed()(clean).argmax(1), y,
                                torch.zeros(4, dtype=torch.bool), None)
    abl = R.ablation_table({"latent + pixel term": att, "latent only": latent}, Fixed())
    made = abl[abl["quantity"] == "made unrestricted (right at step 0)"].set_index("variant")
    assert made.loc["latent + pixel term", "k"] == 2 and made.loc["latent only", "k"] == 0
    assert (made["n"] == 3).all() and (abl["pixel_linf_max"] == 0).all()  # images equal samples here
    assert "overlap" in R.ablation_text(abl)  # 2 of 3 vs 0 of 3: the Wilson intervals overlap
