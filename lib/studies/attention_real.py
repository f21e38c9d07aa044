"""Notebook 06's measurement on real images: base A transferred to the team's GTSRB subset
(``../shared/data/gtsrb-32-subset``, 43 classes at 32 px), the sign's ROI box scaled to 32 px as
the object region.

Three models, each trained once and then loaded from the store: notebook 02's fine-tuning of base
A on the GTSRB training images (its smoke recipe); notebook 05's attack on the same data (base A
planted with notebook 05's trigger, rate, target and teacher settings); and a victim fine-tuned
from that planted teacher on the clean training images (notebook 05's student settings). On the
1,290 test images, clean and triggered, Grad-CAM at notebook 06's stage is scored as in the
notebook: mass on the sign against its area share and against another image's sign box, mass on
the trigger, and the backdoor's success rate.
"""
from __future__ import annotations

import pandas as pd
import torch

from .. import backdoor
from ..artifacts import backdoor as bd_models
from ..artifacts import transfer as transfer_models
from ..artifacts.bases import base_model
from ..data import ImageSet, to_imageset
from ..data.real import load_real
from ..models import fresh_like, model_fingerprint
from ..paths import shared_dir
from ..store import Store
from ..store.versions import module_version
from ..train import predict
from ..transfer import finetune
from .attention_figures import mean_interval


def gtsrb_sets(root=None) -> tuple[ImageSet, ImageSet] | None:
    """GTSRB train and test at 32 px as ImageSets, the test set's ``masks`` its ROI boxes;
    ``None`` when the shared subset is absent (and no ``root`` is given)."""
    if root is None:
        shared = shared_dir()
        root = shared / "data/gtsrb-32-subset" if shared else None
        if root is None or not root.is_dir():
            return None
    train = load_real("gtsrb", "train", root=root, size=32)
    test = load_real("gtsrb", "test", root=root, size=32)
    tr = to_imageset(train, name="gtsrb32-train", progress=False)
    te = to_imageset(test, name="gtsrb32-test", progress=False)
    te.masks = test.roi_masks()
    return tr, te


def gtsrb_models(train: ImageSet, cfg: dict, store: Store | None = None, *, progress: bool = True) -> dict:
    """``{"02 fine_tune", "05 backdoored teacher", "05 fine_tune"}`` on GTSRB (see the module), with
    the recipes of notebook 06's run (``cfg["needs"]``: notebook 02's and 05's, each with 01's)."""
    store = store or Store()
    cfg02, cfg05 = cfg["needs"]["02"], cfg["needs"]["05"]
    base, _ = base_model("A", cfg02["needs"]["01"], store, progress=progress)
    clean, _ = transfer_models.student("fine_tune", cfg02, base, train, store=store, progress=progress)
    trigger = bd_models.make_trigger(cfg05)
    poisoned = backdoor.poison(train, trigger, cfg05["rate"], cfg05["target"], where=cfg05["where"], seed=cfg05["seed"])
    teacher_kw = {**cfg05["teacher_kw"], "epochs": cfg05["teacher_epochs"], "seed": cfg05["seed"]}
    student_kw = {**cfg05["fit_kw"], "epochs": cfg05["student_epochs"], "seed": cfg05["seed"]}

    def cached(name, key, template, make):
        def train_fn(model):
            trained, hist = make()
            model.load_state_dict(trained.state_dict())
            return {"history": hist.to_dict("records")}
        key = {**key, "code": module_version(__name__)}
        model, _ = store.model(name, key, lambda: fresh_like(template, train.num_classes), train_fn)
        return model.eval()

    key = {"base": model_fingerprint(base), "trigger": trigger.config(), "where": cfg05["where"],
           "target": cfg05["target"], "rate": cfg05["rate"], "fit": teacher_kw, "data": "gtsrb32"}
    planted = cached("gtsrb_bd_teacher", key, base,
                     lambda: backdoor.plant(base, poisoned, progress=progress, **teacher_kw))
    victim = cached("gtsrb_bd_student", {"teacher": model_fingerprint(planted), "fit": student_kw, "data": "gtsrb32"},
                    planted, lambda: finetune.fine_tune(planted, train, progress=progress, **student_kw))
    return {"02 fine_tune": clean, "05 backdoored teacher": planted, "05 fine_tune": victim}


def gtsrb_check(cfg: dict, root=None, store: Store | None = None, *, progress: bool = True) -> pd.DataFrame | None:
    """One row per model and input kind (clean, triggered) on GTSRB's test set: accuracy, ASR
    (authors' definition), Grad-CAM mass on the sign (ROI minus trigger pixels) with its 95%
    interval, its area share, the mass on another image's sign box, and the mass and area share
    of the trigger. ``None`` when the shared subset is absent."""
    from .. import explain
    from ..explain import attention_mass

    sets = gtsrb_sets(root)
    if sets is None:
        return None
    train, test = sets
    models = gtsrb_models(train, cfg, store, progress=progress)
    cfg05 = cfg["needs"]["05"]
    x, y = test.float_images(), test.labels
    x_trig, mask = backdoor.apply_trigger(x, bd_models.make_trigger(cfg05), where=cfg05["where"], seed=cfg05["seed"])
    trig = mask[:, 0]
    sign = test.masks & ~trig
    other = sign[torch.randperm(len(y), generator=torch.Generator().manual_seed(cfg["seed"])).roll(1)]
    rows = []
    for name, model in models.items():
        clean_pred = predict(model, (x, y))[0].argmax(1)
        trig_pred = predict(model, (x_trig, y))[0].argmax(1)
        asr = backdoor.backdoor_rates(clean_pred, trig_pred, y, cfg05["target"])["asr"]["value"]
        for kind, xs, pred in (("clean", x, clean_pred), ("triggered", x_trig, trig_pred)):
            cam = explain.gradcam(model, xs, stage=cfg["stage"])
            m, lo, hi = mean_interval(pd.Series(attention_mass(cam, sign).numpy()))
            rows.append({"model": name, "kind": kind, "n": len(y), "acc": float((pred == y).float().mean()),
                         "asr": asr, "sign_mass": m, "sign_mass_low": lo, "sign_mass_high": hi,
                         "sign_area": float(sign.float().mean()),
                         "other_sign_mass": float(attention_mass(cam, other).nanmean()),
                         "trigger_mass": float(attention_mass(cam, trig).nanmean()),
                         "trigger_area": float(trig.float().mean())})
    return pd.DataFrame(rows)

