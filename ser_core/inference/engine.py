"""The model that labels: a checkpoint run by PyTorch or a ``ser export`` file run by
onnxruntime, behind one interface, and what its training says about how to cut audio.

Beam-free: the RunInference handler (:mod:`ser_core.inference.handler`) and the Python
API (:class:`ser_core.inference.labeller.Labeller`) both load the model with
:func:`load_model` and label windows with :func:`label_examples`, so the two give the same
probabilities for the same windows.

Engines (``ser label --engine``): ``torch`` runs a checkpoint
(:class:`~ser_core.checkpoint.Checkpoint`), ``onnx`` an exported model
(:class:`~ser_core.onnx_model.OnnxModel`); by default the file's extension decides
(``.onnx``: onnx, anything else: torch). Both normalise, batch and calibrate the same way.

Segmentation: a checkpoint records how its training clips were cut (``segmentation``:
``none`` = whole clips, ``speech`` = trimmed to the detected speech, ``windows`` = the
labelling windows, with the ``segment_config`` that cut them). :func:`model_windows` gives
the cut a windows-trained model saw (detector settings, window length and hop: labelling
uses them unless params or flags say otherwise), and :func:`segmentation_warnings` says
where labelling would feed the model audio unlike its training audio.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Protocol, Sequence

import numpy as np

from ser_core.segmentation import CUT_DECIDES, SegmentConfig
from ser_core.inference.windows import SegmentExample
from ser_core.storage import is_url, open_binary

if TYPE_CHECKING:
    from ser_core.model import ModelConfig

ENGINES = ("torch", "onnx")
ONNX_SUFFIX = ".onnx"


class LabellingModel(Protocol):
    """What labelling needs of a model (both engines have it)."""

    labels: list[str]
    feature_config: dict
    normalisation: dict
    segmentation: dict
    model_config: "ModelConfig"

    def normalise(self, features: Sequence[np.ndarray],
                  stats: tuple[np.ndarray, np.ndarray] | None = None) -> list[np.ndarray]: ...

    def predict_normalised(self, features: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray: ...

    def predict_proba(self, features: Sequence[np.ndarray], stats: tuple[np.ndarray, np.ndarray] | None = None,
                      batch_size: int = 64) -> np.ndarray: ...


def engine_for(path: str, engine: str | None = None) -> str:
    """The engine that runs ``path``: ``engine`` if given (it must fit the file), else by
    extension. Raises ValueError naming the file and what it needs."""
    by_file = "onnx" if str(path).lower().endswith(ONNX_SUFFIX) else "torch"
    if engine is None:
        return by_file
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine != by_file:
        need = (f"an ONNX model ({ONNX_SUFFIX}); export the checkpoint first: ser export {path} "
                f"--output model{ONNX_SUFFIX}") if engine == "onnx" else "a checkpoint (.pt), not an ONNX model"
        raise ValueError(f"{path}: --engine {engine} runs {need}")
    return engine


@contextlib.contextmanager
def local_copy(path: str, suffix: str) -> Iterator[str]:
    """``path`` itself when local; a URL (gs://, ...) copied to a temporary file."""
    if not is_url(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="ser-model-") as tmp:
        local = os.path.join(tmp, "model" + suffix)
        with open_binary(path) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst)
        yield local


def load_model(path: str, engine: str | None = None, threads: int | None = 1) -> LabellingModel:
    """The model at ``path`` (local or a Beam filesystem URL) for ``engine`` (default: by
    extension). ``threads`` caps the engine's intra-op threads (None: torch's default);
    labelling runs one process per core, where more threads only contend."""
    engine = engine_for(path, engine)
    with local_copy(path, ONNX_SUFFIX if engine == "onnx" else ".pt") as local:
        if engine == "onnx":
            from ser_core.onnx_model import OnnxModel

            return OnnxModel.load(local, threads=threads or 1)
        import torch

        from ser_core.checkpoint import load_checkpoint

        if threads:
            torch.set_num_threads(threads)
        return load_checkpoint(local)


def check_model(model: LabellingModel, path: str) -> None:
    """The model takes the features its front-end makes (ValueError naming the file)."""
    from ser_core.features import FeatureConfig

    n_dims = FeatureConfig.from_dict(model.feature_config).n_dims
    if n_dims != model.model_config.n_dims:
        raise ValueError(f"{path}: features have {n_dims} dims, the model takes {model.model_config.n_dims}")


def restrict(probs: np.ndarray, columns: Sequence[int] | None) -> np.ndarray:
    """Probabilities (..., C) kept to ``columns`` (None: all) and renormalised over them: the
    model's choice among those labels only. With calibrated softmax outputs this is exactly
    the softmax of the kept logits at the same temperature."""
    if columns is None:
        return probs
    kept = probs[..., list(columns)]
    return kept / np.maximum(kept.sum(axis=-1, keepdims=True), np.finfo(kept.dtype).tiny)


def label_examples(model: LabellingModel, examples: Sequence[SegmentExample], batch_size: int = 64,
                   columns: Sequence[int] | None = None) -> np.ndarray:
    """Probabilities (N, C) of windows from any channels: each normalised as the model was
    trained (``speaker`` mode: with its own channel's ``stats``, which every example must
    carry), then batched by length; ``columns``: only those labels (:func:`restrict`)."""
    speaker = model.normalisation["mode"] == "speaker"
    normalised: list[np.ndarray] = []
    for example in examples:
        if speaker and example.stats is None:
            raise ValueError("this model normalises per speaker: every example needs its channel's stats")
        normalised += model.normalise([example.features], example.stats if speaker else None)
    return restrict(model.predict_normalised(normalised, batch_size), columns)


# ---------------------------------------------------------------- segmentation


def model_windows(segmentation: Mapping[str, Any]) -> dict[str, Any]:
    """How a model's training clips were cut, as labelling defaults (params and flags still
    win): a windows-trained model's whole ``segment_config`` (detector, its levels, window,
    hop, shortest speech); a speech-trimmed model's detector settings (its windows are
    labelling's own choice); nothing for a whole-clip model."""
    cut = dict(segmentation.get("segment_config") or {})
    mode = segmentation.get("mode")
    if mode == "windows":
        return cut
    if mode == "speech":
        return {k: v for k, v in cut.items() if k not in ("window_s", "hop_s", "min_speech_s")}
    return {}


def segmentation_warnings(segmentation: Mapping[str, Any], seg: SegmentConfig) -> list[str]:
    """Where labelling with ``seg`` feeds the model audio unlike its training audio: a
    whole-clip model (mode ``none``) given windows; a model trained on speech cut by
    another detector; a windows-trained model given windows of another length or hop."""
    mode = segmentation.get("mode", "none")
    if mode == "none":
        return [f"the model was trained on whole clips (segmentation none), but labelling feeds it "
                f"{seg.window_s:g} s windows of {'speech' if seg.detector else 'audio'}: train the "
                f"labelling model with features.segmentation windows (or speech)"]
    cut = SegmentConfig.from_dict(segmentation.get("segment_config") or {})
    out = []
    for name in CUT_DECIDES[mode]:
        trained, now = getattr(cut, name), getattr(seg, name)
        if trained == now:
            continue
        out.append(f"the model's training clips were cut with the {trained} detector, labelling uses {now}"
                   if name == "segmentation" else
                   f"the model was trained on windows with {name} {trained:g}, labelling uses {now:g}")
    return out
