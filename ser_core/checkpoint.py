"""Self-describing checkpoints (docs/CONTRACTS.md): everything needed to label audio.

A checkpoint is a plain dict of tensors, strings, numbers, lists and dicts, so it loads
with ``torch.load(path, weights_only=True)`` (no pickled classes, no params.yaml):
``format``, ``model_config``, ``state_dict``, ``feature_config``, ``labels``,
``normalisation`` (mode, training-speaker mean/std), ``train_params``, ``provenance``;
and, optional for checkpoints written before they existed: ``calibration``
(``{"temperature": T}`` fitted on the validation speakers; T = 1 without it) and
``segmentation`` (how training clips were cut: ``{"mode": "none"|"speech"|"windows",
"segment_config": {...}}``; ``none`` = whole clips, as the paper trains).

:func:`load_checkpoint` rebuilds the eval-mode model and wraps it with the normalisation
the model was trained with; the labelling pipeline calls :meth:`Checkpoint.predict_proba`.
Training writes checkpoints and labelling reads them, so this module belongs to neither:
it depends only on the model, the normalisation and the batching.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ser_core.batching import predict_logits
from ser_core.model import ModelConfig, SERModel
from ser_core.normalisation import normalise_for_model

FORMAT = "ser-checkpoint/1"
KEYS = ("format", "model_config", "state_dict", "feature_config", "labels", "normalisation",
        "train_params", "provenance")
WHOLE_CLIPS = {"mode": "none", "segment_config": None}


def save_checkpoint(path: str | Path, model: SERModel, *, feature_config: Mapping[str, Any],
                    labels: Sequence[str], normalisation: Mapping[str, Any],
                    train_params: Mapping[str, Any], provenance: Mapping[str, Any],
                    calibration: Mapping[str, Any] | None = None,
                    segmentation: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` and its descriptions to ``path`` (atomically: no half-written file)."""
    if len(labels) != model.config.n_classes:
        raise ValueError(f"{len(labels)} labels for a model with {model.config.n_classes} classes")
    checkpoint = {
        "format": FORMAT,
        "model_config": model.config.to_dict(),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "feature_config": dict(feature_config),
        "labels": list(labels),
        "normalisation": dict(normalisation),
        "train_params": dict(train_params),
        "provenance": dict(provenance),
        "calibration": dict(calibration or {"temperature": 1.0}),
        "segmentation": dict(segmentation or WHOLE_CLIPS),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)
    return path


class LabelsRawFeatures:
    """What a trained model (a :class:`Checkpoint`, an ``OnnxModel``) does with raw features,
    given its ``labels``, ``normalisation``, ``calibration``, ``model_config`` and its own
    ``predict_normalised``."""

    # provided by the subclass: labels, normalisation, calibration (dicts as in the
    # checkpoint) and model_config (a ModelConfig)

    @property
    def temperature(self) -> float:
        """The temperature the logits are divided by (1.0: uncalibrated)."""
        return float(self.calibration.get("temperature", 1.0))

    def normalise(self, features: Sequence[np.ndarray],
                  stats: tuple[np.ndarray, np.ndarray] | None = None) -> list[np.ndarray]:
        """``features`` normalised as in training. In ``speaker`` mode all of ``features``
        are taken to come from one speaker (one call channel): they are normalised with
        ``stats`` if given (e.g. :func:`~ser_core.normalisation.frame_stats` over the whole
        channel), otherwise with their own pooled statistics."""
        return normalise_for_model(features, self.normalisation, self.model_config.n_dims, stats)

    def predict_proba(self, features: Sequence[np.ndarray],
                      stats: tuple[np.ndarray, np.ndarray] | None = None,
                      batch_size: int = 64) -> np.ndarray:
        """Class probabilities (N, C), columns in ``labels`` order, for (T, D) raw features."""
        if len(features) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.predict_normalised(self.normalise(features, stats), batch_size)

    def predict_normalised(self, features: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        raise NotImplementedError


@dataclass
class Checkpoint(LabelsRawFeatures):
    """A loaded checkpoint: the eval-mode model plus what it needs around it."""

    model: SERModel
    feature_config: dict
    labels: list[str]
    normalisation: dict
    train_params: dict
    provenance: dict
    calibration: dict = dataclasses.field(default_factory=lambda: {"temperature": 1.0})
    segmentation: dict = dataclasses.field(default_factory=lambda: dict(WHOLE_CLIPS))

    @property
    def model_config(self) -> ModelConfig:
        return self.model.config

    def predict_normalised(self, features: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Calibrated probabilities (N, C) for features already normalised: labelling
        normalises each window with its own channel's statistics, then batches windows of
        several channels together."""
        if len(features) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        tensors = [torch.from_numpy(np.asarray(x, dtype=np.float32)) for x in features]
        logits = predict_logits(self.model, tensors, batch_size) / self.temperature  # calibrated
        return torch.softmax(logits, dim=1).numpy()


def check_calibration(calibration: Any, path: str | Path) -> dict:
    """A checkpoint's ``calibration`` entry, validated (ValueError naming the file)."""
    if calibration is None:
        return {"temperature": 1.0}
    if not isinstance(calibration, dict):
        raise ValueError(f"{path}: calibration should be a dict like {{'temperature': 1.3}}, "
                         f"got {type(calibration).__name__}")
    value = calibration.get("temperature", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{path}: calibration temperature must be a finite number > 0, got {value!r}")
    return dict(calibration)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load with ``weights_only=True`` and rebuild the model in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or one holding pickled classes
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise ValueError(f"{path} is not a {FORMAT} checkpoint ({type(exc).__name__}: {first_line})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} checkpoint")
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {missing}")
    model = SERModel(ModelConfig.from_dict(data["model_config"]))
    model.load_state_dict(data["state_dict"])
    model.eval()
    return Checkpoint(model=model, feature_config=data["feature_config"], labels=data["labels"],
                      normalisation=data["normalisation"], train_params=data["train_params"],
                      provenance=data["provenance"],
                      calibration=check_calibration(data.get("calibration"), path),
                      segmentation=dict(data.get("segmentation") or WHOLE_CLIPS))
