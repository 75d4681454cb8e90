"""``ser export``: a checkpoint -> one self-describing ONNX file for onnxruntime (fp32, or
int8 weights), read back by :class:`ser_core.onnx_model.OnnxModel`.

The graph is the eval-mode model (dropout off, BatchNorm on its running statistics) with
dynamic batch and time axes: ``features`` (B, T, D) normalised and zero-padded, ``lengths``
(B,) int64, so padded frames are masked exactly as in PyTorch; outputs ``probabilities``
= softmax(logits / T), T the checkpoint's optional ``calibration.temperature`` (1.0 when
absent), and ``logits``. Normalisation, labels, feature and model configuration,
calibration, segmentation (how the training clips were cut), provenance and training
params travel in the file's metadata, with the checkpoint's SHA-256 (see :mod:`ser_core.onnx_model`).

Exporter: PyTorch's TorchScript-based exporter (``dynamo=False``). In torch 2.13 the default
dynamo exporter also exports the model, but it keeps PyTorch's LSTM weights and reorders
their gates inside the graph: the file is larger (275 KB for h64, over the 250 KB budget)
and onnxruntime's quantiser cannot reach the LSTM weights, which are no longer
initialisers. The TorchScript exporter folds them into ONNX ``LSTM`` nodes (196 KB for
h64), takes about 1 s instead of about 20 s and needs no ``onnxscript``.

int8 (``--int8``): onnxruntime's dynamic quantisation of the two LSTMs (``LSTM`` ->
``DynamicQuantizeLSTM``: int8 weights, per output channel; activations quantised on the
fly), which hold 98% of the parameters; the attention vector, BatchNorms and classifier stay
fp32 (quantising them saves under 1 KB and only adds error). h64: about 70 KB.

The weights use 7 of their 8 bits (``reduce_range``), so that the labels do not depend on
the CPU. onnxruntime multiplies uint8 activations by int8 weights with AVX-512 VNNI where
the CPU has it (exact int32 sums) and with AVX2's ``vpmaddubsw`` elsewhere, which adds
pairs of products in int16 and saturates: with 8-bit weights the same file gave
probabilities 0.011 apart and 5% other labels on an AVX2 CPU (emulated) than on an AVX-512
VNNI one. With 7-bit weights a pair of products cannot leave int16's range and both paths
agree to float rounding (6e-8); ``tests/test_export.py`` checks it under emulation, and
README's ONNX section gives what the 7th bit costs on real speech.

Every export is checked before it is written: onnxruntime's probabilities on a seeded
padded batch of mixed lengths must be within :data:`PARITY_ATOL` of PyTorch's (fp32); for
int8 the largest deviation is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from ser_core.model import SERModel
from ser_core.onnx_model import (FORMAT, INPUT_FEATURES, INPUT_LENGTHS, OUTPUT_LOGITS,
                                 OUTPUT_PROBABILITIES, PREFIX, OnnxModel, pad_batch)
from ser_core.checkpoint import Checkpoint, load_checkpoint
from ser_core.storage import sha256

log = logging.getLogger(__name__)

OPSET = 17
PARITY_ATOL = 1e-4  # fp32 probabilities vs PyTorch (measured: ~1e-7)
PROBE_LENGTHS = (37, 80, 1, 12, 80, 5)  # frames per utterance of the check batch


class ExportError(ValueError):
    """The checkpoint cannot be exported (not a checkpoint, bad calibration, failed check)."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    precision: str
    size_bytes: int
    max_abs_diff: float  # largest |probability - PyTorch's| on the check batch


class ProbabilityHead(nn.Module):
    """The model plus its calibrated softmax: (features, lengths) -> (probabilities, logits)."""

    def __init__(self, model: SERModel, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(features, lengths)  # (B, C)
        return torch.softmax(logits / self.temperature, dim=1), logits


def read_checkpoint(path: str | Path) -> tuple[Checkpoint, dict]:
    """The loaded checkpoint and its ``calibration`` entry ({} when it has none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = load_checkpoint(path)
    except ValueError as exc:  # unreadable, wrong format, missing entries, bad calibration
        raise ExportError(str(exc)) from exc
    except RuntimeError as exc:  # weights that do not fit the model config
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ExportError(f"{path}: the state_dict does not fit its model_config ({first})") from exc
    return checkpoint, dict(checkpoint.calibration)


def temperature_of(calibration: Mapping[str, Any], path: str | Path) -> float:
    """The calibration temperature (validated when the checkpoint was loaded)."""
    return float(calibration.get("temperature", 1.0))


def metadata(checkpoint: Checkpoint, calibration: Mapping[str, Any], precision: str,
             source_sha256: str) -> dict[str, str]:
    """``metadata_props`` entries (``ser.*`` -> JSON) for :class:`OnnxModel` to read."""
    values = {
        "format": FORMAT, "precision": precision, "labels": list(checkpoint.labels),
        "feature_config": checkpoint.feature_config, "normalisation": checkpoint.normalisation,
        "calibration": dict(calibration), "model_config": checkpoint.model_config.to_dict(),
        "provenance": checkpoint.provenance, "train_params": checkpoint.train_params,
        "source_sha256": source_sha256, "segmentation": checkpoint.segmentation,
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__, "opset": OPSET},
    }
    out = {}
    for key, value in values.items():
        try:
            out[PREFIX + key] = json.dumps(value, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ExportError(f"checkpoint entry {key!r} cannot be written as JSON metadata: {exc}") from exc
    return out


def _torchscript_export(head: ProbabilityHead, n_dims: int, path: Path) -> None:
    example = (torch.zeros(2, 8, n_dims), torch.tensor([8, 5]))
    with warnings.catch_warnings():
        # The legacy exporter is chosen on purpose (module docstring) and warns that it is.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        # Tracing records the LSTM's checks of the feature size as constants: D is fixed.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # It also warns that an LSTM's initial state could be fixed to the example's batch
        # size; here it is built from the input's shape (the tests run other batch sizes).
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*LSTM.*")
        torch.onnx.export(
            head, example, str(path), dynamo=False, opset_version=OPSET,
            input_names=[INPUT_FEATURES, INPUT_LENGTHS],
            output_names=[OUTPUT_PROBABILITIES, OUTPUT_LOGITS],
            dynamic_axes={INPUT_FEATURES: {0: "batch", 1: "time"}, INPUT_LENGTHS: {0: "batch"},
                          OUTPUT_PROBABILITIES: {0: "batch"}, OUTPUT_LOGITS: {0: "batch"}})


@contextlib.contextmanager
def _quiet_quantiser() -> Iterator[None]:
    """Drop the quantiser's advice to pre-process the graph (shape inference for ops we do
    not quantise); it is logged on the root logger and would read like a problem."""
    def keep(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _quantise(src: Path, dst: Path, reduce_range: bool = True) -> None:
    """int8 LSTM weights, 7 bits used (``reduce_range``: module docstring); 8 bits only for
    benchmarks/int8.py, which measures what the 7th bit costs."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_quantiser():
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=["LSTM"], per_channel=True,
                         weight_type=QuantType.QInt8, reduce_range=reduce_range)


def probe_batch(n_dims: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded zero-padded batch of unit-variance features with mixed lengths."""
    rng = np.random.default_rng(seed)
    return pad_batch([rng.standard_normal((t, n_dims)).astype(np.float32) for t in PROBE_LENGTHS])


def export_onnx(checkpoint_path: str | Path, output: str | Path, *, int8: bool = False) -> ExportResult:
    """Write ``checkpoint_path``'s model to ``output`` as ONNX (atomically) and check it."""
    checkpoint, calibration = read_checkpoint(checkpoint_path)
    temperature = temperature_of(calibration, checkpoint_path)
    precision = "int8" if int8 else "fp32"
    head = ProbabilityHead(checkpoint.model, temperature).eval()
    n_dims = checkpoint.model_config.n_dims
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".export-") as tmp:
        graph = Path(tmp) / "fp32.onnx"
        _torchscript_export(head, n_dims, graph)
        if int8:
            _quantise(graph, Path(tmp) / "int8.onnx")
            graph = Path(tmp) / "int8.onnx"
        model = onnx.load(str(graph))
        model.producer_name, model.doc_string = "ser export", (
            f"{checkpoint.model_config.name} "
            f"{precision}: inputs {INPUT_FEATURES} (B, T, {n_dims}) normalised zero-padded, "
            f"{INPUT_LENGTHS} (B,) int64; outputs {OUTPUT_PROBABILITIES}, {OUTPUT_LOGITS} (B, "
            f"{len(checkpoint.labels)}); see metadata {PREFIX}*")
        onnx.helper.set_model_props(model, metadata(checkpoint, calibration, precision,
                                                    sha256(str(checkpoint_path))))
        onnx.checker.check_model(model)
        final = Path(tmp) / "final.onnx"
        onnx.save(model, str(final))
        diff = _max_abs_diff(head, OnnxModel.load(final), n_dims)
        if not int8 and not diff <= PARITY_ATOL:
            raise ExportError(f"{checkpoint_path}: the exported graph's probabilities differ from "
                              f"PyTorch's by {diff:.3g} (> {PARITY_ATOL}); not written")
        os.replace(final, output)
    return ExportResult(output, precision, output.stat().st_size, diff)


def _max_abs_diff(head: ProbabilityHead, engine: OnnxModel, n_dims: int) -> float:
    batch, lengths = probe_batch(n_dims)
    with torch.no_grad():
        expected = head(torch.from_numpy(batch), torch.from_numpy(lengths))[0].numpy()
    return float(np.abs(engine.run(batch, lengths)[0] - expected).max())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a ser train checkpoint (.pt)")
    parser.add_argument("--output", required=True, metavar="MODEL.onnx", help="ONNX file to write")
    parser.add_argument("--int8", action="store_true",
                        help="int8 LSTM weights (onnxruntime dynamic quantisation)")


def main(args: argparse.Namespace) -> int:
    result = export_onnx(args.checkpoint, args.output, int8=args.int8)
    print(f"{result.path}: {result.precision}, {result.size_bytes / 1024:.1f} KB; probabilities within "
          f"{result.max_abs_diff:.2g} of PyTorch on a padded batch of {len(PROBE_LENGTHS)} utterances")
    return 0
