"""Features (ser_core.features): typed config, registry, librosa equivalence, degenerate audio."""

import dataclasses

import librosa
import numpy as np
import pytest
import scipy.signal

from ser_core import features as F
from ser_core import spectral as S
from ser_core.features import FeatureConfig, FeatureError, extract
from tests.synth_audio import signal


def _speechy(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Harmonics of a gliding F0 plus noise: gives the tuning estimate real peaks to find."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t) + rng.uniform(-3, 3)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t) ** 2)
    return (0.2 * y + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _librosa_reference(y: np.ndarray, sr: int, c: FeatureConfig) -> np.ndarray:
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=c.n_mfcc, n_fft=c.n_fft, hop_length=c.hop_length)
    chroma = librosa.feature.chroma_stft(y=y, sr=sr, n_fft=c.n_fft, hop_length=c.hop_length, n_chroma=c.n_chroma)
    return np.vstack([mfcc, chroma]).T


# ---------------------------------------------------------------- config


def test_paper_defaults_give_exact_window_and_hop_at_48k():
    c = FeatureConfig()
    assert (c.kind, c.sample_rate, c.n_fft, c.hop_length, c.n_mfcc, c.n_chroma, c.n_mels) == (
        "mfcc_chroma", 48000, 4096, 2048, 34, 12, 128)
    assert c.n_dims == 46
    assert c.window_s * 1000 == pytest.approx(85.333, abs=1e-3)
    # Seconds, not samples: the same time span at another rate.
    assert (FeatureConfig(sample_rate=16000).n_fft, FeatureConfig(sample_rate=16000).hop_length) == (1365, 683)
    assert FeatureConfig(kind="logmel", n_mels=64).n_dims == 64
    assert c.n_frames(48000 * 3) == 71


def test_config_round_trips_through_a_dict_with_derived_keys():
    c = FeatureConfig(kind="logmel", sample_rate=16000, n_mels=40, fmin=20.0, fmax=7600.0)
    d = c.to_dict()
    assert d["n_fft"] == 1365 and d["hop_length"] == 683 and d["n_dims"] == 40
    assert FeatureConfig.from_dict(d) == c
    assert FeatureConfig.from_dict({"n_mfcc": 20}) == FeatureConfig(n_mfcc=20)
    with pytest.raises(ValueError, match="unknown FeatureConfig key"):
        FeatureConfig.from_dict({**d, "n_mfccs": 3})
    with pytest.raises(ValueError, match="n_dims=46 does not match"):
        FeatureConfig.from_dict({**d, "n_dims": 46})
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.kind = "mfcc_chroma"


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "mfcc"}, "unknown feature kind"),
    ({"sample_rate": 44100.0}, "sample_rate must be an integer"),
    ({"hop_s": 0.2}, "hop <= n_fft"),
    ({"n_mfcc": 200}, "cannot exceed n_mels"),
    ({"fmax": 30000.0}, "fmax <= 24000"),
    ({"n_chroma": 0}, "n_chroma must be a positive integer"),
    ({"resample_quality": "best"}, "resample_quality"),
])
def test_config_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FeatureConfig(**kwargs)


def test_extractors_are_registered_by_name():
    assert {"mfcc_chroma", "logmel"} <= set(F.EXTRACTORS)


# ---------------------------------------------------------------- the same front-end as librosa


def test_filterbanks_and_window_are_librosas_bit_for_bit():
    for n in (4096, 1365, 512):
        np.testing.assert_array_equal(S.hann_window(n), scipy.signal.get_window("hann", n, fftbins=True))
    for sr, n_fft, n_mels, fmin, fmax in [(48000, 4096, 128, 0.0, None), (16000, 1365, 40, 20.0, 7600.0)]:
        np.testing.assert_array_equal(S.mel_basis(sr, n_fft, n_mels, fmin, fmax).T,
                                      librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax))
    for tuning in (0.0, -0.5, 0.23):
        np.testing.assert_array_equal(S.chroma_basis(48000, 4096, 12, tuning).T,
                                      librosa.filters.chroma(sr=48000, n_fft=4096, tuning=tuning))
    np.testing.assert_array_equal(S.chroma_basis(16000, 1365, 24, 0.1).T,
                                  librosa.filters.chroma(sr=16000, n_fft=1365, n_chroma=24, tuning=0.1))


@pytest.mark.parametrize("sr, seed", [(48000, 0), (48000, 1), (16000, 2)])
def test_power_spectrum_and_tuning_match_librosa_exactly(sr, seed):
    c = FeatureConfig(sample_rate=sr)
    y = _speechy(4.0, sr, seed)  # > 64 frames: crosses the FFT chunk boundary
    reference = np.abs(librosa.stft(y, n_fft=c.n_fft, hop_length=c.hop_length)) ** 2  # (F, T)

    power = S.power_spectrogram(y, c.n_fft, c.hop_length, S.hann_window(c.n_fft))

    np.testing.assert_array_equal(power, reference.T)
    assert S.estimate_tuning(power, sr, 12) == librosa.estimate_tuning(S=reference, sr=sr, bins_per_octave=12)


@pytest.mark.parametrize("sr", [48000, 16000])
def test_mfcc_chroma_matches_librosa_within_1e4_of_each_dimension_range(sr):
    c = FeatureConfig(sample_rate=sr)
    clips = [_speechy(d, sr, seed) for seed, d in enumerate((1.0, 2.3, 0.4))] + [signal(0.9, sr, seed=5)]
    ours = np.concatenate([extract(c, y) for y in clips])
    ref = np.concatenate([_librosa_reference(y, sr, c) for y in clips])

    assert ours.shape == ref.shape and ours.shape[1] == 46 and ours.dtype == np.float32
    deviation = np.abs(ours - ref).max(axis=0) / (ref.max(axis=0) - ref.min(axis=0))
    assert deviation.max() <= 1e-4
    np.testing.assert_allclose(ours[:, 34:], ref[:, 34:], atol=1e-5)  # chroma: same filterbank, same tuning


def test_logmel_matches_librosa_power_to_db_melspectrogram():
    c = FeatureConfig(kind="logmel", sample_rate=16000, n_mels=40, fmin=20.0, fmax=7600.0)
    y = _speechy(1.2, 16000)
    ref = librosa.power_to_db(librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=c.n_fft, hop_length=c.hop_length, n_mels=40, fmin=20.0, fmax=7600.0)).T
    np.testing.assert_allclose(extract(c, y), ref, atol=1e-3)


def test_logmel_deltas_are_librosas_deltas_beside_the_log_mel():
    c = FeatureConfig(kind="logmel_deltas", sample_rate=16000, n_mels=23, fmin=20.0, fmax=7600.0)
    assert c.n_dims == 46
    y = _speechy(1.2, 16000)
    mel = extract(FeatureConfig(kind="logmel", sample_rate=16000, n_mels=23, fmin=20.0, fmax=7600.0), y)
    ours = extract(c, y)
    np.testing.assert_array_equal(ours[:, :23], mel)
    ref = librosa.feature.delta(mel.T, width=5, mode="nearest").T
    np.testing.assert_allclose(ours[:, 23:], ref, atol=1e-3)
    assert np.abs(ours[:, 23:]).max() > 0.1  # speech moves: the deltas are not all zero


# ---------------------------------------------------------------- degenerate audio


@pytest.mark.filterwarnings("ignore:Trying to estimate tuning from empty frequency set")
def test_silence_gives_finite_features_not_nan():
    c = FeatureConfig()
    feats = extract(c, np.zeros(48000, np.float32))
    ref = _librosa_reference(np.zeros(48000, np.float32), 48000, c)
    assert feats.shape == (24, 46) and np.isfinite(feats).all()
    assert (feats[:, 34:] == 0).all()  # chroma of a silent frame stays 0, not 0/0
    np.testing.assert_allclose(feats, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("y", [
    np.full(9000, 1e-30, np.float32),  # below float32 power resolution
    np.r_[np.zeros(4000), 1.0, np.zeros(5000)].astype(np.float32),  # one click
    np.ones(9000, np.float32),  # DC
    np.zeros(100, np.float32),  # shorter than a window: one padded frame
])
def test_degenerate_clips_stay_finite(y):
    for kind in ("mfcc_chroma", "logmel", "logmel_deltas", "logmel_prosody", "voice", "logmel_voice"):
        feats = extract(FeatureConfig(kind=kind, n_mels=21 if kind == "logmel_prosody" else 128), y)
        assert feats.shape[0] == 1 + len(y) // 2048 and np.isfinite(feats).all()


def test_bad_arrays_raise_feature_error():
    with pytest.raises(FeatureError, match="mono"):
        extract(FeatureConfig(), np.zeros((2, 5000), np.float32))
    with pytest.raises(FeatureError, match="mono"):
        extract(FeatureConfig(), np.zeros(0, np.float32))
    with pytest.raises(FeatureError, match="not finite"):
        extract(FeatureConfig(), np.r_[np.zeros(5000), np.nan].astype(np.float32))


def test_float64_input_is_accepted_as_float32():
    y = _speechy(0.5, 48000)
    np.testing.assert_array_equal(extract(FeatureConfig(), y.astype(np.float64)), extract(FeatureConfig(), y))


def test_dct_matrix_is_scipys_orthonormal_dct():
    import scipy.fft

    x = np.random.default_rng(0).standard_normal((7, 128))
    np.testing.assert_allclose(x @ S.dct_matrix(128, 34).astype(np.float64),
                               scipy.fft.dct(x, type=2, norm="ortho", axis=-1)[:, :34], atol=1e-5)


@pytest.mark.parametrize("value, expected", [
    (None, None), ("none", None), ("", None), ("300,3400", (300.0, 3400.0)), ([300, 3400], (300.0, 3400.0)),
])
def test_band_parses_from_params_and_flags(value, expected):
    config = FeatureConfig(sample_rate=8000, band_hz=value)
    assert config.band_hz == expected
    assert FeatureConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("value", ["300", "3400,300", "0,5000", "a,b"])
def test_band_rejects_bad_values(value):
    with pytest.raises(ValueError, match="band_hz"):
        FeatureConfig(sample_rate=8000, band_hz=value)


def test_band_limit_removes_out_of_band_energy_and_keeps_the_rest():
    sr, n = 8000, 8000
    t = np.arange(n) / sr
    low, mid, high = (np.sin(2 * np.pi * f * t) for f in (100.0, 1000.0, 3800.0))
    out = F.band_limit((low + mid + high).astype(np.float32), sr, (300.0, 3400.0))
    np.testing.assert_allclose(out, mid, atol=1e-4)


def test_band_changes_features_only_through_the_band():
    y = signal(1.0, 8000, seed=3)
    wide = extract(FeatureConfig(sample_rate=8000), y)
    narrow = extract(FeatureConfig(sample_rate=8000, band_hz=(300, 3400)), y)
    assert wide.shape == narrow.shape and not np.allclose(wide, narrow)
    np.testing.assert_array_equal(
        narrow, extract(FeatureConfig(sample_rate=8000), F.band_limit(y, 8000, (300.0, 3400.0))))


def test_a_front_end_is_described_by_what_sets_it_apart():
    from ser_core.features import describe
    tel = FeatureConfig(kind="logmel_deltas", sample_rate=8000, n_mels=23, band_hz="300,3400", fmin=300.0, fmax=3400.0)
    assert describe(tel.to_dict()) == "logmel_deltas, 46 dims, 8000 Hz, band 300-3400 Hz, 85/43 ms frames"
    short = FeatureConfig(kind="logmel_deltas", n_mels=23, window_s=0.025, hop_s=0.01)
    assert describe(short.to_dict()) == "logmel_deltas, 46 dims, 48000 Hz, 25/10 ms frames"


# ---------------------------------------------------------------- eGeMAPS through openSMILE

TEL = dict(sample_rate=8000, window_s=F.PAPER_WINDOW_S, hop_s=F.PAPER_HOP_S, band_hz=(300, 3400),
           fmin=300.0, fmax=3400.0)


def test_descriptors_are_pooled_into_the_frames_of_the_config():
    """10 ms descriptor rows averaged into centred frames of hop_s; an empty frame takes
    its nearest neighbour's value (the earlier one on a tie)."""
    rows = np.arange(6, dtype=np.float64)[:, None]
    centres = np.array([0.0, 0.01, 0.02, 0.2, 0.21, 0.22])
    np.testing.assert_array_equal(F.pool_to_frames(rows, centres, 6, 0.04).ravel(), [1, 1, 1, 4, 4, 4])
    one = F.pool_to_frames(np.array([[2.0, 3.0]]), np.array([0.05]), 3, 0.04)
    assert one.shape == (3, 2) and (one == [2.0, 3.0]).all()


def test_egemaps_gives_25_descriptors_per_frame_of_the_config():
    pytest.importorskip("opensmile")
    config = FeatureConfig(kind="egemaps", **TEL)
    voiced = signal(3.0, 8000, seed=1, freq=180.0)
    feats = extract(config, voiced)
    assert config.n_dims == 25 and feats.shape == (1 + len(voiced) // config.hop_length, 25)
    assert np.isfinite(feats).all()
    louder = extract(config, (voiced * 4).astype(np.float32))
    assert louder[:, 0].mean() > feats[:, 0].mean()  # column 0 is loudness
    with pytest.raises(FeatureError, match="at least 0.1 s"):
        extract(config, voiced[:400])


def test_egemaps_without_opensmile_says_how_to_install_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "opensmile", None)  # import opensmile -> ImportError
    with pytest.raises(FeatureError, match=r"pip install 'ser-pipelines\[opensmile\]'"):
        F.EXTRACTORS["egemaps"].build(FeatureConfig(kind="egemaps", **TEL))
