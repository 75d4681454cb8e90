"""Labelling resolved once: the settings, the model's own facts, the windows, the warnings.

``ser label`` and :class:`~ser_core.Labeller` both label through a :class:`LabelPlan`: the
how-to-label settings (:class:`LabelSettings`, validated here and nowhere else), the
segmentation (:class:`~ser_core.segmentation.SegmentConfig`: the model's own windows as
defaults when it was trained on windows, then what the caller sets), and what the model
says of itself (labels, front-end, normalisation, how its training clips were cut). The
Beam graph takes the plan whole; so does the one-file ``Labeller``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Mapping

from ser_core import audio
from ser_core.features import FeatureConfig
from ser_core.inference.engine import (ENGINES, LabellingModel, check_model, engine_for, model_windows,
                                       segmentation_warnings)
from ser_core.inference.outputs import check_min_confidence, label_metadata
from ser_core.inference.windows import Windower
from ser_core.params import setting
from ser_core.segmentation import SegmentConfig

log = logging.getLogger(__name__)
AUTO = "auto"  # LabelSettings.engine: by the model file's extension


@dataclass(frozen=True)
class LabelSettings:
    """How recordings are labelled (params.yaml ``label``, beside the segmentation settings);
    each field is also a ``ser label`` flag."""

    engine: str = setting(AUTO, choices=(AUTO, *ENGINES),
                          help="run the model in PyTorch (a checkpoint) or onnxruntime (an ONNX model from "
                               "ser export); auto: by the model file's extension (.onnx: onnx)")
    channels: str = setting("separate", choices=audio.CHANNEL_MODES,
                            help="label each channel, or the channels mixed down to mono")
    roles: list[str] = setting(default_factory=list,
                               help="comma-separated names of channels 0, 1, ... (used for files with exactly "
                                    "that many channels), e.g. agent,customer (default ch0, ch1, ...)")
    restrict_to: list[str] = setting(default_factory=list,
                                     help="comma-separated labels of the model to choose among (e.g. the "
                                          "archive's own label set, neutral,happy,sad,angry): each window's "
                                          "probabilities renormalised over them, the others never written "
                                          "(default: all of the model's labels)")
    min_confidence: float = setting(0.0, help="segments whose calibrated top probability is below this are "
                                              "labelled 'uncertain' (kept); 0 = off")
    block_s: float = setting(30.0, help="decoding block, s")
    batch_size: int = setting(64, help="windows per model call")
    threads: int = setting(1, help="BLAS and engine threads per worker process (0: as the libraries set "
                                   "them); run one worker per core")

    def __post_init__(self) -> None:
        for name in ("roles", "restrict_to"):  # a list, or a comma-separated string (a flag)
            value = getattr(self, name)
            items = value.split(",") if isinstance(value, str) else list(value or ())
            object.__setattr__(self, name, [str(x).strip() for x in items if str(x).strip()])
        if len(set(self.restrict_to)) != len(self.restrict_to):
            raise ValueError(f"restrict_to names a label twice: {self.restrict_to}")
        object.__setattr__(self, "engine", self.engine or AUTO)
        if self.engine not in (AUTO, *ENGINES):
            raise ValueError(f"engine must be one of {(AUTO, *ENGINES)}, got {self.engine!r}")
        if self.channels not in audio.CHANNEL_MODES:
            raise ValueError(f"channels must be one of {audio.CHANNEL_MODES}, got {self.channels!r}")
        for name in ("block_s", "batch_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads!r}")
        # min_confidence is checked against the model's labels, in resolve()

    @property
    def engine_choice(self) -> str | None:
        """The engine asked for (None: by the model file's extension)."""
        return None if self.engine == AUTO else self.engine

    @property
    def engine_threads(self) -> int | None:
        """Threads for the engine and BLAS (None: leave them as they are)."""
        return self.threads or None


@dataclass(frozen=True)
class LabelPlan:
    """Everything labelling needs to know, settled before the first file is read."""

    model_path: str
    engine: str
    settings: LabelSettings
    segment: SegmentConfig
    labels: list[str]              # the labels written: the model's, or those restrict_to keeps
    feature_config: dict
    normalisation: str             # the model's normalisation mode: speaker | global
    model_segmentation: dict       # how the model's training clips were cut
    warnings: list[str]            # where the labelling windows differ from the training audio
    model_labels: list[str]        # the model's own, in its order

    @property
    def columns(self) -> list[int] | None:
        """The written labels' columns of the model's output (None: all of them)."""
        return None if self.labels == self.model_labels else [self.model_labels.index(x) for x in self.labels]

    @property
    def speaker_stats(self) -> bool:
        return self.normalisation == "speaker"

    def windower(self) -> Windower:
        """The windows and features of a recording, as this plan cuts them (builds and warms
        up the front-end: once per worker or labeller)."""
        s = self.settings
        return Windower(FeatureConfig.from_dict(self.feature_config), self.segment, s.channels, s.roles,
                        s.block_s, self.speaker_stats)

    def metadata(self, model_sha256: str) -> dict[bytes, bytes]:
        """The ``ser.label`` schema metadata every output shard carries."""
        s = self.settings
        return label_metadata(self.model_path, model_sha256, self.labels, self.feature_config, self.normalisation,
                              self.segment, s.channels, s.roles, engine=self.engine,
                              min_confidence=s.min_confidence, model_segmentation=self.model_segmentation,
                              warnings=self.warnings, model_labels=self.model_labels)


SETTING_KEYS = frozenset(f.name for f in dataclasses.fields(LabelSettings))


def resolve(model_path: str, model: LabellingModel, settings: LabelSettings,
            segmentation: Mapping[str, Any] | None = None) -> LabelPlan:
    """The plan for labelling with ``model`` (loaded from ``model_path``): its windows are
    the model's own when it was trained on windows, under ``segmentation`` (any
    :class:`SegmentConfig` field). Raises ValueError naming what does not fit; logs a
    WARNING for each way the windows differ from the model's training audio."""
    engine = engine_for(model_path, settings.engine_choice)
    check_model(model, model_path)
    model_labels = list(model.labels)
    labels = model_labels
    if settings.restrict_to:
        unknown = [x for x in settings.restrict_to if x not in model_labels]
        if unknown or len(settings.restrict_to) < 2:
            raise ValueError(f"restrict_to {settings.restrict_to}: " + (
                f"{unknown} not among the model's labels {model_labels}" if unknown
                else "name at least two of the model's labels to choose among"))
        labels = [x for x in model_labels if x in settings.restrict_to]  # the model's order
    check_min_confidence(settings.min_confidence, labels)
    segment = SegmentConfig.from_dict({**model_windows(model.segmentation), **(segmentation or {})})
    warnings = segmentation_warnings(model.segmentation, segment)
    for warning in warnings:
        log.warning("%s: %s", model_path, warning)
    return LabelPlan(model_path, engine, settings, segment, labels, dict(model.feature_config),
                     model.normalisation["mode"], dict(model.segmentation), warnings, model_labels)
