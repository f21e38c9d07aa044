"""The embedded generator: deterministic, balanced, 100+ classes, any size, masks on the object."""
import pytest
import torch

from lib import data as D
from lib.data import synsigns as S


def test_classes_are_unique_factor_combinations():
    assert S.NUM_CLASSES >= 100
    factors = [S.class_factors(c) for c in range(S.NUM_CLASSES)]
    assert len(set(factors)) == S.NUM_CLASSES
    assert {f[0] for f in factors} == set(S.SHAPES) and {f[2] for f in factors} == set(S.GLYPHS)


def test_same_seed_same_images_other_seed_other_images():
    a, b = S.generate(300, 32, seed=3), S.generate(300, 32, seed=3)
    c = S.generate(300, 32, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, c.images)
    assert (a.images.float() - c.images.float()).abs().mean() > 20


def test_image_i_does_not_depend_on_n():
    small, big = S.generate(37, 32, seed=1), S.generate(600, 32, seed=1)
    assert torch.equal(small.images, big.images[:37]) and torch.equal(small.labels, big.labels[:37])


@pytest.mark.parametrize("size", [32, 64, 224])
def test_sizes_dtype_and_value_range(size):
    ds = S.generate(6, size, seed=0)
    assert ds.images.shape == (6, 3, size, size) and ds.images.dtype == torch.uint8
    assert ds.masks.shape == (6, size, size) and ds.masks.dtype == torch.bool
    x, y = ds[0]
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and isinstance(y, int)
    assert ds.images.float().std() > 20  # not a blank image


def test_labels_balanced_in_blocks_and_restricted_to_pool():
    ds = S.generate(S.NUM_CLASSES * 3, 32, seed=0)
    assert torch.bincount(ds.labels, minlength=S.NUM_CLASSES).tolist() == [3] * S.NUM_CLASSES
    pool = [5, 17, 42]
    sub = S.generate(30, 32, seed=0, classes=pool)
    assert set(sub.labels.tolist()) == set(pool)
    assert torch.bincount(sub.labels)[pool].tolist() == [10, 10, 10]


@pytest.mark.parametrize("size", [32, 96])
def test_masks_are_aligned_with_the_rendered_object(size):
    # pixels that the sign changes (vs the same image rendered without it) lie on the mask
    assert S.mask_alignment(48, size, seed=2, tolerance_px=1) > 0.95
    # and the mask is where the sign was placed: centroid at the sampled centre, area ~ radius^2
    ds = S.generate(48, size, seed=2)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    m = ds.masks.float()
    area = m.sum((1, 2))
    cx, cy = (m * xs).sum((1, 2)) / area, (m * ys).sum((1, 2)) / area
    centre = ds.info["center"]
    # triangles' centroids sit below their circumcentre; everything else within ~1.5 px
    tol = 0.25 * ds.info["radius"]
    assert ((cx - centre[:, 0]).abs() < tol + 3 / size).all() and ((cy - centre[:, 1]).abs() < tol + 3 / size).all()
    frac = area / (size * size) / (ds.info["radius"] ** 2 / 4)  # area relative to the circumscribed square
    assert (frac > 0.3).all() and (frac < 4.2).all()


def test_mask_alignment_detects_misaligned_masks(monkeypatch):
    # the check itself must be able to fail: shift the masks by a quarter image
    real = S.generate

    def shifted(*a, **k):
        ds = real(*a, **k)
        ds.masks = torch.roll(ds.masks, shifts=ds.size // 4, dims=2)
        return ds

    monkeypatch.setattr(S, "generate", shifted)
    assert S.mask_alignment(32, 32, seed=0) < 0.8


def test_splits_are_different_draws_and_load_uses_profile():
    tr = D.load("synsigns", "train", n=200)
    te = D.load("synsigns", "test", n=200)
    assert tr.size == 32 and len(tr) == 200
    assert D.shared_images(tr, te) == 0
    assert D.shared_images(tr, tr.subset([3, 4])) == 2  # the check can fail
    with pytest.raises(ValueError, match="split"):
        D.load("synsigns", "bogus")
    with pytest.raises(ValueError, match="profile"):
        D.load("synsigns", "train", profile="huge")


def test_task_and_half_splits():
    tasks = D.task_split(100, 20, seed=0)
    assert len(tasks) == 20 and all(len(t) == 5 for t in tasks)
    assert sorted(c for t in tasks for c in t) == list(range(100))
    assert D.task_split(100, 20, seed=0) == tasks and D.task_split(100, 20, seed=1) != tasks
    a, b = D.source_target_split(100, seed=0)
    assert len(a) == len(b) == 50 and not set(a) & set(b)


def test_subset_classes_relabels_and_keeps_masks_and_info():
    ds = S.generate(200, 32, seed=0)
    keep = [7, 3, 99]
    sub = D.subset_classes(ds, keep)
    assert set(sub.labels.tolist()) == {0, 1, 2}
    assert sub.classes == [ds.classes[c] for c in keep]
    orig = ds.labels[torch.isin(ds.labels, torch.tensor(keep))]
    assert torch.equal(torch.tensor(keep)[sub.labels], orig)
    assert len(sub.masks) == len(sub) and len(sub.info["center"]) == len(sub)


def test_train_val_split_is_stratified_and_disjoint():
    ds = S.generate(500, 32, seed=0)
    tr, va = D.train_val_split(ds, 0.2, seed=0)
    assert len(tr) + len(va) == len(ds)
    assert torch.bincount(va.labels, minlength=100).tolist() == [1] * 100
    tr2, va2 = D.train_val_split(ds, 0.2, seed=0)
    assert torch.equal(va.images, va2.images)


def test_generate_memo_returns_equal_independent_copies():
    from lib.data import synsigns

    a = synsigns.generate(40, 32, seed=123, classes=[3, 5, 7])
    b = synsigns.generate(40, 32, seed=123, classes=[3, 5, 7])  # from the memo
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks) and torch.equal(a.labels, b.labels)
    a.images.zero_()  # a caller's in-place edit does not reach the memo or other callers
    c = synsigns.generate(40, 32, seed=123, classes=[3, 5, 7])
    assert torch.equal(b.images, c.images) and c.images.any()
    assert not torch.equal(synsigns.generate(40, 32, seed=124, classes=[3, 5, 7]).images, c.images)
    synsigns._MEMO.clear()
    fresh = synsigns.generate(40, 32, seed=123, classes=[3, 5, 7])  # rendered again: the same images
    assert torch.equal(fresh.images, c.images) and torch.equal(fresh.info["center"], c.info["center"])
