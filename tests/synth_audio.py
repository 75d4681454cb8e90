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
