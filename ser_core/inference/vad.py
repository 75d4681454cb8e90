"""Speech detectors: which frames of one audio stream are speech, decided block by block.

Three detectors share one streaming interface (:class:`FrameDetector`), so the windowing
(:class:`ser_core.inference.segment.Segmenter`) does not care which one decides:

- ``energy`` (:class:`EnergyDetector`, the default): frame energy against the line's
  noise floor, two passes. The floor is measured on the line's *stationary* stretches
  only: aligned chunks of ``floor_chunk_s`` whose frame energies stay within
  ``stationary_db`` of each other (line hiss, hum; speech is rarely that steady), that
  are not digital silence and not louder than ``max_floor_db`` (a steady sound that loud
  is a signal: a held tone or vowel). At any moment the floor is the lowest level among
  the ``floor_track_s`` worth of such chunks nearest before (pass 1,
  :class:`EnergyHistogram`, finds the first ones, where the floor starts), and frames
  louder than ``floor + margin_db`` and than ``min_db`` are speech. Pass 1 stops as soon
  as those first chunks are found, so on a line with pauses it reads seconds, not the file. A channel with no
  such chunk at all (speech from start to end) has no floor: its threshold is
  ``min_db``. So a channel that is speech throughout is not measured against itself, a
  busy channel's floor is its pauses, steady line noise is not speech, and a line whose
  level changes is followed.
- ``webrtc`` (:class:`WebRtcDetector`): Google's WebRTC voice activity detector
  (``webrtcvad-wheels``, MIT): a Gaussian mixture over six sub-band log energies, with
  its own hang-over. 16-bit frames of 10, 20 or 30 ms (``frame_s``) at 8, 16, 32 or
  48 kHz; ``webrtc_mode`` 0-3 is its aggressiveness (higher: fewer false alarms, more
  missed speech). One pass.
- ``silero`` (:class:`SileroDetector`): the Silero VAD network (``silero-vad``, MIT; its
  wheel ships the ONNX model, run here with onnxruntime, offline) on 32 ms chunks
  (256 samples at 8 kHz, 512 at 16 kHz) with its recurrent state carried across chunks.
  A chunk is speech from ``silero_threshold`` on, and stays speech while the probability
  is above ``silero_threshold - 0.15`` (Silero's own hysteresis). One pass; by far the
  most expensive (see the README's detector comparison).

Each stream is processed at the detector's own rate: a stream at another rate is
resampled inside the detector (soxr's stream resampler, whose output does not depend on
how the input is split) to the nearest rate the detector takes. A detector holds only
the samples of one unfinished frame (plus the resampler's filter state), so memory is
flat in the file's length, and its decisions do not depend on the block size: frames
are aligned to sample 0 of the stream and all state carries over between blocks.
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np
import soxr
from scipy import signal

if TYPE_CHECKING:  # pragma: no cover
    from ser_core.inference.segment import SegmentConfig

DETECTORS = ("energy", "webrtc", "silero")
WEBRTC_RATES = (8000, 16000, 32000, 48000)
WEBRTC_FRAMES_S = (0.01, 0.02, 0.03)
SILERO_RATES = (8000, 16000)
SILERO_CHUNK = {8000: 256, 16000: 512}   # samples per decision (32 ms)
SILERO_CONTEXT = {8000: 32, 16000: 64}   # samples of the previous chunk the model also sees
SILERO_HYSTERESIS = 0.15                 # speech continues down to threshold - this
SILERO_MODEL = "silero_vad.onnx"         # in the silero_vad package's data/ folder
DB_MIN, DB_MAX, DB_STEP = -120.0, 20.0, 0.5  # energy histogram range (dBFS) and bin width
N_BINS = int(round((DB_MAX - DB_MIN) / DB_STEP))
SILENCE_DB = -90.0  # quieter steady chunks are digital silence (16-bit PCM's last bit is -96 dBFS)


class DetectorUnavailable(RuntimeError):
    """A detector's package (or the model file it ships) is not installed."""


def nearest_rate(sample_rate: int, rates: tuple[int, ...]) -> int:
    """The rate of ``rates`` closest to ``sample_rate`` (ties go to the higher one)."""
    return min(rates, key=lambda r: (abs(r - sample_rate), -r))


def frame_db(frames: np.ndarray) -> np.ndarray:
    """Energy in dBFS of each row of ``frames`` (n, frame_len), clipped to the histogram range."""
    power = np.mean(np.square(frames, dtype=np.float64), axis=1)
    return np.clip(10.0 * np.log10(power + 1e-12), DB_MIN, DB_MAX - DB_STEP / 2)


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


def line_chunks(chunks: np.ndarray, config: "SegmentConfig") -> tuple[np.ndarray, np.ndarray]:
    """(line, level) per row of frame energies (n, frames per chunk): level is their power
    mean (dBFS); a chunk is the line's noise when its frames stay within ``stationary_db``
    of each other and its level lies between :data:`SILENCE_DB` (digital silence, which no
    threshold needs and which would hide the hiss of a call that opens silent) and
    ``max_floor_db`` (a steady sound that loud is a signal, a held tone or vowel, not a line)."""
    level = 10.0 * np.log10(np.mean(10.0 ** (chunks / 10.0), axis=1))
    steady = chunks.max(axis=1) - chunks.min(axis=1) <= config.stationary_db
    return steady & (level >= SILENCE_DB) & (level <= config.max_floor_db), level


class EnergyHistogram:
    """Pass 1 of the energy detector: the levels of a channel's first stationary line chunks
    (where the floor starts), and a fixed-size histogram of the frame energies seen. Constant
    memory: the histogram, at most ``floor_track_s`` of chunk levels, one unfinished chunk."""

    def __init__(self, config: "SegmentConfig", sample_rate: int) -> None:
        self.config = config
        self._framer = Framer(max(1, int(round(config.frame_s * sample_rate))))
        self.chunk = chunk_frames(config)
        self.keep = track_chunks(config)
        self._pending = np.zeros(0, dtype=np.float64)  # frame energies of the unfinished chunk
        self.counts = np.zeros(N_BINS, dtype=np.int64)  # every frame seen
        self.first_levels: list[float] = []  # the first `keep` stationary line chunks' levels

    def update(self, block: np.ndarray) -> None:
        db = frame_db(self._framer.frames(block))
        self.counts += np.bincount(_bins(db), minlength=N_BINS)
        if len(self.first_levels) == self.keep:
            return
        x = np.concatenate([self._pending, db])
        n = len(x) // self.chunk
        self._pending = x[n * self.chunk:]
        line, level = line_chunks(x[: n * self.chunk].reshape(n, self.chunk), self.config)
        self.first_levels += level[line][: self.keep - len(self.first_levels)].tolist()

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of frame energies (bin centre, dBFS); DB_MIN with no frames."""
        return _percentile(self.counts, q)

    def floor_db(self) -> float | None:
        """The starting noise floor: the lowest level among the first stationary line chunks;
        None when there is none (the channel never rests)."""
        return min(self.first_levels) if self.first_levels else None

    def threshold_db(self) -> float:
        """The speech threshold at the start of this channel."""
        return threshold(self.config, self.floor_db())


def chunk_frames(config: "SegmentConfig") -> int:
    """Frames per stationarity chunk."""
    return max(2, int(round(config.floor_chunk_s / config.frame_s)))


def track_chunks(config: "SegmentConfig") -> int:
    """How many recent stationary line chunks the floor is the lowest of."""
    return max(1, int(round(config.floor_track_s / config.floor_chunk_s)))


def threshold(config: "SegmentConfig", floor_db: float | None) -> float:
    """Speech threshold for a floor: floor + margin, at least ``min_db`` (``min_db`` alone
    without a floor)."""
    return config.min_db if floor_db is None else max(config.min_db, floor_db + config.margin_db)


def _bins(db: np.ndarray) -> np.ndarray:
    return np.clip(((db - DB_MIN) / DB_STEP).astype(np.int64), 0, N_BINS - 1)


def _percentile(counts: np.ndarray, q: float) -> float:
    total = int(counts.sum())
    if total == 0:
        return DB_MIN
    idx = int(np.searchsorted(np.cumsum(counts), q / 100.0 * total, side="left"))
    return DB_MIN + (min(idx, N_BINS - 1) + 0.5) * DB_STEP


class EnergyDetector(FrameDetector):
    """Frames louder than the channel's threshold (see the module doc). Two passes: pass 1
    (:meth:`observe`) finds where the floor starts; pass 2 follows it: the floor is the
    lowest level among the ``floor_track_s`` worth of stationary line chunks nearest
    before the frame (at the start, the first ones), so a line that gets quieter is
    followed at once and one that gets louder (or a held tone) after that much of it.
    ``threshold_db`` fixes the threshold instead (no pass 1, no tracking)."""

    two_pass = True

    def __init__(self, config: "SegmentConfig", sample_rate: int, threshold_db: float | None = None) -> None:
        super().__init__(sample_rate, sample_rate, max(1, int(round(config.frame_s * sample_rate))))
        self.config = config
        self.histogram = EnergyHistogram(config, sample_rate)
        self.fixed_threshold = threshold_db
        self._observed = False  # pass 1 has seen at least one block
        self._recent: collections.deque[float] | None = None  # pass 2: recent stationary levels
        self._pending = np.zeros(0, dtype=np.float64)        # pass 2: frames of the unfinished chunk

    def observe(self, block: np.ndarray) -> None:
        if self._recent is not None:
            raise RuntimeError("observe() after decide(): pass 1 must come first")
        self._observed = True
        self.histogram.update(self.heard(block, "observe"))

    @property
    def observed_enough(self) -> bool:
        """Pass 1 is only needed until the floor's first chunks are known (often seconds)."""
        return self.fixed_threshold is not None or len(self.histogram.first_levels) == self.histogram.keep

    def threshold_db(self) -> float:
        """The threshold in force now."""
        if self.fixed_threshold is not None:
            return self.fixed_threshold
        if self._recent is None:
            if not self._observed:
                raise RuntimeError("the energy detector needs pass 1 (observe() the first blocks) "
                                   "before decide(), or a fixed threshold_db")
            self._recent = collections.deque(self.histogram.first_levels, maxlen=self.histogram.keep)
        return threshold(self.config, min(self._recent) if self._recent else None)

    def _classify(self, frames: np.ndarray) -> np.ndarray:
        db = frame_db(frames)
        if self.fixed_threshold is not None:
            return db > self.fixed_threshold
        out = np.empty(len(db), dtype=bool)
        chunk, i = self.histogram.chunk, 0
        while i < len(db):  # a chunk's frames are judged by the floor before it
            part = db[i:i + chunk - len(self._pending)]
            out[i:i + len(part)] = part > self.threshold_db()
            self._pending = np.concatenate([self._pending, part])
            if len(self._pending) == chunk:
                line, level = line_chunks(self._pending[None, :], self.config)
                if line[0]:
                    self._recent.append(float(level[0]))
                self._pending = self._pending[:0]
            i += len(part)
        return out


class WebRtcDetector(FrameDetector):
    """WebRTC VAD decisions, one per frame of ``frame_s`` (10, 20 or 30 ms)."""

    def __init__(self, config: "SegmentConfig", sample_rate: int) -> None:
        try:
            import webrtcvad
        except ImportError as exc:
            raise DetectorUnavailable("segmentation 'webrtc' needs the webrtcvad-wheels package "
                                      "(pip install webrtcvad-wheels)") from exc
        rate = nearest_rate(sample_rate, WEBRTC_RATES)
        super().__init__(sample_rate, rate, int(round(config.frame_s * rate)))
        self._vad = webrtcvad.Vad(int(config.webrtc_mode))

    def _classify(self, frames: np.ndarray) -> np.ndarray:
        pcm = np.round(np.clip(frames, -1.0, 32767 / 32768) * 32768).astype("<i2")
        return np.fromiter((self._vad.is_speech(f.tobytes(), self.rate) for f in pcm),
                           dtype=bool, count=len(pcm))


def silero_model_path() -> str:
    """The Silero VAD ONNX model inside the installed ``silero-vad`` wheel (found without
    importing the package: its ``__init__`` imports torch and sets torch's thread count)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailable("segmentation 'silero' needs the silero-vad package (pip install silero-vad)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", SILERO_MODEL)
    if not os.path.isfile(path):
        raise DetectorUnavailable(f"the silero-vad package has no model at {path} (expected its wheel's "
                                  f"data/{SILERO_MODEL})")
    return path


@functools.lru_cache(maxsize=1)
def silero_session() -> Any:
    """The Silero model, loaded once per process, on one thread (labelling runs one worker
    per core)."""
    path = silero_model_path()
    try:
        import onnxruntime
    except ImportError as exc:
        raise DetectorUnavailable("segmentation 'silero' needs onnxruntime (pip install onnxruntime)") from exc
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


class SileroDetector(FrameDetector):
    """Silero VAD speech probabilities per 32 ms chunk, thresholded with hysteresis."""

    def __init__(self, config: "SegmentConfig", sample_rate: int) -> None:
        rate = nearest_rate(sample_rate, SILERO_RATES)
        super().__init__(sample_rate, rate, SILERO_CHUNK[rate])
        self._session = silero_session()
        self.threshold = float(config.silero_threshold)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, SILERO_CONTEXT[rate]), dtype=np.float32)
        self._rate = np.array(rate, dtype=np.int64)
        self._speech = False

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """(n, chunk) -> (n,) speech probabilities, advancing the model's state."""
        out = np.empty(len(frames), dtype=np.float32)
        for i, frame in enumerate(frames):
            x = np.concatenate([self._context, frame[None, :]], axis=1)
            prob, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._rate})
            self._context = x[:, -self._context.shape[1]:]
            out[i] = prob[0, 0]
        return out

    def _classify(self, frames: np.ndarray) -> np.ndarray:
        out = np.empty(len(frames), dtype=bool)
        low = max(self.threshold - SILERO_HYSTERESIS, 0.01)
        for i, p in enumerate(self.probabilities(frames)):
            self._speech = p >= self.threshold or (self._speech and p >= low)
            out[i] = self._speech
        return out


def make_detector(config: "SegmentConfig", sample_rate: int,
                  band_hz: tuple[float, float] | None = None) -> FrameDetector | None:
    """The detector ``config.segmentation`` names for one stream (None for 'fixed'),
    listening within ``band_hz`` when given (the model's band: :class:`BandFilter`)."""
    kind = config.detector
    if kind is None:
        return None
    kinds = {"energy": EnergyDetector, "webrtc": WebRtcDetector, "silero": SileroDetector}
    if kind not in kinds:
        raise ValueError(f"unknown detector {kind!r}; known: {DETECTORS}")
    return kinds[kind](config, sample_rate).listen_within(band_hz)
