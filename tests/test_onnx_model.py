"""OnnxModel: Checkpoint.predict_proba's semantics (normalisation, speaker statistics,
order, empty input, bad shapes) and precise errors for files that are not ``ser export``
models."""

import json
import re

import numpy as np
import onnx
import pytest

from ser_core.export import export_onnx
from ser_core.onnx_model import OnnxModel, OnnxModelError
from ser_core.checkpoint import load_checkpoint
from ser_core.normalisation import frame_stats
from tests.onnx_checkpoints import PAPER, make_checkpoint


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{mode: (checkpoint path, ONNX path)} for a small hand-set-BatchNorm model."""
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for mode in ("speaker", "global"):
        ckpt = make_checkpoint(root / f"{mode}.pt", hidden=12, batchnorm="hand-set", mode=mode)
        out[mode] = ckpt, export_onnx(ckpt, root / f"{mode}.onnx").path
    return out


def _features(seed=0, lengths=(30, 4, 17, 1, 52, 9, 30)):
    rng = np.random.default_rng(seed)
    return [(rng.normal(5, 3, (t, PAPER.n_dims))).astype(np.float32) for t in lengths]


@pytest.mark.parametrize("mode", ["speaker", "global"])
def test_predict_proba_has_the_checkpoints_semantics(exported, mode):
    ckpt_path, onnx_path = exported[mode]
    ckpt, engine = load_checkpoint(ckpt_path), OnnxModel.load(onnx_path)
    feats = _features()
    channel = frame_stats(_features(seed=1))  # e.g. a whole call channel's statistics
    for stats in (None, channel):
        np.testing.assert_allclose(engine.predict_proba(feats, stats, batch_size=3),
                                   ckpt.predict_proba(feats, stats, batch_size=3), rtol=0, atol=1e-5)
    with_stats = engine.predict_proba(feats, channel)
    if mode == "speaker":  # the channel's statistics are used ...
        assert np.abs(with_stats - engine.predict_proba(feats)).max() > 1e-3
    else:  # ... global mode ignores them
        np.testing.assert_array_equal(with_stats, engine.predict_proba(feats))
    np.testing.assert_allclose(with_stats.sum(axis=1), 1.0, rtol=1e-5)
    assert with_stats.dtype == np.float32


def test_empty_input_and_bad_shapes(exported):
    engine = OnnxModel.load(exported["speaker"][1])
    assert engine.predict_proba([]).shape == (0, len(engine.labels))
    with pytest.raises(ValueError, match=r"features\[1\] has shape \(5, 3\); expected \(frames >= 1, 46\)"):
        engine.predict_proba([_features()[0], np.zeros((5, 3), np.float32)])
    with pytest.raises(ValueError, match=r"features\[0\] has shape \(0, 46\)"):
        engine.predict_proba([np.zeros((0, 46), np.float32)])
    with pytest.raises(ValueError, match="threads must be >= 1"):
        OnnxModel.load(exported["speaker"][1], threads=0)


def _rewrite(src, dst, **props):
    """A copy of ``src`` with some ``ser.*`` metadata replaced (None: removed)."""
    model = onnx.load(str(src))
    kept = {p.key: p.value for p in model.metadata_props}
    for key, value in props.items():
        kept.pop("ser." + key, None)
        if value is not None:
            kept["ser." + key] = value
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, kept)
    onnx.save(model, str(dst))
    return dst


def test_files_that_are_not_ser_models_are_refused(exported, tmp_path):
    src = exported["global"][1]
    with pytest.raises(FileNotFoundError, match="nothing.onnx"):
        OnnxModel.load(tmp_path / "nothing.onnx")
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(OnnxModelError, match=r"text\.onnx is not a readable ONNX model"):
        OnnxModel.load(tmp_path / "text.onnx")
    bare = onnx.load(str(src))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(OnnxModelError, match=r"bare\.onnx: ONNX model without ser\.format metadata"):
        OnnxModel.load(tmp_path / "bare.onnx")
    cases = {
        "newer.onnx": ({"format": json.dumps("ser-onnx/9")}, r"format 'ser-onnx/9'; this code reads 'ser-onnx/1'"),
        "nolabels.onnx": ({"labels": None}, r"lacks the metadata \['ser\.labels'\]"),
        "badjson.onnx": ({"provenance": "{oops"}, r"metadata ser\.provenance is not JSON"),
        "badtype.onnx": ({"labels": json.dumps("angry")}, r"ser\.labels should be a list, got str"),
        "fewlabels.onnx": ({"labels": json.dumps(["angry", "sad"])}, r"2 labels for 8 classes"),
        "fp16.onnx": ({"precision": json.dumps("fp16")}, r"precision 'fp16'"),
    }
    for name, (props, message) in cases.items():
        with pytest.raises(OnnxModelError, match=re.escape(name) + ": .*" + message):
            OnnxModel.load(_rewrite(src, tmp_path / name, **props))
