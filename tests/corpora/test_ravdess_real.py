"""The 144 real RAVDESS speech clips shipped beside the project (Zenodo record 1188976,
CC BY-NC-SA 4.0): all 24 actors, 18 clips per emotion; skipped where they are absent."""

from collections import Counter

from ser_core.corpora.ravdess import prepare_ravdess


def test_real_clips_list_completely(real_ravdess):
    listing = prepare_ravdess(real_ravdess, strict=True)

    utterances = listing.utterances
    assert len(utterances) == 144 and listing.rejected == []
    assert len({u.speaker for u in utterances}) == 24
    assert Counter(u.gender for u in utterances) == {"male": 72, "female": 72}
    assert Counter(u.emotion for u in utterances) == {
        e: 18 for e in ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    }
    assert {u.custom["vocal_channel"] for u in utterances} == {"speech"}
