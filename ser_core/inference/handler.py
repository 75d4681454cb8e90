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
inference (:mod:`ser_core.inference.windows` does it while it cuts the file into
windows) and attaches to every example as ``stats``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any, Iterable, Optional, Sequence

import torch
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from ser_core.batching import predict_logits
from ser_core.checkpoint import Checkpoint, load_checkpoint
from ser_core.inference.windows import SegmentExample

log = logging.getLogger(__name__)


def open_checkpoint(path: str) -> Checkpoint:
    """:func:`load_checkpoint` for a local path or any Beam filesystem URL (gs://, s3://)."""
    if FileSystems.get_scheme(path) in (None, "file"):
        return load_checkpoint(path)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "model.pt")
        with FileSystems.open(path) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return load_checkpoint(local)


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
