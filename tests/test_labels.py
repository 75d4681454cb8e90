"""Pins every label mapping: changing one changes what experiments train on."""

from collections import Counter

import pytest

from ser_core import labels


def test_canonical_set():
    assert labels.RAVDESS_LABELS == (
        "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    assert labels.EXTRA_LABELS == ("boredom",)
    assert labels.CANONICAL_LABELS == labels.RAVDESS_LABELS + ("boredom",)


def test_corpus_mappings_are_pinned():
    assert labels.RAVDESS_EMOTIONS == {
        "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
        "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
    }
    assert labels.CREMA_D_EMOTIONS == {
        "ANG": "angry", "DIS": "disgust", "FEA": "fearful",
        "HAP": "happy", "NEU": "neutral", "SAD": "sad",
    }
    assert labels.TESS_EMOTIONS == {
        "angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy",
        "neutral": "neutral", "ps": "surprised", "sad": "sad",
    }
    assert labels.SAVEE_EMOTIONS == {
        "a": "angry", "d": "disgust", "f": "fearful", "h": "happy",
        "n": "neutral", "sa": "sad", "su": "surprised",
    }
    assert labels.EMODB_EMOTIONS == {
        "W": "angry", "L": "boredom", "E": "disgust", "A": "fearful",
        "F": "happy", "T": "sad", "N": "neutral",
    }
    assert labels.LABEL_SYNONYMS == {
        "anger": "angry", "mad": "angry",
        "disgusted": "disgust",
        "fear": "fearful", "afraid": "fearful", "scared": "fearful",
        "happiness": "happy", "joy": "happy",
        "sadness": "sad",
        "surprise": "surprised", "ps": "surprised", "pleasant_surprise": "surprised",
        "pleasant_surprised": "surprised",
        "neu": "neutral", "bored": "boredom",
    }


def test_every_mapping_lands_in_the_canonical_set():
    for mapping in (labels.RAVDESS_EMOTIONS, labels.CREMA_D_EMOTIONS, labels.TESS_EMOTIONS,
                    labels.SAVEE_EMOTIONS, labels.EMODB_EMOTIONS, labels.LABEL_SYNONYMS):
        assert set(mapping.values()) <= set(labels.CANONICAL_LABELS)


@pytest.mark.parametrize("raw, label", [
    ("happy", "happy"), ("  Happy ", "happy"), ("ANGER", "angry"), ("Pleasant surprise", "surprised"),
    ("pleasant-surprised", "surprised"), ("Fear", "fearful"), ("bored", "boredom"),
    ("contempt", "contempt"), ("very_happy2", "very_happy2"),
])
def test_normalise_label(raw, label):
    assert labels.normalise_label(raw) == label


@pytest.mark.parametrize("raw", ["", "   ", "bad!label", "2happy", "happy/sad", "é"])
def test_normalise_label_refuses_non_words(raw):
    with pytest.raises(ValueError, match="not a usable emotion label"):
        labels.normalise_label(raw)


def test_select_labels_keeps_indices_and_counts_every_drop():
    emotions = ["happy", "calm", "sad", "boredom", "calm", "happy", "surprised"]
    kept, dropped = labels.select_labels(emotions, ["happy", "sad"])
    assert kept == [0, 2, 5]
    assert dropped == Counter({"calm": 2, "boredom": 1, "surprised": 1})
    assert len(kept) + sum(dropped.values()) == len(emotions)
    assert labels.select_labels([], ["happy"]) == ([], Counter())
