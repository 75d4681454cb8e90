"""What every speech detector shares: its settings, the frame interface, band listening.

A detector decides, frame by frame, which frames of one audio stream are speech, fed one
block at a time (:class:`FrameDetector`); :class:`~ser_core.segmentation.regions.Segmenter`
turns the decisions into windows and does not care which detector decided. The detectors
themselves are in :mod:`ser_core.segmentation.energy` (the default) and
:mod:`ser_core.segmentation.detectors` (WebRTC, Silero, and :func:`make_detector`).

Each stream is processed at the detector's own rate: a stream at another rate is
resampled inside the detector (soxr's stream resampler, whose output does not depend on
how the input is split) to the nearest rate the detector takes. A detector holds only
the samples of one unfinished frame (plus the resampler's filter state), so memory is
flat in the file's length, and its decisions do not depend on the block size: frames
are aligned to sample 0 of the stream and all state carries over between blocks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import soxr
from scipy import signal

from ser_core.params import setting

DETECTORS = ("energy", "webrtc", "silero")
WEBRTC_FRAMES_S = (0.01, 0.02, 0.03)
DB_MIN, DB_MAX = -120.0, 20.0  # frame energies are clipped to this range (dBFS)


CHANNEL_SEGMENTATIONS = (*DETECTORS, "fixed")  # label.segmentation: a detector, or none (whole channel)


@dataclass(frozen=True)
class DetectorConfig:
    """Which detector decides the frames of a channel, and its settings (params.yaml
    ``label``). ``segmentation`` 'fixed' means no detector: the whole channel is speech."""

    segmentation: str = setting("energy", choices=CHANNEL_SEGMENTATIONS,
                                help="speech detector (energy, webrtc, silero), or fixed windows over the "
                                     "whole channel")
    frame_s: float = setting(0.02, help="detector frame, s (webrtc: 0.01, 0.02 or 0.03; silero: 32 ms)")
    webrtc_mode: int = setting(0, help="webrtc aggressiveness 0-3 (higher: fewer false alarms)")
    silero_threshold: float = setting(0.5, help="silero: speech probability from which a chunk is speech")
    margin_db: float = setting(3.0, help="energy: speech is this far above the line's steady noise floor, dB")
    min_db: float = setting(-55.0, help="energy: ... and above this level, dBFS")
    max_floor_db: float = setting(-35.0, help="energy: a steadier sound louder than this is a signal, not "
                                              "line noise, dBFS")
    stationary_db: float = setting(4.0, help="energy: a chunk whose frames stay within this is line noise, dB")
    floor_chunk_s: float = setting(0.4, help="energy: length of those chunks, s")
    floor_track_s: float = setting(4.0, help="energy: the floor is the lowest of this much recent steady line, s")

    def __post_init__(self) -> None:
        if self.segmentation not in CHANNEL_SEGMENTATIONS:
            raise ValueError(f"segmentation must be one of {CHANNEL_SEGMENTATIONS}, got {self.segmentation!r}")
        for name in ("frame_s", "stationary_db", "floor_chunk_s", "floor_track_s"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if float(self.margin_db) < 0:
            raise ValueError(f"margin_db must be >= 0, got {self.margin_db!r}")
        if self.max_floor_db <= self.min_db - self.margin_db:
            raise ValueError(f"max_floor_db ({self.max_floor_db}) must be above min_db - margin_db "
                             f"({self.min_db - self.margin_db}), or no floor would matter")
        if self.floor_chunk_s < 2 * self.frame_s:
            raise ValueError(f"floor_chunk_s ({self.floor_chunk_s}) must hold at least two frames "
                             f"of frame_s ({self.frame_s})")
        if self.webrtc_mode not in (0, 1, 2, 3):
            raise ValueError(f"webrtc_mode must be 0, 1, 2 or 3, got {self.webrtc_mode!r}")
        if self.segmentation == "webrtc" and not any(abs(self.frame_s - f) < 1e-9 for f in WEBRTC_FRAMES_S):
            raise ValueError(f"frame_s must be one of {WEBRTC_FRAMES_S} s for webrtc, got {self.frame_s!r}")
        if not 0 < self.silero_threshold < 1:
            raise ValueError(f"silero_threshold must be in (0, 1), got {self.silero_threshold!r}")

    @property
    def detector(self) -> str | None:
        """The speech detector's name, or None for ``fixed`` windows."""
        return None if self.segmentation == "fixed" else self.segmentation


class DetectorUnavailable(RuntimeError):
    """A detector's package (or the model file it ships) is not installed."""


def nearest_rate(sample_rate: int, rates: tuple[int, ...]) -> int:
    """The rate of ``rates`` closest to ``sample_rate`` (ties go to the higher one)."""
    return min(rates, key=lambda r: (abs(r - sample_rate), -r))


def frame_db(frames: np.ndarray) -> np.ndarray:
    """Energy in dBFS of each row of ``frames`` (n, frame_len), clipped to [DB_MIN, DB_MAX]."""
    power = np.mean(np.square(frames, dtype=np.float64), axis=1)
    return np.clip(10.0 * np.log10(power + 1e-12), DB_MIN, DB_MAX)


class Framer:
    """Splits a stream of samples into whole frames aligned to sample 0; keeps the remainder."""

    def __init__(self, frame_len: int) -> None:
        self.frame_len = frame_len
        self._rest = np.zeros(0, dtype=np.float32)

    def frames(self, block: np.ndarray) -> np.ndarray:
        x = np.concatenate([self._rest, np.asarray(block, dtype=np.float32)])
        n = len(x) // self.frame_len
        self._rest = x[n * self.frame_len:].copy()
        return x[: n * self.frame_len].reshape(n, self.frame_len)


class BandFilter:
    """A streaming band-pass (Butterworth, second-order sections, state carried from block
    to block: the output does not depend on how the stream is split into blocks).

    What a detector listens to when the model hears a band: a telephone model's training
    clips are cut by the detector listening within the model's band, as it does on a
    call, so that energy the line would not pass (a voice's fundamental below 300 Hz)
    does not find speech in a training clip that the same detector would miss on a call.
    """

    ORDER = 4

    def __init__(self, sample_rate: int, band_hz: tuple[float, float]) -> None:
        low, high = float(band_hz[0]), float(band_hz[1])
        nyquist = sample_rate / 2
        if high >= nyquist:  # the band reaches the top: a high-pass is all there is to do
            self.sos = signal.butter(self.ORDER, low, btype="highpass", fs=sample_rate, output="sos") if low > 0 else None
        else:
            self.sos = (signal.butter(self.ORDER, (low, high), btype="bandpass", fs=sample_rate, output="sos")
                        if low > 0 else signal.butter(self.ORDER, high, btype="lowpass", fs=sample_rate, output="sos"))
        self._zi = None if self.sos is None else np.zeros((self.sos.shape[0], 2))

    def __call__(self, block: np.ndarray) -> np.ndarray:
        x = np.asarray(block, dtype=np.float32)
        if self.sos is None or x.size == 0:
            return x
        y, self._zi = signal.sosfilt(self.sos, x.astype(np.float64), zi=self._zi)
        return y.astype(np.float32)


class FrameDetector(ABC):
    """Speech or not for each frame of one stream, fed block by block.

    Frame ``k`` covers the detector's samples ``[k * frame_len, (k + 1) * frame_len)`` at
    its own ``rate``; :meth:`frame_start` maps a frame boundary to the stream's samples.
    ``two_pass`` detectors must :meth:`observe` the stream's blocks in order, until
    :attr:`observed_enough` (or the end), before the first :meth:`decide`.
    :meth:`decide` returns the decisions of the frames completed by a block (in order,
    continuing the previous call's), :meth:`finish` those of the frames still held when
    the stream ends (a trailing partial frame is not decided).
    """

    two_pass = False

    def __init__(self, sample_rate: int, rate: int, frame_len: int) -> None:
        self.sample_rate = int(sample_rate)
        self.rate = int(rate)
        self.frame_len = int(frame_len)
        self._framer = Framer(self.frame_len)
        self._resampler = (None if self.rate == self.sample_rate else
                           soxr.ResampleStream(self.sample_rate, self.rate, 1, dtype="float32", quality="HQ"))
        self.band_hz: tuple[float, float] | None = None
        self._bands: dict[str, BandFilter] = {}

    def listen_within(self, band_hz: tuple[float, float] | None) -> "FrameDetector":
        """Hear the stream through :class:`BandFilter` (``band_hz`` None: as it is). Set
        before the first block; each pass has its own filter state."""
        self.band_hz = None if band_hz is None else (float(band_hz[0]), float(band_hz[1]))
        self._bands = {}
        return self

    def heard(self, block: np.ndarray, which: str = "decide") -> np.ndarray:
        """``block`` as this detector hears it in pass ``which`` ('observe' or 'decide')."""
        if self.band_hz is None:
            return np.asarray(block, dtype=np.float32)
        if which not in self._bands:
            self._bands[which] = BandFilter(self.sample_rate, self.band_hz)
        return self._bands[which](block)

    @property
    def frame_s(self) -> float:
        """Frame duration in seconds."""
        return self.frame_len / self.rate

    def frame_start(self, k: int) -> int:
        """First stream sample of frame ``k`` (frame ``k - 1`` ends there)."""
        return k * self.frame_len * self.sample_rate // self.rate

    def observe(self, block: np.ndarray) -> None:
        """Pass 1 (two-pass detectors only)."""
        raise TypeError(f"{type(self).__name__} decides in one pass; it takes no observe()")

    @property
    def observed_enough(self) -> bool:
        """Pass 1 may stop here: later blocks would change nothing."""
        return not self.two_pass

    def decide(self, block: np.ndarray) -> np.ndarray:
        """(n,) bool: speech or not for each frame this block completes."""
        x = self.heard(block)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=False)
        return self._classify(self._framer.frames(x))

    def finish(self) -> np.ndarray:
        """Decisions of the frames completed by the resampler's tail at the end of the stream."""
        if self._resampler is None:
            return np.zeros(0, dtype=bool)
        tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        return self._classify(self._framer.frames(tail))

    @abstractmethod
    def _classify(self, frames: np.ndarray) -> np.ndarray:
        """(n, frame_len) float32 frames at ``rate``, in stream order -> (n,) bool."""
