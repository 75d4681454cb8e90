from pathlib import Path
from typing import Callable

import pytest

from tests.synth_audio import touch_tree


@pytest.fixture
def make_tree(tmp_path: Path) -> Callable[..., Path]:
    """Build a fake corpus of tiny seeded clips: ``make_tree(["Actor_01/x.wav", ...])`` -> root."""

    def make(relative_paths: list[str], root: str = "corpus") -> Path:
        base = tmp_path / root
        base.mkdir(parents=True, exist_ok=True)
        # subtype None: each format's default (PCM_16 for WAV, Vorbis for OGG ...).
        touch_tree(base, relative_paths, duration_s=0.01, sample_rate=8000, subtype=None)
        return base.resolve()

    return make
