"""The DSP the front-ends share, restated from librosa and pinned to it by the tests:
the centred power spectrogram, dB conversion, the chroma tuning estimate, and the window,
mel, chroma and DCT matrices (:mod:`ser_core.features` builds the extractors from them).

Engineered for throughput: the FFT runs in chunks of frames through scratch arrays reused
from clip to clip; window, filterbanks and DCT are built once per configuration (chroma
filterbanks once per tuning value); the tuning estimate looks only at the band it uses; and
neither librosa nor scipy is imported (librosa's numba-backed import costs ~1.5 s per worker
process). The power spectrum is librosa's bit for bit (float64 FFT of the windowed float32
frames, rounded to complex64), so the tuning estimate, a histogram arg-max that a rounding
difference could flip, is too.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

# librosa defaults the front-end inherits: dB floor, dynamic range, tuning search band.
AMIN = 1e-10
TOP_DB = 80.0
TUNING_FMIN, TUNING_FMAX, TUNING_THRESHOLD, TUNING_RESOLUTION = 150.0, 4000.0, 0.1, 0.01


def n_frames(n_samples: int, n_fft: int, hop_length: int) -> int:
    """Frames of a centred STFT (``n_fft // 2`` zeros each side, as librosa pads): ``1 +
    n_samples // hop_length`` when ``n_fft`` is even, one fewer when it is odd and
    ``n_samples`` a multiple of the hop."""
    return 1 + (n_samples + 2 * (n_fft // 2) - n_fft) // hop_length


def power_spectrogram(y: np.ndarray, n_fft: int, hop_length: int, window: np.ndarray) -> np.ndarray:
    """|STFT|^2 of centred, zero-padded frames, shape (frames, 1 + n_fft // 2), float32.

    Bit-for-bit librosa's ``abs(stft(y)) ** 2`` for float32 ``y``: float64 FFT of the
    windowed frames, rounded to complex64, magnitude and square in float32. Frames go
    through the FFT in chunks, in per-thread scratch arrays reused from clip to clip:
    allocating (and page-faulting) ~8 MB of fresh temporaries per clip cost 15-25%.
    """
    padded = np.pad(np.asarray(y, dtype=np.float32), n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]  # (T, n_fft) view
    power = np.empty((frames.shape[0], 1 + n_fft // 2), dtype=np.float32)
    windowed, spec, spec64 = _scratch(n_fft)
    for start in range(0, frames.shape[0], _CHUNK):
        stop = min(start + _CHUNK, frames.shape[0])
        n = stop - start
        np.multiply(frames[start:stop], window, out=windowed[:n])
        # numpy >= 2: the same C++ pocketfft as scipy.fft (librosa's), writing in place
        np.fft.rfft(windowed[:n], axis=-1, out=spec[:n])
        spec64[:n] = spec[:n]  # librosa's stft is complex64
        np.abs(spec64[:n], out=power[start:stop])
    np.square(power, out=power)
    return power


_CHUNK = 64  # frames per FFT call
_SCRATCH = threading.local()


def _scratch(n_fft: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This thread's (windowed float64, spectrum complex128, spectrum complex64) chunk arrays."""
    arrays = getattr(_SCRATCH, "arrays", None)
    if arrays is None or arrays[0].shape[1] != n_fft:
        bins = 1 + n_fft // 2
        arrays = (np.empty((_CHUNK, n_fft)), np.empty((_CHUNK, bins), np.complex128),
                  np.empty((_CHUNK, bins), np.complex64))
        _SCRATCH.arrays = arrays
    return arrays


def power_to_db(power: np.ndarray, top_db: float | None = TOP_DB) -> np.ndarray:
    """librosa.power_to_db(ref=1.0, amin=1e-10, top_db=80) over the whole clip."""
    log_spec = 10.0 * np.log10(np.maximum(power, np.float32(AMIN)))
    if top_db is not None:
        np.maximum(log_spec, log_spec.max() - top_db, out=log_spec)
    return log_spec


def _parabolic_shift(x_prev: np.ndarray, x: np.ndarray, x_next: np.ndarray) -> np.ndarray:
    """librosa's parabolic-interpolation stencil (its numba kernel works in float64)."""
    a = (x_next + x_prev).astype(np.float64) - 2.0 * x
    b = (x_next - x_prev).astype(np.float64) / 2.0
    ok = np.abs(b) < np.abs(a)
    shift = np.zeros(a.shape, dtype=np.float64)
    np.divide(-b, a, out=shift, where=ok)
    return shift.astype(x.dtype)


def estimate_tuning(power: np.ndarray, sample_rate: int, bins_per_octave: int) -> float:
    """librosa.estimate_tuning(S=power.T, ...) restricted to the band piptrack searches.

    ``power`` is (frames, bins). piptrack keeps local spectral peaks in [150, 4000) Hz
    above 0.1 x each frame's maximum; the tuning is the arg-max of a histogram of their
    deviations from equal temperament, over the peaks at or above the median strength.
    """
    n_bins = power.shape[1]
    n_fft = 2 * (n_bins - 1)  # as librosa re-derives it from S: an odd n_fft counts as n_fft - 1
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    band = np.flatnonzero((freqs >= TUNING_FMIN) & (freqs < min(TUNING_FMAX, sample_rate / 2)))
    band = band[(band > 0) & (band < n_bins - 1)]  # both neighbours exist
    if band.size == 0:
        return 0.0
    lo, hi = band[0], band[-1] + 1
    x_prev, x, x_next = power[:, lo - 1:hi - 1], power[:, lo:hi], power[:, lo + 1:hi + 1]

    ref = TUNING_THRESHOLD * power.max(axis=1, keepdims=True)  # float32, as librosa
    gated = power[:, lo - 1:hi + 1] * (power[:, lo - 1:hi + 1] > ref)
    peaks = (gated[:, 1:-1] > gated[:, :-2]) & (gated[:, 1:-1] >= gated[:, 2:])
    rows, cols = np.nonzero(peaks)
    if rows.size == 0:
        return 0.0
    xp, xc, xn = x_prev[rows, cols], x[rows, cols], x_next[rows, cols]
    shift = _parabolic_shift(xp, xc, xn)
    pitch = ((cols + lo) + shift) * float(sample_rate) / n_fft  # float64 ...
    pitch = pitch.astype(np.float32)  # ... stored in librosa's float32 array
    mag = xc + np.float32(0.5) * ((xn - xp) / np.float32(2.0)) * shift
    voiced = pitch > 0
    if not voiced.any():
        return 0.0
    threshold = np.median(mag[voiced])
    freqs_sel = pitch[(mag >= threshold) & voiced]
    if freqs_sel.size == 0:
        return 0.0
    return pitch_tuning(freqs_sel, bins_per_octave)


# ---------------------------------------------------------------- filterbanks
# librosa's formulas (librosa 0.10/0.11: filters.mel with Slaney scale and norm,
# filters.chroma with its defaults, convert.pitch_tuning), re-stated so that workers
# do not import librosa (about 1.5 s of numba-backed imports per process); the
# tests pin each one to librosa's output.


@functools.lru_cache(maxsize=16)
def hann_window(n_fft: int) -> np.ndarray:
    """scipy.signal.get_window('hann', n_fft, fftbins=True), bit for bit, float64."""
    fac = np.linspace(-np.pi, np.pi, n_fft + 1)
    w = np.zeros(n_fft + 1)
    w += 0.5 * np.cos(0 * fac)
    w += 0.5 * np.cos(1 * fac)
    return w[:-1]


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asanyarray(hz, dtype=np.float64)
    mels = hz / (200.0 / 3)
    log_t = hz >= 1000.0
    mels[log_t] = 1000.0 / (200.0 / 3) + np.log(hz[log_t] / 1000.0) / (np.log(6.4) / 27.0)
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    freqs = (200.0 / 3) * mels
    min_log_mel = 1000.0 / (200.0 / 3)
    log_t = mels >= min_log_mel
    freqs[log_t] = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels[log_t] - min_log_mel))
    return freqs


@functools.lru_cache(maxsize=16)
def mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax) (Slaney), transposed: (bins, mels) float32."""
    fmax = sample_rate / 2 if fmax is None else fmax
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_f = _mel_to_hz(np.linspace(*_hz_to_mel(np.array([fmin, fmax])), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    return np.ascontiguousarray(weights.T)


@functools.lru_cache(maxsize=256)
def chroma_basis(sample_rate: int, n_fft: int, n_chroma: int, tuning: float) -> np.ndarray:
    """librosa.filters.chroma(sr, n_fft, tuning, n_chroma), transposed: (bins, chroma) float32.

    Gaussian bumps around each pitch class (ctroct 5, octwidth 2, L2-normalised per
    bin, starting at C). Cached per tuning: the estimate takes at most 101 values.
    """
    frequencies = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    frqbins = n_chroma * np.log2(frequencies / (float(a440) / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    n_chroma2 = np.round(float(n_chroma) / 2)
    d = np.remainder(d + n_chroma2 + 10 * n_chroma, n_chroma) - n_chroma2
    wts = np.exp(-0.5 * (2 * d / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    length = np.sum(np.abs(wts) ** 2, axis=0, keepdims=True) ** (1.0 / 2)
    length[length < np.finfo(wts.dtype).tiny] = 1.0
    wts = wts / length
    wts *= np.tile(np.exp(-0.5 * (((frqbins / n_chroma - 5.0) / 2) ** 2)), (n_chroma, 1))
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, : int(1 + n_fft / 2)].T, dtype=np.float32)


def pitch_tuning(frequencies: np.ndarray, bins_per_octave: int) -> float:
    """librosa.pitch_tuning at 0.01 resolution: the most common deviation from A440 tuning."""
    frequencies = frequencies[frequencies > 0]
    if frequencies.size == 0:
        return 0.0
    residual = np.mod(bins_per_octave * np.log2(frequencies / (float(440.0) / 16)), 1.0)
    residual[residual >= 0.5] -= 1.0
    bins = np.linspace(-0.5, 0.5, int(np.ceil(1.0 / TUNING_RESOLUTION)) + 1)
    counts, edges = np.histogram(residual, bins)
    return float(edges[np.argmax(counts)])


@functools.lru_cache(maxsize=16)
def dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """Orthonormal DCT-II (scipy.fft.dct(norm='ortho'), as librosa's MFCC), rows
    0..n_mfcc-1, transposed: (mels, mfcc) float32."""
    k = np.arange(n_mfcc)[:, np.newaxis]
    n = np.arange(n_mels)[np.newaxis, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) * np.sqrt(2.0 / n_mels)
    basis[0] /= np.sqrt(2.0)
    return np.ascontiguousarray(basis.T, dtype=np.float32)
