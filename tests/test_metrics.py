"""lib.metrics: cross-checks against scikit-learn / scipy and hand-computed examples."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lib import metrics as M

C = 7  # class 6 occurs nowhere; 3 only in predictions; 4 only in labels


def _random_case(seed: int, n: int = 300):
    rng = np.random.default_rng(seed)
    y = rng.choice([0, 1, 2, 4, 5], size=n)
    pred = np.where(rng.random(n) < 0.6, y, rng.choice([0, 1, 2, 3, 5], size=n))
    pred[pred == 4] = 5  # never predicted
    return pred, y


def _logits(labels: np.ndarray, width: int = C, seed: int = 0) -> torch.Tensor:
    """Random logits whose argmax is ``labels``."""
    z = torch.randn(len(labels), width, generator=torch.Generator().manual_seed(seed))
    z[torch.arange(len(labels)), torch.as_tensor(labels)] += 10.0
    return z


# ---------------------------------------------------------------- classification vs sklearn
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn(seed):
    skm = pytest.importorskip("sklearn.metrics")
    pred, y = _random_case(seed)
    labels = list(range(C))

    assert M.accuracy(pred, y) == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)

    cm = M.confusion_matrix(pred, y, num_classes=C)
    assert cm.dtype == torch.int64 and cm.shape == (C, C)
    np.testing.assert_array_equal(cm.numpy(), skm.confusion_matrix(y, pred, labels=labels))

    table = M.per_class(pred, y, num_classes=C)
    assert list(table.columns) == ["class", "support", "precision", "recall", "f1"]
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    np.testing.assert_array_equal(table["class"].to_numpy(), np.arange(C))
    np.testing.assert_array_equal(table["support"].to_numpy(), s)
    np.testing.assert_allclose(table["precision"].to_numpy(), p, atol=1e-12)
    np.testing.assert_allclose(table["recall"].to_numpy(), r, atol=1e-12)
    np.testing.assert_allclose(table["f1"].to_numpy(), f, atol=1e-12)
    # the classes missing on one side have the zero_division=0 entries
    assert table.loc[3, "recall"] == 0 and table.loc[4, "precision"] == 0 and table.loc[6, "f1"] == 0

    expected = skm.f1_score(y, pred, average="macro", zero_division=0)
    assert M.macro_f1(pred, y) == pytest.approx(expected, abs=1e-12)
    # num_classes (adding the absent class 6) must not change the macro average
    assert M.macro_f1(pred, y, num_classes=C) == pytest.approx(expected, abs=1e-12)


def test_inputs_interchangeable():
    pred, y = _random_case(5)
    z = _logits(pred)
    ref = M.accuracy(pred, y)
    for p_in, y_in in [(torch.as_tensor(pred), torch.as_tensor(y)), (z, y), (z.numpy(), y),
                       (list(pred), list(y)), (z.double(), torch.as_tensor(y, dtype=torch.int32))]:
        assert M.accuracy(p_in, y_in) == ref
        assert torch.equal(M.confusion_matrix(p_in, y_in, C), M.confusion_matrix(pred, y, C))
    # logits fix the number of classes when none is given (class 6 never occurs)
    assert M.confusion_matrix(z, y).shape == (C, C)
    assert M.confusion_matrix(pred, y).shape == (6, 6)
    pd.testing.assert_frame_equal(M.per_class(z, y), M.per_class(pred, y, num_classes=C))


def test_edge_cases_and_errors():
    assert math.isnan(M.accuracy([], []))
    assert math.isnan(M.macro_f1(np.array([], dtype=int), np.array([], dtype=int)))
    assert M.confusion_matrix(np.array([], dtype=int), np.array([], dtype=int), num_classes=3).sum() == 0
    assert M.accuracy([1, 1, 0, 2], [1, 0, 0, 2]) == 0.75
    with pytest.raises(ValueError):
        M.accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError):
        M.confusion_matrix([0, -1], [0, 1])
    with pytest.raises(ValueError):
        M.confusion_matrix([0, 3], [0, 1], num_classes=3)
    with pytest.raises(ValueError):
        M.accuracy(torch.zeros(2, 3, 4), [0, 1])


# ---------------------------------------------------------------- attack success rate
def test_attack_success_rate_hand_made():
    y = np.array([0, 1, 2, 3, 4])
    clean = np.array([0, 1, 2, 0, 0])  # right on 0, 1, 2
    adv = np.array([1, 1, 0, 3, 4])    # of those, wrong on 0 and 2; 3, 4 turn right (not counted)
    assert M.attack_success_rate(clean, adv, y) == pytest.approx(2 / 3)
    assert M.attack_success_rate(_logits(clean, 5), _logits(adv, 5, seed=1), torch.as_tensor(y)) == pytest.approx(2 / 3)
    assert M.attack_success_rate(clean, clean, y) == 0.0
    assert math.isnan(M.attack_success_rate(np.array([1, 0, 0, 0, 0]), adv, y))  # nothing clean-correct
    with pytest.raises(ValueError):
        M.attack_success_rate(clean, adv[:4], y)


def _asr_reference(clean_pred, adv_pred, y):
    """Verbatim copy of the former ``lib.attacks.attack_success_rate`` (and ``_labels``), the
    semantics lib.metrics took over; frozen here because lib.attacks now re-exports ours."""
    def _labels(pred):
        pred = torch.as_tensor(pred)
        return (pred.argmax(1) if pred.dim() == 2 else pred).detach().cpu().long()

    clean, adv, y = _labels(clean_pred), _labels(adv_pred), torch.as_tensor(y).cpu().long()
    right = clean == y
    if not right.any():
        return float("nan")
    return ((adv != y) & right).sum().item() / right.sum().item()


def test_attack_success_rate_matches_former_attacks_version():
    rng = np.random.default_rng(3)
    y = torch.as_tensor(rng.integers(0, 10, 200))
    for s in range(3):
        clean = torch.randn(200, 10, generator=torch.Generator().manual_seed(s))
        adv = torch.randn(200, 10, generator=torch.Generator().manual_seed(s + 10))
        clean[:120] = _logits(y[:120].numpy(), 10, seed=s)
        assert M.attack_success_rate(clean, adv, y) == _asr_reference(clean, adv, y)
        assert M.attack_success_rate(clean.argmax(1).numpy(), adv, y.numpy()) == _asr_reference(clean, adv, y)


# ---------------------------------------------------------------- Wilson interval
def test_wilson_hand_computed():
    # z = 1.959964; center = (8 + z^2/2) / (10 + z^2) = 0.71675;
    # half = z / (10 + z^2) * sqrt(8 * 2 / 10 + z^2 / 4) = 0.22658
    low, high = M.binomial_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)


@pytest.mark.parametrize("k,n,level", [(8, 10, 0.95), (0, 7, 0.95), (7, 7, 0.9), (3, 50, 0.99), (491, 1000, 0.95)])
def test_wilson_against_scipy(k, n, level):
    stats = pytest.importorskip("scipy.stats")
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    assert M.binomial_interval(k, n, level) == pytest.approx((ref.low, ref.high), abs=1e-9)


@pytest.mark.parametrize("n", [1, 2, 10, 1000])
def test_wilson_bounds(n):
    for k in range(0, n + 1, max(1, n // 10)):
        low, high = M.binomial_interval(k, n)
        assert 0.0 <= low <= k / n <= high <= 1.0
    low0, high0 = M.binomial_interval(0, n)
    lown, highn = M.binomial_interval(n, n)
    assert low0 == 0.0 and 0 < high0 < 1 and highn == 1.0 and 0 < lown < 1
    assert M.binomial_interval(n // 2, n, 0.99)[1] - M.binomial_interval(n // 2, n, 0.99)[0] > \
        M.binomial_interval(n // 2, n, 0.9)[1] - M.binomial_interval(n // 2, n, 0.9)[0]


def test_wilson_invalid():
    assert all(math.isnan(v) for v in M.binomial_interval(0, 0))
    for args in [(3, 2), (-1, 5), (1, 5, 1.0), (1, 5, 0.0)]:
        with pytest.raises(ValueError):
            M.binomial_interval(*args)


@pytest.mark.parametrize("p,n", [(0.8, 10), (0.0, 7), (1.0, 7), (3 / 50, 50), (0.491, 1000.0), (0.1176, 255),
                                 (np.float64(2 / 3), np.int64(300))])
def test_rate_interval_is_the_wilson_interval_of_the_rounded_count(p, n):
    assert M.rate_interval(p, n) == M.binomial_interval(round(p * n), n)
    assert M.rate_interval(p, n, 0.9) == M.binomial_interval(round(p * n), n, 0.9)


def test_rate_interval_of_no_items_or_an_undefined_rate_is_nan():
    # a student with no test image right has a nan success rate over 0 clean-correct images
    for p, n in [(NAN, 0), (0.5, 0), (NAN, 20), (0.5, NAN), (np.float64("nan"), np.int64(0))]:
        assert all(math.isnan(v) for v in M.rate_interval(p, n))
    with pytest.raises(ValueError):
        M.rate_interval(1.5, 10)  # 15 of 10: not a rate


def test_difference_interval_hand_computed():
    # Newcombe (1998), Table II, example (a): 56/70 - 48/80 = 0.2. Wilson 95%: [l1, u1] =
    # [0.69183, 0.87695] for 0.8, [l2, u2] = [0.49045, 0.70038] for 0.6;
    # low  = 0.2 - sqrt((0.8 - 0.69183)^2 + (0.70038 - 0.6)^2) = 0.2 - sqrt(0.021777) = 0.0524,
    # high = 0.2 + sqrt((0.87695 - 0.8)^2 + (0.6 - 0.49045)^2) = 0.2 + sqrt(0.017923) = 0.3339
    d, low, high = M.difference_interval(56 / 70, 70, 48 / 80, 80)
    assert d == pytest.approx(0.2) and (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    # the paper's examples (d) 5/56 - 0/29 and (f) 10/10 - 0/20 (method 10)
    assert [round(v, 4) for v in M.difference_interval(5 / 56, 56, 0 / 29, 29)[1:]] == [-0.0381, 0.1926]
    assert [round(v, 4) for v in M.difference_interval(1.0, 10, 0.0, 20)[1:]] == [0.6791, 1.0]
    # swapping the rates mirrors the interval; a rate without items gives no interval
    d2, low2, high2 = M.difference_interval(48 / 80, 80, 56 / 70, 70)
    assert (d2, low2, high2) == pytest.approx((-d, -high, -low))
    assert all(math.isnan(v) for v in M.difference_interval(0.5, 10, NAN, 0)[1:])


def test_accuracy_with_interval():
    y = np.arange(10) % 3
    pred = y.copy()
    pred[:2] = (pred[:2] + 1) % 3  # 8 of 10 right
    out = M.accuracy_with_interval(_logits(pred, 3), y)
    assert set(out) == {"acc", "low", "high", "n"}
    assert out["acc"] == 0.8 and out["n"] == 10
    assert (out["low"], out["high"]) == M.binomial_interval(8, 10)


# ---------------------------------------------------------------- continual learning
NAN = float("nan")
R3 = np.array([[0.8, NAN, NAN],
               [0.9, 0.7, NAN],
               [0.5, 0.6, 0.9]])
# ACC = (0.5 + 0.6 + 0.9) / 3; BWT = ((0.5 - 0.8) + (0.6 - 0.7)) / 2 = -0.2;
# forgetting = ((max(0.8, 0.9) - 0.5) + (0.7 - 0.6)) / 2 = (0.4 + 0.1) / 2 = 0.25 (not -BWT:
# task 0 peaked after task 1)


def test_continual_hand_made():
    assert M.average_accuracy(R3) == pytest.approx(2.0 / 3)
    assert M.backward_transfer(R3) == pytest.approx(-0.2)
    assert M.forgetting(R3) == pytest.approx(0.25)
    assert M.forgetting(torch.as_tensor(R3)) == pytest.approx(0.25)


def test_continual_perfect_memory():
    a = np.array([0.9, 0.8, 0.7, 0.95])
    R = np.tril(np.tile(a, (4, 1)))
    R[np.triu_indices(4, 1)] = NAN
    assert M.backward_transfer(R) == 0.0 and M.forgetting(R) == 0.0
    assert M.average_accuracy(R) == pytest.approx(a.mean())


def test_continual_single_task_and_errors():
    assert M.average_accuracy([[0.7]]) == 0.7
    assert math.isnan(M.backward_transfer([[0.7]])) and math.isnan(M.forgetting([[0.7]]))
    for bad in [np.zeros((2, 3)), np.zeros(3), np.zeros((0, 0))]:
        with pytest.raises(ValueError):
            M.average_accuracy(bad)
    incomplete = R3.copy()
    incomplete[2, 1] = NAN
    assert math.isnan(M.average_accuracy(incomplete))


def test_accuracy_matrix():
    am = M.AccuracyMatrix(3)
    assert np.isnan(am.matrix).all()
    for i in range(3):
        for j in range(i + 1):
            am.record(i, j, R3[i, j])
    np.testing.assert_array_equal(am.matrix, R3)
    am.matrix[0, 0] = 0.0  # a copy
    assert am.matrix[0, 0] == 0.8
    s = am.summary()
    assert s == pytest.approx({"average_accuracy": 2.0 / 3, "backward_transfer": -0.2, "forgetting": 0.25})
    frame = am.to_frame()
    assert list(frame.columns) == ["after_task", "task", "acc"] and len(frame) == 6
    assert frame.loc[(frame.after_task == 1) & (frame.task == 0), "acc"].item() == 0.9
    assert M.forgetting(am) == pytest.approx(0.25)
    with pytest.raises(IndexError):
        am.record(3, 0, 0.5)
    with pytest.raises(ValueError):
        am.record(0, 0, NAN)
    one = M.AccuracyMatrix(1)
    one.record(0, 0, torch.tensor(0.6))
    assert one.summary()["average_accuracy"] == pytest.approx(0.6) and math.isnan(one.summary()["forgetting"])


# ----------------------------------------------------------------------------- intervals
def test_seed_interval_on_a_known_case():
    from lib.metrics import seed_interval

    r = seed_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.302653
    assert r["mean"] == 2.0 and r["sd"] == 1.0 and r["n"] == 3
    assert r["high"] - 2.0 == pytest.approx(4.302653 / 3 ** 0.5, abs=1e-6)
    assert r["low"] == pytest.approx(4.0 - r["high"])
    one = seed_interval([0.7])
    assert one["mean"] == 0.7 and math.isnan(one["low"])  # one seed says nothing about the spread


def test_bootstrap_interval_matches_the_binomial_on_correctness_vectors():
    from lib.metrics import binomial_interval, bootstrap_interval

    x = np.r_[np.ones(60), np.zeros(40)]
    low, high = bootstrap_interval(x)
    w_low, w_high = binomial_interval(60, 100)
    assert low < 0.6 < high and abs(low - w_low) < 0.03 and abs(high - w_high) < 0.03
    assert bootstrap_interval(np.ones(5)) == (1.0, 1.0)
    assert bootstrap_interval(x, seed=3) == bootstrap_interval(x, seed=3)
