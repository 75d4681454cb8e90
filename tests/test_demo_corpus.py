"""The demo corpus: RAVDESS layout and format, determinism, and emotions a model can learn
(better within speakers than across them)."""

from __future__ import annotations

from argparse import Namespace
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import yaml

from ser_core import cli
from ser_core.corpora.ravdess import parse_name, prepare_ravdess
from ser_core.demo import corpus as demo_corpus
from ser_core.demo.corpus import (DemoCorpusConfig, FILES_PER_ACTOR, clip_specs,
                                  generate_demo_corpus, render_clip)
from ser_core.demo.synth import EMOTION_PROFILES, EmotionProfile, Voice, plan_turn, render
from ser_core.labels import RAVDESS_LABELS
from ser_core.params import ParamsError

SPEAKERS = 8
RATE = 16000  # the learnability checks run at 16 kHz: same spectra below 8 kHz, 3x faster
F0 = 9  # column of the mean log F0 in clip_features


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_corpus")
    summary = generate_demo_corpus(root, speakers=SPEAKERS, seed=0, sample_rate=RATE, progress=False)
    return root, summary


@pytest.fixture(scope="module")
def features(corpus):
    """Summary features of every clip, with its label, speaker and repetition."""
    root, _ = corpus
    rows = []
    for u in prepare_ravdess(root).utterances:
        audio, sr = sf.read(u.path, dtype="float32")
        rows.append((clip_features(audio, sr), RAVDESS_LABELS.index(u.emotion),
                     int(u.speaker.split(":")[1]), int(u.custom["repetition"])))
    X, y, speaker, repetition = (np.array(c) for c in zip(*rows))
    return X, y, speaker, repetition


def clip_features(x: np.ndarray, sr: int) -> np.ndarray:
    """Utterance-level prosodic and spectral summaries (numpy only, so the test stays fast)."""
    n, hop = 512, 256
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), n)[::hop] * np.hanning(n)
    db = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    active = db > db.max() - 35
    span = np.flatnonzero(active)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12
    freqs = np.fft.rfftfreq(n, 1 / sr)
    centroid = (power * freqs).sum(1) / power.sum(1)
    high = power[:, freqs > 2000].sum(1) / power.sum(1)
    zcr = np.mean(np.abs(np.diff(np.sign(frames), axis=1)) > 0, axis=1)
    acf = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * n, axis=1)) ** 2, axis=1)[:, :n]
    acf = acf / np.fft.irfft(np.abs(np.fft.rfft(np.hanning(n), 2 * n)) ** 2)[:n]  # unbias the window
    lo, hi = sr // 500, min(sr // 60, n // 2)
    lag = lo + np.argmax(acf[:, lo:hi], axis=1)
    voiced = active & (acf[np.arange(lag.size), lag] / (acf[:, 0] + 1e-12) > 0.5)
    log_f0 = np.log(sr / lag[voiced]) if voiced.any() else np.zeros(1)
    a = db[active]
    return np.array([
        (span[-1] - span[0]) * hop / sr, active.mean(), a.mean(), a.std(), a.max(),
        zcr[active].mean(), centroid[active].mean(), centroid[active].std(),
        np.log(high[active].mean()), log_f0.mean(), log_f0.std(),
        np.percentile(log_f0, 90) - np.percentile(log_f0, 10), voiced.sum() / active.sum(),
    ])


def softmax_regression(X_train, y_train, X_test, classes: int = len(RAVDESS_LABELS),
                       iters: int = 500) -> np.ndarray:
    """Multinomial logistic regression on features z-scored with training statistics only."""
    mu, sd = X_train.mean(0), X_train.std(0) + 1e-9
    A = np.hstack([(X_train - mu) / sd, np.ones((len(X_train), 1))])
    B = np.hstack([(X_test - mu) / sd, np.ones((len(X_test), 1))])
    W = np.zeros((A.shape[1], classes))
    Y = np.eye(classes)[y_train]
    for _ in range(iters):
        z = A @ W
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        W -= 0.5 * (A.T @ (p - Y) / len(A) + 1e-3 * W)
    return np.argmax(B @ W, axis=1)


def test_profiles_cover_the_ravdess_labels_with_neutral_at_the_origin():
    assert tuple(EMOTION_PROFILES) == RAVDESS_LABELS
    assert EMOTION_PROFILES["neutral"] == EmotionProfile()
    vectors = {e: p.as_array() for e, p in EMOTION_PROFILES.items() if e != "neutral"}
    assert all(np.any(v != 0) for v in vectors.values())
    assert len({tuple(v) for v in vectors.values()}) == len(vectors)  # all distinct


def test_clip_specs_follow_ravdess_speech():
    specs = list(clip_specs(2))
    assert len(specs) == 2 * FILES_PER_ACTOR
    assert len({s.relpath for s in specs}) == len(specs)
    for spec in specs:
        folder, name = spec.relpath.split("/")
        fields = parse_name(name[:-4])
        assert folder == f"Actor_{fields['actor']}"
        assert fields["channel"] == "speech" and fields["intensity"] == spec.intensity
    per_emotion = Counter(s.emotion for s in specs if s.actor == 1)
    assert per_emotion == {e: 4 if e == "neutral" else 8 for e in RAVDESS_LABELS}


def test_prepare_ravdess_accepts_every_file(corpus):
    root, summary = corpus
    listing = prepare_ravdess(root, strict=True)
    s = listing.summary()
    assert summary["files"] == s["utterances"] == SPEAKERS * FILES_PER_ACTOR
    assert s["rejected"] == 0 and s["speakers"] == SPEAKERS
    assert s["genders"] == {"female": SPEAKERS // 2 * 60, "male": SPEAKERS // 2 * 60}
    assert s["emotions"] == {e: SPEAKERS * (4 if e == "neutral" else 8) for e in RAVDESS_LABELS}
    for u in listing.utterances:  # odd actors male, even female, as in RAVDESS
        assert u.gender == ("male" if int(u.speaker.split(":")[1]) % 2 else "female")


def test_every_clip_is_finite_unclipped_and_ravdess_length(corpus):
    root, _ = corpus
    for path in sorted(root.glob("Actor_*/*.wav")):
        audio, sr = sf.read(path, dtype="float32")
        assert sr == RATE and audio.ndim == 1
        assert np.isfinite(audio).all()
        peak_db = 20 * np.log10(np.abs(audio).max())
        assert -12.5 <= peak_db <= -2.9, path
        assert 2.9 <= audio.size / sr <= 5.0, path


def test_default_format_is_ravdess_48k_mono_pcm16(tmp_path):
    summary = generate_demo_corpus(tmp_path, speakers=1, progress=False)
    assert summary["files"] == FILES_PER_ACTOR and summary["sample_rate"] == 48000
    path = tmp_path / "Actor_01" / "03-01-05-02-01-01-01.wav"
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (48000, 1, "PCM_16", "WAV")
    audio, sr = sf.read(path)
    # quiet lead and tail around the speech, as in RAVDESS
    lead, loud = audio[: int(0.3 * sr)], np.max(np.abs(audio))
    assert 20 * np.log10(np.sqrt(np.mean(lead ** 2)) / loud) < -40
    assert not list(tmp_path.rglob(".*.tmp"))


def test_same_seed_gives_identical_bytes_and_any_file_regenerates(corpus, tmp_path):
    root, _ = corpus
    generate_demo_corpus(tmp_path / "again", speakers=1, seed=0, sample_rate=RATE, progress=False)
    generate_demo_corpus(tmp_path / "other", speakers=1, seed=1, sample_rate=RATE, progress=False)
    differing = 0
    for spec in clip_specs(1):
        original = (root / spec.relpath).read_bytes()
        assert (tmp_path / "again" / spec.relpath).read_bytes() == original
        differing += (tmp_path / "other" / spec.relpath).read_bytes() != original
    assert differing == FILES_PER_ACTOR
    spec = list(clip_specs(3))[-1]
    stored, _ = sf.read(root / spec.relpath, dtype="int16")
    regenerated = np.rint(render_clip(spec, 0, RATE) * 32767)
    assert np.max(np.abs(stored - regenerated)) <= 1


def test_parallel_workers_write_the_same_files(tmp_path):
    generate_demo_corpus(tmp_path / "one", speakers=1, sample_rate=8000, progress=False)
    generate_demo_corpus(tmp_path / "two", speakers=1, sample_rate=8000, workers=2, progress=False)
    for spec in clip_specs(1):
        assert (tmp_path / "one" / spec.relpath).read_bytes() == (tmp_path / "two" / spec.relpath).read_bytes()


def test_speakers_differ_more_than_one_speaker_varies(features):
    X, y, speaker, repetition = features
    neutral = y == RAVDESS_LABELS.index("neutral")
    means = np.array([X[neutral & (speaker == s), F0].mean() for s in range(1, SPEAKERS + 1)])
    within = np.mean([X[neutral & (speaker == s), F0].std() for s in range(1, SPEAKERS + 1)])
    assert means.std() > 2 * within
    assert means[1::2].mean() - means[::2].mean() > np.log(1.3)  # even actors (female) higher
    # Who is speaking can be told from the same summaries, across all emotions.
    test = repetition == 2
    predicted = softmax_regression(X[~test], speaker[~test] - 1, X[test], SPEAKERS)
    assert np.mean(predicted == speaker[test] - 1) > 0.4


def test_emotions_are_learnable_better_within_speakers_than_across(features):
    X, y, speaker, repetition = features
    # Speaker-independent: four folds of two held-out speakers each, pooled.
    predicted = np.empty_like(y)
    for held_out in np.array_split(np.arange(1, SPEAKERS + 1), 4):
        test = np.isin(speaker, held_out)
        predicted[test] = softmax_regression(X[~test], y[~test], X[test])
    independent = float(np.mean(predicted == y))
    # Speaker-dependent: train on repetition 1 of every speaker, test on repetition 2.
    test = repetition == 2
    dependent = float(np.mean(softmax_regression(X[~test], y[~test], X[test]) == y[test]))
    print(f"demo corpus learnability: speaker-independent {independent:.3f}, "
          f"speaker-dependent {dependent:.3f} (chance 0.125)")
    assert independent >= 0.35
    assert dependent > independent


def test_turns_render_at_any_rate_without_nan():
    voice = Voice.create(0, 1, "female", domain="archive")
    plan = plan_turn(voice, "angry", "strong", 6.0, np.random.default_rng(0))
    assert 1.0 < plan.duration_s <= 6.0
    for rate in (8000, 16000):
        audio = render(plan, rate, band=(300.0, 3400.0))
        assert audio.dtype == np.float32 and audio.size == round(plan.duration_s * rate)
        assert np.isfinite(audio).all() and np.abs(audio).max() < 0.71


def test_voices_differ_between_corpus_and_archive_seed_spaces():
    assert Voice.create(0, 1, "male") == Voice.create(0, 1, "male")
    assert Voice.create(0, 1, "male") != Voice.create(0, 1, "male", domain="archive")
    assert Voice.create(0, 1, "male") != Voice.create(1, 1, "male")


def test_cli_flags_override_params(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"demo_corpus": {"speakers": 1, "sample_rate": 48000, "seed": 3}}))
    out = tmp_path / "demo"
    assert cli.main(["demo-corpus", str(out), "--params", str(params),
                     "--sample-rate", "8000", "--no-progress"]) == 0
    files = sorted(out.rglob("*.wav"))
    assert len(files) == FILES_PER_ACTOR and sf.info(str(files[0])).samplerate == 8000
    expected = np.rint(render_clip(next(clip_specs(1)), 3, 8000) * 32767)  # seed 3 from params
    assert np.max(np.abs(sf.read(files[0], dtype="int16")[0] - expected)) <= 1


def test_bad_settings_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="speakers"):
        DemoCorpusConfig(speakers=25)
    with pytest.raises(ValueError, match="sample_rate"):
        generate_demo_corpus(tmp_path, sample_rate=4000)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"demo_corpus": {"speakerz": 2}}))
    with pytest.raises(ParamsError, match="speakerz"):
        demo_corpus.main(Namespace(output=str(tmp_path / "x"), params=str(params), speakers=None, seed=None,
                       sample_rate=None, workers=None, progress=False))
    assert not (tmp_path / "x").exists()


def test_a_folder_left_by_a_larger_run_is_refused(tmp_path):
    from ser_core.demo.corpus import generate_demo_corpus

    (tmp_path / "Actor_09").mkdir()
    with pytest.raises(ValueError, match="Actor_09"):
        generate_demo_corpus(tmp_path, speakers=2, sample_rate=8000, progress=False)
