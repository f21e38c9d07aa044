"""Classification and continual-learning metrics: the one place where accuracy and related
numbers are computed.

What: accuracy, confusion matrix, per-class precision / recall / F1, macro F1, attack success
rate, a Wilson confidence interval for a proportion (from counts or from a rate and its
``n``), Newcombe's interval of a difference of two proportions, and the continual-learning
summaries of an accuracy matrix (average accuracy, backward transfer, forgetting).

Why: accuracy used to be computed ad hoc in several places, each with its own handling of
logits vs. labels, devices and empty inputs. Every number reported by the workbook should come
from here, so that two notebooks reporting "accuracy" mean the same thing.

Conventions
-----------
- Predictions ``pred`` are labels ``(N,)`` or logits / scores ``(N, C)`` (reduced by
  ``argmax`` over the last axis); labels ``y`` are ``(N,)``. Both may be torch tensors on any
  device, numpy arrays or sequences; nothing is modified, everything is computed on the CPU.
- Class ids are integers ``0 .. C-1``. Unless ``num_classes`` is given, ``C`` is the larger of
  the logits' width (when logits are given) and ``max label + 1`` over ``pred`` and ``y``.
- Undefined ratios: :func:`accuracy` of zero samples and :func:`attack_success_rate` with no
  clean-correct sample are ``nan``; per-class precision / recall / F1 with a zero denominator
  are ``0.0`` (scikit-learn's ``zero_division=0``).
- Definitions follow scikit-learn (``sklearn.metrics``) for the classification metrics; the
  tests in ``tests/test_metrics.py`` cross-check against it.

This module is an infrastructure floor: it imports torch, numpy, pandas and the standard
library only, and nothing from :mod:`lib`.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import Tensor

ArrayLike = Union[Tensor, np.ndarray, Sequence]

__all__ = ["accuracy", "confusion_matrix", "per_class", "macro_f1", "attack_success_rate",
           "binomial_interval", "rate_interval", "difference_interval", "accuracy_with_interval",
           "bootstrap_interval", "seed_interval",
           "average_accuracy", "backward_transfer",
           "forgetting", "AccuracyMatrix"]


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------
def _labels(pred: ArrayLike) -> Tensor:
    """Predicted labels ``(N,)`` as a CPU int64 tensor from labels ``(N,)`` or logits ``(N, C)``.

    Why: the single conversion every metric uses (moved from ``lib.attacks._labels``, same
    semantics), so logits and labels, tensors and arrays are interchangeable everywhere.
    """
    pred = torch.as_tensor(pred)
    if pred.dim() > 2:
        raise ValueError(f"predictions must be labels (N,) or logits (N, C), got shape {tuple(pred.shape)}")
    return (pred.argmax(1) if pred.dim() == 2 else pred).detach().cpu().long()


def _targets(y: ArrayLike) -> Tensor:
    """True labels ``(N,)`` as a CPU int64 tensor."""
    y = torch.as_tensor(y)
    if y.dim() != 1:
        raise ValueError(f"labels must have shape (N,), got {tuple(y.shape)}")
    return y.detach().cpu().long()


def label_pair(pred: ArrayLike, y: ArrayLike) -> tuple[Tensor, Tensor]:
    """``(predicted labels, true labels)``, checked to have the same length."""
    p, t = _labels(pred), _targets(y)
    if p.shape != t.shape:
        raise ValueError(f"{len(p)} predictions but {len(t)} labels")
    return p, t


def _num_classes(pred: ArrayLike, p: Tensor, t: Tensor, num_classes: int | None) -> int:
    """Number of classes: ``num_classes`` if given (checked against the labels), else the larger
    of the logits' width and ``max label + 1``."""
    if (p.numel() and int(p.min()) < 0) or (t.numel() and int(t.min()) < 0):
        raise ValueError("class labels must be non-negative")
    seen = max(int(p.max()) + 1 if p.numel() else 0, int(t.max()) + 1 if t.numel() else 0)
    if num_classes is None:
        width = torch.as_tensor(pred).shape[1] if torch.as_tensor(pred).dim() == 2 else 0
        return max(seen, width)
    if num_classes < seen:
        raise ValueError(f"num_classes={num_classes} but a label {seen - 1} occurs")
    return int(num_classes)


# --------------------------------------------------------------------------------------------
# Classification metrics
# --------------------------------------------------------------------------------------------
def accuracy(pred: ArrayLike, y: ArrayLike) -> float:
    """Share of samples whose predicted label equals the true label; ``nan`` for ``N = 0``.

    Why: the one definition of accuracy in the workbook (predictions may be logits).
    Reference: ``sklearn.metrics.accuracy_score``.
    """
    p, t = label_pair(pred, y)
    if t.numel() == 0:
        return float("nan")
    return (p == t).sum().item() / t.numel()


def confusion_matrix(pred: ArrayLike, y: ArrayLike, num_classes: int | None = None) -> Tensor:
    """Confusion matrix ``M`` (int64, ``C x C``): ``M[i, j]`` = number of samples of true class
    ``i`` predicted as class ``j`` (rows = true class, columns = predicted).

    Why: the base of every per-class metric. Unlike scikit-learn's default, rows and columns
    cover all classes ``0 .. C-1`` even when a class is absent (so matrices of different runs
    line up). Reference: ``sklearn.metrics.confusion_matrix(y, pred, labels=range(C))``.
    """
    p, t = label_pair(pred, y)
    c = _num_classes(pred, p, t, num_classes)
    return torch.bincount(t * c + p, minlength=c * c).reshape(c, c).long()


def _per_class_arrays(pred: ArrayLike, y: ArrayLike, num_classes: int | None):
    """``(support, precision, recall, f1, predicted_count)`` per class as numpy arrays."""
    m = confusion_matrix(pred, y, num_classes).numpy()
    tp = np.diag(m).astype(np.float64)
    support, predicted = m.sum(1), m.sum(0)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    # F1 = 2TP / (2TP + FP + FN) = 2TP / (support + predicted), the harmonic mean of precision
    # and recall where both are defined, 0 where the denominator vanishes (as sklearn).
    return support, ratio(tp, predicted), ratio(tp, support), ratio(2 * tp, support + predicted), predicted


def per_class(pred: ArrayLike, y: ArrayLike, num_classes: int | None = None) -> pd.DataFrame:
    """Per-class table with columns ``class, support, precision, recall, f1`` (one row per
    class ``0 .. C-1``).

    ``support`` = number of true samples of the class; precision = TP / #predicted as the class;
    recall = TP / support; f1 = 2TP / (support + #predicted). A ratio with a zero denominator is
    0.0. Why: the class-level view behind accuracy (which classes an attack breaks first).
    Reference: ``sklearn.metrics.precision_recall_fscore_support(zero_division=0)``.
    """
    support, precision, recall, f1, _ = _per_class_arrays(pred, y, num_classes)
    return pd.DataFrame({"class": np.arange(len(support), dtype=np.int64), "support": support.astype(np.int64),
                         "precision": precision, "recall": recall, "f1": f1})


def macro_f1(pred: ArrayLike, y: ArrayLike, num_classes: int | None = None) -> float:
    """Unweighted mean of the per-class F1 over the classes that occur in ``y`` or in the
    predictions (a class in neither is left out); ``nan`` for ``N = 0``.

    Why: a class-balanced summary that accuracy hides on imbalanced data. Reference:
    ``sklearn.metrics.f1_score(average="macro")`` with its default labels (the union of the
    labels present in ``y`` and ``pred``). ``num_classes`` only checks the label range.
    """
    support, _, _, f1, predicted = _per_class_arrays(pred, y, num_classes)
    present = (support + predicted) > 0
    return float(f1[present].mean()) if present.any() else float("nan")


def attack_success_rate(clean_pred: ArrayLike, adv_pred: ArrayLike, y: ArrayLike) -> float:
    """Share of the images the model classifies correctly when clean that the attack makes it
    misclassify: ``#(clean right and adversarial wrong) / #(clean right)``; ``nan`` when no image
    is clean-correct. Predictions may be labels ``(N,)`` or logits ``(N, C)``.

    Why: robust accuracy mixes the clean error in; the success rate isolates what the attack
    does (the definition of the Renofeation evaluation); mismatched lengths raise ``ValueError``.
    """
    clean, y_ = label_pair(clean_pred, y)
    adv, _ = label_pair(adv_pred, y)
    right = clean == y_
    if not right.any():
        return float("nan")
    return ((adv != y_) & right).sum().item() / right.sum().item()


# --------------------------------------------------------------------------------------------
# Confidence intervals
# --------------------------------------------------------------------------------------------
def binomial_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` for a proportion of ``k`` successes in ``n`` trials
    at confidence ``level``; ``(nan, nan)`` for ``n = 0``.

    ``center = (k + z^2/2) / (n + z^2)``, ``half = z / (n + z^2) * sqrt(k (n - k) / n + z^2 / 4)``
    with ``z`` the ``(1 + level) / 2`` normal quantile.

    Why Wilson rather than the normal (Wald) approximation ``p +- z sqrt(p (1 - p) / n)``: the
    Wald interval collapses to zero width at ``k = 0`` and ``k = n`` (claiming certainty from
    a handful of samples), can leave [0, 1], and undercovers badly for small ``n`` or ``p`` near
    0 or 1 -- exactly the regime of robust accuracies under strong attacks. Wilson stays inside
    [0, 1], has positive width at the extremes and near-nominal coverage for small ``n``.
    Reference: E. B. Wilson, "Probable inference, the law of succession, and statistical
    inference", JASA 22 (1927); L. D. Brown, T. T. Cai, A. DasGupta, "Interval estimation for a
    binomial proportion", Statistical Science 16 (2001).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return float("nan"), float("nan")
    z = NormalDist().inv_cdf((1 + level) / 2)
    z2 = z * z
    center = (k + z2 / 2) / (n + z2)
    half = z / (n + z2) * math.sqrt(k * (n - k) / n + z2 / 4)
    low = 0.0 if k == 0 else max(0.0, center - half)
    high = 1.0 if k == n else min(1.0, center + half)
    return low, high


def rate_interval(p: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Wilson interval ``(low, high)`` of a rate ``p`` measured over ``n`` items:
    :func:`binomial_interval` of ``round(p * n)`` successes in ``n``; ``(nan, nan)`` when ``n``
    is 0 or ``p`` or ``n`` is nan.

    Why: tables keep rates and their ``n``, not the counts; every count here is ``p * n`` up to
    float rounding, so ``round`` recovers it exactly. An undefined rate (a student with no test
    image right, so no clean-correct image to attack; a metric a model was not scored on) has
    no interval rather than failing on ``round(nan)``.
    """
    if n != n or p != p or n == 0:  # x != x: nan (float, numpy or pandas scalars alike)
        return float("nan"), float("nan")
    return binomial_interval(round(p * n), n, level)


def difference_interval(p1: float, n1: float, p2: float, n2: float,
                        level: float = 0.95) -> tuple[float, float, float]:
    """``(p1 - p2, low, high)``: the difference of two rates (``p1`` over ``n1`` items, ``p2``
    over ``n2``) with its interval by Newcombe's hybrid score method, from the two rates' Wilson
    intervals ``[l1, u1]``, ``[l2, u2]`` (:func:`rate_interval`)::

        low  = (p1 - p2) - sqrt((p1 - l1)^2 + (u2 - p2)^2)
        high = (p1 - p2) + sqrt((u1 - p1)^2 + (p2 - l2)^2)

    nan where either rate has no interval. Why: the Wald interval of a difference inherits the
    Wald interval's failures near 0 and 1 (zero width, leaving [-1, 1]); Newcombe's keeps
    Wilson's coverage there. It treats the two rates as independent: where both are measured on
    the same items a paired interval is narrower, so this one is conservative. Reference:
    R. G. Newcombe, "Interval estimation for the difference between independent proportions:
    comparison of eleven methods", Statistics in Medicine 17 (1998), method 10.
    """
    l1, u1 = rate_interval(p1, n1, level)
    l2, u2 = rate_interval(p2, n2, level)
    d = p1 - p2
    return d, d - ((p1 - l1) ** 2 + (u2 - p2) ** 2) ** 0.5, d + ((u1 - p1) ** 2 + (p2 - l2) ** 2) ** 0.5


def accuracy_with_interval(pred: ArrayLike, y: ArrayLike, level: float = 0.95) -> dict:
    """``{"acc", "low", "high", "n"}``: accuracy with its Wilson interval (see
    :func:`binomial_interval`) at confidence ``level``.

    Why: accuracies on a few hundred test images differ by chance by several points; report
    the interval alongside. Reference: :func:`binomial_interval`.
    """
    p, t = label_pair(pred, y)
    n = t.numel()
    k = int((p == t).sum().item())
    low, high = binomial_interval(k, n, level)
    return {"acc": k / n if n else float("nan"), "low": low, "high": high, "n": n}


def bootstrap_interval(values: ArrayLike, level: float = 0.95, n_resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (e.g. one model's per-image 0/1
    correctness, or a per-image difference between two models on the same images), through
    :func:`scipy.stats.bootstrap`. Resamples the test images: the spread a new draw of the test
    set would give one trained model. Degenerate values give ``(v, v)``."""
    from scipy import stats

    x = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("bootstrap_interval needs at least one value")
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    res = stats.bootstrap((x,), np.mean, confidence_level=level, n_resamples=n_resamples, method="percentile",
                          rng=np.random.default_rng(seed), vectorized=True)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def seed_interval(values: ArrayLike, level: float = 0.95) -> dict:
    """``{"mean", "low", "high", "sd", "n"}`` over repeated runs (one value per seed): Student-t
    interval of the mean, the spread a new training seed gives. One value: the interval is
    ``nan`` (one run says nothing about the seed spread)."""
    from scipy import stats

    x = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, dtype=float).ravel()
    n = x.size
    if n == 0:
        raise ValueError("seed_interval needs at least one value")
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "sd": float("nan"), "n": 1}
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "sd": sd, "n": n}


# --------------------------------------------------------------------------------------------
# Continual learning
# --------------------------------------------------------------------------------------------
def _as_matrix(R) -> np.ndarray:
    """Accuracy matrix as a square float64 numpy array (accepts an :class:`AccuracyMatrix`)."""
    R = np.asarray(R.matrix if isinstance(R, AccuracyMatrix) else
                   (R.detach().cpu().numpy() if isinstance(R, Tensor) else R), dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square T x T with T >= 1, got shape {R.shape}")
    return R


def average_accuracy(R) -> float:
    """Average accuracy ``ACC = mean_j R[T-1, j]``: mean test accuracy over all tasks after
    training on the last one.

    ``R[i, j]`` is the accuracy on task ``j`` after training on task ``i`` (``T x T``). A nan
    in the last row (a task not evaluated at the end) makes the result nan: the last row must
    be complete. Why: the headline number of a continual-learning run. Reference: Lopez-Paz &
    Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017 (ACC); Chaudhry et
    al., "Riemannian Walk for Incremental Learning", ECCV 2018 (average accuracy A_T).
    """
    R = _as_matrix(R)
    return float(R[-1].mean())


def backward_transfer(R) -> float:
    """Backward transfer ``BWT = mean_{j < T-1} (R[T-1, j] - R[j, j])``: how training on later
    tasks changed the accuracy on earlier ones (negative = forgetting).

    Entries above the diagonal are not used (may be nan); a nan on the diagonal or in the last
    row makes the result nan. For ``T = 1`` there is no earlier task and the result is ``nan``
    (not 0.0: nothing was measured, and a 0.0 would read as "no forgetting" and enter averages
    over runs as a real value). Reference: Lopez-Paz & Ranzato, NeurIPS 2017, Sec. 2 (BWT).
    """
    R = _as_matrix(R)
    t = R.shape[0]
    if t == 1:
        return float("nan")
    j = np.arange(t - 1)
    return float((R[-1, j] - R[j, j]).mean())


def forgetting(R) -> float:
    """Average forgetting ``F = mean_{j < T-1} (max_{l < T-1} R[l, j] - R[T-1, j])``: for each
    earlier task, the drop from its best accuracy before the end to its final accuracy.

    The max runs over the *measured* entries ``R[l, j]``, ``l < T-1`` (unmeasured ones are nan
    and ignored; when entries before task ``j`` was trained are not measured, this is the max
    over ``j <= l < T-1``). A column with no measured entry or a nan in the last row makes the
    result nan. ``T = 1``: ``nan``, as :func:`backward_transfer`. Reference: Chaudhry, Dokania,
    Ajanthan, Torr, "Riemannian Walk for Incremental Learning: Understanding Forgetting and
    Intransigence", ECCV 2018, Sec. 4 (forgetting measure f_j^k, averaged as F_k at k = T).
    """
    R = _as_matrix(R)
    t = R.shape[0]
    if t == 1:
        return float("nan")
    drops = []
    for j in range(t - 1):
        col = R[: t - 1, j]
        col = col[~np.isnan(col)]
        drops.append(col.max() - R[-1, j] if col.size else float("nan"))
    return float(np.mean(drops))


class AccuracyMatrix:
    """Accumulates the accuracy matrix of a task-incremental run, one entry at a time.

    ``record(after_task, task, acc)`` stores the accuracy on ``task`` measured after training on
    ``after_task`` (re-recording an entry overwrites it); ``.matrix`` is the ``T x T`` numpy
    array with nan where nothing was recorded; ``.summary()`` gives ACC, BWT and forgetting;
    ``.to_frame()`` the recorded entries as a tidy table. Why: one object for the training loop
    to fill and for the store to save (via the DataFrame). Reference: see
    :func:`average_accuracy`, :func:`backward_transfer`, :func:`forgetting`.
    """

    def __init__(self, n_tasks: int) -> None:
        if int(n_tasks) < 1:
            raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
        self.n_tasks = int(n_tasks)
        self._R = np.full((self.n_tasks, self.n_tasks), np.nan)

    def record(self, after_task: int, task: int, acc: float) -> None:
        """Store the accuracy on ``task`` after training on ``after_task`` (0-based indices)."""
        for name, v in (("after_task", after_task), ("task", task)):
            if not 0 <= int(v) < self.n_tasks:
                raise IndexError(f"{name}={v} out of range for {self.n_tasks} tasks")
        acc = float(acc)
        if math.isnan(acc):
            raise ValueError("acc is nan; leave the entry unrecorded instead")
        self._R[int(after_task), int(task)] = acc

    @property
    def matrix(self) -> np.ndarray:
        """A copy of the ``T x T`` accuracy matrix, nan where unrecorded."""
        return self._R.copy()

    def summary(self) -> dict:
        """``{"average_accuracy", "backward_transfer", "forgetting"}`` of the current matrix."""
        return {"average_accuracy": average_accuracy(self._R), "backward_transfer": backward_transfer(self._R),
                "forgetting": forgetting(self._R)}

    def to_frame(self) -> pd.DataFrame:
        """Recorded entries as a long DataFrame with columns ``after_task, task, acc`` (sorted)."""
        i, j = np.nonzero(~np.isnan(self._R))
        return pd.DataFrame({"after_task": i.astype(np.int64), "task": j.astype(np.int64), "acc": self._R[i, j]})

    def __repr__(self) -> str:
        return f"AccuracyMatrix(n_tasks={self.n_tasks}, recorded={int((~np.isnan(self._R)).sum())})"
