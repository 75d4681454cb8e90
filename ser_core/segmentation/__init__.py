"""Where speech is: detectors, the regions and windows cut from their decisions, and how
training clips are cut the same way.

- :mod:`~ser_core.segmentation.frames`: what every detector shares (:class:`DetectorConfig`,
  the streaming frame interface, band listening);
- :mod:`~ser_core.segmentation.energy` (the default detector) and
  :mod:`~ser_core.segmentation.detectors` (WebRTC, Silero; :func:`make_detector`);
- :mod:`~ser_core.segmentation.regions`: :class:`SegmentConfig` and the streaming
  :class:`Segmenter` that turns frame decisions into labelling windows;
- :mod:`~ser_core.segmentation.clips`: training clips cut into feature rows
  (``variants.*.segmentation``) by the same detector and windows.

Labelling (``label.segmentation``, :data:`CHANNEL_SEGMENTATIONS`) and the features stage
(``variants.*.segmentation``, :data:`CLIP_SEGMENTATIONS`) both use this package, so a
telephone model is trained on exactly the windows it will label.
"""

from ser_core.segmentation.clips import CLIP_SEGMENTATIONS, CUT_DECIDES, cut_clip
from ser_core.segmentation.detectors import make_detector
from ser_core.segmentation.frames import CHANNEL_SEGMENTATIONS, DETECTORS, DetectorConfig, FrameDetector
from ser_core.segmentation.regions import SEGMENT_KEYS, SegmentConfig, Segmenter, Window, segment_channel

__all__ = ["CHANNEL_SEGMENTATIONS", "CLIP_SEGMENTATIONS", "CUT_DECIDES", "DETECTORS", "SEGMENT_KEYS", "DetectorConfig", "FrameDetector",
           "SegmentConfig", "Segmenter", "Window", "cut_clip", "make_detector", "segment_channel"]
