"""Voice descriptors per frame, computed here: a GeMAPS-style set without openSMILE.

Between corpora, what carries emotion is less the spectrum's fine shape (which holds the
language, the sentence and the speaker) than how the voice is produced: how loud, how
high, how steady, how breathy, how tense. Eyben et al. (2016) chose 25 such low-level
descriptors, the eGeMAPS set; openSMILE computes them, but its licence forbids commercial
use. This module computes descriptors of the same 25 kinds with numpy alone, every
:data:`STEP_S` (10 ms) over :data:`WINDOW_S` (25 ms) Hann windows, and the ``voice``
front-end (:mod:`ser_core.features`) averages them into its own frames.

Per 10 ms step (:data:`DESCRIPTORS`, in this order):

- ``loudness``: the sum over 26 mel bands of their power to the 0.3 (Stevens' law);
- ``alpha_ratio``: energy below 1 kHz over energy from 1 to 5 kHz, dB;
- ``hammarberg``: the strongest bin below 2 kHz over the strongest from 2 to 5 kHz, dB;
- ``slope_0_500``, ``slope_500_1500``: least-squares slope of the dB spectrum, dB/kHz;
- ``flux``: squared change of the sum-normalised magnitude spectrum since the last step;
- ``mfcc1`` .. ``mfcc4``: cepstral coefficients 1-4 of the 26 log mel bands;
- ``f0_semitones``: F0 (:func:`ser_core.prosody.pitch`, 40 ms windows) in semitones re
  100 Hz, unvoiced steps interpolated;
- ``jitter``: |period change| / mean period between consecutive voiced steps (0 unvoiced);
- ``shimmer_db``: |change of the peak amplitude| in dB between consecutive voiced steps, each
  step's peak taken within its own 10 ms (0 unvoiced);
- ``hnr_db``: harmonics-to-noise ratio from the normalised autocorrelation peak r,
  10 log10(r / (1 - r)) (Boersma 1993), r within [0.01, 0.99];
- ``h1_h2``, ``h1_a3``: level of the first harmonic over the second, and over the
  strongest harmonic near F3, dB (0 unvoiced);
- ``f1_hz``, ``f1_bw``, ``f1_db`` .. ``f3_*``: the first three formants of a linear
  prediction (order 2 + kHz, pre-emphasised): frequency, bandwidth and the spectrum's
  level there relative to the step's strongest bin; steps too quiet to measure take the
  nearest measured values.

Where this differs from openSMILE's: jitter and shimmer compare consecutive 10 ms
analyses rather than individual glottal cycles (cycle marking is unreliable once a
telephone band has removed the fundamental), and all bands are clipped to the audio's
analysis band. Every value is finite by construction; speaker normalisation then makes
each descriptor relative to the speaker's own.
"""

from __future__ import annotations

import functools

import numpy as np

from ser_core import prosody
from ser_core.spectral import dct_matrix, mel_basis

STEP_S = 0.01
WINDOW_S = 0.025
N_MELS = 26
LOUDNESS_POWER = 0.3
PRE_EMPHASIS = 0.7
MAX_BANDWIDTH_HZ = 600.0  # wider LPC poles are not formants
MIN_FORMANT_HZ = 90.0
FORMANTS = 3
R_RANGE = (0.01, 0.99)  # HNR within about -20 .. +20 dB
EPS = 1e-10
DESCRIPTORS = ("loudness", "alpha_ratio", "hammarberg", "slope_0_500", "slope_500_1500", "flux",
               "mfcc1", "mfcc2", "mfcc3", "mfcc4", "f0_semitones", "jitter", "shimmer_db", "hnr_db",
               "h1_h2", "h1_a3",
               "f1_hz", "f1_bw", "f1_db", "f2_hz", "f2_bw", "f2_db", "f3_hz", "f3_bw", "f3_db")
N_DESCRIPTORS = len(DESCRIPTORS)


def _db(x: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(x, EPS))


def _ratio_db(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return _db(num + EPS) - _db(den + EPS)


@functools.lru_cache(maxsize=8)
def _analysis(sample_rate: int, band: tuple[float, float]) -> dict:
    """Everything that depends only on the rate and band: window, FFT size, bin masks, mel basis."""
    size = 2 * int(round(WINDOW_S * sample_rate / 2))  # even: centred frames then number 1 + n // hop
    n_fft = 1 << int(np.ceil(np.log2(size)))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lo, hi = band
    within = (freqs >= lo) & (freqs <= hi)

    def bins(a: float, b: float) -> np.ndarray:
        """The bins of [a, b) within the band; the two nearest its middle when it has fewer."""
        mask = within & (freqs >= a) & (freqs < b)
        if mask.sum() < 2:
            mask = np.zeros_like(within)
            mask[np.argsort(np.where(within, np.abs(freqs - (a + b) / 2), np.inf))[:2]] = True
        return mask
    return {"size": size, "n_fft": n_fft, "freqs": freqs, "window": np.hanning(size + 2)[1:-1],
            "low": bins(0, 1000), "high": bins(1000, 5000), "below2k": bins(0, 2000), "above2k": bins(2000, 5000),
            "s0": bins(0, 500), "s1": bins(500, 1500), "within": within,
            "mel": mel_basis(sample_rate, n_fft, N_MELS, lo, hi).astype(np.float64),
            "dct": dct_matrix(N_MELS, 5)[:, 1:5].astype(np.float64),
            "order": min(2 + sample_rate // 1000, 18)}


def _slope(db: np.ndarray, freqs_khz: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of ``db`` over ``freqs_khz`` (dB per kHz)."""
    f = freqs_khz - freqs_khz.mean()
    return (db - db.mean(axis=1, keepdims=True)) @ f / max(float(f @ f), EPS)


K_MAX = 1.0 - 1e-9  # reflection coefficients are held inside the unit circle (a stable filter)


def _levinson(r: np.ndarray, order: int) -> np.ndarray:
    """Prediction polynomials [1, a1 .. ap] from autocorrelations (T, >= order + 1), vectorised."""
    t = r.shape[0]
    a = np.zeros((t, order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        acc = r[:, i] + np.einsum("tj,tj->t", a[:, 1:i], r[:, i - 1:0:-1])
        # |k| < 1 for any true autocorrelation; rounding on a nearly singular one can break it
        k = np.clip(-acc / np.maximum(err, EPS), -K_MAX, K_MAX)
        a[:, 1:i] = a[:, 1:i] + k[:, None] * a[:, i - 1:0:-1]
        a[:, i] = k
        err = err * np.maximum(1.0 - k * k, EPS)
    return a


def _formants(frames: np.ndarray, sample_rate: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, bandwidths) in Hz, (T, FORMANTS) each, NaN where a frame has fewer poles."""
    x = np.concatenate([frames[:, :1], frames[:, 1:] - PRE_EMPHASIS * frames[:, :-1]], axis=1)
    x = x * np.hamming(x.shape[1])
    spectrum = np.fft.rfft(x, n=2 * x.shape[1], axis=1)
    r = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :order + 1]
    # Relative to each frame's own power (the polynomial does not depend on the scale): a quiet
    # frame's autocorrelations are near EPS, against which the recursion's floors then misfire.
    r = r / np.maximum(r[:, :1], np.finfo(np.float64).tiny)
    r[:, 0] *= 1.0 + 1e-9  # white-noise correction: keeps the recursion stable on silence
    a = _levinson(r, order)
    companion = np.zeros((len(a), order, order))
    companion[:, 0, :] = -a[:, 1:]
    companion[:, np.arange(1, order), np.arange(order - 1)] = 1.0
    roots = np.linalg.eigvals(companion)
    freq = np.angle(roots) * sample_rate / (2 * np.pi)
    bw = -np.log(np.maximum(np.abs(roots), EPS)) * sample_rate / np.pi
    ok = (roots.imag > 0) & (freq > MIN_FORMANT_HZ) & (freq < sample_rate / 2 - 50) & (bw < MAX_BANDWIDTH_HZ)
    key = np.where(ok, freq, np.inf)
    idx = np.argsort(key, axis=1)[:, :FORMANTS]
    rows = np.arange(len(a))[:, None]
    found = np.isfinite(key[rows, idx])
    return np.where(found, freq[rows, idx], np.nan), np.where(found, bw[rows, idx], np.nan)


def _fill(values: np.ndarray, keep: np.ndarray, default: float) -> np.ndarray:
    """Each column's values where ``keep`` and finite; elsewhere the nearest such value in
    time (linear between two), or ``default`` when a column has none."""
    out = np.empty_like(values)
    t = np.arange(len(values))
    for j in range(values.shape[1]):
        good = keep & np.isfinite(values[:, j])
        out[:, j] = np.interp(t, t[good], values[good, j]) if good.any() else default
    return out


def _harmonic_db(power_db: np.ndarray, freqs: np.ndarray, centre: np.ndarray, half_width: np.ndarray) -> np.ndarray:
    """The strongest bin within centre +- half_width (per row; the nearest bin when none)."""
    near = np.abs(freqs[None, :] - centre[:, None]) <= half_width[:, None]
    nearest = np.abs(freqs[None, :] - centre[:, None]).argmin(axis=1)
    near[np.arange(len(centre)), nearest] = True
    return np.where(near, power_db, -np.inf).max(axis=1)


def descriptors(y: np.ndarray, sample_rate: int, band: tuple[float, float] | None = None) -> np.ndarray:
    """(steps, :data:`N_DESCRIPTORS`) float64, one row per :data:`STEP_S`, centred on
    k * STEP_S; ``band``: the analysis band in Hz (default: 0 to Nyquist)."""
    band = (0.0, sample_rate / 2) if band is None else (float(band[0]), float(band[1]))
    a = _analysis(sample_rate, band)
    hop = int(round(STEP_S * sample_rate))
    y = np.asarray(y, dtype=np.float64)
    frames = prosody.frames_of(y, a["size"], hop).astype(np.float64)  # (T, size), centred on k * hop
    t = len(frames)
    power = np.abs(np.fft.rfft(frames * a["window"], n=a["n_fft"], axis=1)) ** 2  # (T, bins)
    power_db = _db(power)
    freqs, within = a["freqs"], a["within"]
    out = np.zeros((t, N_DESCRIPTORS))

    mel = power @ a["mel"]
    out[:, 0] = np.sum(mel ** LOUDNESS_POWER, axis=1)
    out[:, 1] = _ratio_db(power[:, a["low"]].sum(1), power[:, a["high"]].sum(1))
    out[:, 2] = _ratio_db(power[:, a["below2k"]].max(1), power[:, a["above2k"]].max(1))
    out[:, 3] = _slope(power_db[:, a["s0"]], freqs[a["s0"]] / 1000)
    out[:, 4] = _slope(power_db[:, a["s1"]], freqs[a["s1"]] / 1000)
    magnitude = np.sqrt(power[:, within])
    magnitude /= np.maximum(magnitude.sum(axis=1, keepdims=True), EPS)
    out[1:, 5] = np.sum(np.diff(magnitude, axis=0) ** 2, axis=1)
    out[:, 6:10] = _db(mel) @ a["dct"]

    # Source: F0, its steadiness, and how periodic the voice is.
    pitch_size = max(a["size"], 2 * int(round(prosody.PITCH_WINDOW_S * sample_rate / 2)))
    f0, strength = prosody.pitch(y.astype(np.float32), sample_rate, pitch_size, hop)
    f0, strength = f0[:t].astype(np.float64), strength[:t].astype(np.float64)
    voiced = f0 > 0
    out[:, 10] = prosody.semitone_contour(f0.astype(np.float32))
    both = voiced[1:] & voiced[:-1]
    period = np.where(voiced, 1.0 / np.maximum(f0, EPS), 0.0)
    jitter = np.abs(np.diff(period)) / np.maximum(0.5 * (period[1:] + period[:-1]), EPS)
    out[1:, 11] = np.where(both, jitter, 0.0)
    # The peak within the step's own 10 ms (a window's mean power would move with the number
    # of glottal pulses it happens to hold).
    centre = frames[:, a["size"] // 2 - hop // 2:a["size"] // 2 + hop - hop // 2]
    peak = 2.0 * _db(np.abs(centre).max(axis=1))
    out[1:, 12] = np.where(both, np.abs(np.diff(peak)), 0.0)
    level = _db(np.mean(frames * frames, axis=1))
    r = np.clip(strength, *R_RANGE)
    out[:, 13] = 10.0 * np.log10(r / (1.0 - r))

    # Formants, where the step is loud enough to measure them.
    loud = level > level.max() - prosody.GATE_DB  # t >= 1: centred framing gives even empty audio a frame
    fq, bw = _formants(frames, sample_rate, a["order"])
    fq = _fill(fq, loud, 0.0)
    bw = _fill(bw, loud, MAX_BANDWIDTH_HZ)
    peak_db = np.where(within, power_db, -np.inf).max(axis=1)
    for k in range(FORMANTS):
        fq[:, k] = np.where(fq[:, k] > 0, fq[:, k], (2 * k + 1) * 500.0)  # no formant anywhere: a neutral tube's
        out[:, 16 + 3 * k] = fq[:, k]
        out[:, 17 + 3 * k] = bw[:, k]
        out[:, 18 + 3 * k] = _harmonic_db(power_db, freqs, fq[:, k], np.maximum(bw[:, k] / 2, 1.0)) - peak_db

    # Harmonic levels (voiced steps).
    f0v = np.where(voiced, f0, 100.0)
    h1 = _harmonic_db(power_db, freqs, f0v, f0v / 4)
    h2 = _harmonic_db(power_db, freqs, 2 * f0v, f0v / 4)
    a3 = _harmonic_db(power_db, freqs, fq[:, 2], f0v / 2)
    out[:, 14] = np.where(voiced, h1 - h2, 0.0)
    out[:, 15] = np.where(voiced, h1 - a3, 0.0)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
