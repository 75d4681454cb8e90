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


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (actual, predicted)."""
    return np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
