"""The RunInference model handler: exact probabilities from a hand-set model, keys riding
through, variable-length batches, both normalisation modes, failures to the dead letters."""

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from ser_core.inference.handler import SegmentExample, SERModelHandler
from ser_core.normalisation import RunningStats, frame_stats
from tests.inference import tiny_model


def examples(n=7, seed=0):
    """Raw feature windows of different lengths (padding would show if it leaked)."""
    rng = np.random.default_rng(seed)
    return [(f"k{i}", (rng.normal(-60, 15, size=(3 + 5 * i, 1))).astype(np.float32)) for i in range(n)]


def close_to(expected: dict, tol=1e-5):
    def check(actual):
        got = dict(actual)
        assert sorted(got) == sorted(expected)
        for key, probs in expected.items():
            np.testing.assert_allclose(got[key], probs, atol=tol, err_msg=key)
    return check


def test_keyed_inference_is_exact_for_any_batching(tmp_path):
    path = str(tiny_model.make_checkpoint(tmp_path / "model.pt"))
    data = examples()
    expected = {k: tiny_model.expected_proba(x) for k, x in data}
    for batch_size in (1, 3, 64):
        with BeamTestPipeline() as p:
            out = (p
                   | beam.Create([(k, SegmentExample(x)) for k, x in data])
                   | RunInference(KeyedModelHandler(SERModelHandler(path, batch_size=batch_size)))
                   | beam.MapTuple(lambda k, r: (k, r.inference)))
            assert_that(out, close_to(expected))


def test_speaker_mode_uses_the_channel_stats_and_refuses_examples_without(tmp_path):
    path = str(tiny_model.make_checkpoint(tmp_path / "model.pt", mode="speaker"))
    data = examples()
    stats = RunningStats(1)
    for _, x in data:
        stats.update(x)
    mean, std = stats.result()
    expected = {k: tiny_model.expected_proba(x, mean[0], std[0]) for k, x in data}
    with BeamTestPipeline() as p:
        good = (p
                | "good" >> beam.Create([(k, SegmentExample(x, (mean, std))) for k, x in data])
                | "infer good" >> RunInference(KeyedModelHandler(SERModelHandler(path)))
                | beam.MapTuple(lambda k, r: (k, r.inference)))
        assert_that(good, close_to(expected), label="exact")
        _, dlq = (p
                  | "bad" >> beam.Create([("lonely", SegmentExample(data[0][1]))])
                  | "infer bad" >> RunInference(KeyedModelHandler(SERModelHandler(path)))
                  .with_exception_handling())
        failed = dlq.failed_inferences | beam.MapTuple(
            lambda batch, err: ([k for k, _ in batch], "stats" in err[1]))
        assert_that(failed, equal_to([(["lonely"], True)]), label="dead letter")


def test_running_stats_equal_pooled_frame_stats():
    windows = [x for _, x in examples(seed=3)] + [np.full((4, 1), 7.0, np.float32)]
    stats = RunningStats(1)
    for x in windows:
        stats.update(x)
    mean, std = stats.result()
    ref_mean, ref_std = frame_stats(windows)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12)
    np.testing.assert_allclose(std, ref_std, rtol=1e-10)
    constant = RunningStats(2)
    constant.update(np.ones((5, 2)))
    assert constant.result()[1].tolist() == [pytest.approx(1e-4)] * 2  # floored, as in training


@pytest.mark.parametrize("setting, value, message", [
    ("batch_size", 0, "batch_size must be > 0"), ("block_s", -1.0, "block_s must be > 0"),
    ("channels", "left", "channels must be one of"), ("engine", "tflite", "engine must be one of"),
    ("threads", -1, "threads must be >= 0")])
def test_labelling_settings_are_checked_in_one_place(setting, value, message):
    """The pipeline and the Labeller take their settings from LabelSettings, which refuses
    what cannot work (the handler and the windower trust it)."""
    from ser_core.inference.plan import LabelSettings

    with pytest.raises(ValueError, match=message):
        LabelSettings(**{setting: value})


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_both_engines_give_the_calibrated_probabilities(tmp_path, engine):
    """A checkpoint calibrated with T = 2 (and its ONNX export): the handler's
    probabilities are softmax(logits / T), as Checkpoint.predict_proba gives them."""
    path = str(tiny_model.make_checkpoint(tmp_path / "model.pt", temperature=2.0))
    if engine == "onnx":
        path = str(tiny_model.make_onnx(path, tmp_path / "model.onnx"))
    handler = SERModelHandler(path, batch_size=3)
    assert handler.engine == engine  # by the file's extension
    data = examples()
    expected = {k: tiny_model.expected_proba(x, temperature=2.0) for k, x in data}
    assert max(abs(p[0] - tiny_model.expected_proba(x)[0]) for (_, x), p in zip(data, expected.values())) > 0.01
    with BeamTestPipeline() as p:
        out = (p
               | beam.Create([(k, SegmentExample(x)) for k, x in data])
               | RunInference(KeyedModelHandler(handler))
               | beam.MapTuple(lambda k, r: (k, r.inference)))
        assert_that(out, close_to(expected))
