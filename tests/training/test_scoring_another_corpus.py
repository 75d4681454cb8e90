"""Scoring a trained model on another labelled corpus: the features must be the ones the
model hears (its front-end and its cut), made with ``ser features --like CHECKPOINT``;
features made otherwise are refused, each difference named."""

import json

import numpy as np
import pytest

from pipelines import features as feature_pipeline
from ser_core.cli import main as ser_main
from ser_core.corpora import prepare
from ser_core.errors import EXIT_BAD_INPUT, StageError
from ser_core.feature_shards import FEATURES_PREFIX, segmentation_differences
from ser_core.features import FeatureConfig, frontend_differences
from ser_core.records import write_manifest
from ser_core.segmentation import SegmentConfig
from ser_core.storage import read_shards

TELEPHONE = ["--kind", "logmel", "--n-mels", "16", "--sample-rate", "8000", "--band-hz", "300,3400",
             "--fmin", "300", "--fmax", "3400"]


def _features(folder) -> dict[str, np.ndarray]:
    table = read_shards(str(folder), FEATURES_PREFIX, ["utterance_id", "start_s", "features"]).to_pylist()
    return {(r["utterance_id"], r["start_s"]): np.asarray(r["features"], dtype=np.float32) for r in table}


def test_features_like_a_checkpoint_are_what_it_was_trained_on_and_others_are_refused(real_ravdess, tmp_path, capsys):
    manifest = tmp_path / "manifest.parquet"
    write_manifest(prepare("ravdess", str(real_ravdess), strict=True).utterances, manifest)
    trained_on = tmp_path / "trained_on"
    feature_pipeline.run(["--manifest", str(manifest), "--output", str(trained_on), "--segmentation", "windows",
                          *TELEPHONE])
    assert ser_main(["train", "--features", str(trained_on), "--output", str(tmp_path / "train"), "--epochs", "1",
                     "--hidden", "4", "--split", "speaker_kfold", "--k", "2", "--no-progress"]) == 0
    model = tmp_path / "train" / "final.pt"

    # --like rebuilds the model's front-end and cut from the checkpoint alone: the same rows, the same numbers
    like = tmp_path / "like"
    feature_pipeline.run(["--manifest", str(manifest), "--output", str(like), "--like", str(model)])
    made, again = _features(trained_on), _features(like)
    assert made.keys() == again.keys() and all(np.array_equal(made[k], again[k]) for k in made)
    assert ser_main(["evaluate", "--model", str(model), "--features", str(like),
                     "--output-dir", str(tmp_path / "scored")]) == 0
    # every clip with a window of speech is scored once (at 8 kHz, 300-3400 Hz, 5 of the 144 have none)
    clips = {uid for uid, _ in again}
    assert json.loads((tmp_path / "scored" / "metrics.json").read_text())["n_test"] == len(clips) > 130

    # the same front-end on the wideband audio, whole clips: numbers, and wrong ones, so refused
    wideband = tmp_path / "wideband"
    feature_pipeline.run(["--manifest", str(manifest), "--output", str(wideband),
                          *[a for a in TELEPHONE if a not in ("--band-hz", "300,3400")]])
    capsys.readouterr()
    assert ser_main(["evaluate", "--model", str(model), "--features", str(wideband),
                     "--output-dir", str(tmp_path / "refused")]) == EXIT_BAD_INPUT
    message = capsys.readouterr().err
    assert "band_hz: none, expected 300-3400" in message and "segmentation: none, expected windows" in message
    assert f"--like {model}" in message
    assert not (tmp_path / "refused" / "metrics.json").exists()

    # --like is the whole front-end: a feature setting beside it is an error, before any work
    with pytest.raises(StageError, match="drop --kind, --params"):
        feature_pipeline.run(["--manifest", str(manifest), "--output", str(tmp_path / "x"), "--like", str(model),
                              "--kind", "logmel", "--params", "params.yaml"])
    with pytest.raises(StageError, match="checkpoint not found"):
        feature_pipeline.run(["--manifest", str(manifest), "--output", str(tmp_path / "x"),
                              "--like", str(tmp_path / "none.pt")])


def test_front_end_differences_are_the_settings_the_front_end_reads():
    encoder = FeatureConfig(kind="speaker_encoder", sample_rate=16000, band_hz=(300, 3400)).to_dict()
    assert frontend_differences(encoder, encoder) == []
    # the encoder's own analysis does not read the mel settings: they are not held against features
    assert frontend_differences(encoder, {**encoder, "n_mels": 128, "fmax": 4000.0}) == []
    assert frontend_differences(encoder, FeatureConfig(kind="speaker_encoder", sample_rate=16000,
                                                       hop_s=0.01).to_dict()) == [
        "band_hz: none, expected 300-3400", "hop_s: 0.01, expected 0.0426667"]
    logmel = FeatureConfig(kind="logmel", n_mels=23).to_dict()
    assert frontend_differences(logmel, FeatureConfig(kind="logmel", n_mels=40).to_dict()) == [
        "n_mels: 40, expected 23"]
    assert frontend_differences(logmel, encoder) == ["kind: speaker_encoder, expected logmel"]
    # a front-end this project did not write is compared whole
    assert frontend_differences({"name": "x", "n_dims": 6}, {"name": "x", "n_dims": 6}) == []
    assert frontend_differences({"name": "x", "n_dims": 6}, {"name": "y", "n_dims": 6}) != []


def test_cut_differences_are_what_decides_the_audio_a_model_hears():
    windows = {"mode": "windows", "segment_config": SegmentConfig().to_dict()}
    assert segmentation_differences(windows, windows) == []
    assert segmentation_differences(windows, {"mode": "none", "segment_config": None}) == [
        "segmentation: none, expected windows"]
    other = {"mode": "windows", "segment_config": SegmentConfig(window_s=2.0, segmentation="webrtc",
                                                                margin_db=6.0).to_dict()}
    assert segmentation_differences(windows, other) == ["detector: webrtc, expected energy",
                                                        "window_s: 2.0, expected 3.0"]
    speech = {"mode": "speech", "segment_config": SegmentConfig().to_dict()}
    # speech spans are whole: the windows' length does not apply
    assert segmentation_differences(speech, {**other, "mode": "speech"}) == ["detector: webrtc, expected energy"]
    assert segmentation_differences({"mode": "none"}, {"mode": "none", "segment_config": None}) == []
