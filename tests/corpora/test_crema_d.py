import re

import pytest

from ser_core.corpora import CorpusError
from ser_core.corpora.crema_d import prepare_crema_d
from ser_core.records import Utterance

GOOD = [
    "AudioWAV/1001_DFA_ANG_XX.wav",
    "AudioWAV/1002_IEO_HAP_HI.wav",
    "AudioWAV/1091_WSI_NEU_XX.wav",
]
BAD = {
    "AudioWAV/1000_DFA_ANG_XX.wav": "actor 1000 is not 1001-1091",
    "AudioWAV/1001_ABC_ANG_XX.wav":
        "sentence code ABC is not one of IEO, TIE, IOM, IWW, TAI, MTI, IWL, ITH, DFA, ITS, TSI, WSI",
    "AudioWAV/1001_DFA_JOY_XX.wav": "emotion code JOY is not one of ANG, DIS, FEA, HAP, NEU, SAD",
    "AudioWAV/1001_DFA_ANG_ZZ.wav": "level ZZ is not one of LO, MD, HI, XX",
    "AudioWAV/1001-DFA-ANG-XX.wav": "name is not ACTOR_SENTENCE_EMOTION_LEVEL (e.g. 1001_DFA_ANG_XX)",
}
DEMOGRAPHICS = (
    "ActorID,Age,Sex,Race,Ethnicity\n"
    "1001,51,Male,Caucasian,Not Hispanic\n"
    "1002,21,Female,Caucasian,Not Hispanic\n"
)


def expected(root, rel, actor, gender, emotion, sentence, level, code):
    return Utterance(
        utterance_id=f"crema_d:{rel[9:-4]}", corpus="crema_d", path=str(root / rel),
        speaker=f"crema_d:{actor}", gender=gender, emotion=emotion,
        custom={"sentence": sentence, "level": level, "raw_label": code},
    )


def test_lists_exactly_what_was_written_with_demographics(make_tree):
    root = make_tree(GOOD + list(BAD))
    (root / "VideoDemographics.csv").write_text(DEMOGRAPHICS)
    (root / "AudioMP3").mkdir()
    (root / "AudioMP3" / "1001_DFA_ANG_XX.mp3").write_bytes(b"ID3")  # the repository's MP3 copies

    listing = prepare_crema_d(root)

    assert listing.utterances == [
        expected(root, GOOD[0], "1001", "male", "angry", "DFA", "XX", "ANG"),
        expected(root, GOOD[1], "1002", "female", "happy", "IEO", "HI", "HAP"),
        expected(root, GOOD[2], "1091", "unknown", "neutral", "WSI", "XX", "NEU"),  # not in the CSV
    ]
    assert {r.path: r.reason for r in listing.rejected} == {str(root / k): v for k, v in BAD.items()}


def test_gender_is_unknown_without_demographics_and_option_points_elsewhere(make_tree, tmp_path):
    root = make_tree(GOOD)
    assert {u.gender for u in prepare_crema_d(root).utterances} == {"unknown"}

    elsewhere = tmp_path / "meta.csv"
    elsewhere.write_text(DEMOGRAPHICS)
    genders = [u.gender for u in prepare_crema_d(root, demographics=elsewhere).utterances]
    assert genders == ["male", "female", "unknown"]
    with pytest.raises(CorpusError, match="demographics file not found"):
        prepare_crema_d(root, demographics=tmp_path / "missing.csv")


@pytest.mark.parametrize("text, message", [
    ("ActorID,Age,Race\n1001,51,Asian\n", "missing sex"),
    ("ActorID,Age,Sex\n1001,51,Robot\n", "line 2: gender 'Robot' is not male, female or unknown"),
    ("ActorID,Age,Sex\n1001,51,Male\n999,40,Female\n", "line 3: ActorID '999' is not 1001-1091"),
])
def test_bad_demographics_stop_the_listing(make_tree, text, message):
    root = make_tree(GOOD)
    (root / "VideoDemographics.csv").write_text(text)
    with pytest.raises(CorpusError, match=message):
        prepare_crema_d(root)


def test_strict_missing_root_empty_and_duplicates(make_tree, tmp_path):
    with pytest.raises(CorpusError, match="level ZZ"):
        prepare_crema_d(make_tree(GOOD + ["AudioWAV/1001_DFA_ANG_ZZ.wav"], root="strict"), strict=True)
    with pytest.raises(CorpusError, match=re.escape(str(tmp_path / "nowhere"))):
        prepare_crema_d(tmp_path / "nowhere")
    empty = make_tree(["AudioWAV/readme.wav"], root="empty")
    with pytest.raises(CorpusError, match=re.escape(f"no utterances found under {empty} (1 file")):
        prepare_crema_d(empty)
    dup = make_tree([GOOD[0], "copy/" + GOOD[0]], root="dup")
    with pytest.raises(CorpusError, match="duplicate utterance id 'crema_d:1001_DFA_ANG_XX'") as err:
        prepare_crema_d(dup)
    assert str(dup / "copy" / GOOD[0]) in str(err.value)
