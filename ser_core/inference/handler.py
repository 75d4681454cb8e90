"""A Beam ``ModelHandler`` for self-describing SER checkpoints (docs/CONTRACTS.md).

RunInference calls :meth:`SERModelHandler.load_model` once per worker process (Beam's
``shared.Shared`` hands the one loaded model to every thread of that process) and
:meth:`SERModelHandler.run_inference` once per batch. Wrap it in ``KeyedModelHandler`` so
each segment's key (path, channel, times) rides through inference untouched.

Batches hold windows of different lengths: they are sorted by length and zero-padded per
sub-batch with valid lengths passed along (the model masks the padding), so a window's
probabilities do not depend on what it was batched with.

Normalisation comes from the checkpoint. ``global``: the training speakers' mean/std.
``speaker``: each call channel is a speaker and is normalised with its own statistics,
which the caller computes over all of that channel's windows before any of them reaches
inference (``pipelines/label.py`` does it in a first pass over the file, block by block)
and attaches to every example as ``stats``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any, Iterable, NamedTuple, Optional, Sequence

import numpy as np
import torch
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from ser_core.training.checkpoint import Checkpoint, load_checkpoint
from ser_core.training.data import STD_FLOOR, predict_logits

log = logging.getLogger(__name__)


class SegmentExample(NamedTuple):
    """One window to label: raw features and, in speaker mode, its channel's statistics."""

    features: np.ndarray  # (T, D) float32, not normalised
    stats: Optional[tuple[np.ndarray, np.ndarray]] = None  # (mean (D,), std (D,))


def open_checkpoint(path: str) -> Checkpoint:
    """:func:`load_checkpoint` for a local path or any Beam filesystem URL (gs://, s3://)."""
    if FileSystems.get_scheme(path) in (None, "file"):
        return load_checkpoint(path)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "model.pt")
        with FileSystems.open(path) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return load_checkpoint(local)


class RunningStats:
    """Per-dimension mean/std over the frames of many windows, merged window by window
    (Chan et al.'s pairwise update: exact, constant memory)."""

    def __init__(self, n_dims: int) -> None:
        self.n = 0
        self.mean = np.zeros(n_dims)
        self.m2 = np.zeros(n_dims)

    def update(self, frames: np.ndarray) -> None:
        x = np.asarray(frames, dtype=np.float64)
        n_b = x.shape[0]
        if n_b == 0:
            return
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta ** 2 * (self.n * n_b / n)
        self.n = n

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) as training computes them (population std, floored at STD_FLOOR)."""
        std = np.sqrt(self.m2 / self.n) if self.n else np.zeros_like(self.m2)
        return self.mean.copy(), np.maximum(std, STD_FLOOR)


class SERModelHandler(ModelHandler[SegmentExample, PredictionResult, Checkpoint]):
    """Loads a checkpoint and returns class probabilities (C,) for each :class:`SegmentExample`.

    ``torch_threads`` caps intra-op threads per worker process (None leaves torch's
    default): with one worker process per core, more threads only contend.
    """

    def __init__(self, model_path: str, *, batch_size: int = 64,
                 torch_threads: int | None = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # Fixed-size batches: windows are cheap to hold, and adaptive sizing would start
        # at one window per call.
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self.model_path = model_path
        self.batch_size = batch_size
        self.torch_threads = torch_threads

    def load_model(self) -> Checkpoint:
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        checkpoint = open_checkpoint(self.model_path)
        log.info("loaded %s: %s, labels %s, %s normalisation", self.model_path,
                 checkpoint.model_config, checkpoint.labels, checkpoint.normalisation["mode"])
        return checkpoint

    def run_inference(self, batch: Sequence[SegmentExample], model: Checkpoint,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        speaker = model.normalisation["mode"] == "speaker"
        tensors = []
        for example in batch:
            if speaker and example.stats is None:
                raise ValueError("this checkpoint normalises per speaker: every example needs "
                                 "its channel's stats")
            (x,) = model.normalise([example.features], example.stats if speaker else None)
            tensors.append(torch.from_numpy(x))
        probs = torch.softmax(predict_logits(model.model, tensors, self.batch_size), dim=1).numpy()
        return [PredictionResult(example, p, self.model_path) for example, p in zip(batch, probs)]

    def get_num_bytes(self, batch: Sequence[SegmentExample]) -> int:
        return sum(example.features.nbytes for example in batch)

    def get_metrics_namespace(self) -> str:
        return "ser_label"
