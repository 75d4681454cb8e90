import re

import pytest

from ser_core.corpora import CorpusError
from ser_core.corpora.tess import prepare_tess
from ser_core.records import Utterance

# The released folder names, inconsistent case and spelling included.
GOOD = {
    "OAF_angry/OAF_back_angry.wav": ("OAF", "back", "angry", "angry"),
    "OAF_Fear/OAF_bar_fear.wav": ("OAF", "bar", "fearful", "fear"),
    "OAF_Pleasant_surprise/OAF_dog_ps.wav": ("OAF", "dog", "surprised", "ps"),
    "OAF_Sad/OAF_youth_sad.wav": ("OAF", "youth", "sad", "sad"),
    "YAF_pleasant_surprised/YAF_dog_ps.wav": ("YAF", "dog", "surprised", "ps"),
    "YAF_disgust/YAF_bean_disgust.wav": ("YAF", "bean", "disgust", "disgust"),
    "YAF_neutral/YAF_chain_neutral.wav": ("YAF", "chain", "neutral", "neutral"),
    "YAF_happy/YAF_chalk_happy.wav": ("YAF", "chalk", "happy", "happy"),
    "loose/YAF_ditch_Fear.wav": ("YAF", "ditch", "fearful", "Fear"),  # no SPK_emotion folder
}
BAD = {
    "OAF_angry/OAF_base_happy.wav": "emotion 'happy' in the name but folder OAF_angry",
    "YAF_sad/OAF_bath_sad.wav": "speaker OAF in the name but folder YAF_sad",
    "OAF_happy/OAF_cab_joy.wav": "emotion 'joy' is not one of angry, disgust, fear, happy, neutral, ps, sad",
    "OAF_happy/XAF_cab_happy.wav": "name is not SPEAKER_WORD_EMOTION with speaker OAF or YAF",
}


def test_lists_exactly_what_was_written(make_tree):
    root = make_tree(list(GOOD) + list(BAD))

    listing = prepare_tess(root)

    want = sorted(
        (Utterance(utterance_id=f"tess:{rel.split('/')[1][:-4]}", corpus="tess", path=str(root / rel),
                   speaker=f"tess:{spk}", gender="female", emotion=emotion,
                   custom={"word": word, "raw_label": code})
         for rel, (spk, word, emotion, code) in GOOD.items()),
        key=lambda u: u.utterance_id,
    )
    assert listing.utterances == want
    assert {r.path: r.reason for r in listing.rejected} == {str(root / k): v for k, v in BAD.items()}


def test_strict_missing_root_empty_and_duplicates(make_tree, tmp_path):
    with pytest.raises(CorpusError, match="folder OAF_angry"):
        prepare_tess(make_tree(["OAF_angry/OAF_base_happy.wav"], root="strict"), strict=True)
    with pytest.raises(CorpusError, match=re.escape(str(tmp_path / "nowhere"))):
        prepare_tess(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no utterances found"):
        prepare_tess(tmp_path / "empty")
    # Kaggle's copy nests the whole tree twice: both copies are named in the error.
    rel = "OAF_angry/OAF_back_angry.wav"
    dup = make_tree([f"TESS data/{rel}", f"tess data/TESS data/{rel}"], root="dup")
    with pytest.raises(CorpusError, match="duplicate utterance id 'tess:OAF_back_angry'") as err:
        prepare_tess(dup)
    assert str(dup / "TESS data" / rel) in str(err.value)
    assert str(dup / "tess data" / "TESS data" / rel) in str(err.value)


# The release's 14 folders as named in it; 200 words each (made-up words here, plus the
# real quirk): OAF_neutral holds OA_bite_neutral.wav, its speaker cut short.
RELEASED_FOLDERS = {
    "OAF_angry": "angry", "OAF_disgust": "disgust", "OAF_Fear": "fear", "OAF_happy": "happy",
    "OAF_neutral": "neutral", "OAF_Pleasant_surprise": "ps", "OAF_Sad": "sad",
    "YAF_angry": "angry", "YAF_disgust": "disgust", "YAF_fear": "fear", "YAF_happy": "happy",
    "YAF_neutral": "neutral", "YAF_pleasant_surprised": "ps", "YAF_sad": "sad",
}


def test_the_released_layout_lists_2800_of_2800_with_the_truncated_speaker(make_tree):
    words = ["bite"] + [f"w{i:03d}" for i in range(199)]
    paths = []
    for folder, code in RELEASED_FOLDERS.items():
        speaker = folder[:3]
        for word in words:
            prefix = "OA" if (folder, word) == ("OAF_neutral", "bite") else speaker
            paths.append(f"{folder}/{prefix}_{word}_{code}.wav")
    root = make_tree(paths)

    listing = prepare_tess(root, strict=True)

    assert (len(listing.utterances), listing.rejected) == (2800, [])
    by_id = {u.utterance_id: u for u in listing.utterances}
    quirk = by_id["tess:OA_bite_neutral"]
    assert (quirk.speaker, quirk.emotion, quirk.custom) == ("tess:OAF", "neutral",
                                                             {"word": "bite", "raw_label": "neutral"})
    assert quirk.path == str(root / "OAF_neutral/OA_bite_neutral.wav")
    assert {s: sum(u.speaker == s for u in listing.utterances) for s in ("tess:OAF", "tess:YAF")} == {
        "tess:OAF": 1400, "tess:YAF": 1400}


@pytest.mark.parametrize("rel, reason", [
    # a short speaker is only read from a <SPK>_<emotion> folder whose speaker it starts
    ("loose/OA_bite_neutral.wav", "name is not SPEAKER_WORD_EMOTION"),
    ("YAF_neutral/OA_bite_neutral.wav", "name is not SPEAKER_WORD_EMOTION"),
    ("OAF_neutral/AF_bite_neutral.wav", "name is not SPEAKER_WORD_EMOTION"),
    # and the folder's emotion is still checked against the name's
    ("OAF_happy/OA_bite_neutral.wav", "emotion 'neutral' in the name but folder OAF_happy"),
])
def test_a_short_speaker_outside_its_own_folder_is_rejected(make_tree, rel, reason):
    root = make_tree([rel, "OAF_angry/OAF_back_angry.wav"])
    listing = prepare_tess(root)
    assert [(r.path, r.reason.split(" with ")[0]) for r in listing.rejected] == [
        (str(root / rel), reason.split(" with ")[0])]
