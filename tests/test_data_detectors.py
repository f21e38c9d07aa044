"""Training-data backdoor detectors (issue 31): activation clustering (Chen et al. 2018) and
spectral signatures (Tran et al. 2018) on the shared planted fixture (tests/backdoor_planted.py).

Representations: the unpooled last stage (``conv4``, 128 x 4 x 4) -- the pooled penultimate
vector of this small CNN barely separates the 4-px corner trigger (see
lib.backdoor.detection.representations). The fixture's all-to-one 20% poison is 59% of the target
class (120 of 202), beyond what either method assumes (a minority); the recovery tests use the
training set with all clean images and 25 of the 120 poisoned ones (23% of the target class,
the papers' regime), and one test documents the majority case.
"""
import torch

from lib.backdoor import activation_clustering as AC
from lib.backdoor import spectral_signatures as SS
from lib.backdoor.detection import detection_scores, representations
from tests.backdoor_planted import planted

LAYER = "conv4"
_CACHE = {}


def _setup():
    """The fixture, the poisoned-minority subset and both models' representations, built once on
    one thread (conftest asks for 2; on a shared, loaded machine 2 threads made this 10x slower)."""
    if not _CACHE:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            _build()
        finally:
            torch.set_num_threads(threads)
    return _CACHE


def _build():
    if not _CACHE:
        p = planted()
        pm = torch.zeros(len(p.poisoned.labels), dtype=torch.bool)
        pm[p.poisoned_idx] = True
        g = torch.Generator().manual_seed(1)
        kept = p.poisoned_idx[torch.randperm(len(p.poisoned_idx), generator=g)[:25]]
        keep = ~pm
        keep[kept] = True
        sub = keep.nonzero().flatten()
        _CACHE.update(p=p, pm=pm, sub=sub,
                      feats=representations(p.model, p.poisoned.images, layer=LAYER),
                      clean_feats=representations(p.clean_model, p.train.images, layer=LAYER))


def _target_scores(flags, pm, labels, target=0):
    """Precision/recall restricted to the target class (where every poisoned image is)."""
    c = labels == target
    return detection_scores(flags[c], pm[c].nonzero().flatten(), int(c.sum()))


def test_detection_scores_counts_and_intervals():
    d = detection_scores(torch.tensor([True, True, False, False]), [0, 2], 4)
    assert (d["tp"], d["flagged"], d["poisoned"]) == (1, 2, 2)
    assert d["precision"] == d["recall"] == 0.5
    assert 0 < d["precision_low"] < 0.5 < d["precision_high"] < 1
    assert detection_scores([], [1], 3)["precision"] != detection_scores([], [1], 3)["precision"]  # nan


def test_hand_made_blobs_small_blob_flagged():
    g = torch.Generator().manual_seed(0)
    big = torch.randn(90, 20, generator=g)
    small = torch.randn(10, 20, generator=g) + 8.0
    x = torch.cat([big, small])
    labels = torch.zeros(100, dtype=torch.long)
    for method in ("ica", "pca"):
        r = AC.detect(None, None, labels, feats=x, method=method)
        assert r["flags"].nonzero().flatten().tolist() == list(range(90, 100))
        c0 = r["per_class"][0]
        assert c0["flagged"] and abs(c0["relative"][c0["smaller"]] - 0.1) < 1e-9
    s = SS.detect(None, None, labels, feats=x, eps=0.1)  # removes floor(1.5 * 0.1 * 100) = 15
    assert s["flags"].sum() == 15 and s["flags"][90:].all()


def test_ac_recovers_minority_poison_planted_not_clean():
    c = _setup()
    p, sub = c["p"], c["sub"]
    labels, pm = p.poisoned.labels[sub], c["pm"][sub]
    for seed in (0, 1, 2):
        r = AC.detect(None, None, labels, feats=c["feats"][sub], method="pca", seed=seed)
        d = _target_scores(r["flags"], pm, labels)
        print("AC planted seed", seed, {k: round(v["relative"][v["smaller"]], 3) for k, v in r["per_class"].items()},
              "target P/R", d["precision"], d["recall"])
        assert 0 in r["flagged_classes"]
        assert d["recall"] >= 0.8 and d["precision"] >= 0.9
        clean = AC.detect(None, None, p.train.labels, feats=c["clean_feats"], method="pca", seed=seed)
        print("AC clean seed", seed, {k: round(v["relative"][v["smaller"]], 3) for k, v in clean["per_class"].items()})
        assert 0 not in clean["flagged_classes"]


def test_ac_majority_poison_separated_but_not_flagged():
    """All 120 poisoned images: the 2 clusters of the target class split poison from clean, but
    poison is the larger cluster, so the size rule (share < 0.35) flags nothing there."""
    c = _setup()
    p, pm = c["p"], c["pm"]
    labels = p.poisoned.labels
    for seed in (0, 1, 2):
        r = AC.detect(None, None, labels, feats=c["feats"], method="pca", seed=seed)
        t = labels == 0
        cl, pp = r["clusters"][t], pm[t]
        purity = max(float(pp[cl == j].float().mean()) for j in (0, 1))
        print("AC majority seed", seed, "purity", purity, r["per_class"][0]["relative"])
        assert purity >= 0.95
        assert 0 not in r["flagged_classes"]


def test_ss_removes_mostly_poison_in_target_class():
    c = _setup()
    p, sub = c["p"], c["sub"]
    labels, pm = p.poisoned.labels[sub], c["pm"][sub]
    r = SS.detect(None, None, labels, feats=c["feats"][sub], eps=0.25)
    d = _target_scores(r["flags"], pm, labels)
    chance = float(pm[labels == 0].float().mean())
    print("SS target P/R", d["precision"], d["recall"], "chance", chance)
    assert d["recall"] >= 0.8
    assert d["precision"] >= 2 * chance


def test_ss_spectrum_concentrates_in_target_class_only_when_planted():
    """SS removes 1.5 eps n of every class by construction, so what tells a poisoned class is
    how much of its spectrum the top direction holds: on the planted model the target class's
    share exceeds every class of the clean model (and every other planted class)."""
    c = _setup()
    p = c["p"]
    planted_ = SS.detect(None, None, p.poisoned.labels, feats=c["feats"])["per_class"]
    clean = SS.detect(None, None, p.train.labels, feats=c["clean_feats"])["per_class"]
    shares = {k: v["top_share"] for k, v in planted_.items()}
    clean_max = max(v["top_share"] for v in clean.values())
    print("SS top shares planted", shares, "clean max", clean_max)
    assert shares[0] >= clean_max + 0.05
    assert shares[0] >= max(v for k, v in shares.items() if k != 0) + 0.05
