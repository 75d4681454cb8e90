"""``ser demo-corpus``: a synthetic corpus in RAVDESS's exact layout, so the default
``dvc repro`` runs on a fresh clone with no download.

Layout: ``DIR/Actor_NN/03-01-EE-II-SS-RR-AA.wav``, audio-only speech (modality 03,
vocal channel 01), 60 files per actor as in RAVDESS: neutral at normal intensity only
(2 statements x 2 repetitions = 4), the other seven emotions at both intensities
(7 x 2 x 2 x 2 = 56). Odd actors are male, even actors female. 48 kHz mono 16-bit PCM
by default, about 3-4.5 s per clip with quiet lead and tail. Voices come from
:mod:`ser_core.demo.synth`; every file is a pure function of (seed, its name,
sample rate), so any one regenerates identically (:func:`render_clip`).
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ser_core.demo.synth import INTENSITIES, Voice, synthesize, utterance_rng
from ser_core.labels import RAVDESS_EMOTIONS
from ser_core.params import build_config, flags, load_section

MAX_ACTORS = 24  # the RAVDESS actor field is 01-24
FILES_PER_ACTOR = 60


@dataclass(frozen=True)
class DemoCorpusConfig:
    """params.yaml section ``demo_corpus``."""

    speakers: int = 24
    seed: int = 0
    sample_rate: int = 48000
    workers: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.speakers <= MAX_ACTORS:
            raise ValueError(f"demo_corpus.speakers must be 1-{MAX_ACTORS} (RAVDESS actors), got {self.speakers}")
        if self.sample_rate < 8000:
            raise ValueError(f"demo_corpus.sample_rate must be at least 8000, got {self.sample_rate}")
        if self.workers < 1:
            raise ValueError(f"demo_corpus.workers must be at least 1, got {self.workers}")


class ClipSpec(NamedTuple):
    """One RAVDESS speech file; its name and folder follow from these fields."""

    actor: int
    emotion_code: str  # "01"-"08"
    intensity: str     # normal | strong
    statement: int     # 1 | 2
    repetition: int    # 1 | 2

    @property
    def gender(self) -> str:
        return "male" if self.actor % 2 else "female"

    @property
    def emotion(self) -> str:
        return RAVDESS_EMOTIONS[self.emotion_code]

    @property
    def relpath(self) -> str:
        intensity = INTENSITIES.index(self.intensity) + 1
        return (f"Actor_{self.actor:02d}/03-01-{self.emotion_code}-{intensity:02d}-"
                f"{self.statement:02d}-{self.repetition:02d}-{self.actor:02d}.wav")


def clip_specs(speakers: int) -> Iterator[ClipSpec]:
    """Every file of actors 1..speakers, in RAVDESS's combinations."""
    for actor in range(1, speakers + 1):
        for code in RAVDESS_EMOTIONS:
            for intensity in INTENSITIES[:1] if code == "01" else INTENSITIES:
                for statement in (1, 2):
                    for repetition in (1, 2):
                        yield ClipSpec(actor, code, intensity, statement, repetition)


def render_clip(spec: ClipSpec, seed: int, sample_rate: int) -> np.ndarray:
    """The samples of one demo file (float32 mono), exactly as the generator writes them."""
    voice = Voice.create(seed, spec.actor, spec.gender)
    rng = utterance_rng(seed, voice, spec.emotion, spec.intensity, spec.statement, spec.repetition)
    return synthesize(voice, spec.emotion, spec.intensity, spec.statement, sample_rate, rng)


def write_wav_atomic(path: Path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write through a hidden temporary file and rename, so a crash never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), audio, sample_rate, subtype=subtype, format="WAV")
    os.replace(tmp, path)


def _write_clip(job: tuple[str, ClipSpec, int, int]) -> float:
    root, spec, seed, sample_rate = job
    audio = render_clip(spec, seed, sample_rate)
    write_wav_atomic(Path(root) / spec.relpath, audio, sample_rate)
    return audio.size / sample_rate


def _extra_actor_dirs(root: Path, speakers: int) -> list[str]:
    """Actor folders under ``root`` outside 1..speakers (left by an earlier, larger run)."""
    extra = []
    for path in root.glob("Actor_*"):
        number = path.name.removeprefix("Actor_")
        if path.is_dir() and (not number.isdigit() or int(number) > speakers):
            extra.append(path.name)
    return sorted(extra)


def generate_demo_corpus(out_dir: str | Path, speakers: int = 24, seed: int = 0,
                         sample_rate: int = 48000, workers: int = 1,
                         progress: bool = True) -> dict:
    """Write the demo corpus under ``out_dir`` and return a summary of what was written."""
    config = DemoCorpusConfig(speakers, seed, sample_rate, workers)
    root = Path(out_dir)
    stale = _extra_actor_dirs(root, config.speakers)
    if stale:
        # A folder that mixes two runs would list more speakers than this one generated.
        raise ValueError(f"{root} already holds {', '.join(stale)} from an earlier, larger run; "
                         f"remove it or choose an empty folder")
    specs = list(clip_specs(config.speakers))
    for actor in range(1, config.speakers + 1):
        (root / f"Actor_{actor:02d}").mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), spec, config.seed, config.sample_rate) for spec in specs]
    started = time.perf_counter()
    with tqdm(total=len(jobs), unit="file", desc="demo corpus", disable=not progress) as bar:
        if config.workers == 1:
            durations = []
            for job in jobs:
                durations.append(_write_clip(job))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=config.workers) as pool:
                durations = []
                for seconds in pool.map(_write_clip, jobs, chunksize=8):
                    durations.append(seconds)
                    bar.update()
    return {
        "root": str(root),
        **asdict(config),
        "files": len(jobs),
        "audio_seconds": round(float(np.sum(durations)), 3),
        "min_duration_s": round(float(np.min(durations)), 3),
        "max_duration_s": round(float(np.max(durations)), 3),
        "elapsed_s": round(time.perf_counter() - started, 2),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="DIR", help="folder to write Actor_NN/*.wav into")
    parser.add_argument("--speakers", type=int, default=None, help="actors 1..N (default 24)")
    parser.add_argument("--seed", type=int, default=None, help="generator seed (default 0)")
    parser.add_argument("--sample-rate", dest="sample_rate", type=int, default=None,
                        help="Hz (default 48000, as RAVDESS)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default 1)")
    parser.add_argument("--params", default=None, help="params.yaml to read the 'demo_corpus' section from")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    config = build_config(DemoCorpusConfig, load_section(args.params, "demo_corpus"),
                          flags(args, "speakers", "seed", "sample_rate", "workers"))
    summary = generate_demo_corpus(args.output, progress=args.progress, **asdict(config))
    print(f"wrote {summary['files']} files ({summary['speakers']} speakers, "
          f"{summary['audio_seconds'] / 60:.1f} min of audio, clips "
          f"{summary['min_duration_s']:.2f}-{summary['max_duration_s']:.2f} s, "
          f"{summary['sample_rate']} Hz) to {summary['root']} in {summary['elapsed_s']:.1f} s")
    return 0
