"""A Beam ``ModelHandler`` for SER models: checkpoints (PyTorch) and ``ser export`` files
(onnxruntime), see :mod:`ser_core.inference.engine`.

RunInference calls :meth:`SERModelHandler.load_model` once per worker process (Beam's
``shared.Shared`` hands the one loaded model to every thread of that process) and
:meth:`SERModelHandler.run_inference` once per batch. Wrap it in ``KeyedModelHandler`` so
each segment's key (path, channel, times) rides through inference untouched.

Batches hold windows of different lengths: they are sorted by length and zero-padded per
sub-batch with valid lengths passed along (the model masks the padding), so a window's
probabilities do not depend on what it was batched with. Probabilities are calibrated
(the model's temperature), as :meth:`Checkpoint.predict_proba` gives them.

Normalisation comes from the model. ``global``: the training speakers' mean/std.
``speaker``: each call channel is a speaker and is normalised with its own statistics,
which the caller computes over all of that channel's windows before any of them reaches
inference (:mod:`ser_core.inference.windows` does it while it cuts the file into
windows) and attaches to every example as ``stats``.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Optional, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from ser_core.inference.engine import LabellingModel, engine_for, label_examples, load_model
from ser_core.inference.windows import SegmentExample

log = logging.getLogger(__name__)


class SERModelHandler(ModelHandler[SegmentExample, PredictionResult, LabellingModel]):
    """Loads a model and returns class probabilities (C,) for each :class:`SegmentExample`.

    ``engine``: ``torch`` or ``onnx`` (default: by the file's extension). ``threads`` caps
    the engine's intra-op threads per worker process (None leaves torch's default): with
    one worker process per core, more threads only contend.
    """

    def __init__(self, model_path: str, *, engine: str | None = None, batch_size: int = 64,
                 threads: int | None = 1, columns: Sequence[int] | None = None) -> None:
        # Fixed-size batches: windows are cheap to hold, and adaptive sizing would start
        # at one window per call.
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self.model_path = model_path
        self.engine = engine_for(model_path, engine)
        self.batch_size = batch_size
        self.threads = threads
        self.columns = None if columns is None else list(columns)  # only these labels (plan.columns)

    def load_model(self) -> LabellingModel:
        model = load_model(self.model_path, self.engine, self.threads)
        log.info("loaded %s (%s engine): labels %s, %s normalisation", self.model_path, self.engine,
                 model.labels, model.normalisation["mode"])
        return model

    def run_inference(self, batch: Sequence[SegmentExample], model: LabellingModel,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        probs = label_examples(model, batch, self.batch_size, self.columns)
        return [PredictionResult(example, p, self.model_path) for example, p in zip(batch, probs)]

    def get_num_bytes(self, batch: Sequence[SegmentExample]) -> int:
        return sum(example.features.nbytes for example in batch)

    def get_metrics_namespace(self) -> str:
        return "ser_label"
