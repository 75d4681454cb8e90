"""Prosody per frame: pitch (F0), how voiced a frame is, and its energy.

Emotion is carried across languages largely by prosody: how high and how much the pitch
moves, how loud, how tense the voice. A log-mel spectrum holds it only implicitly (at
8 kHz and 85 ms frames its bins barely resolve the harmonics), so the ``logmel_prosody``
front-end (:mod:`ser_core.features`) adds these contours beside the spectrum.

Pitch by the autocorrelation method of Boersma (1993), vectorised over frames: each
centred Hann-windowed frame's autocorrelation (through the FFT, zero-padded so that it is
not circular) divided by the window's own autocorrelation; the highest peak within the
lags of ``F0_RANGE``, less a small cost per octave of lag (parabolic interpolation between
lags) gives F0 and its height the
voicing strength (1: perfectly periodic). It works on telephone audio too: without the
fundamental below 300 Hz, the harmonics keep the period.

Per frame (4 values): F0 in semitones relative to 100 Hz, unvoiced frames filled by
linear interpolation between the voiced ones around them (a flat 0 when none is voiced);
a 5-frame median filter over the voiced frames removes isolated octave jumps (which come
easily once the fundamental is filtered away); its slope (regression deltas); the voicing
strength in [0, 1]; the frame's energy in dB.
Speaker normalisation then makes them relative to the speaker: pitch level and range,
loudness, against that speaker's own.
"""

from __future__ import annotations

import numpy as np

F0_RANGE = (75.0, 500.0)  # Hz: speech, from low male voices to high-pitched emotional female ones
PITCH_WINDOW_S = 0.04  # three periods of the lowest F0: shorter than the spectrum's frames, so a
                       # gliding pitch still correlates with itself over the window
GATE_DB = 35.0  # frames this far below the clip's loudest are silence, however periodic
                # (a band-pass filter rings periodically on a silent line)
SMOOTH = 5  # frames of the median filter over the voiced contour (isolated octave jumps)
VOICED = 0.45  # voicing strength above which a frame's F0 counts (Boersma's default voicing threshold)
UPSAMPLE = 4  # autocorrelation lags per sample
OCTAVE_COST = 0.01  # per octave of lag (Boersma 1993's default)
N_PROSODY = 4
REFERENCE_HZ = 100.0
FLOOR_DB = -100.0


def frames_of(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred, zero-padded frames (T, n_fft) as the STFT takes them (a view)."""
    padded = np.pad(np.asarray(y, dtype=np.float32), n_fft // 2)
    return np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]


def _autocorrelation(x: np.ndarray, n: int, upsample: int = 1) -> np.ndarray:
    """Linear autocorrelation of each row of ``x`` at lags 0, 1/upsample, ... < n (zero-padded
    FFT; the finer lags interpolate it exactly for a band-limited signal)."""
    size = 1 << int(np.ceil(np.log2(2 * x.shape[-1])))
    spectrum = np.fft.rfft(x, n=size, axis=-1)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    return np.fft.irfft(power, n=size * upsample, axis=-1)[..., :n * upsample] * upsample


def pitch(y: np.ndarray, sample_rate: int, n_fft: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """(F0 in Hz, voicing strength in [0, 1]) per frame of the spectrum's framing (``n_fft``,
    ``hop``: the same centres, a :data:`PITCH_WINDOW_S` window), F0 0 where the frame is
    unvoiced or :data:`GATE_DB` below the loudest frame."""
    size = min(n_fft, int(round(PITCH_WINDOW_S * sample_rate)))
    lo, hi = int(np.floor(sample_rate / F0_RANGE[1])), int(np.ceil(sample_rate / F0_RANGE[0]))
    hi = min(hi, size // 2)
    window = np.hanning(size + 2)[1:-1]  # symmetric, no zero end points
    offset = n_fft // 2 - size // 2  # the same frame centres as the spectrum's
    frames = frames_of(y, n_fft, hop)[:, offset:offset + size].astype(np.float64)
    energy = np.mean(frames * frames, axis=1)
    frames = (frames - frames.mean(axis=1, keepdims=True)) * window
    # Lags in steps of 1/UPSAMPLE sample: at 8 kHz the sharp peaks of band-limited speech fall
    # between whole lags, where an octave-lower peak that happens to sit on one would win.
    r = _autocorrelation(frames, hi + 2, UPSAMPLE)  # (T, lags)
    r_window = _autocorrelation(window[None, :], hi + 2, UPSAMPLE)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = r / r[:, :1] / (r_window / r_window[0])
    norm = np.nan_to_num(norm, nan=0.0, posinf=0.0, neginf=0.0)
    # Every local maximum within the lags searched, its height and position refined by a
    # parabola through it and its neighbours (capped at 1: dividing by the window's
    # autocorrelation lifts long lags a little above it, which must not outweigh the
    # octave cost below).
    a, b = lo * UPSAMPLE, hi * UPSAMPLE
    left, mid, right = norm[:, a - 1:b], norm[:, a:b + 1], norm[:, a + 1:b + 2]
    denom = left - 2 * mid + right
    shift = np.clip(np.divide(0.5 * (left - right), denom, out=np.zeros_like(mid), where=denom < -1e-12),
                    -0.5, 0.5)
    height = np.where((mid >= left) & (mid >= right), np.minimum(mid - 0.25 * (left - right) * shift, 1.0), -np.inf)
    lags = (np.arange(a, b + 1) + shift) / UPSAMPLE  # (T, candidates), in samples
    # Boersma's octave cost: a peak at twice the lag (an octave lower) must be that much
    # higher to win, so a periodic frame gives its period, not a multiple of it.
    best = (height - OCTAVE_COST * np.log2(lags / lo)).argmax(axis=1)
    rows = np.arange(len(best))
    strength = np.clip(np.nan_to_num(height[rows, best], neginf=0.0), 0.0, 1.0)
    period = lags[rows, best]
    loud = energy > energy.max() * 10 ** (-GATE_DB / 10) if len(energy) else energy > 0
    strength = np.where(loud, strength, 0.0)
    f0 = np.where(strength >= VOICED, sample_rate / period, 0.0)
    return f0.astype(np.float32), strength.astype(np.float32)


def _median_filter(x: np.ndarray, width: int) -> np.ndarray:
    padded = np.pad(x, width // 2, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, width), axis=1)


def semitone_contour(f0: np.ndarray) -> np.ndarray:
    """F0 (Hz, 0 = unvoiced) as semitones re :data:`REFERENCE_HZ`, unvoiced frames filled by
    linear interpolation (edges held); all 0 when no frame is voiced."""
    voiced = f0 > 0
    if not voiced.any():
        return np.zeros_like(f0, dtype=np.float32)
    semitones = _median_filter(12.0 * np.log2(f0[voiced] / REFERENCE_HZ), SMOOTH)
    t = np.arange(len(f0))
    return np.interp(t, t[voiced], semitones).astype(np.float32)


def energy_db(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Each centred frame's mean power in dB (floored at :data:`FLOOR_DB`)."""
    frames = frames_of(y, n_fft, hop).astype(np.float64)
    power = np.mean(frames * frames, axis=1)
    return (10.0 * np.log10(np.maximum(power, 10.0 ** (FLOOR_DB / 10)))).astype(np.float32)
