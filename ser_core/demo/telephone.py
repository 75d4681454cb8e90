"""What every generated call archive shares: the phone line and the files it leaves.

Two commands write stereo call recordings with a ground-truth sidecar: ``ser
demo-archive`` (synthetic voices) and ``ser mix-calls`` (real labelled clips). Both use
this module, so their calls sound like the same line and ``ser score`` reads both
sidecars the same way:

- :func:`band_response` / :func:`band_pass`: the telephone band (300-3400 Hz), a smooth
  band-pass (4th-order high-pass, 8th-order low-pass shape, zero phase) applied in the
  frequency domain.
- :class:`LineNoise`: line hiss (white, RMS dBFS per channel) and optional mains hum.
- :func:`write_call`: a stereo call written block by block (PCM16 or G.711 mu-law WAV),
  holding only one block and the turns under way, so memory stays flat however long
  the call; the file appears atomically when complete.
- :func:`sidecar_row` / :func:`write_sidecar`: ``ground_truth.csv``, one row per turn:
  ``path,channel,role,start_s,end_s,emotion,intensity`` (path relative to the archive
  folder; times in seconds from the file start, rounded to 0.1 ms).

Channel 0 is the agent and channel 1 the customer (:data:`ROLES`).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np
import soundfile as sf

ROLES = ("agent", "customer")  # index = channel
TELEPHONE_BAND = (300.0, 3400.0)
BLOCK_S = 10.0
SUBTYPES = {"pcm16": "PCM_16", "ulaw": "ULAW"}
SIDECAR = "ground_truth.csv"
SIDECAR_COLUMNS = ("path", "channel", "role", "start_s", "end_s", "emotion", "intensity")


def band_response(freqs: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Magnitude response of the line's band-pass at ``freqs`` (Hz), float32.

    1 / ((1 + (low/f)^4) (1 + (f/high)^8)): about -6 dB at the band edges, steep outside.
    """
    low, high = band
    f = np.maximum(freqs, 1.0)
    return (1.0 / ((1.0 + (low / f) ** 4) * (1.0 + (f / high) ** 8))).astype(np.float32)


def band_pass(x: np.ndarray, sample_rate: int, band: tuple[float, float] = TELEPHONE_BAND) -> np.ndarray:
    """A whole (short) clip through the line's band-pass: zero phase, same length, float32.

    The clip is zero-padded to twice its length before the FFT so the filter's tails do
    not wrap around from one end to the other.
    """
    x = np.asarray(x, dtype=np.float32)
    n = x.size
    if n == 0:
        return x.copy()
    n_fft = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(x, n_fft)
    spectrum *= band_response(np.fft.rfftfreq(n_fft, 1.0 / sample_rate).astype(np.float32), band)
    return np.fft.irfft(spectrum, n_fft)[:n].astype(np.float32)


@dataclass(frozen=True)
class LineNoise:
    """What the line adds to both channels throughout: hiss and optional mains hum."""

    hiss_db: float | None = -55.0  # white noise, RMS dBFS per channel; None for none
    hum_db: float | None = None    # mains hum (fundamental + third harmonic), RMS dBFS
    hum_hz: float = 50.0

    def block(self, rng: np.random.Generator, b0: int, b1: int, sample_rate: int) -> np.ndarray:
        """Samples ``b0:b1`` of the noise, ``(b1 - b0, 2)`` float32; ``rng`` advances per block."""
        if self.hiss_db is None:
            buf = np.zeros((b1 - b0, 2), dtype=np.float32)
        else:
            buf = (10 ** (self.hiss_db / 20) * rng.standard_normal((b1 - b0, 2))).astype(np.float32)
        if self.hum_db is not None:
            phase = 2 * np.pi * self.hum_hz * np.arange(b0, b1) / sample_rate
            hum = np.sin(phase) + 0.5 * np.sin(3 * phase)
            buf += (10 ** (self.hum_db / 20) * np.sqrt(2 / 1.25) * hum)[:, None].astype(np.float32)
        return buf


class PlacedAudio(Protocol):
    """A turn's audio placed on one channel of a call; rendered only when the writer needs it."""

    channel: int
    start: int   # first sample, at the call's rate
    length: int  # samples

    def audio(self, sample_rate: int) -> np.ndarray: ...


def write_call(path: Path, turns: Iterable[PlacedAudio], n_samples: int, sample_rate: int,
               encoding: str, noise: LineNoise, rng: np.random.Generator,
               bleed_gain: float | None = None, on_block: Callable[[float], object] | None = None) -> None:
    """Write one stereo call: noise, plus each turn on its channel (and, with
    ``bleed_gain``, that much of it on the other channel: crosstalk), block by block.

    Samples are clipped to [-1, 1] as a last guard; callers that promise natural levels
    choose gains so that nothing reaches it.
    """
    if encoding not in SUBTYPES:
        raise ValueError(f"encoding must be one of {sorted(SUBTYPES)}, got {encoding!r}")
    block = int(BLOCK_S * sample_rate)
    pending = iter(sorted(turns, key=lambda turn: turn.start))
    upcoming = next(pending, None)
    active: list[tuple[PlacedAudio, np.ndarray]] = []
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with sf.SoundFile(str(tmp), "w", samplerate=sample_rate, channels=2,
                          subtype=SUBTYPES[encoding], format="WAV") as out:
            for b0 in range(0, n_samples, block):
                b1 = min(b0 + block, n_samples)
                buf = noise.block(rng, b0, b1, sample_rate)
                while upcoming is not None and upcoming.start < b1:
                    active.append((upcoming, upcoming.audio(sample_rate)))
                    upcoming = next(pending, None)
                for turn, audio in active:
                    lo, hi = max(turn.start, b0), min(turn.start + turn.length, b1)
                    if lo < hi:
                        piece = audio[lo - turn.start:hi - turn.start]
                        buf[lo - b0:hi - b0, turn.channel] += piece
                        if bleed_gain is not None:
                            buf[lo - b0:hi - b0, 1 - turn.channel] += np.float32(bleed_gain) * piece
                active = [(turn, audio) for turn, audio in active if turn.start + turn.length > b1]
                out.write(np.clip(buf, -1.0, 1.0))
                if on_block:
                    on_block((b1 - b0) / sample_rate)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def noise_peak(noise: LineNoise, rng: np.random.Generator, n_samples: int, sample_rate: int) -> float:
    """The largest absolute noise sample :func:`write_call` will write with a generator
    seeded like ``rng`` (the noise alone, generated block by block exactly as written)."""
    block = int(BLOCK_S * sample_rate)
    peak = 0.0
    for b0 in range(0, n_samples, block):
        peak = max(peak, float(np.abs(noise.block(rng, b0, min(b0 + block, n_samples), sample_rate)).max()))
    return peak


def sidecar_row(path: str, channel: int, start: int, end: int, sample_rate: int,
                emotion: str, intensity: str) -> dict:
    """One ground-truth turn: samples ``start:end`` of ``channel`` in the call ``path``."""
    return {"path": path, "channel": channel, "role": ROLES[channel],
            "start_s": round(start / sample_rate, 4), "end_s": round(end / sample_rate, 4),
            "emotion": emotion, "intensity": intensity}


def write_sidecar(root: Path, rows: Sequence[Mapping], name: str = SIDECAR,
                  columns: Sequence[str] = SIDECAR_COLUMNS) -> Path:
    """Write ``root/name`` (the ground truth by default) atomically; returns its path."""
    tmp = root / f".{name}.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, root / name)
    return root / name
