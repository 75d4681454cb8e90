"""``Labeller``: ``ser label``'s labelling of one recording, from Python, without Beam.

    from ser_core import Labeller
    labeller = Labeller.load("models/telephone/final.pt")   # or an exported model.onnx
    result = labeller.label_file("call.wav")
    result.segments   # one row per labelled window (the segments-*.parquet schema)
    result.roles      # per channel/role: speech seconds, shares, dominant emotion, thirds
    result.timeline   # merged turns (the timeline-*.parquet schema)
    result.file       # the files-*.parquet row, as a dict
    labeller.predict_clip("clip.wav")   # {label: probability} for one clip

The tables are ``pyarrow.Table`` (pyarrow is a dependency; pandas is not): call
``.to_pandas()`` where pandas is installed, or ``.to_pylist()`` for dicts.

One implementation with the pipeline: the windows come from
:class:`~ser_core.inference.windows.Windower`, the probabilities from
:func:`~ser_core.inference.engine.label_examples`, the rows from
:func:`~ser_core.inference.outputs.segment_row` and
:func:`~ser_core.inference.outputs.finish_file` (which summarises with
:mod:`ser_core.inference.summary`): the DoFns of ``pipelines/label.py`` call the same
functions, so a file labelled here and by ``ser label`` with the same settings gives the
same rows. Settings are resolved as ``ser label`` resolves them: a model trained on
labelling windows cuts windows of its own ``window_s``/``hop_s`` unless given others, and
mismatches between the model's training audio and the labelling windows are logged as
warnings (and kept in :attr:`Labeller.warnings`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Iterable, Iterator, TypeVar

import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits

from ser_core import audio
from ser_core.errors import FileError
from ser_core.features import FeatureError
from ser_core.inference.engine import LabellingModel, label_examples, load_model, restrict
from ser_core.inference.outputs import finish_file, segment_row, segments_schema, timeline_schema
from ser_core.inference.plan import SETTING_KEYS, LabelPlan, LabelSettings, resolve
from ser_core.segmentation import SEGMENT_KEYS, SegmentConfig, cut_clip
from ser_core.inference.summary import role_schema
from ser_core.inference.windows import Windower
from ser_core.storage import open_audio

log = logging.getLogger(__name__)
T = TypeVar("T")


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _split_options(options: dict[str, Any]) -> tuple[LabelSettings, dict[str, Any]]:
    """``Labeller`` options -> (the labelling settings, the segmentation settings); an
    option that is neither is refused before anything is loaded."""
    unknown = sorted(set(options) - SETTING_KEYS - SEGMENT_KEYS)
    if unknown:
        raise TypeError(f"unknown labelling option(s) {unknown}")
    return (LabelSettings(**{k: v for k, v in options.items() if k in SETTING_KEYS}),
            {k: v for k, v in options.items() if k in SEGMENT_KEYS})


@dataclass(frozen=True)
class FileLabels:
    """One labelled recording: the pipeline's rows for it, as tables (and its files row)."""

    segments: pa.Table
    roles: pa.Table
    timeline: pa.Table
    file: dict[str, Any]


@dataclass
class Labeller:
    """A loaded model and its :class:`~ser_core.inference.plan.LabelPlan`;
    :meth:`label_file` labels one recording as ``ser label`` would, :meth:`predict_clip`
    scores one clip as training saw clips."""

    model: LabellingModel
    plan: LabelPlan
    windower: Windower = field(init=False)

    def __post_init__(self) -> None:
        self.windower = self.plan.windower()

    @property
    def settings(self) -> LabelSettings:
        return self.plan.settings

    @property
    def labels(self) -> list[str]:
        return self.plan.labels

    @property
    def segment_config(self) -> SegmentConfig:
        return self.plan.segment

    @property
    def warnings(self) -> list[str]:
        """Where the labelling windows differ from the model's training audio."""
        return self.plan.warnings

    @classmethod
    def for_model(cls, model: LabellingModel, source: str = "model", **options: Any) -> "Labeller":
        """A labeller for an already loaded ``model``: ``options`` are
        :class:`~ser_core.inference.plan.LabelSettings` fields (``channels``, ``roles``,
        ``min_confidence``, ``block_s``, ``batch_size``, ``threads``) and
        :class:`~ser_core.segmentation.SegmentConfig` fields (``segmentation``, ``window_s``,
        ``hop_s``, ``min_speech_s``, ...) over the defaults, which are the model's own
        windows when it was trained on windows. ``source`` names the model in messages."""
        settings, segmentation = _split_options(options)
        return cls(model, resolve(source, model, settings, segmentation))

    @classmethod
    def load(cls, path: str, **options: Any) -> "Labeller":
        """The model at ``path`` (a checkpoint, or an ``.onnx`` file from ``ser export``;
        ``engine='torch'|'onnx'`` overrides the choice by extension), with ``options`` as
        :meth:`for_model` takes them. ``threads`` (default 1) caps the engine's and, while
        labelling, BLAS's threads (0: as they are); on a busy machine a BLAS pool makes the
        front-end's small matrix products many times slower."""
        settings, segmentation = _split_options(options)
        model = load_model(path, settings.engine_choice, settings.engine_threads)
        return cls(model, resolve(path, model, settings, segmentation))

    def _blas_limit(self) -> contextlib.AbstractContextManager:
        threads = self.settings.engine_threads
        return threadpool_limits(limits=threads, user_api="blas") if threads else contextlib.nullcontext()

    def label_file(self, path: str) -> FileLabels:
        """Label one recording (any format libsndfile reads, local or a URL): its segments,
        per-role summaries, timeline and files row. Raises
        :class:`~ser_core.errors.FileError` naming the path and the stage that failed."""
        rows = []
        with self._blas_limit(), self.windower.open(path) as windows:
            batch, min_confidence = self.settings.batch_size, self.settings.min_confidence
            for chunk in _chunks(windows, batch):
                probs = label_examples(self.model, [example for _, example in chunk], batch, self.plan.columns)
                rows += [segment_row(key, p, self.labels, min_confidence) for (key, _), p in zip(chunk, probs)]
            info = windows.info
        result, error = finish_file(path, [info], rows, [], self.labels, self.plan.segment.hop_s)
        if error is not None:  # every window comes back here: a failure is a bug, not an input
            raise FileError(path, error["stage"], error["error"])
        return FileLabels(pa.Table.from_pylist(result.segments, schema=segments_schema(self.labels)),
                          pa.Table.from_pylist(result.roles, schema=role_schema(self.labels)),
                          pa.Table.from_pylist(result.timeline, schema=timeline_schema()), result.files_row)

    def predict_clip(self, path: str, stats: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
        """One clip's class probabilities, the clip decoded (mono) and cut as the features
        stage cut the model's training clips (checkpoint ``segmentation``): the whole clip,
        its speech, or the labelling windows, whose probabilities are averaged. In
        ``speaker`` normalisation the clip is normalised with ``stats`` if given (e.g.
        :func:`~ser_core.normalisation.frame_stats` over that speaker's clips, as training
        did), else with its own frames. Raises :class:`~ser_core.errors.FileError`."""
        fc = self.windower.feature_config
        try:
            with open_audio(path) as source:
                y, sr = audio.load(source, fc.sample_rate, quality=fc.resample_quality, min_duration_s=fc.window_s)
        except (OSError, ValueError) as exc:
            raise FileError(path, "decode", f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}") from exc
        cut = SegmentConfig.from_dict(self.model.segmentation.get("segment_config") or {})
        with self._blas_limit():
            try:
                spans = cut_clip(y, sr, self.model.segmentation.get("mode", "none"), cut, fc.band_hz)
                features = [self.windower.extract(y[start:end]) for start, end in spans]
            except FeatureError as exc:
                raise FileError(path, "features", str(exc)) from exc
            probs = restrict(self.model.predict_proba(features, stats, self.settings.batch_size).mean(axis=0),
                             self.plan.columns)  # windows averaged as in training, then the choice
        return {label: float(p) for label, p in zip(self.labels, probs)}
