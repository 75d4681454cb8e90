"""A two-class, one-feature checkpoint with hand-set weights, so outputs are known exactly.

The LSTM-SA model with H = 1 is set up so that h_t = tanh(tanh(W * x_t)) (input gate and
output gate saturated open, forget gate shut, no recurrence), attention is uniform over
the valid frames (u = 0), the output BatchNorm is the identity up to its eps, and the
classifier gives logits (K z, -K z). So P(first label) = sigmoid(2 K z / T) with
z = mean_t h_t / sqrt(1 + eps) over the normalised feature x, T the calibration
temperature (1 unless set). :func:`make_onnx` exports it with ``ser export``.

The feature is one log-mel band (dB): loud windows have high x and are "angry", quiet
windows low x and are "sad".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ser_core.checkpoint import save_checkpoint
from ser_core.features import FeatureConfig
from ser_core.model import ModelConfig, SERModel

LABELS = ("angry", "sad")
W, K = 1.0, 3.0
BN_EPS = 1e-5
FEATURES = FeatureConfig(kind="logmel", sample_rate=8000, window_s=0.064, hop_s=0.032,
                         n_mels=1, n_mfcc=1)
GLOBAL_MEAN, GLOBAL_STD = -25.0, 5.0


def bursts(spans, total_s, sample_rate=8000, seed=0, noise=0.001, amp=0.3) -> np.ndarray:
    """Line noise (~ -60 dBFS) with tone bursts over ``spans`` (seconds): with amp 0.3 the
    model hears them as angry, with amp 0.01 as sad."""
    rng = np.random.default_rng(seed)
    x = noise * rng.standard_normal(int(round(total_s * sample_rate)))
    t = np.arange(len(x)) / sample_rate
    for a, b in spans:
        i, j = int(round(a * sample_rate)), int(round(b * sample_rate))
        x[i:j] += amp * np.sin(2 * np.pi * 300 * t[i:j])
    return x.astype(np.float32)


def make_checkpoint(path: str | Path, mode: str = "global", segmentation: dict | None = None,
                    temperature: float = 1.0, extra_label: str | None = None, extra_logit: float = 0.0) -> Path:
    """The hand-set model; ``segmentation`` as training records how its clips were cut
    (default: whole clips), ``temperature`` its calibration. ``extra_label``: a third class
    with the constant logit ``extra_logit``; restricted to angry and sad, such a model gives
    exactly the two-class model's probabilities."""
    labels = LABELS + ((extra_label,) if extra_label else ())
    model = SERModel(ModelConfig(n_dims=1, n_classes=len(labels), hidden=1, arch="lstm", dropout=0.0))
    state = model.state_dict()
    state["lstm2.weight_ih_l0"] = torch.tensor([[0.0], [0.0], [W], [0.0]])  # gates i, f, g, o
    state["lstm2.weight_hh_l0"] = torch.zeros(4, 1)
    state["lstm2.bias_ih_l0"] = torch.tensor([50.0, -50.0, 0.0, 50.0])
    state["lstm2.bias_hh_l0"] = torch.zeros(4)
    state["attention.u"] = torch.zeros(1)
    state["bn_out.running_mean"] = torch.zeros(1)
    state["bn_out.running_var"] = torch.ones(1)
    state["bn_out.weight"] = torch.ones(1)
    state["bn_out.bias"] = torch.zeros(1)
    state["classifier.weight"] = torch.tensor([[K], [-K], [0.0]][:len(labels)])
    state["classifier.bias"] = torch.tensor([0.0, 0.0, extra_logit][:len(labels)])
    model.load_state_dict(state)
    return save_checkpoint(
        path, model, feature_config=FEATURES.to_dict(), labels=labels,
        normalisation={"mode": mode, "mean": [GLOBAL_MEAN], "std": [GLOBAL_STD]},
        train_params={"note": "hand-set test model"}, provenance={"test": True},
        calibration={"temperature": temperature}, segmentation=segmentation)


def expected_proba(features: np.ndarray, mean: float = GLOBAL_MEAN, std: float = GLOBAL_STD,
                   temperature: float = 1.0) -> np.ndarray:
    """(P(angry), P(sad)) for raw features (T, 1), in closed form."""
    x = (np.asarray(features, dtype=np.float64)[:, 0] - mean) / std
    z = np.tanh(np.tanh(W * x)).mean() / np.sqrt(1 + BN_EPS)
    p = 1.0 / (1.0 + np.exp(-2 * K * z / temperature))
    return np.array([p, 1 - p])


def make_onnx(checkpoint: str | Path, path: str | Path) -> Path:
    """The hand-set checkpoint as an fp32 ``ser export`` model (same closed form)."""
    from ser_core.export import export_onnx

    return export_onnx(checkpoint, path).path
