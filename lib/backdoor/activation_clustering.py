"""Activation clustering (Chen, Carvalho, Baracaldo, Ludwig, Edwards, Lee, Molloy & Srivastava,
"Detecting backdoor attacks on deep neural networks by activation clustering", SafeAI@AAAI 2019,
arXiv:1811.03728): a training-data detector.

Per class (by the training label, i.e. the label the attacker gave): the penultimate activations
of that class's training images, reduced to 10 dimensions, split into 2 clusters by k-means; a
cluster is flagged poisoned when its *relative size* (share of the class) is below a threshold
(the paper's section 4 "relative size" analysis: poison, when present, forms a small cluster;
clean classes split roughly evenly). Defaults are the paper's and IBM ART's
(``ActivationDefence``: ``nb_clusters=2``, ``nb_dims=10``; ``ClusteringAnalyzer
.analyze_by_relative_size``: ``size_threshold=0.35``). ART's other analysis, ``"smaller"``,
flags the smaller cluster of *every* class; :func:`detect` reports it too (``smaller``).

Dimensionality reduction: the paper uses ICA, ART's ``ActivationDefence`` defaults to PCA
(its module-level ``reduce_dimensionality`` defaults to FastICA). FastICA first whitens with
PCA and then only *rotates* the whitened components; k-means with Euclidean distance is
invariant to rotations, so k-means on ICA components equals k-means on the whitened top-10 PCA
components. ``reduce="ica"`` (default, the paper) is therefore computed exactly as whitened PCA,
``reduce="pca"`` (ART's default) as unwhitened PCA; neither needs an ICA solver.

Why by hand rather than scikit-learn: scikit-learn is a test-only dependency of this project
(requirements-test.txt), and a 2-means with k-means++ seeding plus an SVD are a few lines of
torch. The tests cross-check against ART (which uses sklearn) when it is installed.

Limitation (by design of the method): the size rule assumes the poison is a minority of its
class. With an all-to-one attack at rate r over K balanced classes the target class holds
about ``r K / (1 - r + r K)`` poison (0.59 in the tests' planted fixture: 120 of 202 images), so
the poison is the *larger* cluster and the rule cannot flag it, even when the clusters separate
poison from clean perfectly (``per_class[c]["clusters"]`` shows the split).
"""
from __future__ import annotations

import torch

from .detection import representations

SIZE_THRESHOLD = 0.35
NB_DIMS = 10


def reduce(x: torch.Tensor, nb_dims: int = NB_DIMS, method: str = "ica") -> torch.Tensor:
    """Project the rows of ``x`` on their top ``nb_dims`` principal components (centred, via
    ``torch.linalg.svd``); ``method="ica"`` also whitens them (unit variance per component,
    equal to FastICA's output up to a rotation, see the module docstring). Fewer rows or
    columns than ``nb_dims``: returns the centred ``x`` unreduced (as ART does)."""
    if method not in ("ica", "pca"):
        raise ValueError(f"method must be 'ica' or 'pca', got {method!r}")
    x = x.double() - x.double().mean(0)
    if min(x.shape) <= nb_dims:
        return x
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    if method == "pca":
        return u[:, :nb_dims] * s[:nb_dims]
    return u[:, :nb_dims] * (x.shape[0] - 1) ** 0.5  # whitened: unit sample variance


def kmeans(x: torch.Tensor, k: int = 2, *, n_init: int = 10, iters: int = 300,
           seed: int = 0) -> torch.Tensor:
    """Cluster labels ``(N,)`` of Lloyd's k-means on the rows of ``x``: ``n_init`` runs from
    k-means++ seeds (Arthur & Vassilvitskii 2007), the one with the smallest inertia kept (as
    scikit-learn's ``KMeans``). Deterministic given ``seed``."""
    g = torch.Generator().manual_seed(seed)
    best, best_inertia = None, float("inf")
    for _ in range(n_init):
        centres = _plus_plus(x, k, g)
        for _ in range(iters):
            lab = torch.cdist(x, centres).argmin(1)
            new = torch.stack([x[lab == j].mean(0) if (lab == j).any() else centres[j] for j in range(k)])
            if torch.allclose(new, centres):
                break
            centres = new
        lab = torch.cdist(x, centres).argmin(1)
        inertia = float(((x - centres[lab]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = lab, inertia
    return best


def _plus_plus(x: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centre drawn with probability proportional to the squared
    distance to the nearest centre so far."""
    centres = [x[torch.randint(len(x), (1,), generator=g)].squeeze(0)]
    for _ in range(1, k):
        d2 = torch.cdist(x, torch.stack(centres)).min(1).values ** 2
        if float(d2.sum()) == 0:
            centres.append(centres[0])
            continue
        centres.append(x[torch.multinomial(d2 / d2.sum(), 1, generator=g)].squeeze(0))
    return torch.stack(centres)


def cluster_class(feats: torch.Tensor, *, nb_dims: int = NB_DIMS, method: str = "ica",
                  size_threshold: float = SIZE_THRESHOLD, n_init: int = 10,
                  seed: int = 0) -> dict:
    """2-means of one class's activations: ``clusters`` (labels 0/1), ``sizes``, ``relative``
    (each cluster's share), ``smaller`` (id of the smaller cluster; ties: 0, as ``argmin``),
    ``flagged`` (whether its share is below ``size_threshold``) and ``poisoned`` (bool mask of
    the class's images the size rule flags)."""
    n = len(feats)
    if n < 2:
        z = torch.zeros(n, dtype=torch.long)
        return dict(clusters=z, sizes=[n, 0], relative=[1.0, 0.0], smaller=1, flagged=False,
                    poisoned=torch.zeros(n, dtype=torch.bool))
    lab = kmeans(reduce(feats, nb_dims, method), 2, n_init=n_init, seed=seed)
    sizes = torch.bincount(lab, minlength=2)
    rel = (sizes.double() / n).tolist()
    small = int(sizes.argmin())
    flagged = rel[small] < size_threshold
    return dict(clusters=lab, sizes=sizes.tolist(), relative=rel, smaller=small, flagged=flagged,
                poisoned=(lab == small) & flagged)


def detect(model, images, labels, *, nb_dims: int = NB_DIMS, method: str = "ica",
           size_threshold: float = SIZE_THRESHOLD, n_init: int = 10, seed: int = 0,
           batch_size: int = 256, layer: str | None = None,
           feats: torch.Tensor | None = None) -> dict:
    """Activation clustering over a training set.

    ``images`` ``(N, C, H, W)`` (float in [0, 1] or uint8), ``labels`` ``(N,)`` the training
    labels; ``layer`` which representation (:func:`lib.backdoor.detection.representations`:
    None = penultimate vector, or a block name); ``feats`` (optional) precomputed representations
    to skip the forward pass.
    Returns ``flags`` (bool ``(N,)``: in a cluster the size rule flags), ``smaller`` (bool
    ``(N,)``: in its class's smaller cluster, ART's ``"smaller"`` analysis), ``score`` (float
    ``(N,)``: relative size of the image's cluster; low = suspicious), ``clusters`` (``(N,)``
    0/1 within each class), ``per_class`` ``{class: dict(n, sizes, relative, smaller, flagged)}``
    and ``flagged_classes``.
    """
    labels = torch.as_tensor(labels).long().cpu()
    if feats is None:
        feats = representations(model, images, labels, layer=layer, batch_size=batch_size)
    n = len(labels)
    flags, smaller = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    score, clusters = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.long)
    per_class = {}
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        r = cluster_class(feats[idx], nb_dims=nb_dims, method=method, size_threshold=size_threshold,
                          n_init=n_init, seed=seed)
        flags[idx], clusters[idx] = r["poisoned"], r["clusters"]
        smaller[idx] = r["clusters"] == r["smaller"]
        score[idx] = torch.tensor(r["relative"], dtype=torch.float64)[r["clusters"]]
        per_class[c] = {k: r[k] for k in ("sizes", "relative", "smaller", "flagged")} | dict(n=len(idx))
    return dict(flags=flags, smaller=smaller, score=score, clusters=clusters, per_class=per_class,
                flagged_classes=[c for c, r in per_class.items() if r["flagged"]])
