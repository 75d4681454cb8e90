import re

import pytest

from ser_core.corpora import CorpusError
from ser_core.corpora.folders import prepare_folders
from ser_core.records import Utterance

GOOD = {
    "happy/spk1_a.wav": ("happy/spk1_a", "spk1", "happy", "happy"),
    "Anger/spk2_b.flac": ("Anger/spk2_b", "spk2", "angry", "Anger"),
    "pleasant surprise/spk1_c.wav": ("pleasant surprise/spk1_c", "spk1", "surprised", "pleasant surprise"),
    "boredom/spk3_x.ogg": ("boredom/spk3_x", "spk3", "boredom", "boredom"),
    "contempt/spk3_y.wav": ("contempt/spk3_y", "spk3", "contempt", "contempt"),  # kept as its own
    "happy/session2/spk1_d.wav": ("happy/session2/spk1_d", "spk1", "happy", "happy"),
}
BAD = {
    "loose.wav": "file is not inside an emotion folder ROOT/<emotion>/",
    "bad!label/spk1_e.wav": "not a usable emotion label: 'bad!label'",
}
PATTERN = r"^(?P<speaker>spk\d+)_"


def want(root, speakers, gender="unknown"):
    return sorted(
        (Utterance(utterance_id=f"folders:{uid}", corpus="folders", path=str(root / rel),
                   speaker=f"folders:{speakers(spk)}", gender=gender, emotion=emotion,
                   custom={"raw_label": raw})
         for rel, (uid, spk, emotion, raw) in GOOD.items()),
        key=lambda u: u.utterance_id,
    )


def test_without_a_pattern_every_speaker_is_unknown(make_tree):
    root = make_tree(list(GOOD) + list(BAD))
    (root / "happy" / "notes.txt").write_text("not audio")

    listing = prepare_folders(root)

    assert listing.utterances == want(root, lambda spk: "unknown")
    assert {r.path: r.reason for r in listing.rejected} == {str(root / k): v for k, v in BAD.items()}


def test_speaker_pattern_and_gender_options(make_tree):
    root = make_tree(list(GOOD) + ["happy/nobody.wav"])

    listing = prepare_folders(root, speaker_pattern=PATTERN, gender="F")

    assert listing.utterances == want(root, lambda spk: spk, gender="female")
    # A pattern that misses is a rejection, never a silent "unknown" speaker.
    assert [(r.path, r.reason) for r in listing.rejected] == [
        (str(root / "happy/nobody.wav"), f"speaker_pattern {PATTERN!r} does not match 'nobody'")]


@pytest.mark.parametrize("options, message", [
    ({"speaker_pattern": "(?P<speaker"}, "is not a regular expression"),
    ({"speaker_pattern": r"^(spk\d+)_"}, r"has no named group \(\?P<speaker>"),
    ({"gender": "robot"}, "option gender: gender 'robot' is not male, female or unknown"),
])
def test_bad_options_fail_before_listing(make_tree, options, message):
    with pytest.raises(CorpusError, match=message):
        prepare_folders(make_tree(["happy/a.wav"]), **options)


def test_strict_missing_root_empty_and_duplicates(make_tree, tmp_path):
    with pytest.raises(CorpusError, match="not inside an emotion folder"):
        prepare_folders(make_tree(["happy/a.wav", "loose.wav"], root="strict"), strict=True)
    with pytest.raises(CorpusError, match=re.escape(str(tmp_path / "nowhere"))):
        prepare_folders(tmp_path / "nowhere")
    with pytest.raises(CorpusError, match="no utterances found"):
        prepare_folders(make_tree(["loose.wav"], root="empty"))
    # one clip in two formats is one utterance (the WAV); the FLAC is counted as a copy
    dup = make_tree(["happy/a.wav", "happy/a.flac"], root="dup")
    listing = prepare_folders(dup)
    assert [u.path for u in listing.utterances] == [str(dup / "happy" / "a.wav")]
    assert [c.path for c in listing.copies] == [str(dup / "happy" / "a.flac")]
