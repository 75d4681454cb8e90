"""The one place tests make synthetic audio: seeded, tiny, written in any format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL_RAVDESS = SHARED / "corpora" / "ravdess"
REAL_RAVDESS_FULL = SHARED / "corpora" / "ravdess_full"  # all 1440 speech clips, FLAC


def signal(duration_s: float = 0.5, sample_rate: int = 16000, channels: int = 1,
           seed: int = 0, freq: float = 220.0) -> np.ndarray:
    """A seeded tone plus noise, float32 in [-1, 1], shape (n,) or (n, channels)."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate
    tone = 0.3 * np.sin(2 * np.pi * freq * t)
    out = np.stack([tone * (1 + 0.2 * c) + 0.05 * rng.standard_normal(n) for c in range(channels)], axis=1)
    out = out.astype(np.float32)
    return out[:, 0] if channels == 1 else out


def write_audio(path: str | Path, duration_s: float = 0.5, sample_rate: int = 16000,
                channels: int = 1, seed: int = 0, subtype: str | None = "PCM_16",
                format: str | None = None, data: np.ndarray | None = None) -> Path:
    """Write a seeded test signal (or ``data``) to ``path``; parents are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = signal(duration_s, sample_rate, channels, seed) if data is None else data
    sf.write(str(path), audio, sample_rate, subtype=subtype, format=format)
    return path


def touch_tree(root: str | Path, relative_paths: list[str], **audio_kwargs) -> list[Path]:
    """Write a tiny seeded clip at each relative path under root (a fake corpus tree)."""
    return [write_audio(Path(root) / rel, seed=i, **audio_kwargs) for i, rel in enumerate(relative_paths)]


# -- speech and line noise for the speech-detector tests ---------------------------------

def speech(duration_s: float, sample_rate: int = 8000, seed: int = 0, emotion: str = "neutral",
           gender: str = "female", gain_db: float = 0.0) -> np.ndarray:
    """Speech that never stops for ``duration_s``: short phrases of the demo synthesiser's
    voice (telephone band), one after another with 0.1 s between them, float32 (n,)."""
    import soxr

    from ser_core.demo.synth import Voice, plan_turn, render
    from ser_core.demo.telephone import TELEPHONE_BAND

    rng = np.random.default_rng([seed, 7])
    voice = Voice.create(seed, 900 + seed, gender, domain="archive")
    n, parts, have = int(round(duration_s * sample_rate)), [], 0
    while have < n:
        x = render(plan_turn(voice, emotion, "normal", 1.8, rng), 16000, band=TELEPHONE_BAND)
        x = soxr.resample(x, 16000, sample_rate) if sample_rate != 16000 else x
        parts.append(x)
        have += len(x)
    return (np.concatenate(parts)[:n] * np.float32(10 ** (gain_db / 20))).astype(np.float32)


def line_noise(duration_s: float, sample_rate: int = 8000, seed: int = 0, hiss_db: float | None = -55.0,
               hum_db: float | None = None) -> np.ndarray:
    """One channel of the demo phone line's noise (hiss, optional mains hum), float32 (n,)."""
    from ser_core.demo.telephone import LineNoise

    n = int(round(duration_s * sample_rate))
    return LineNoise(hiss_db, hum_db).block(np.random.default_rng(seed), 0, n, sample_rate)[:, 0].copy()


def real_speech(duration_s: float, sample_rate: int = 8000, gender: str = "male") -> np.ndarray | None:
    """Real RAVDESS speech (the clips beside the project) at their recorded level, each clip
    trimmed to its speech and band-passed like a phone line, joined until ``duration_s``;
    None when the clips are absent. Actors of one gender (odd male, even female)."""
    from ser_core import audio
    from ser_core.demo.calls import speech_span
    from ser_core.demo.telephone import band_pass

    clips = sorted(REAL_RAVDESS.glob("Actor_*/03-01-*.wav"))
    parity = 1 if gender == "male" else 0
    clips = [c for c in clips if int(c.stem.split("-")[-1]) % 2 == parity]
    n, parts, have = int(round(duration_s * sample_rate)), [], 0
    for clip in clips:
        x = band_pass(audio.load(str(clip), sample_rate)[0], sample_rate)
        a, b = speech_span(x, sample_rate, 30.0)
        parts.append(x[a:b])
        have += b - a
        if have >= n:
            return np.concatenate(parts)[:n].astype(np.float32)
    return None
