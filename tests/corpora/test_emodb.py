import re

import pytest

from ser_core.corpora import CorpusError
from ser_core.corpora.emodb import prepare_emodb
from ser_core.records import Utterance

GOOD = {
    "wav/03a01Fa.wav": ("03", "male", "a01", "happy", "F", "a"),
    "wav/08b10Lc.wav": ("08", "female", "b10", "boredom", "L", "c"),
    "wav/10a05Wa.wav": ("10", "male", "a05", "angry", "W", "a"),
    "wav/16a07Tb.wav": ("16", "female", "a07", "sad", "T", "b"),
    "wav/13b03Ed.wav": ("13", "female", "b03", "disgust", "E", "d"),
    "wav/15b09Aa.wav": ("15", "male", "b09", "fearful", "A", "a"),
    "wav/09a02Nb.wav": ("09", "female", "a02", "neutral", "N", "b"),
}
BAD = {
    "wav/04a01Fa.wav": "speaker 04 is not one of 03 08 09 10 11 12 13 14 15 16",
    "wav/03a03Fa.wav": "text code a03 is not one of a01 a02 a04 a05 a07 b01 b02 b03 b09 b10",
    "wav/03a01Xa.wav": "emotion letter X is not one of W L E A F T N",
    "wav/3a01Fa.wav": "name is not SPEAKER(2 digits) TEXT(a01) EMOTION(letter) VERSION(letter)",
}


def test_lists_exactly_what_was_written(make_tree):
    root = make_tree(list(GOOD) + list(BAD))
    (root / "silb").mkdir()
    (root / "silb" / "03a01Fa.silb").write_text("annotation, not audio")

    listing = prepare_emodb(root)

    want = sorted(
        (Utterance(utterance_id=f"emodb:{rel[4:-4]}", corpus="emodb", path=str(root / rel),
                   speaker=f"emodb:{spk}", gender=gender, emotion=emotion,
                   custom={"text": text, "version": version, "raw_label": code})
         for rel, (spk, gender, text, emotion, code, version) in GOOD.items()),
        key=lambda u: u.utterance_id,
    )
    assert listing.utterances == want
    assert {r.path: r.reason for r in listing.rejected} == {str(root / k): v for k, v in BAD.items()}


def test_every_speaker_has_the_documented_gender(make_tree):
    speakers = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
    root = make_tree([f"wav/{s}a01Na.wav" for s in speakers])
    genders = {u.speaker: u.gender for u in prepare_emodb(root).utterances}
    assert sorted(s for s, g in genders.items() if g == "male") == [
        "emodb:03", "emodb:10", "emodb:11", "emodb:12", "emodb:15"]
    assert len(genders) == 10


def test_strict_missing_root_empty_and_duplicates(make_tree, tmp_path):
    with pytest.raises(CorpusError, match="speaker 04"):
        prepare_emodb(make_tree(["wav/03a01Fa.wav", "wav/04a01Fa.wav"], root="strict"), strict=True)
    with pytest.raises(CorpusError, match=re.escape(str(tmp_path / "nowhere"))):
        prepare_emodb(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no utterances found"):
        prepare_emodb(tmp_path / "empty")
    dup = make_tree(["wav/03a01Fa.wav", "backup/03a01Fa.wav"], root="dup")
    with pytest.raises(CorpusError, match="duplicate utterance id 'emodb:03a01Fa'") as err:
        prepare_emodb(dup)
    assert str(dup / "backup" / "03a01Fa.wav") in str(err.value)
