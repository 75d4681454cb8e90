"""The pretrained speaker encoder front-end (ser_core.encoder, features.kind speaker_encoder):
pinned to Resemblyzer's own analysis and network on real speech, and its errors."""

from pathlib import Path

import librosa
import numpy as np
import pytest

from ser_core import audio, encoder
from ser_core import features as F
from ser_core.features import FeatureConfig, FeatureError, extract
from tests.synth_audio import signal

ENCODER = dict(kind="speaker_encoder", sample_rate=16000)


def _clip(root: Path, actor: int, name: str) -> np.ndarray:
    y, _ = audio.load(root / f"Actor_{actor:02d}" / name, 16000)
    return y


def test_mel_analysis_is_librosas_melspectrogram_the_encoder_was_trained_on():
    y = signal(1.3, 16000, seed=3, freq=210.0)
    ours = encoder.mel_power(y)
    ref = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    assert ours.shape == ref.shape == (1 + len(y) // 160, 40)
    np.testing.assert_allclose(ours, ref, rtol=2e-4, atol=1e-6 * float(ref.max()))


def test_frames_are_resemblyzers_own_lstm_outputs_on_real_speech(real_ravdess):
    """Resemblyzer's VoiceEncoder (its loading, its mel function, its network) gives the same
    frames as ours on a real RAVDESS clip raised to -30 dBFS: weights and analysis are its."""
    import torch
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram

    y = _clip(real_ravdess, 1, "03-01-05-01-02-01-01.wav")
    theirs_model = VoiceEncoder("cpu", verbose=False)
    raised = normalize_volume(y, encoder.TARGET_DBFS, increase_only=True)
    with torch.no_grad():
        theirs, _ = theirs_model.lstm(torch.from_numpy(wav_to_mel_spectrogram(raised))[None])
    ours = encoder.frames(y)
    assert ours.shape == (theirs.shape[1], encoder.N_DIMS)
    np.testing.assert_allclose(ours, theirs[0].numpy(), atol=2e-4)


def test_quiet_audio_is_raised_to_minus_30_dbfs_and_loud_audio_left_alone():
    quiet = (signal(1.0, 16000, seed=1) * 0.001).astype(np.float32)
    raised = encoder.raise_to_dbfs(quiet)
    assert 20 * np.log10(np.sqrt(np.mean(raised.astype(np.float64) ** 2))) == pytest.approx(-30.0, abs=1e-3)
    loud = (signal(1.0, 16000, seed=1) * 0.5).astype(np.float32)
    assert encoder.raise_to_dbfs(loud) is loud
    silence = np.zeros(1600, np.float32)
    assert encoder.raise_to_dbfs(silence) is silence
    assert np.isfinite(encoder.frames(silence)).all()


def test_the_front_end_averages_the_10_ms_frames_into_the_configs_frames():
    y = signal(2.0, 16000, seed=2, freq=180.0)
    tenth = encoder.frames(y)
    config = FeatureConfig(**ENCODER, window_s=0.04, hop_s=0.04)
    feats = extract(config, y)
    assert config.n_dims == 256 and feats.shape == (config.n_frames(len(y)), 256)
    # frame t of hop 40 ms averages the 10 ms frames whose centres round to it
    centres = np.round(np.arange(len(tenth)) * 0.01 / 0.04).astype(int)
    np.testing.assert_allclose(feats[5], tenth[centres == 5].mean(axis=0), rtol=1e-5, atol=1e-6)
    same = extract(FeatureConfig(**ENCODER, window_s=0.025, hop_s=0.01), y)
    np.testing.assert_allclose(same, tenth, rtol=1e-6, atol=1e-7)


def test_another_sample_rate_is_refused_with_the_one_it_needs():
    with pytest.raises(ValueError, match="speaker_encoder needs sample_rate 16000"):
        FeatureConfig(kind="speaker_encoder", sample_rate=8000)


@pytest.fixture
def without_weights(monkeypatch):
    """As on a machine where the resemblyzer wheel is not installed."""
    monkeypatch.setattr(encoder.importlib.util, "find_spec", lambda name: None)
    for cached in (encoder.load_lstm, F.make_extractor):
        cached.cache_clear()
    yield
    for cached in (encoder.load_lstm, F.make_extractor):
        cached.cache_clear()


def test_without_the_weights_package_the_error_says_how_to_install_it(without_weights):
    with pytest.raises(FeatureError, match=r"pip install --no-deps resemblyzer==0\.1\.4"):
        F.EXTRACTORS["speaker_encoder"].build(FeatureConfig(**ENCODER))


def test_the_install_line_names_the_version_make_setup_installs():
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert f"RESEMBLYZER_VERSION ?= {encoder.INSTALL.rsplit('==', 1)[1]}\n" in makefile


def test_without_the_weights_ser_features_and_ser_label_stop_before_any_work(without_weights, tmp_path):
    """Both pipelines build the front-end before starting: a missing weights package is one
    line naming the install command, not a traceback from inside a Beam worker."""
    import torch

    from pipelines import features as features_pipeline
    from pipelines import label as label_pipeline
    from ser_core.checkpoint import save_checkpoint
    from ser_core.errors import StageError
    from ser_core.model import ModelConfig, SERModel
    from ser_core.records import Utterance, write_manifest
    from tests.synth_audio import write_audio

    clip = write_audio(tmp_path / "a.wav", 1.0, 16000)
    manifest = tmp_path / "manifest.parquet"
    write_manifest([Utterance("x:a", "x", str(clip), "x:1", "female", "neutral")], manifest)
    with pytest.raises(StageError, match=r"speaker_encoder: .*pip install --no-deps resemblyzer==0\.1\.4"):
        features_pipeline.run(["--manifest", str(manifest), "--output", str(tmp_path / "features"),
                               "--kind", "speaker_encoder", "--sample-rate", "16000"])
    assert not (tmp_path / "features").exists()

    config = FeatureConfig(**ENCODER)
    model = SERModel(ModelConfig(n_dims=config.n_dims, n_classes=2, hidden=0, arch="pooled"))
    checkpoint = save_checkpoint(
        tmp_path / "m.pt", model, feature_config=config.to_dict(), labels=["angry", "sad"],
        normalisation={"mode": "global", "mean": [0.0] * 256, "std": [1.0] * 256},
        train_params={}, provenance={"test": True})
    assert torch.load(checkpoint, weights_only=True)["feature_config"]["kind"] == "speaker_encoder"
    with pytest.raises(StageError, match=r"speaker_encoder: .*pip install --no-deps resemblyzer==0\.1\.4"):
        label_pipeline.run(["--model", str(checkpoint), "--input", str(clip), "--output", str(tmp_path / "labels")])
    assert not (tmp_path / "labels").exists()
