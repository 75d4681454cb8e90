"""The energy detector (the default): frame energy against the line's noise floor.

Two passes. The floor is measured on the line's *stationary* stretches only: aligned
chunks of ``floor_chunk_s`` whose frame energies stay within ``stationary_db`` of each
other (line hiss, hum; speech is rarely that steady), that are not digital silence and not
louder than ``max_floor_db`` (a steady sound that loud is a signal: a held tone or vowel).
At any moment the floor is the lowest level among the ``floor_track_s`` worth of such
chunks nearest before; pass 1 (:class:`FloorStart`) finds the first ones, where the floor
starts, and stops as soon as they are found, so on a line with pauses it reads seconds,
not the file. Frames louder than ``floor + margin_db`` and than ``min_db`` are speech. A
channel with no such chunk at all (speech from start to end) has no floor: its threshold
is ``min_db``. So a channel that is speech throughout is not measured against itself, a
busy channel's floor is its pauses, steady line noise is not speech, and a line whose
level changes is followed.
"""

from __future__ import annotations

import collections

import numpy as np

from ser_core.segmentation.frames import DetectorConfig, FrameDetector, Framer, frame_db

SILENCE_DB = -90.0  # quieter steady chunks are digital silence (16-bit PCM's last bit is -96 dBFS)


def line_chunks(chunks: np.ndarray, config: DetectorConfig) -> tuple[np.ndarray, np.ndarray]:
    """(line, level) per row of frame energies (n, frames per chunk): level is their power
    mean (dBFS); a chunk is the line's noise when its frames stay within ``stationary_db``
    of each other and its level lies between :data:`SILENCE_DB` (digital silence, which no
    threshold needs and which would hide the hiss of a call that opens silent) and
    ``max_floor_db`` (a steady sound that loud is a signal, a held tone or vowel, not a line)."""
    level = 10.0 * np.log10(np.mean(10.0 ** (chunks / 10.0), axis=1))
    steady = chunks.max(axis=1) - chunks.min(axis=1) <= config.stationary_db
    return steady & (level >= SILENCE_DB) & (level <= config.max_floor_db), level


class FloorStart:
    """Pass 1 of the energy detector: the levels of a channel's first stationary line chunks
    (where the floor starts). Constant memory: at most ``floor_track_s`` of chunk levels and
    one unfinished chunk."""

    def __init__(self, config: DetectorConfig, sample_rate: int) -> None:
        self.config = config
        self._framer = Framer(max(1, int(round(config.frame_s * sample_rate))))
        self.chunk = chunk_frames(config)
        self.keep = track_chunks(config)
        self._pending = np.zeros(0, dtype=np.float64)  # frame energies of the unfinished chunk
        self.first_levels: list[float] = []  # the first `keep` stationary line chunks' levels

    def update(self, block: np.ndarray) -> None:
        if len(self.first_levels) == self.keep:
            return
        db = frame_db(self._framer.frames(block))
        x = np.concatenate([self._pending, db])
        n = len(x) // self.chunk
        self._pending = x[n * self.chunk:]
        line, level = line_chunks(x[: n * self.chunk].reshape(n, self.chunk), self.config)
        self.first_levels += level[line][: self.keep - len(self.first_levels)].tolist()

    def floor_db(self) -> float | None:
        """The starting noise floor: the lowest level among the first stationary line chunks;
        None when there is none (the channel never rests)."""
        return min(self.first_levels) if self.first_levels else None

    def threshold_db(self) -> float:
        """The speech threshold at the start of this channel."""
        return threshold(self.config, self.floor_db())


def chunk_frames(config: DetectorConfig) -> int:
    """Frames per stationarity chunk."""
    return max(2, int(round(config.floor_chunk_s / config.frame_s)))


def track_chunks(config: DetectorConfig) -> int:
    """How many recent stationary line chunks the floor is the lowest of."""
    return max(1, int(round(config.floor_track_s / config.floor_chunk_s)))


def threshold(config: DetectorConfig, floor_db: float | None) -> float:
    """Speech threshold for a floor: floor + margin, at least ``min_db`` (``min_db`` alone
    without a floor)."""
    return config.min_db if floor_db is None else max(config.min_db, floor_db + config.margin_db)


class EnergyDetector(FrameDetector):
    """Frames louder than the channel's threshold (see the module doc). Two passes: pass 1
    (:meth:`observe`) finds where the floor starts; pass 2 follows it: the floor is the
    lowest level among the ``floor_track_s`` worth of stationary line chunks nearest
    before the frame (at the start, the first ones), so a line that gets quieter is
    followed at once and one that gets louder (or a held tone) after that much of it.
    ``threshold_db`` fixes the threshold instead (no pass 1, no tracking)."""

    two_pass = True

    def __init__(self, config: DetectorConfig, sample_rate: int, threshold_db: float | None = None) -> None:
        super().__init__(sample_rate, sample_rate, max(1, int(round(config.frame_s * sample_rate))))
        self.config = config
        self.floor_start = FloorStart(config, sample_rate)
        self.fixed_threshold = threshold_db
        self._observed = False  # pass 1 has seen at least one block
        self._recent: collections.deque[float] | None = None  # pass 2: recent stationary levels
        self._pending = np.zeros(0, dtype=np.float64)        # pass 2: frames of the unfinished chunk

    def observe(self, block: np.ndarray) -> None:
        if self._recent is not None:
            raise RuntimeError("observe() after decide(): pass 1 must come first")
        self._observed = True
        self.floor_start.update(self.heard(block, "observe"))

    @property
    def observed_enough(self) -> bool:
        """Pass 1 is only needed until the floor's first chunks are known (often seconds)."""
        return self.fixed_threshold is not None or len(self.floor_start.first_levels) == self.floor_start.keep

    def threshold_db(self) -> float:
        """The threshold in force now."""
        if self.fixed_threshold is not None:
            return self.fixed_threshold
        if self._recent is None:
            if not self._observed:
                raise RuntimeError("the energy detector needs pass 1 (observe() the first blocks) "
                                   "before decide(), or a fixed threshold_db")
            self._recent = collections.deque(self.floor_start.first_levels, maxlen=self.floor_start.keep)
        return threshold(self.config, min(self._recent) if self._recent else None)

    def _classify(self, frames: np.ndarray) -> np.ndarray:
        db = frame_db(frames)
        if self.fixed_threshold is not None:
            return db > self.fixed_threshold
        out = np.empty(len(db), dtype=bool)
        chunk, i = self.floor_start.chunk, 0
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


