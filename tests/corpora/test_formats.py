"""Every reader lists any format libsndfile reads; one clip in several formats is listed once."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_core import audio
from ser_core.corpora import CorpusError, prepare
from tests.synth_audio import REAL_RAVDESS, REAL_RAVDESS_FULL

# One valid name per reader, written as FLAC and as OGG.
NAMES = {
    "ravdess": "Actor_01/03-01-05-02-01-01-01",
    "crema_d": "AudioWAV/1001_DFA_ANG_XX",
    "tess": "OAF_angry/OAF_back_angry",
    "savee": "AudioData/DC/a01",
    "emodb": "wav/03a01Fa",
    "folders": "happy/spk01_take3",
}


@pytest.mark.parametrize("corpus", sorted(NAMES))
@pytest.mark.parametrize("ext", [".flac", ".ogg"])
def test_every_reader_lists_other_formats(make_tree, corpus, ext):
    root = make_tree([NAMES[corpus] + ext])
    listing = prepare(corpus, str(root))
    assert [u.path for u in listing.utterances] == [str(root / (NAMES[corpus] + ext))]
    assert listing.rejected == [] and listing.copies == []


def test_same_clip_in_two_formats_is_listed_once_from_the_lossless_file(make_tree):
    # CREMA-D's release: AudioWAV and AudioMP3 copies of every clip (OGG stands in for MP3,
    # which libsndfile may not write).
    root = make_tree(["AudioWAV/1001_DFA_ANG_XX.wav", "AudioMP3/1001_DFA_ANG_XX.ogg",
                      "AudioWAV/1001_DFA_HAP_XX.flac", "AudioWAV/1001_DFA_HAP_XX.wav"])
    listing = prepare("crema_d", str(root))
    assert [u.path for u in listing.utterances] == [str(root / "AudioWAV/1001_DFA_ANG_XX.wav"),
                                                    str(root / "AudioWAV/1001_DFA_HAP_XX.wav")]
    assert sorted(c.path for c in listing.copies) == [str(root / "AudioMP3/1001_DFA_ANG_XX.ogg"),
                                                      str(root / "AudioWAV/1001_DFA_HAP_XX.flac")]
    assert listing.rejected == [] and listing.summary()["format_copies"] == 2
    prepare("crema_d", str(root), strict=True)  # copies are not naming problems


def test_same_format_twice_is_still_a_duplicate(make_tree):
    root = make_tree(["AudioWAV/1001_DFA_ANG_XX.flac", "more/1001_DFA_ANG_XX.flac"])
    with pytest.raises(CorpusError, match="duplicate utterance id 'crema_d:1001_DFA_ANG_XX'"):
        prepare("crema_d", str(root))


@pytest.fixture(scope="module")
def real_full() -> Path:
    if not REAL_RAVDESS_FULL.is_dir():
        pytest.skip(f"the full real RAVDESS speech set (FLAC) is not at {REAL_RAVDESS_FULL}")
    return REAL_RAVDESS_FULL


def test_real_flac_corpus_lists_all_1440_clips(real_full):
    listing = prepare("ravdess", str(real_full), strict=True)
    s = listing.summary()
    assert (s["utterances"], s["speakers"], s["rejected"]) == (1440, 24, 0)
    assert s["emotions"] == {"angry": 192, "calm": 192, "disgust": 192, "fearful": 192, "happy": 192,
                             "neutral": 96, "sad": 192, "surprised": 192}
    assert all(u.path.endswith(".flac") for u in listing.utterances)


def test_real_flac_decodes_to_the_official_wav_samples(real_full):
    if not REAL_RAVDESS.is_dir():
        pytest.skip(f"real RAVDESS WAVs not found at {REAL_RAVDESS}")
    wavs = sorted(REAL_RAVDESS.glob("Actor_0[1-3]/*.wav"))[:4]
    assert wavs
    for wav in wavs:
        flac = real_full / wav.parent.name / (wav.stem + ".flac")
        a, _ = audio.load(str(wav), channels="separate")
        b, _ = audio.load(str(flac), channels="separate")
        np.testing.assert_array_equal(a, b)
        assert sf.info(str(flac)).format == "FLAC"
