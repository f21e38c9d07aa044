"""lib.studies.unrestricted: the recipe contract (PARAMS <-> notebook parameters), the study's
FGSM arm (one eps per batch) and its errors."""
import json

import pytest
import torch

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
    assert names == ["profile", *S.PARAMS]
    with pytest.raises(KeyError):
        S.recipe("smoke", gan_stepz=3)


def test_study_fgsm_arm_draws_one_eps_per_batch_in_range():
    loss = S.training_loss("fgsm", S.recipe())
    torch.manual_seed(0)
    for _ in range(20):
        e = loss.sample_eps(7, "cpu")
        assert e.shape == (7,) and (e == e[0]).all() and 1e-4 <= e[0] <= S.recipe()["fgsm_eps_max"]
    assert S.training_loss("clean", S.recipe()) is None
    with pytest.raises(ValueError, match="method"):
        S.training_loss("mixup", S.recipe())
    with pytest.raises(ValueError, match="needs the generator"):
        S.classifier_model("gan", S.recipe(per_class_train=2, per_class_test=2))
