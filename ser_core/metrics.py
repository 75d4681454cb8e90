"""Classification measures shared by training (checkpoint choice), ``ser evaluate`` and
``ser score``, and the naming of class-probability columns.

UAR (unweighted average recall: the mean over classes of each class's recall) is the
paper's measure; it averages over the classes present among the true labels.
"""

from __future__ import annotations

import numpy as np

# Class-probability columns of predictions.csv and of the segments shards: prob_<label>.
PROB_PREFIX = "prob_"


def recall_per_class(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Recall of each class (NaN for a class absent from ``y``)."""
    support = np.bincount(y, minlength=n_classes)
    hits = np.bincount(y[y == pred], minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, hits / np.maximum(support, 1), np.nan)


def uar(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Unweighted average recall over the classes present in ``y``."""
    return float(np.nanmean(recall_per_class(y, pred, n_classes))) if len(y) else float("nan")


def argmax_within(probs: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """(N,) the most probable class of each row among the ``allowed`` ones ((C,) bool): a
    prediction restricted to the classes a corpus has."""
    return np.where(allowed, probs, -np.inf).argmax(axis=1)


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (actual, predicted)."""
    return np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE (Guo et al. 2017): over ``n_bins`` equal-width confidence bins, the
    sample-weighted mean |accuracy - mean confidence| of the top-1 predictions."""
    if len(y) == 0:
        return float("nan")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            total += m.sum() * abs(correct[m].mean() - confidence[m].mean())
    return float(total / len(y))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / T)`` from probabilities (log p differs from the logits by a
    per-row constant, which softmax ignores)."""
    return softmax(np.log(np.maximum(probs, 1e-12)) / temperature)


def fit_temperature(logits: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T minimising the negative log-likelihood of ``softmax(logits / T)``
    (temperature scaling, Guo et al. 2017): a golden-section search over log T, which the
    NLL is unimodal in. Fit it on validation speakers only."""
    if len(y) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))

    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))
