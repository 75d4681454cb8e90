"""The canonical emotion set and every corpus's mapping onto it.

The eight RAVDESS names are the canonical core. Labels with no equivalent among them
(EmoDB's boredom) are kept as their own canonical labels, never folded into another.
An experiment chooses its label set; utterances outside it are dropped and counted
(:func:`select_labels`), never relabelled.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

RAVDESS_LABELS: tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised",
)
EXTRA_LABELS: tuple[str, ...] = ("boredom",)
# The four classes nearly every acted corpus records: transfer between corpora is also
# scored over these alone (ser transfer).
CORE_LABELS: tuple[str, ...] = ("neutral", "happy", "sad", "angry")
CANONICAL_LABELS: tuple[str, ...] = RAVDESS_LABELS + EXTRA_LABELS

# Raw corpus codes -> canonical labels. Pinned by tests/test_labels.py.
RAVDESS_EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}
CREMA_D_EMOTIONS = {
    "ANG": "angry", "DIS": "disgust", "FEA": "fearful",
    "HAP": "happy", "NEU": "neutral", "SAD": "sad",
}
TESS_EMOTIONS = {
    "angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy",
    "neutral": "neutral", "ps": "surprised", "sad": "sad",
}
SAVEE_EMOTIONS = {
    "a": "angry", "d": "disgust", "f": "fearful", "h": "happy",
    "n": "neutral", "sa": "sad", "su": "surprised",
}
EMODB_EMOTIONS = {
    "W": "angry", "L": "boredom", "E": "disgust", "A": "fearful",
    "F": "happy", "T": "sad", "N": "neutral",
}
# Free-form labels (user folders and CSVs) -> canonical. A label found neither here nor
# among the canonical names is kept as its own label (lower-cased), as boredom is.
LABEL_SYNONYMS = {
    "anger": "angry", "mad": "angry",
    "disgusted": "disgust",
    "fear": "fearful", "afraid": "fearful", "scared": "fearful",
    "happiness": "happy", "joy": "happy",
    "sadness": "sad",
    "surprise": "surprised", "ps": "surprised", "pleasant_surprise": "surprised",
    "pleasant_surprised": "surprised",
    "neu": "neutral", "bored": "boredom",
}

_LABEL_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def normalise_label(raw: str) -> str:
    """Map a free-form label onto the canonical set; unknown labels are kept as their own.

    Raises ValueError for labels that are not a plain word (``[a-z][a-z0-9_]*`` after
    lower-casing and replacing spaces/hyphens with underscores).
    """
    label = raw.strip().lower().replace("-", "_").replace(" ", "_")
    label = LABEL_SYNONYMS.get(label, label)
    if not _LABEL_RE.match(label):
        raise ValueError(f"not a usable emotion label: {raw!r}")
    return label


def select_labels(
    emotions: Iterable[str], labels: Sequence[str]
) -> tuple[list[int], Counter]:
    """Indices of emotions inside ``labels`` and a count of those dropped, by label."""
    wanted = set(labels)
    kept: list[int] = []
    dropped: Counter = Counter()
    for i, emotion in enumerate(emotions):
        if emotion in wanted:
            kept.append(i)
        else:
            dropped[emotion] += 1
    return kept, dropped
