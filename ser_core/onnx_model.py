"""A ``ser export`` ONNX model run with onnxruntime: the checkpoint's labelling interface
without PyTorch in the forward pass.

The file is self-describing (``metadata_props``, each value JSON; written by
:mod:`ser_core.export`): ``ser.format``, ``ser.precision`` (fp32 | int8), ``ser.labels``,
``ser.feature_config``, ``ser.normalisation``, ``ser.calibration``, ``ser.model_config``,
``ser.provenance``, ``ser.train_params``, ``ser.source_sha256`` (the checkpoint it came
from) and ``ser.exporter`` (library versions); optional, ``ser.segmentation`` (how the
training clips were cut, as the checkpoint's entry; a file without it was exported
before it existed and reads as whole clips, like such a checkpoint).

The graph takes NORMALISED, zero-padded features ``features`` (B, T, D) float32 and the
valid ``lengths`` (B,) int64, and returns ``probabilities`` (B, C) = softmax(logits / T),
T the checkpoint's calibration temperature, and ``logits`` (B, C). Normalisation stays
outside the graph because in ``speaker`` mode its statistics are the call channel's, known
only to the caller. :meth:`OnnxModel.predict_proba` does exactly what
``Checkpoint.predict_proba`` does around the model: the same normalisation, the same
length-bucketed batches, so the two engines are interchangeable in the labelling code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

from ser_core.batching import length_batches
from ser_core.checkpoint import WHOLE_CLIPS, LabelsRawFeatures
from ser_core.model import ModelConfig

FORMAT = "ser-onnx/1"
PREFIX = "ser."
# metadata key (without PREFIX) -> what the value must be once decoded
METADATA_TYPES: dict[str, type] = {
    "format": str, "precision": str, "labels": list, "feature_config": dict, "normalisation": dict,
    "calibration": dict, "model_config": dict, "provenance": dict, "train_params": dict,
    "source_sha256": str, "exporter": dict,
}
OPTIONAL_METADATA_TYPES: dict[str, type] = {"segmentation": dict}
INPUT_FEATURES, INPUT_LENGTHS = "features", "lengths"
OUTPUT_PROBABILITIES, OUTPUT_LOGITS = "probabilities", "logits"
PRECISIONS = ("fp32", "int8")


class OnnxModelError(ValueError):
    """The file is not an ONNX model written by ``ser export`` (or not one this code reads)."""


def pad_batch(features: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded (B, T, D) float32 batch and its lengths (B,) int64: what ``collate``
    gives the PyTorch model, as numpy for onnxruntime."""
    lengths = np.array([x.shape[0] for x in features], dtype=np.int64)
    batch = np.zeros((len(features), int(lengths.max()), features[0].shape[1]), dtype=np.float32)
    for i, x in enumerate(features):
        batch[i, :len(x)] = x
    return batch, lengths


def _decode(path: str | Path, raw: dict[str, str], key: str, kind: type) -> Any:
    """One ``ser.<key>`` entry decoded from JSON and checked to be a ``kind``."""
    try:
        value = json.loads(raw[PREFIX + key])
    except json.JSONDecodeError as exc:
        raise OnnxModelError(f"{path}: metadata {PREFIX}{key} is not JSON ({exc})") from exc
    if not isinstance(value, kind):
        raise OnnxModelError(f"{path}: metadata {PREFIX}{key} should be a {kind.__name__}, "
                             f"got {type(value).__name__}")
    return value


def read_metadata(path: str | Path, raw: dict[str, str]) -> dict[str, Any]:
    """The ``ser.*`` entries of ``raw`` (metadata_props) decoded and checked."""
    if raw.get(PREFIX + "format") is None:
        raise OnnxModelError(f"{path}: ONNX model without {PREFIX}format metadata; "
                             f"expected a model written by `ser export`")
    missing = [PREFIX + k for k in METADATA_TYPES if PREFIX + k not in raw]
    if missing:
        raise OnnxModelError(f"{path}: ONNX model lacks the metadata {missing}")
    meta = {key: _decode(path, raw, key, kind) for key, kind in METADATA_TYPES.items()}
    meta.update({key: _decode(path, raw, key, kind) for key, kind in OPTIONAL_METADATA_TYPES.items()
                 if PREFIX + key in raw})
    if meta["format"] != FORMAT:
        raise OnnxModelError(f"{path}: format {meta['format']!r}; this code reads {FORMAT!r}")
    if meta["precision"] not in PRECISIONS:
        raise OnnxModelError(f"{path}: precision {meta['precision']!r}; expected one of {PRECISIONS}")
    return meta


@dataclass
class OnnxModel(LabelsRawFeatures):
    """A loaded ``ser export`` model: an onnxruntime session plus what it needs around it."""

    path: Path
    session: ort.InferenceSession
    labels: list[str]
    feature_config: dict
    normalisation: dict
    calibration: dict
    model_config: ModelConfig
    provenance: dict
    train_params: dict
    precision: str
    source_sha256: str
    segmentation: dict = field(default_factory=lambda: dict(WHOLE_CLIPS))

    @classmethod
    def load(cls, path: str | Path, threads: int = 1) -> "OnnxModel":
        """Open ``path`` with ``threads`` intra-op threads (1: a labelling worker runs one
        process per core, so more threads only contend)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own classes for unreadable files
            first = (str(exc).strip().splitlines() or [""])[0]
            raise OnnxModelError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {first})") from exc
        meta = read_metadata(path, session.get_modelmeta().custom_metadata_map)
        names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
        if names != ([INPUT_FEATURES, INPUT_LENGTHS], [OUTPUT_PROBABILITIES, OUTPUT_LOGITS]):
            raise OnnxModelError(f"{path}: graph has inputs/outputs {names}; expected "
                                 f"[{INPUT_FEATURES}, {INPUT_LENGTHS}] -> [{OUTPUT_PROBABILITIES}, {OUTPUT_LOGITS}]")
        config = ModelConfig.from_dict(meta["model_config"])
        if len(meta["labels"]) != config.n_classes:
            raise OnnxModelError(f"{path}: {len(meta['labels'])} labels for {config.n_classes} classes")
        return cls(path=path, session=session, labels=list(meta["labels"]),
                   feature_config=meta["feature_config"], normalisation=meta["normalisation"],
                   calibration=meta["calibration"], model_config=config, provenance=meta["provenance"],
                   train_params=meta["train_params"], precision=meta["precision"],
                   source_sha256=meta["source_sha256"],
                   segmentation=dict(meta.get("segmentation") or WHOLE_CLIPS))

    def run(self, batch: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, logits), each (B, C), for one normalised zero-padded batch."""
        probabilities, logits = self.session.run(
            [OUTPUT_PROBABILITIES, OUTPUT_LOGITS],
            {INPUT_FEATURES: np.ascontiguousarray(batch, dtype=np.float32),
             INPUT_LENGTHS: np.asarray(lengths, dtype=np.int64)})
        return probabilities, logits

    def predict_normalised(self, features: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """As ``Checkpoint.predict_normalised``: probabilities (N, C) for normalised features,
        in length-bucketed padded batches."""
        out = np.zeros((len(features), len(self.labels)), dtype=np.float32)
        lengths = np.array([x.shape[0] for x in features])
        for idx in length_batches(lengths, batch_size):
            out[idx] = self.run(*pad_batch([features[i] for i in idx]))[0]
        return out
