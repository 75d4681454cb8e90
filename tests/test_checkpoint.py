import numpy as np
import pytest
import torch

from ser_core.model import ModelConfig, SERModel
from ser_core.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from ser_core.normalisation import frame_stats, normalise

LABELS = ["angry", "sad", "happy"]


def _save(path, mode="global"):
    torch.manual_seed(0)
    model = SERModel(ModelConfig(n_dims=4, n_classes=3, hidden=5))
    model.train()
    model(torch.randn(6, 9, 4), torch.tensor([9, 3, 5, 9, 2, 7]))  # non-trivial BatchNorm stats
    model.eval()
    norm = {"mode": mode, "mean": [0.5, -1.0, 2.0, 0.0], "std": [2.0, 1.0, 0.5, 1.0]}
    save_checkpoint(path, model, feature_config={"name": "test", "n_dims": 4}, labels=LABELS,
                    normalisation=norm, train_params={"lr": 1e-3, "labels": LABELS},
                    provenance={"fold": -1, "seed": 0, "train_speakers": ["x:1"]})
    return model, norm


def _utterances(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(t, 4)).astype(np.float32) for t in (3, 11, 6)]


def test_checkpoint_is_plain_data(tmp_path):
    _save(tmp_path / "m.pt")
    data = torch.load(tmp_path / "m.pt", weights_only=True)
    assert data["format"] == FORMAT
    assert set(data) == {"format", "model_config", "state_dict", "feature_config", "labels",
                         "normalisation", "train_params", "provenance", "calibration", "segmentation"}
    assert data["calibration"] == {"temperature": 1.0}  # none given: uncalibrated
    assert data["segmentation"] == {"mode": "none", "segment_config": None}  # whole clips
    assert data["labels"] == LABELS and data["model_config"]["hidden"] == 5
    assert not (tmp_path / "m.pt.tmp").exists()


def test_load_checkpoint_rebuilds_the_model_and_its_normalisation(tmp_path):
    model, norm = _save(tmp_path / "m.pt")
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert not ckpt.model.training and ckpt.labels == LABELS
    assert ckpt.feature_config == {"name": "test", "n_dims": 4}
    feats = _utterances()
    probs = ckpt.predict_proba(feats)
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    # Same as the original model on features normalised by hand, one at a time.
    for x, p in zip(normalise(feats, np.array(norm["mean"]), np.array(norm["std"])), probs):
        with torch.no_grad():
            expected = torch.softmax(model(torch.from_numpy(x)[None], torch.tensor([len(x)])), 1)[0]
        np.testing.assert_allclose(p, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert ckpt.predict_proba([]).shape == (0, 3)


def test_speaker_mode_normalises_with_the_channels_own_statistics(tmp_path):
    _save(tmp_path / "m.pt", mode="speaker")
    ckpt = load_checkpoint(tmp_path / "m.pt")
    feats = _utterances()
    shifted = [x * 3 + 10 for x in feats]  # another channel gain and offset: same output
    np.testing.assert_allclose(ckpt.predict_proba(feats), ckpt.predict_proba(shifted), rtol=1e-4, atol=1e-5)
    stats = frame_stats(_utterances(seed=1))
    assert not np.allclose(ckpt.predict_proba(feats), ckpt.predict_proba(feats, stats=stats))


def test_bad_inputs_fail_loudly(tmp_path):
    _save(tmp_path / "m.pt")
    ckpt = load_checkpoint(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="shape"):
        ckpt.predict_proba([np.zeros((5, 3), np.float32)])
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=FORMAT):
        load_checkpoint(tmp_path / "other.pt")


def test_old_checkpoints_without_calibration_load_as_whole_clip_uncalibrated(tmp_path):
    _save(tmp_path / "m.pt")
    data = torch.load(tmp_path / "m.pt", weights_only=True)
    del data["calibration"], data["segmentation"]
    torch.save(data, tmp_path / "old.pt")
    ckpt = load_checkpoint(tmp_path / "old.pt")
    assert ckpt.temperature == 1.0 and ckpt.segmentation["mode"] == "none"
    data["calibration"] = {"temperature": -1}
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt: calibration temperature must be a finite number > 0"):
        load_checkpoint(tmp_path / "bad.pt")
