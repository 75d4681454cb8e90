"""How a training clip is cut into feature rows, as labelling cuts calls.

``variants.*.segmentation`` (a checkpoint's ``segmentation.mode``) is one of
:data:`CLIP_SEGMENTATIONS`: the whole clip (``none``, the paper), the clip trimmed to its
detected speech (``speech``), or each labelling window (``windows``), found by the same
detector and windows (:mod:`ser_core.segmentation.regions`) that cut call channels.
"""

from __future__ import annotations

import numpy as np

from ser_core.features import FeatureError
from ser_core.segmentation.regions import SegmentConfig, segment_channel

CLIP_SEGMENTATIONS = ("none", "speech", "windows")
# The SegmentConfig settings that decide what a model trained on rows cut in each mode hears:
# speech spans are whole (only the detector matters), windows also have a length and a hop.
# Labelling warns (ser_core.inference.engine) and features are compared (ser_core.feature_shards) by it.
CUT_DECIDES = {"none": (), "speech": ("segmentation",), "windows": ("segmentation", "window_s", "hop_s")}

__all__ = ["CLIP_SEGMENTATIONS", "CUT_DECIDES", "cut_clip"]


def cut_clip(y: np.ndarray, sample_rate: int, mode: str, config: SegmentConfig,
             band_hz: tuple[float, float] | None = None) -> list[tuple[int, int]]:
    """The (start, end) sample spans of one clip that become feature rows, as the features
    stage cuts training clips (``mode`` one of :data:`CLIP_SEGMENTATIONS`): the whole clip,
    its first to last speech window, or each labelling window. The detector listens within
    ``band_hz`` (the features' band) as it does on calls. A clip in which the detector
    finds no speech raises :class:`~ser_core.features.FeatureError`: never silently dropped."""
    if mode not in CLIP_SEGMENTATIONS:
        raise ValueError(f"clip segmentation must be one of {CLIP_SEGMENTATIONS}, got {mode!r}")
    if mode == "none":
        return [(0, len(y))]
    windows, _ = segment_channel(y, sample_rate, config, band_hz=band_hz)
    if not windows:
        raise FeatureError(f"no speech detected to cut ({mode} segmentation, "
                           f"{config.segmentation} detector, {len(y) / sample_rate:.2f} s clip)")
    if mode == "speech":
        return [(min(w.start for w in windows), max(w.end for w in windows))]
    return [(w.start, w.end) for w in windows]
