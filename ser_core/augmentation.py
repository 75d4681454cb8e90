"""Audio augmentation that the feature pipeline turns into extra feature rows.

Each augmentation is a named, deterministic transform of one decoded clip (mono float32
at the feature rate); its rows carry ``variant`` = the name and ``source_id`` = the clip's
utterance id, so training can use them for its TRAINING speakers only (the rows of other
speakers are never read by a fold: :mod:`ser_core.training.data`). Names:

- ``speed0.9``, ``speed1.1`` (any ``speedF``): speed perturbation as in Kaldi (Ko et al.
  2015): the clip is resampled so that it plays F times as fast, tempo and pitch together;
- ``noiseN`` (e.g. ``noise20``): white noise at N dB signal-to-noise ratio (the clip's own
  RMS), seeded by the utterance id;
- ``telephone``: what a call line does: resampled to 8 kHz, band-limited to 300-3400 Hz,
  G.711 mu-law companded, and back to the clip's rate.
- ``hiss``: a call line's steady noise: white noise at an absolute level drawn per clip
  (seeded by its id) between ``HISS_DBFS`` -65 and -45 dBFS RMS, whatever the clip's own
  level (a quiet speaker is not given a quieter line). Studio corpora have none, and
  measured on real-speech calls its absence is what hurt most (README, labelling);
  ``hissL`` (e.g. ``hiss-55``): the same at one fixed level, L dBFS (measuring a model on
  a line of known noise, as ``ser mix-calls`` makes them).
- ``gsm``: a mobile call's codec: resampled to 8 kHz, encoded with GSM 06.10 full rate
  (13 kbit/s) and decoded again through libsndfile, and back to the clip's rate;
- ``reverb``: a room: the clip convolved with a synthetic impulse response (a direct path,
  then exponentially decaying noise whose reverberation time RT60 is drawn per clip,
  seeded by its id, between ``REVERB_RT60_S`` 0.2 and 0.8 s; the direct-to-reverberant
  ratio drawn between ``REVERB_DRR_DB`` 0 and 10 dB), scaled back to the clip's RMS and
  cut to its length.
- ``loudness``: another level: the clip scaled by a gain drawn per clip (seeded by its id)
  between ``LOUDNESS_DB`` -12 and +6 dB, the way a speaker nearer to or further from the
  microphone, or another line's gain, sounds (with ``hiss``, the line noise stays where it
  is: the SNR moves too); never clipped: a gain that would push the peak past full scale is
  reduced to the clip's headroom. ``gainD`` (e.g. ``gain-20``): one fixed gain of D dB within
  -60..+20, capped the same way (measuring a model on quieter or louder speech).
- ``vtlp``: vocal-tract-length perturbation (after Jaitly & Hinton 2013, on the waveform):
  the spectral envelope of every frame (its linear-prediction fit, order 2 + kHz) is
  stretched along frequency by a factor drawn per clip between ``VTLP_FACTORS`` 0.9 and 1.1
  (seeded by its id; piecewise linear, the top of the band fixed), while the harmonics,
  and so the pitch, stay where they were: another speaker's formants, the same voice's
  pitch, tempo and emotion (``speedF`` moves all of them together). ``vtlpA`` (e.g.
  ``vtlp1.1``): one fixed factor A within 0.8-1.2.

The seed of every random draw is derived from the utterance id and the name, so the rows
are the same in every run, on every worker.
"""

from __future__ import annotations

import hashlib
import re
from typing import Callable, Sequence

import numpy as np

from ser_core.audio import resample

ORIGINAL = ""  # the variant name of an unaugmented row
_SPEED = re.compile(r"^speed(\d+(?:\.\d+)?)$")
_NOISE = re.compile(r"^noise(-?\d+(?:\.\d+)?)$")
_HISS_AT = re.compile(r"^hiss(-\d+(?:\.\d+)?)$")
TELEPHONE = "telephone"
HISS = "hiss"
HISS_DBFS = (-65.0, -45.0)
MU = 255.0
GSM = "gsm"
REVERB = "reverb"
REVERB_RT60_S = (0.2, 0.8)
REVERB_DRR_DB = (0.0, 10.0)
LOUDNESS = "loudness"
LOUDNESS_DB = (-12.0, 6.0)
_GAIN = re.compile(r"^gain(-?\d+(?:\.\d+)?)$")
VTLP = "vtlp"
VTLP_FACTORS = (0.9, 1.1)
VTLP_CUTOFF = 0.6           # the warp is a plain stretch up to this fraction of Nyquist
_VTLP_AT = re.compile(r"^vtlp(\d+(?:\.\d+)?)$")
NAMED = (TELEPHONE, HISS, GSM, REVERB, LOUDNESS, VTLP)


def check_names(names: Sequence[str]) -> list[str]:
    """The augmentation names, validated (ValueError naming the bad one), duplicates refused."""
    names = [str(n).strip() for n in names]
    for name in names:
        speed = _SPEED.match(name)
        if speed and not 0.5 <= float(speed.group(1)) <= 2.0:
            raise ValueError(f"augmentation {name!r}: speed factor must be within 0.5-2.0")
        vtlp_at = _VTLP_AT.match(name)
        if vtlp_at and not 0.8 <= float(vtlp_at.group(1)) <= 1.2:
            raise ValueError(f"augmentation {name!r}: vocal-tract-length factor must be within 0.8-1.2")
        gain = _GAIN.match(name)
        if gain and not -60.0 <= float(gain.group(1)) <= 20.0:
            raise ValueError(f"augmentation {name!r}: gain must be within -60..+20 dB")
        if not (speed or vtlp_at or gain or _NOISE.match(name) or _HISS_AT.match(name) or name in NAMED):
            raise ValueError(f"unknown augmentation {name!r}; use speedF (e.g. speed0.9), noiseN "
                             f"(SNR in dB, e.g. noise20), {HISS}, hissL (L dBFS, e.g. hiss-55), {TELEPHONE}, "
                             f"{GSM}, {REVERB}, {LOUDNESS}, gainD (dB, e.g. gain-20), {VTLP} or vtlpA (e.g. vtlp1.1)")
    if len(set(names)) != len(names):
        raise ValueError(f"augmentations listed twice: {names}")
    return names


def seed_of(utterance_id: str, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{utterance_id}|{name}".encode()).digest()[:8], "little")


def speed(y: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Play ``factor`` times as fast: read the samples as if recorded at rate*factor."""
    return resample(y, int(round(sample_rate * factor)), sample_rate, "HQ")


def add_noise(y: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    if rms == 0.0:
        return y.copy()
    noise = np.random.default_rng(seed).standard_normal(y.shape[0])
    noise *= rms / 10 ** (snr_db / 20)
    return np.clip(y + noise, -1.0, 1.0).astype(np.float32)


def add_hiss(y: np.ndarray, seed: int, levels_dbfs: tuple[float, float] = HISS_DBFS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    level = rng.uniform(*levels_dbfs)
    noise = rng.standard_normal(y.shape[0]) * 10 ** (level / 20)
    return np.clip(y + noise, -1.0, 1.0).astype(np.float32)


def change_level(y: np.ndarray, gain_db: float) -> np.ndarray:
    """``y`` scaled by ``gain_db``, or by less if that would push its peak past full scale
    (the gain that would clip is cut to the clip's headroom: no distortion is added)."""
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > 0.0:
        gain_db = min(gain_db, -20.0 * np.log10(peak))
    return (y.astype(np.float64) * 10 ** (gain_db / 20)).astype(np.float32)


def mu_law(y: np.ndarray) -> np.ndarray:
    """G.711 mu-law encode to 8 bits and decode again (the quantisation a call line adds)."""
    y = np.clip(y, -1.0, 1.0)
    code = np.round(np.sign(y) * np.log1p(MU * np.abs(y)) / np.log1p(MU) * 127.0)
    z = code / 127.0
    return (np.sign(z) * np.expm1(np.abs(z) * np.log1p(MU)) / MU).astype(np.float32)


def telephone(y: np.ndarray, sample_rate: int, band_hz: tuple[float, float] = (300.0, 3400.0)) -> np.ndarray:
    from ser_core.features import band_limit

    line = resample(y, sample_rate, 8000, "HQ")
    line = mu_law(band_limit(line, 8000, band_hz))
    return resample(line, 8000, sample_rate, "HQ").astype(np.float32)


def gsm(y: np.ndarray, sample_rate: int) -> np.ndarray:
    """GSM 06.10 full-rate encode and decode (libsndfile's codec) at 8 kHz; same length and rate."""
    import io

    import soundfile as sf

    line = np.clip(resample(y, sample_rate, 8000, "HQ"), -1.0, 1.0)
    buffer = io.BytesIO()
    sf.write(buffer, line, 8000, format="WAV", subtype="GSM610")
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    decoded = _to_length(decoded, len(line))  # the codec pads its last block
    return _to_length(resample(decoded, 8000, sample_rate, "HQ"), len(y)).astype(np.float32)


def _to_length(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` cut, or padded with zeros, to ``n`` samples."""
    return np.pad(x[:n], (0, max(0, n - len(x))))


def room_response(sample_rate: int, rt60_s: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: a unit direct path, then noise decaying 60 dB in
    ``rt60_s`` seconds whose energy is ``drr_db`` below the direct path's."""
    n = max(2, int(round(rt60_s * sample_rate)))
    t = np.arange(1, n) / sample_rate
    tail = rng.standard_normal(n - 1) * np.exp(-6.9078 * t / rt60_s)  # ln(1000): -60 dB at rt60
    tail *= 10 ** (-drr_db / 20) / np.sqrt(np.sum(tail ** 2))
    return np.concatenate([[1.0], tail])


def reverberate(y: np.ndarray, sample_rate: int, seed: int,
                rt60_s: tuple[float, float] = REVERB_RT60_S, drr_db: tuple[float, float] = REVERB_DRR_DB) -> np.ndarray:
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(seed)
    response = room_response(sample_rate, rng.uniform(*rt60_s), rng.uniform(*drr_db), rng)
    wet = fftconvolve(y.astype(np.float64), response)[:len(y)]
    return np.clip(_at_rms_of(wet, y), -1.0, 1.0).astype(np.float32)


def _at_rms_of(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``x`` (float64) scaled to ``reference``'s RMS (as it is when ``x`` is silent)."""
    rms_in, rms_out = np.sqrt(np.mean(np.square(reference, dtype=np.float64))), np.sqrt(np.mean(x ** 2))
    return x * (rms_in / rms_out) if rms_out > 0 else x


def vtlp_warp(freqs: np.ndarray, factor: float, nyquist: float, cutoff: float = VTLP_CUTOFF) -> np.ndarray:
    """Where each frequency goes: times ``factor`` up to a knee (``cutoff`` of Nyquist, moved
    so that the stretch stays inside the band), then a straight line to Nyquist, which stays."""
    knee = cutoff * nyquist * min(factor, 1.0) / factor
    upper = nyquist - (nyquist - factor * knee) / (nyquist - knee) * (nyquist - freqs)
    return np.where(freqs <= knee, factor * freqs, upper)


def lpc_envelope(power: np.ndarray, order: int) -> np.ndarray:
    """Each frame's (column's) log spectral envelope, up to a constant: the all-pole fit of
    ``order`` (autocorrelation method from the frame's power spectrum, Levinson-Durbin over
    all frames at once), -log|A| at every bin. A silent frame gets a flat one."""
    n_fft = 2 * (power.shape[0] - 1)
    r = np.fft.irfft(power, n=n_fft, axis=0)[:order + 1]
    silent = r[0] <= 0.0
    r[:, silent] = 0.0
    r[0, silent] = 1.0
    r[0] *= 1.0 + 1e-6  # a touch of white noise: always a stable fit
    a = np.zeros_like(r)
    a[0] = 1.0
    error = r[0].copy()
    for i in range(1, order + 1):
        k = -(a[:i] * r[i:0:-1]).sum(axis=0) / error
        a[1:i + 1] = a[1:i + 1] + k * a[i - 1::-1]
        error *= 1.0 - k * k
    return -np.log(np.abs(np.fft.rfft(a, n=n_fft, axis=0)) + 1e-12)


def perturb_vocal_tract(y: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Every frame's spectral envelope stretched along frequency by ``factor``, its fine
    (harmonic) structure and phase kept: formants move, pitch and timing do not. Same
    length and RMS."""
    from scipy.signal import istft, stft

    x = np.asarray(y, dtype=np.float64)
    n_fft = 1 << int(np.ceil(np.log2(0.032 * sample_rate)))  # ~32 ms frames
    if len(x) < n_fft or not np.any(x):
        return np.asarray(y, dtype=np.float32).copy()
    overlap = 3 * n_fft // 4
    freqs, _, spec = stft(x, fs=sample_rate, window="hann", nperseg=n_fft, noverlap=overlap)
    envelope = lpc_envelope(np.abs(spec) ** 2, 2 + sample_rate // 1000)
    # the new envelope at f is the old one at the frequency that the warp sends to f
    source = np.interp(freqs, vtlp_warp(freqs, factor, freqs[-1]), freqs)
    position = source / freqs[1]
    low = np.clip(np.floor(position).astype(int), 0, len(freqs) - 2)
    frac = (position - low)[:, None]
    warped = envelope[low] * (1.0 - frac) + envelope[low + 1] * frac
    _, out = istft(spec * np.exp(warped - envelope), fs=sample_rate, window="hann", nperseg=n_fft,
                   noverlap=overlap)
    return np.clip(_at_rms_of(_to_length(out, len(x)), x), -1.0, 1.0).astype(np.float32)


def transform(name: str) -> Callable[[np.ndarray, int, str], np.ndarray]:
    """(audio, sample_rate, utterance_id) -> augmented audio; ValueError for an unknown name."""
    check_names([name])
    speed_match, noise_match, hiss_match = _SPEED.match(name), _NOISE.match(name), _HISS_AT.match(name)
    if speed_match:
        factor = float(speed_match.group(1))
        return lambda y, sr, uid: speed(y, sr, factor)
    if noise_match:
        snr = float(noise_match.group(1))
        return lambda y, sr, uid: add_noise(y, snr, seed_of(uid, name))
    if name == HISS:
        return lambda y, sr, uid: add_hiss(y, seed_of(uid, name))
    if hiss_match:
        level = float(hiss_match.group(1))
        return lambda y, sr, uid: add_hiss(y, seed_of(uid, name), (level, level))
    if name == GSM:
        return lambda y, sr, uid: gsm(y, sr)
    if name == LOUDNESS:
        return lambda y, sr, uid: change_level(y, float(np.random.default_rng(seed_of(uid, name)).uniform(*LOUDNESS_DB)))
    gain_match = _GAIN.match(name)
    if gain_match:
        gain_db = float(gain_match.group(1))
        return lambda y, sr, uid: change_level(y, gain_db)
    if name == REVERB:
        return lambda y, sr, uid: reverberate(y, sr, seed_of(uid, name))
    if name == VTLP:
        return lambda y, sr, uid: perturb_vocal_tract(
            y, sr, float(np.random.default_rng(seed_of(uid, name)).uniform(*VTLP_FACTORS)))
    vtlp_at = _VTLP_AT.match(name)
    if vtlp_at:
        factor = float(vtlp_at.group(1))
        return lambda y, sr, uid: perturb_vocal_tract(y, sr, factor)
    return lambda y, sr, uid: telephone(y, sr)


def variant_id(utterance_id: str, name: str) -> str:
    """The utterance id of an augmented row (the original keeps its own)."""
    return utterance_id if name == ORIGINAL else f"{utterance_id}@{name}"
