import re

import pytest

from ser_core.corpora import CorpusError, prepare
from ser_core.corpora.ravdess import prepare_ravdess
from ser_core.records import Utterance

GOOD = [
    "Actor_01/03-01-05-02-01-01-01.wav",  # speech, angry, strong, male
    "Actor_02/03-01-01-01-02-02-02.wav",  # speech, neutral, female
    "Actor_02/03-02-03-01-01-02-02.wav",  # song, happy
]
BAD = {
    "Actor_01/02-01-05-01-01-01-01.wav": "modality 02 is not 03 (audio-only)",
    "Actor_01/03-01-01-02-01-01-01.wav": "neutral has no strong intensity",
    "Actor_01/03-03-05-01-01-01-01.wav": "vocal channel 03 is not 01 (speech) or 02 (song)",
    "Actor_01/03-01-09-01-01-01-01.wav": "emotion code 09 is not 01-08",
    "Actor_01/03-02-07-01-01-01-01.wav": "emotion disgust does not exist in song",
    "Actor_18/03-02-01-01-01-01-18.wav": "actor 18 recorded no song",
    "Actor_25/03-01-01-01-01-01-25.wav": "actor 25 is not 01-24",
    "Actor_03/03-01-05-01-01-01-04.wav": "actor 04 in the name but folder Actor_03",
    "Actor_01/03-01-05-01-01.wav": "name is not seven two-digit fields MM-VV-EE-II-SS-RR-AA",
}


def expected(root, rel, speaker, gender, emotion, channel, intensity, statement, repetition, code):
    return Utterance(
        utterance_id=f"ravdess:{rel.split('/')[1][:-4]}", corpus="ravdess", path=str(root / rel),
        speaker=f"ravdess:{speaker}", gender=gender, emotion=emotion,
        custom={"vocal_channel": channel, "intensity": intensity, "statement": statement,
                "repetition": repetition, "raw_label": code},
    )


def test_lists_exactly_what_was_written(make_tree):
    root = make_tree(GOOD + list(BAD))
    (root / "Actor_01" / "notes.txt").write_text("not audio")
    (root / "Actor_01" / ".03-01-05-01-01-01-01.wav").write_bytes(b"hidden")

    listing = prepare_ravdess(root)

    assert listing.corpus == "ravdess" and listing.root == str(root)
    assert listing.utterances == [  # sorted by utterance id
        expected(root, GOOD[1], "02", "female", "neutral", "speech", "normal", "02", "02", "01"),
        expected(root, GOOD[0], "01", "male", "angry", "speech", "strong", "01", "01", "05"),
        expected(root, GOOD[2], "02", "female", "happy", "song", "normal", "01", "02", "03"),
    ]
    assert {r.path: r.reason for r in listing.rejected} == {str(root / k): v for k, v in BAD.items()}


def test_channels_option_filters_without_rejecting(make_tree):
    root = make_tree(GOOD)
    listing = prepare("ravdess", str(root), channels=("speech",))
    assert [u.custom["vocal_channel"] for u in listing.utterances] == ["speech", "speech"]
    assert listing.rejected == []
    with pytest.raises(ValueError, match="unknown channels"):
        prepare_ravdess(root, channels=("opera",))


def test_intensities_option_filters_without_rejecting(make_tree):
    root = make_tree(GOOD)
    listing = prepare("ravdess", str(root), intensities=("normal",))
    assert [u.custom["intensity"] for u in listing.utterances] == ["normal", "normal"]
    assert listing.rejected == []
    assert [u.custom["intensity"] for u in prepare("ravdess", str(root), intensities=["strong"]).utterances] == ["strong"]
    for bad in (("loud",), ()):
        with pytest.raises(ValueError, match="unknown intensities"):
            prepare_ravdess(root, intensities=bad)


def test_strict_mode_fails_on_any_rejected_name(make_tree):
    root = make_tree(GOOD + ["Actor_01/03-01-01-02-01-01-01.wav"])
    with pytest.raises(CorpusError, match="neutral has no strong intensity"):
        prepare_ravdess(root, strict=True)


def test_missing_root_empty_corpus_and_duplicates(tmp_path, make_tree):
    with pytest.raises(CorpusError, match=re.escape(str(tmp_path / "nowhere"))):
        prepare_ravdess(tmp_path / "nowhere")
    (tmp_path / "file.wav").write_bytes(b"")
    with pytest.raises(CorpusError, match="corpus root is not a directory"):
        prepare_ravdess(tmp_path / "file.wav")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match=re.escape(f"no utterances found under {tmp_path / 'empty'}")):
        prepare_ravdess(tmp_path / "empty")
    root = make_tree([GOOD[0], "copy/" + GOOD[0]])
    with pytest.raises(CorpusError, match="duplicate utterance id 'ravdess:03-01-05-02-01-01-01'") as err:
        prepare_ravdess(root)
    assert str(root / GOOD[0]) in str(err.value) and str(root / "copy" / GOOD[0]) in str(err.value)
