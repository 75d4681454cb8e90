import re

import pytest

from ser_core.corpora import CorpusError
from ser_core.corpora.savee import prepare_savee
from ser_core.records import Utterance

# The official per-speaker folders and the flat redistribution, side by side.
GOOD = {
    "AudioData/DC/a01.wav": ("DC", "a", "01", "angry"),
    "AudioData/JE/n30.wav": ("JE", "n", "30", "neutral"),
    "AudioData/KL/sa15.wav": ("KL", "sa", "15", "sad"),
    "AudioData/KL/KL_d02.wav": ("KL", "d", "02", "disgust"),
    "ALL/JK_su01.wav": ("JK", "su", "01", "surprised"),
    "ALL/JK_f07.wav": ("JK", "f", "07", "fearful"),
    "ALL/JE_h12.wav": ("JE", "h", "12", "happy"),
}
BAD = {
    "AudioData/DC/n31.wav": "sentence 31 is not 01-30 for emotion code 'n'",
    "AudioData/DC/a16.wav": "sentence 16 is not 01-15 for emotion code 'a'",
    "AudioData/XY/a01.wav": "no speaker in the name and folder 'XY' is not one of DC, JE, JK, KL",
    "AudioData/DC/JE_a02.wav": "speaker JE in the name but folder DC",
    "ALL/AB_a02.wav": "speaker AB is not one of DC, JE, JK, KL",
    "AudioData/DC/x01.wav": "emotion code 'x' is not one of a, d, f, h, n, sa, su",
    "AudioData/DC/a1.wav": "name is not EMOTION+NN (a01) in a speaker folder, or SPEAKER_EMOTION+NN (DC_a01)",
}


def test_lists_exactly_what_was_written(make_tree):
    root = make_tree(list(GOOD) + list(BAD))

    listing = prepare_savee(root)

    want = sorted(
        (Utterance(utterance_id=f"savee:{spk}_{code}{n}", corpus="savee", path=str(root / rel),
                   speaker=f"savee:{spk}", gender="male", emotion=emotion,
                   custom={"sentence": n, "raw_label": code})
         for rel, (spk, code, n, emotion) in GOOD.items()),
        key=lambda u: u.utterance_id,
    )
    assert listing.utterances == want
    assert {r.path: r.reason for r in listing.rejected} == {str(root / k): v for k, v in BAD.items()}


def test_strict_missing_root_empty_and_duplicates(make_tree, tmp_path):
    with pytest.raises(CorpusError, match="sentence 16"):
        prepare_savee(make_tree(["AudioData/DC/a01.wav", "AudioData/DC/a16.wav"], root="strict"), strict=True)
    with pytest.raises(CorpusError, match=re.escape(str(tmp_path / "nowhere"))):
        prepare_savee(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no utterances found"):
        prepare_savee(tmp_path / "empty")
    # The same clip in both layouts is one utterance listed twice.
    dup = make_tree(["AudioData/DC/a01.wav", "ALL/DC_a01.wav"], root="dup")
    with pytest.raises(CorpusError, match="duplicate utterance id 'savee:DC_a01'") as err:
        prepare_savee(dup)
    assert str(dup / "ALL" / "DC_a01.wav") in str(err.value)
