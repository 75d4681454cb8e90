"""Where to label: an energy-based speech detector and the windows cut from its regions.

Everything here is pure numpy and streams: audio arrives one block at a time and only a
bounded tail of samples is ever held, so memory does not grow with recording length.
Results do not depend on the block size (frames are aligned to absolute sample 0 and the
smoothing state carries over between blocks), which the tests pin.

One channel is processed in two passes over its blocks:

1. :class:`EnergyHistogram` counts frame energies (dBFS, fixed 0.5 dB bins: constant
   memory). Its ``floor_percentile`` is the channel's noise floor; frames louder than
   ``floor + margin_db`` (and than the absolute ``min_db``) are speech.
2. :class:`Segmenter` applies that threshold: speech runs separated by less than
   ``min_silence_s`` are merged into one region, regions whose speech lasts less than
   ``min_region_s`` are dropped, and kept regions are padded by ``pad_s`` on both sides.
   Each region is cut into windows of ``window_s`` every ``hop_s``; the last window is
   aligned to the region's end so the tail is covered, a region shorter than ``window_s``
   (but at least ``min_speech_s``) is one shorter window, and shorter regions are not
   labelled. Windows are emitted as soon as they are complete.

``segmentation='fixed'`` skips detection: the whole channel is one region.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, NamedTuple

import numpy as np

SEGMENTATIONS = ("vad", "fixed")
DB_MIN, DB_MAX, DB_STEP = -120.0, 20.0, 0.5  # energy histogram range (dBFS) and bin width
N_BINS = int(round((DB_MAX - DB_MIN) / DB_STEP))


@dataclass(frozen=True)
class SegmentConfig:
    """How a channel is cut into the windows the model labels (params.yaml ``label``)."""

    segmentation: str = "vad"      # 'vad' (energy detector) | 'fixed' (whole channel)
    window_s: float = 3.0          # window length
    hop_s: float = 1.5             # step between window starts inside a region
    min_speech_s: float = 1.0      # regions shorter than this are not labelled
    frame_s: float = 0.02          # detector frame length
    floor_percentile: float = 10.0  # noise floor = this percentile of frame energies
    margin_db: float = 12.0        # speech = frames louder than floor + margin ...
    min_db: float = -55.0          # ... and louder than this absolute level (dBFS)
    min_silence_s: float = 0.3     # shorter pauses do not split a region
    min_region_s: float = 0.2      # regions with less speech than this are noise
    pad_s: float = 0.1             # kept regions grow by this on both sides

    def __post_init__(self) -> None:
        if self.segmentation not in SEGMENTATIONS:
            raise ValueError(f"segmentation must be one of {SEGMENTATIONS}, got {self.segmentation!r}")
        for name in ("window_s", "hop_s", "frame_s"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("min_speech_s", "min_silence_s", "min_region_s", "pad_s", "margin_db"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.hop_s > self.window_s:
            raise ValueError(f"hop_s ({self.hop_s}) must not exceed window_s ({self.window_s})")
        if self.min_speech_s > self.window_s:
            raise ValueError(f"min_speech_s ({self.min_speech_s}) must not exceed window_s ({self.window_s})")
        if self.pad_s > self.min_silence_s:
            # a region must be over (pad included) by the time its closing pause is seen
            raise ValueError(f"pad_s ({self.pad_s}) must not exceed min_silence_s ({self.min_silence_s})")
        if not 0 <= self.floor_percentile <= 100:
            raise ValueError(f"floor_percentile must be in [0, 100], got {self.floor_percentile!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SegmentConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class Window(NamedTuple):
    """One labelled window: sample offsets in the channel at its sample rate, and the audio."""

    start: int
    end: int
    samples: np.ndarray  # (end - start,) float32


def frame_db(frames: np.ndarray) -> np.ndarray:
    """Energy in dBFS of each row of ``frames`` (n, frame_len), clipped to the histogram range."""
    power = np.mean(np.square(frames, dtype=np.float64), axis=1)
    return np.clip(10.0 * np.log10(power + 1e-12), DB_MIN, DB_MAX - DB_STEP / 2)


class _Framer:
    """Splits a stream of samples into whole frames aligned to sample 0; keeps the remainder."""

    def __init__(self, frame_len: int) -> None:
        self.frame_len = frame_len
        self._rest = np.zeros(0, dtype=np.float32)

    def frames(self, block: np.ndarray) -> np.ndarray:
        x = np.concatenate([self._rest, np.asarray(block, dtype=np.float32)])
        n = len(x) // self.frame_len
        self._rest = x[n * self.frame_len:].copy()
        return x[: n * self.frame_len].reshape(n, self.frame_len)


class EnergyHistogram:
    """Pass 1: a fixed-size histogram of one channel's frame energies."""

    def __init__(self, config: SegmentConfig, sample_rate: int) -> None:
        self.config = config
        self._framer = _Framer(max(1, int(round(config.frame_s * sample_rate))))
        self.counts = np.zeros(N_BINS, dtype=np.int64)

    def update(self, block: np.ndarray) -> None:
        db = frame_db(self._framer.frames(block))
        bins = ((db - DB_MIN) / DB_STEP).astype(np.int64)
        self.counts += np.bincount(bins, minlength=N_BINS)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of frame energies (bin centre, dBFS); DB_MIN with no frames."""
        total = int(self.counts.sum())
        if total == 0:
            return DB_MIN
        idx = int(np.searchsorted(np.cumsum(self.counts), q / 100.0 * total, side="left"))
        return DB_MIN + (min(idx, N_BINS - 1) + 0.5) * DB_STEP

    def threshold_db(self) -> float:
        """The speech threshold for this channel: noise floor + margin, at least ``min_db``."""
        c = self.config
        return max(c.min_db, self.percentile(c.floor_percentile) + c.margin_db)


class Segmenter:
    """Pass 2: speech regions of one channel, cut into windows, block by block.

    ``feed(block)`` returns the windows completed by that block; ``flush()`` those completed
    by the end of the stream. ``speech_samples`` counts the samples of kept (padded) regions.
    """

    def __init__(self, config: SegmentConfig, sample_rate: int, threshold_db: float = 0.0) -> None:
        c = self.config = config
        self.sample_rate = sample_rate
        self.threshold_db = threshold_db
        self.fixed = c.segmentation == "fixed"
        self._framer = _Framer(max(1, int(round(c.frame_s * sample_rate))))
        fl = self._framer.frame_len
        self._min_silence = int(np.ceil(c.min_silence_s * sample_rate / fl))  # frames
        self._min_region = int(np.ceil(c.min_region_s * sample_rate / fl))    # frames
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
            frames = self._framer.frames(block)
            speech = frame_db(frames) > self.threshold_db
            for s, e in _runs(speech):
                self._on_run(self._frames_done + s, self._frames_done + e, out)
            self._frames_done += len(frames)
            if self._run_start is not None:
                if self._frames_done - self._run_end >= self._min_silence:
                    self._close(out)
                else:
                    out += self._emit_ready(self._region_end_so_far())
        self._trim()
        return out

    def flush(self) -> list[Window]:
        out: list[Window] = []
        if self._run_start is not None:
            self._close(out)
        self._buf = np.zeros(0, dtype=np.float32)
        return out

    # -- regions -------------------------------------------------------------------------
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
        start = self._run_start * self._framer.frame_len - self._pad
        return max(start, self._last_end, 0)

    def _region_end_so_far(self) -> int:
        """The open region reaches at least here (samples), given what has been seen."""
        return min(self._run_end * self._framer.frame_len + self._pad, self.n_samples)

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
            keep = self._frames_done * self._framer.frame_len - self._pad
        keep = max(self._buf_start, min(keep, self.n_samples))
        self._buf = self._buf[keep - self._buf_start:]
        self._buf_start = keep


def _runs(mask: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start, end) index pairs of the True runs in a boolean array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return zip(edges[0::2].tolist(), edges[1::2].tolist())


def segment_channel(samples: np.ndarray, sample_rate: int, config: SegmentConfig,
                    block_len: int | None = None) -> tuple[list[Window], int]:
    """Both passes over a whole in-memory channel: (windows, speech samples).

    The streaming classes are the real interface; this is for tests and the plain loop.
    """
    samples = np.asarray(samples, dtype=np.float32)
    step = block_len or max(1, len(samples))
    blocks = [samples[i:i + step] for i in range(0, len(samples), step)] or [samples]
    hist = EnergyHistogram(config, sample_rate)
    for b in blocks:
        hist.update(b)
    seg = Segmenter(config, sample_rate, hist.threshold_db())
    windows = [w for b in blocks for w in seg.feed(b)] + seg.flush()
    return windows, seg.speech_samples
