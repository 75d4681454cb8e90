"""Where to label: speech regions from a detector, and the windows cut from them.

Everything here streams: audio arrives one block at a time and only a bounded tail of
samples is ever held, so memory does not grow with recording length. Results do not
depend on the block size (detector frames are aligned to absolute sample 0 and every
state carries over between blocks), which the tests pin.

``segmentation`` picks how a channel is cut (params.yaml ``label.segmentation``):

- ``energy`` (default), ``webrtc`` or ``silero``: a speech detector
  (:mod:`ser_core.segmentation.detectors`) decides frame by frame. The detectors were
  compared against ground truth on the demo archive and on calls of real speech:
  docs/detectors.md (``benchmarks/vad.py``).
- ``fixed``: no detection, the whole channel is one region.

One channel is processed in at most two passes over its blocks: the energy detector
needs a first pass (:meth:`~ser_core.segmentation.frames.FrameDetector.observe`) to find the
channel's noise floor; the others decide in the same pass that cuts the windows.
:class:`Segmenter` turns frame decisions into windows: speech runs separated by less
than ``min_silence_s`` are merged into one region, regions whose speech lasts less than
``min_region_s`` are dropped, and kept regions are padded by ``pad_s`` on both sides.
Each region is cut into windows of ``window_s`` every ``hop_s``; the last window is
aligned to the region's end so the tail is covered, a region shorter than ``window_s``
(but at least ``min_speech_s``) is one shorter window, and shorter regions are not
labelled. Windows are emitted as soon as they are complete.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, NamedTuple

import numpy as np

from ser_core.params import setting
from ser_core.segmentation.detectors import make_detector
from ser_core.segmentation.frames import DetectorConfig, FrameDetector

__all__ = ["SEGMENT_KEYS", "SegmentConfig", "Window", "Segmenter", "segment_channel"]


@dataclass(frozen=True)
class SegmentConfig(DetectorConfig):
    """How a channel is cut into the windows the model labels (params.yaml ``label``): the
    detector's settings (:class:`~ser_core.segmentation.frames.DetectorConfig`) and, here,
    how its frame decisions become regions and the regions windows."""

    window_s: float = setting(3.0, help="window length, s (default: the model's own if it was trained on "
                                        "windows)")
    hop_s: float = setting(1.5, help="step between window starts inside a region, s (default: the model's "
                                     "own if it was trained on windows)")
    min_speech_s: float = setting(1.0, help="regions shorter than this are not labelled, s")
    min_silence_s: float = setting(0.3, help="shorter pauses do not split a region, s")
    min_region_s: float = setting(0.2, help="regions with less speech than this are noise, s")
    pad_s: float = setting(0.1, help="kept regions grow by this on both sides, s")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("window_s", "hop_s"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("min_speech_s", "min_silence_s", "min_region_s", "pad_s"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.hop_s > self.window_s:
            raise ValueError(f"hop_s ({self.hop_s}) must not exceed window_s ({self.window_s})")
        if self.min_speech_s > self.window_s:
            raise ValueError(f"min_speech_s ({self.min_speech_s}) must not exceed window_s ({self.window_s})")
        if self.pad_s > self.min_silence_s:
            # a region must be over (pad included) by the time its closing pause is seen
            raise ValueError(f"pad_s ({self.pad_s}) must not exceed min_silence_s ({self.min_silence_s})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SegmentConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown segmentation setting(s) {unknown}; known: {sorted(names)}")
        return cls(**data)


# Every setting of a SegmentConfig: the keys of params.yaml ``label`` (and of a checkpoint's
# ``segment_config``) that say how channels and clips are cut.
SEGMENT_KEYS = frozenset(f.name for f in dataclasses.fields(SegmentConfig))


class Window(NamedTuple):
    """One labelled window: sample offsets in the channel at its sample rate, and the audio."""

    start: int
    end: int
    samples: np.ndarray  # (end - start,) float32


class Segmenter:
    """Pass 2: speech regions of one channel, cut into windows, block by block.

    ``feed(block)`` returns the windows completed by that block; ``flush()`` those completed
    by the end of the stream. ``speech_samples`` counts the samples of kept (padded) regions;
    ``on_region(start, end)``, if given, is called with each kept region (samples) as it
    closes. ``detector`` decides the frames (default: the one ``config`` names; a two-pass
    detector must have observed the whole stream first); 'fixed' needs none.
    """

    def __init__(self, config: SegmentConfig, sample_rate: int, detector: FrameDetector | None = None,
                 on_region: Callable[[int, int], object] | None = None) -> None:
        c = self.config = config
        self.sample_rate = sample_rate
        self.fixed = c.detector is None
        self.detector = None if self.fixed else (detector or make_detector(c, sample_rate))
        self.on_region = on_region
        frame_s = self.detector.frame_s if self.detector is not None else c.frame_s
        self._min_silence = _frames(c.min_silence_s, frame_s)
        self._min_region = _frames(c.min_region_s, frame_s)
        self._pad = int(round(c.pad_s * sample_rate))                          # samples
        self._window = int(round(c.window_s * sample_rate))
        self._hop = int(round(c.hop_s * sample_rate))
        self._min_speech = int(round(c.min_speech_s * sample_rate))
        self._frames_done = 0          # frames decided so far
        self._run_start: int | None = None  # open region: first speech frame
        self._run_end = 0              # open region: end (exclusive) of its last speech frame
        self._last_end = 0             # end (samples) of the last kept region
        self._next = 0                 # open region: index of its next window to emit
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0            # sample offset of _buf[0]
        self.n_samples = 0             # samples fed so far
        self.speech_samples = 0
        if self.fixed:
            self._run_start = 0

    @property
    def buffered_samples(self) -> int:
        """Samples held right now (bounded by about window + hop + one block)."""
        return len(self._buf)

    # -- stream interface --------------------------------------------------------------
    def feed(self, block: np.ndarray) -> list[Window]:
        block = np.asarray(block, dtype=np.float32)
        self._buf = np.concatenate([self._buf, block])
        self.n_samples += len(block)
        out: list[Window] = []
        if self.fixed:
            out += self._emit_ready(self.n_samples)
        else:
            self._advance(self.detector.decide(block), out)
        self._trim()
        return out

    def flush(self) -> list[Window]:
        out: list[Window] = []
        if not self.fixed:
            self._advance(self.detector.finish(), out)
        if self._run_start is not None:
            self._close(out)
        self._buf = np.zeros(0, dtype=np.float32)
        return out

    # -- regions -------------------------------------------------------------------------
    def _advance(self, speech: np.ndarray, out: list[Window]) -> None:
        """Take the next frames' decisions."""
        for s, e in _runs(speech):
            self._on_run(self._frames_done + s, self._frames_done + e, out)
        self._frames_done += len(speech)
        if self._run_start is not None:
            if self._frames_done - self._run_end >= self._min_silence:
                self._close(out)
            else:
                out += self._emit_ready(self._region_end_so_far())

    def _on_run(self, s: int, e: int, out: list[Window]) -> None:
        if self._run_start is not None and s - self._run_end < self._min_silence:
            self._run_end = e
            out += self._emit_ready(self._region_end_so_far())
            return
        if self._run_start is not None:
            self._close(out)
        self._run_start, self._run_end, self._next = s, e, 0
        out += self._emit_ready(self._region_end_so_far())

    def _region_start(self) -> int:
        if self.fixed:
            return 0
        start = self.detector.frame_start(self._run_start) - self._pad
        return max(start, self._last_end, 0)

    def _region_end_so_far(self) -> int:
        """The open region reaches at least here (samples), given what has been seen."""
        return min(self.detector.frame_start(self._run_end) + self._pad, self.n_samples)

    def _kept(self) -> bool:
        return self.fixed or self._run_end - self._run_start >= self._min_region

    def _emit_ready(self, end_so_far: int) -> list[Window]:
        """Regular windows of the open region that end by ``end_so_far``."""
        if not self._kept():
            return []
        a, out = self._region_start(), []
        while a + self._next * self._hop + self._window <= end_so_far:
            s = a + self._next * self._hop
            out.append(self._window_at(s, s + self._window))
            self._next += 1
        return out

    def _close(self, out: list[Window]) -> None:
        """The open region ends: emit its remaining windows by the rule in the module doc."""
        b = self.n_samples if self.fixed else self._region_end_so_far()
        if self._kept():
            a = self._region_start()
            out += self._emit_ready(b)
            length = b - a
            if self._min_speech <= length <= self._window and self._next == 0:
                out.append(self._window_at(a, b))
            elif length > self._window:
                last_end = a + (self._next - 1) * self._hop + self._window if self._next else a
                if last_end < b:
                    out.append(self._window_at(b - self._window, b))
            self.speech_samples += length
            self._last_end = b
            if self.on_region is not None and length > 0:
                self.on_region(a, b)
        self._run_start = None

    # -- sample buffer -------------------------------------------------------------------
    def _window_at(self, start: int, end: int) -> Window:
        i, j = start - self._buf_start, end - self._buf_start
        if i < 0 or j > len(self._buf):
            raise RuntimeError(f"window [{start}, {end}) outside buffered samples "
                               f"[{self._buf_start}, {self._buf_start + len(self._buf)})")
        return Window(start, end, self._buf[i:j].copy())

    def _trim(self) -> None:
        """Drop samples no future window can need."""
        if self._run_start is not None and self._kept():
            keep = self._region_start() + max(0, self._next - 1) * self._hop
        elif self._run_start is not None:
            keep = self._region_start()
        else:
            keep = self.detector.frame_start(self._frames_done) - self._pad
        keep = max(self._buf_start, min(keep, self.n_samples))
        self._buf = self._buf[keep - self._buf_start:]
        self._buf_start = keep


def _frames(seconds: float, frame_s: float) -> int:
    """Whole frames needed to last ``seconds`` (tolerant of float error: 0.3 s of 10 ms is 30)."""
    return int(np.ceil(seconds / frame_s - 1e-9))


def _runs(mask: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start, end) index pairs of the True runs in a boolean array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return zip(edges[0::2].tolist(), edges[1::2].tolist())


def segment_channel(samples: np.ndarray, sample_rate: int, config: SegmentConfig,
                    block_len: int | None = None,
                    on_region: Callable[[int, int], object] | None = None,
                    band_hz: tuple[float, float] | None = None) -> tuple[list[Window], int]:
    """Every pass over a whole in-memory channel: (windows, speech samples); the detector
    listens within ``band_hz`` (the model's band) when given, the windows keep the samples.

    The features stage cuts training clips with this, exactly as labelling cuts calls.
    The streaming classes are the real interface; this is for clips, tests and the plain loop.
    """
    samples = np.asarray(samples, dtype=np.float32)
    step = block_len or max(1, len(samples))
    blocks = [samples[i:i + step] for i in range(0, len(samples), step)] or [samples]
    detector = make_detector(config, sample_rate, band_hz)
    seg = Segmenter(config, sample_rate, detector, on_region)
    if detector is not None and detector.two_pass:
        for b in blocks:
            if detector.observed_enough:
                break
            detector.observe(b)
    windows = [w for b in blocks for w in seg.feed(b)] + seg.flush()
    return windows, seg.speech_samples
