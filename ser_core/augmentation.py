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


def check_names(names: Sequence[str]) -> list[str]:
    """The augmentation names, validated (ValueError naming the bad one), duplicates refused."""
    names = [str(n).strip() for n in names]
    for name in names:
        speed = _SPEED.match(name)
        if speed and not 0.5 <= float(speed.group(1)) <= 2.0:
            raise ValueError(f"augmentation {name!r}: speed factor must be within 0.5-2.0")
        if not (speed or _NOISE.match(name) or _HISS_AT.match(name) or name in (TELEPHONE, HISS)):
            raise ValueError(f"unknown augmentation {name!r}; use speedF (e.g. speed0.9), noiseN "
                             f"(SNR in dB, e.g. noise20), {HISS}, hissL (L dBFS, e.g. hiss-55) or {TELEPHONE}")
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
    return lambda y, sr, uid: telephone(y, sr)


def variant_id(utterance_id: str, name: str) -> str:
    """The utterance id of an augmented row (the original keeps its own)."""
    return utterance_id if name == ORIGINAL else f"{utterance_id}@{name}"
