"""``ser demo-archive``: synthetic call-centre recordings with ground truth, so bulk
labelling (``ser label``) can be run and scored with no real archive.

Layout::

    DIR/call_0001.wav ...   stereo, 8 kHz, 16-bit PCM (or mu-law); channel 0 the agent,
                            channel 1 the customer
    DIR/ground_truth.csv    one row per turn: path,channel,role,start_s,end_s,emotion,intensity
                            (path relative to DIR; times in seconds from the file start)

A call alternates turns (2-15 s, median 5 s) between the two speakers, mostly handing
over after 0.3-1.5 s of silence (15 % of the time the same speaker goes on), so turns
never overlap, not even across channels. Each turn is one emotion at one intensity,
spoken by the synthesiser of the demo corpus, band-passed to 300-3400 Hz like a phone
line and rendered at 16 kHz before resampling (so glottal pulses do not alias). Both
channels carry line hiss (and optionally mains hum) throughout. Agent and customer are
new voices per call, drawn from a seed space apart from the demo corpus's actors.

Emotions per turn (:data:`ROLE_EMOTIONS`): agents are mostly neutral (50 %), calm (25 %)
or happy (18 %); customers vary more: neutral 30 %, angry 20 %, sad 12 %, happy 10 %,
calm 8 %, fearful 7 %, disgust 7 %, surprised 6 %. A speaker keeps their previous turn's
emotion with probability :data:`PERSISTENCE` (moods last), otherwise draws afresh, so
these are also the long-run shares. Non-neutral turns are strong 30 % of the time.

Calls are written block by block (:func:`ser_core.demo.telephone.write_call`), rendering
each turn only when the write reaches it, so memory stays flat however long the call.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soxr
from tqdm import tqdm

from ser_core.demo import telephone
from ser_core.demo.synth import DOMAINS, Voice, plan_turn, render
from ser_core.demo.telephone import (ROLES, SIDECAR, SIDECAR_COLUMNS, SUBTYPES, TELEPHONE_BAND,
                                     LineNoise, sidecar_row, write_sidecar)
from ser_core.params import build_config, flags, load_section

__all__ = ["ROLES", "ROLE_EMOTIONS", "SIDECAR", "SIDECAR_COLUMNS", "DemoArchiveConfig", "Turn",
           "plan_call", "write_call", "generate_demo_archive", "add_arguments", "main"]
ROLE_EMOTIONS: dict[str, dict[str, float]] = {
    "agent": {"neutral": 0.50, "calm": 0.25, "happy": 0.18, "sad": 0.02, "angry": 0.01,
              "fearful": 0.01, "disgust": 0.01, "surprised": 0.02},
    "customer": {"neutral": 0.30, "calm": 0.08, "happy": 0.10, "sad": 0.12, "angry": 0.20,
                 "fearful": 0.07, "disgust": 0.07, "surprised": 0.06},
}
PERSISTENCE = 0.5
STRONG_SHARE = 0.3
SAME_SPEAKER = 0.15
RENDER_RATE = 16000  # turns are rendered at max(this, the archive rate)


@dataclass(frozen=True)
class DemoArchiveConfig:
    """params.yaml section ``demo_archive``."""

    calls: int = 4
    minutes: float = 3.0
    seed: int = 0
    sample_rate: int = 8000
    encoding: str = "pcm16"
    line_noise_db: float = -55.0   # hiss, RMS dBFS per channel
    hum_db: float | None = None    # mains hum, RMS dBFS; None for none
    hum_hz: float = 50.0

    def __post_init__(self) -> None:
        if self.calls < 1:
            raise ValueError(f"demo_archive.calls must be at least 1, got {self.calls}")
        if self.minutes * 60 < 5:
            raise ValueError(f"demo_archive.minutes must give at least 5 s per call, got {self.minutes}")
        if self.sample_rate < 8000:
            raise ValueError(f"demo_archive.sample_rate must be at least 8000, got {self.sample_rate}")
        if self.encoding not in SUBTYPES:
            raise ValueError(f"demo_archive.encoding must be one of {sorted(SUBTYPES)}, got {self.encoding!r}")


@dataclass(frozen=True)
class Turn:
    """One speaker turn placed in a call; its audio is re-planned and rendered on demand."""

    channel: int
    start: int   # first sample, at the archive rate
    length: int  # samples
    emotion: str
    intensity: str
    voice: Voice
    gain_db: float
    max_duration_s: float
    seed: tuple[int, ...]

    @property
    def role(self) -> str:
        return ROLES[self.channel]

    def audio(self, sample_rate: int) -> np.ndarray:
        rate = max(RENDER_RATE, sample_rate)
        plan = plan_turn(self.voice, self.emotion, self.intensity, self.max_duration_s,
                         np.random.default_rng(self.seed))
        x = render(plan, rate, band=TELEPHONE_BAND)
        if rate != sample_rate:
            x = soxr.resample(x, rate, sample_rate)
        x = np.pad(x[:self.length], (0, max(0, self.length - x.size)))
        return x * np.float32(10 ** (self.gain_db / 20))


def plan_call(seed: int, call_index: int, duration_s: float, sample_rate: int) -> list[Turn]:
    """The turns of one call, in time order (cheap: timing only, no audio)."""
    rng = np.random.default_rng([seed, DOMAINS["archive"], 2, call_index])
    voices = [Voice.create(seed, 2 * call_index + ch, str(rng.choice(["male", "female"])), domain="archive")
              for ch in range(len(ROLES))]
    gains = [rng.uniform(-2.0, 0.0), rng.uniform(-6.0, 0.0)]  # customers' lines vary more
    turns: list[Turn] = []
    last: dict[int, str] = {}
    channel, t = 0, rng.uniform(0.5, 1.5)
    while (remaining := duration_s - t - 0.5) >= 1.5:
        target = min(float(np.clip(np.exp(rng.normal(np.log(5.0), 0.5)), 2.0, 15.0)), remaining)
        shares = ROLE_EMOTIONS[ROLES[channel]]
        if channel in last and rng.random() < PERSISTENCE:
            emotion = last[channel]
        else:
            emotion = str(rng.choice(list(shares), p=list(shares.values())))
        intensity = "strong" if emotion != "neutral" and rng.random() < STRONG_SHARE else "normal"
        turn_seed = (seed, DOMAINS["archive"], 3, call_index, len(turns))
        plan = plan_turn(voices[channel], emotion, intensity, target, np.random.default_rng(turn_seed))
        start = int(round(t * sample_rate))
        length = int(round(plan.duration_s * sample_rate))
        turns.append(Turn(channel, start, length, emotion, intensity, voices[channel],
                          float(gains[channel]), target, turn_seed))
        last[channel] = emotion
        t = (start + length) / sample_rate + rng.uniform(0.3, 1.5)
        if rng.random() >= SAME_SPEAKER:
            channel = 1 - channel
    return turns


def write_call(path: Path, turns: list[Turn], n_samples: int, config: DemoArchiveConfig,
               call_index: int, on_block: Callable[[float], object] | None = None) -> None:
    """Write one stereo call block by block; only the turns under way are held in memory."""
    rng = np.random.default_rng([config.seed, DOMAINS["archive"], 4, call_index])
    noise = LineNoise(config.line_noise_db, config.hum_db, config.hum_hz)
    telephone.write_call(path, turns, n_samples, config.sample_rate, config.encoding, noise, rng,
                         on_block=on_block)


def generate_demo_archive(out_dir: str | Path, calls: int = 4, minutes: float = 3.0, seed: int = 0,
                          sample_rate: int = 8000, encoding: str = "pcm16",
                          line_noise_db: float = -55.0, hum_db: float | None = None,
                          hum_hz: float = 50.0, progress: bool = True) -> dict:
    """Write ``calls`` calls of ``minutes`` each plus ``ground_truth.csv``; return a summary."""
    config = DemoArchiveConfig(calls, minutes, seed, sample_rate, encoding, line_noise_db, hum_db, hum_hz)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    n_samples = int(round(config.minutes * 60 * config.sample_rate))
    rows: list[dict] = []
    started = time.perf_counter()
    with tqdm(total=round(config.calls * n_samples / config.sample_rate), unit="s",
              desc="demo archive", disable=not progress) as bar:
        for call in range(config.calls):
            name = f"call_{call + 1:04d}.wav"
            turns = plan_call(config.seed, call, n_samples / config.sample_rate, config.sample_rate)
            write_call(root / name, turns, n_samples, config, call, on_block=bar.update)
            rows.extend(sidecar_row(name, turn.channel, turn.start, turn.start + turn.length,
                                    config.sample_rate, turn.emotion, turn.intensity) for turn in turns)
    write_sidecar(root, rows)
    return {
        "root": str(root),
        **asdict(config),
        "audio_seconds": round(config.calls * n_samples / config.sample_rate, 3),
        "turns": len(rows),
        "speech_seconds": round(sum(r["end_s"] - r["start_s"] for r in rows), 3),
        "emotions": {role: dict(Counter(r["emotion"] for r in rows if r["role"] == role).most_common())
                     for role in ROLES},
        "elapsed_s": round(time.perf_counter() - started, 2),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="DIR", help="folder to write call_*.wav and ground_truth.csv into")
    parser.add_argument("--calls", type=int, default=None, help="number of calls (default 4)")
    parser.add_argument("--minutes", type=float, default=None, help="length of each call (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="generator seed (default 0)")
    parser.add_argument("--sample-rate", dest="sample_rate", type=int, default=None,
                        help="Hz (default 8000, telephone)")
    parser.add_argument("--encoding", choices=sorted(SUBTYPES), default=None,
                        help="pcm16 (default) or ulaw (G.711 mu-law)")
    parser.add_argument("--params", default=None, help="params.yaml to read the 'demo_archive' section from")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    config = build_config(DemoArchiveConfig, load_section(args.params, "demo_archive"),
                          flags(args, "calls", "minutes", "seed", "sample_rate", "encoding"))
    summary = generate_demo_archive(args.output, progress=args.progress, **asdict(config))
    print(f"wrote {summary['calls']} calls ({summary['audio_seconds'] / 60:.1f} min of stereo audio, "
          f"{summary['turns']} turns, {summary['speech_seconds'] / 60:.1f} min of speech, "
          f"{summary['sample_rate']} Hz {summary['encoding']}) to {summary['root']} "
          f"in {summary['elapsed_s']:.1f} s; ground truth in {SIDECAR}")
    for role, counts in summary["emotions"].items():
        print(f"  {role:<8} " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "no turns"))
    return 0
