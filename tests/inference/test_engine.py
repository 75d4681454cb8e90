"""The engine module: which engine runs a file, what a model's training says about the
windows to cut, and the warnings when labelling would feed it other audio."""

import pytest

from ser_core.inference.engine import engine_for, model_windows, segmentation_warnings
from ser_core.segmentation import SegmentConfig


def test_the_engine_follows_the_extension_and_a_flag_must_fit_the_file():
    assert engine_for("models/final.pt") == "torch" and engine_for("gs://b/m/MODEL.ONNX") == "onnx"
    assert engine_for("m.onnx", "onnx") == "onnx" and engine_for("m.pt", "torch") == "torch"
    with pytest.raises(ValueError, match=r"m\.pt: --engine onnx runs an ONNX model .*ser export m\.pt"):
        engine_for("m.pt", "onnx")
    with pytest.raises(ValueError, match=r"m\.onnx: --engine torch runs a checkpoint"):
        engine_for("m.onnx", "torch")
    with pytest.raises(ValueError, match="engine must be one of"):
        engine_for("m.pt", "tflite")


def test_labelling_defaults_to_the_cut_the_model_was_trained_on():
    """Without params, a windows model is labelled with its own detector levels and windows
    (a model cut at min_db -65 is not labelled at the -55 default); a speech-trimmed model
    passes on its detector only; a whole-clip model nothing."""
    cut = SegmentConfig(window_s=2.5, hop_s=1.25, min_db=-65.0, margin_db=4.0, min_speech_s=0.5).to_dict()
    windows = model_windows({"mode": "windows", "segment_config": cut})
    assert SegmentConfig(**windows) == SegmentConfig.from_dict(cut)
    speech = model_windows({"mode": "speech", "segment_config": cut})
    assert speech["min_db"] == -65.0 and speech["margin_db"] == 4.0
    assert not {"window_s", "hop_s", "min_speech_s"} & set(speech)
    assert model_windows({"mode": "none", "segment_config": None}) == {}


def test_warnings_name_each_difference_and_nothing_else():
    seg = SegmentConfig()  # energy detector, 3 s every 1.5 s
    same = {"mode": "windows", "segment_config": seg.to_dict()}
    assert segmentation_warnings(same, seg) == []
    (whole,) = segmentation_warnings({"mode": "none", "segment_config": None}, seg)
    assert "whole clips" in whole and "3 s windows of speech" in whole
    assert "3 s windows of audio" in segmentation_warnings({"mode": "none"}, SegmentConfig(segmentation="fixed"))[0]
    speech = {"mode": "speech", "segment_config": SegmentConfig(segmentation="webrtc", window_s=4.0).to_dict()}
    # a speech-trimmed model saw whole speech spans: only the detector matters
    assert segmentation_warnings(speech, seg) == [
        "the model's training clips were cut with the webrtc detector, labelling uses energy"]
