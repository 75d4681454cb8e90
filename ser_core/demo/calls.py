"""``ser mix-calls``: stereo telephone calls made of real labelled clips, with ground truth.

Why: the demo archive measures labelling on synthetic voices; this measures it on real
speech. Clips of chosen speakers (e.g. speakers a model never trained on) are taken from
a manifest (``ser manifest``) and mixed into calls that ``ser label`` labels and
``ser score`` scores, exactly like the demo archive.

Layout of the output folder (as ``ser demo-archive``'s)::

    OUT/call_0001.wav ...   stereo WAV (PCM16 or mu-law) at --sample-rate (8 kHz default);
                            channel 0 the agent, channel 1 the customer
    OUT/ground_truth.csv    one row per turn: path,channel,role,start_s,end_s,emotion,intensity
    OUT/sources.csv         the clip behind each turn: path,channel,start_s,end_s,utterance_id,
                            speaker,source,clip_start_s,clip_end_s (the speech span in the clip)
    OUT/mix_calls.json      settings, the global gain, counts

How a call is made:

- Two speakers per call, one per channel; calls cycle through every ordered pair of the
  chosen speakers (shuffled per cycle), so each speaker is agent as often as customer.
- Turns strictly alternate, agent first, separated by pauses drawn from 0.3-1.5 s; the
  call opens and closes with 0.5-1.5 s of line. ``turns`` fixes the number of turns (and
  the call lasts as long as they need); ``minutes`` fixes the length instead (turns are
  added while they fit).
- Each speaker's clips are dealt from a shuffled deck, so every clip is used once per
  archive before any is used again (reuses are counted).
- A clip is decoded (``ser_core.audio``, mixed to mono, resampled with soxr),
  band-passed to the telephone band (300-3400 Hz) and trimmed to its speech: the span
  from the first to the last 20 ms frame within ``trim_db`` of the clip's loudest frame,
  plus ``pad_s`` of the clip's own audio on both sides. The ground-truth turn is the
  speech span; the pads lie in the pauses. 60 dB keeps in the turn all the speech the
  labelling detector hears in a RAVDESS clip (99.9% on average; at 30 dB, a quarter of
  the turns lost more than 5% of it: soft onsets and word endings).
- Natural levels: clips keep their recorded level (loudness is an emotion cue). One
  gain for the whole archive is applied only when needed so that no sample reaches
  :data:`PEAK_CEILING`: ``min(1, (ceiling - largest noise sample) / loudest clip peak)``.
  Turns never overlap, so this bound holds with crosstalk too.
- Line noise (hiss, optional hum) on both channels and optional crosstalk: ``bleed_db``
  of each speaker's audio also appears on the other channel.

Deterministic per seed: the same manifest and settings give the same bytes. Every clip
used is decoded twice (planning, then writing), and the writer holds one block and the
clip under way, so memory stays flat however long the calls.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from ser_core import audio
from ser_core.demo.telephone import (ROLES, SIDECAR, SUBTYPES, LineNoise, band_pass, noise_peak,
                                     sidecar_row, write_call, write_sidecar)
from ser_core.params import build_config, flags, load_section
from ser_core.records import Utterance, read_manifest

DEFAULT_TURNS = 12
PAUSE_S = (0.3, 1.5)   # between turns
EDGE_S = (0.5, 1.5)    # line before the first turn and after the last
FRAME_S = 0.02         # trimming frames
PEAK_CEILING = 0.97    # below mu-law's largest code (~0.98 of full scale) and PCM16's
SOURCES = "sources.csv"
SOURCE_COLUMNS = ("path", "channel", "start_s", "end_s", "utterance_id", "speaker", "source",
                  "clip_start_s", "clip_end_s")
SUMMARY = "mix_calls.json"
OFF = ("off", "none")


class SpeakerError(ValueError):
    """The requested speakers cannot be found in (or chosen from) the manifest."""


def _db_or_off(name: str, value: Any) -> float | None:
    """A level in dB, or None for off ('off'/'none', and YAML's ``off``, which loads as false)."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in OFF):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        db = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"mix_calls.{name} must be a level in dB (negative) or 'off', got {value!r}") from None
    if not db < 0:
        raise ValueError(f"mix_calls.{name} must be below 0 dB (relative to full scale), got {db}")
    return db


@dataclass(frozen=True)
class MixCallsConfig:
    """params.yaml section ``mix_calls`` (dB settings also accept 'off')."""

    speakers: tuple[str, ...] | str = ()  # 'ravdess:03,ravdess:06' or bare IDs '03,06'
    calls: int = 4
    turns: int | None = None       # turns per call (default DEFAULT_TURNS) ...
    minutes: float | None = None   # ... or the length of each call
    seed: int = 0
    sample_rate: int = 8000
    encoding: str = "pcm16"
    line_noise_db: float | None = -55.0  # hiss, RMS dBFS per channel
    bleed_db: float | None = None        # crosstalk: the other speaker this far down
    hum_db: float | None = None
    hum_hz: float = 50.0
    trim_db: float | None = 60.0   # speech = frames within this of the loudest; None: whole clips
    pad_s: float = 0.1             # clip audio kept around the speech span

    def __post_init__(self) -> None:
        speakers = self.speakers.split(",") if isinstance(self.speakers, str) else self.speakers
        object.__setattr__(self, "speakers", tuple(s.strip() for s in speakers if s.strip()))
        for name in ("line_noise_db", "bleed_db", "hum_db"):
            object.__setattr__(self, name, _db_or_off(name, getattr(self, name)))
        if len(set(self.speakers)) < 2:
            raise SpeakerError(f"mix_calls.speakers must name at least 2 speakers (two per call), "
                               f"got {list(self.speakers)}")
        if not isinstance(self.calls, int) or self.calls < 1:
            raise ValueError(f"mix_calls.calls must be at least 1, got {self.calls!r}")
        if self.turns is not None and self.minutes is not None:
            raise ValueError("mix_calls: give turns or minutes per call, not both")
        if self.turns is not None and (not isinstance(self.turns, int) or self.turns < 2):
            raise ValueError(f"mix_calls.turns must be an integer >= 2, got {self.turns!r}")
        if self.minutes is not None and not self.minutes * 60 >= 5:
            raise ValueError(f"mix_calls.minutes must give at least 5 s per call, got {self.minutes}")
        if not isinstance(self.sample_rate, int) or self.sample_rate < 8000:
            raise ValueError(f"mix_calls.sample_rate must be an integer >= 8000 Hz, got {self.sample_rate!r}")
        if self.encoding not in SUBTYPES:
            raise ValueError(f"mix_calls.encoding must be one of {sorted(SUBTYPES)}, got {self.encoding!r}")
        if isinstance(self.trim_db, str):  # a flag's text: a range in dB, or 'off'
            try:
                trim = None if self.trim_db.strip().lower() == "off" else float(self.trim_db)
            except ValueError:
                raise ValueError(f"mix_calls.trim_db must be a range in dB or 'off', got {self.trim_db!r}") from None
            object.__setattr__(self, "trim_db", trim)
        if self.trim_db is not None and not self.trim_db > 0:
            raise ValueError(f"mix_calls.trim_db must be > 0 dB (or null for whole clips), got {self.trim_db}")
        if not 0 <= self.pad_s <= PAUSE_S[0] / 2:
            raise ValueError(f"mix_calls.pad_s must be in [0, {PAUSE_S[0] / 2}] so pads never overlap, "
                             f"got {self.pad_s}")

    @property
    def n_turns(self) -> int | None:
        """Turns per call, or None when ``minutes`` sets the length."""
        return None if self.minutes is not None else (self.turns or DEFAULT_TURNS)


def resolve_speakers(requested: Sequence[str], utterances: Sequence[Utterance], source: str = "manifest") -> list[str]:
    """Full speaker names (``corpus:ID``) for ``requested`` (full or bare IDs), in order."""
    known = sorted({u.speaker for u in utterances})
    by_bare: dict[str, list[str]] = defaultdict(list)
    for s in known:
        by_bare[s.split(":", 1)[1]].append(s)
    resolved, unknown = [], []
    for name in requested:
        matches = [name] if name in known else ([] if ":" in name else by_bare.get(name, []))
        if len(matches) > 1:
            raise SpeakerError(f"speaker {name!r} is ambiguous in {source}: {matches}; name it in full")
        if not matches:
            unknown.append(name)
        elif matches[0] not in resolved:
            resolved.append(matches[0])
    if unknown:
        shown = ", ".join(known[:30]) + (" ..." if len(known) > 30 else "")
        raise SpeakerError(f"speaker(s) {unknown} not in {source} ({len(known)} speakers: {shown})")
    if len(resolved) < 2:
        raise SpeakerError(f"need at least 2 different speakers, {requested} name only {resolved}")
    return resolved


def speech_span(x: np.ndarray, sample_rate: int, trim_db: float | None) -> tuple[int, int]:
    """(start, end) samples from the first to the last frame within ``trim_db`` of the
    loudest frame (whole clip with ``trim_db`` None)."""
    if trim_db is None:
        return 0, len(x)
    frame = max(1, int(round(FRAME_S * sample_rate)))
    n = -(-len(x) // frame)
    padded = np.zeros(n * frame, dtype=np.float64)
    padded[:len(x)] = x
    db = 10 * np.log10(np.mean(padded.reshape(n, frame) ** 2, axis=1) + 1e-20)
    loud = np.flatnonzero(db > db.max() - trim_db)
    return int(loud[0] * frame), int(min(len(x), (loud[-1] + 1) * frame))


@dataclass(frozen=True)
class ClipCut:
    """Where a prepared clip's placed audio and speech lie (samples at the call rate)."""

    length: int        # placed audio: speech span plus pads
    speech_from: int   # speech span within the placed audio
    speech_to: int
    clip_start: int    # the placed audio's first sample within the decoded clip
    peak: float


def prepare_clip(utt: Utterance, config: MixCallsConfig) -> tuple[np.ndarray, ClipCut]:
    """Decode, band-pass and trim one clip at its recorded level: (placed audio, cut)."""
    sr = config.sample_rate
    x, _ = audio.load(utt.path, sr, channels="mix")
    x = band_pass(x, sr)
    if not np.any(x):
        raise audio.AudioError(utt.path, "clip is silent (all samples zero after the telephone band)")
    s, e = speech_span(x, sr, config.trim_db)
    pad = int(round(config.pad_s * sr))
    a, b = max(0, s - pad), min(len(x), e + pad)
    placed = x[a:b]
    return placed, ClipCut(b - a, s - a, e - a, a, float(np.abs(placed).max()))


@dataclass(frozen=True)
class ClipTurn:
    """One clip placed on a channel (the :class:`~ser_core.demo.telephone.PlacedAudio` the writer takes)."""

    channel: int
    start: int          # first sample of the placed audio in the call
    length: int
    utterance: Utterance
    cut: ClipCut
    config: MixCallsConfig
    gain: float = 1.0

    @property
    def speech(self) -> tuple[int, int]:
        return self.start + self.cut.speech_from, self.start + self.cut.speech_to

    def audio(self, sample_rate: int) -> np.ndarray:
        x, cut = prepare_clip(self.utterance, self.config)
        if cut != self.cut or sample_rate != self.config.sample_rate:
            raise RuntimeError(f"{self.utterance.path} decoded differently the second time ({cut} != {self.cut})")
        return x * np.float32(self.gain)


class Deck:
    """One speaker's clips, dealt in a shuffled order; reshuffled (and counted) when spent."""

    def __init__(self, clips: Sequence[Utterance], rng: np.random.Generator) -> None:
        self._clips = sorted(clips, key=lambda u: u.utterance_id)
        self._rng = rng
        self._order: list[int] = []
        self.dealt = 0

    def draw(self) -> Utterance:
        if not self._order:
            self._order = [int(i) for i in self._rng.permutation(len(self._clips))]
        self.dealt += 1
        return self._clips[self._order.pop(0)]

    def put_back(self, utt: Utterance) -> None:
        """Return the clip just drawn (it did not fit): it is dealt next."""
        self._order.insert(0, self._clips.index(utt))
        self.dealt -= 1


class Planner:
    """Places clips into calls (timing only; each clip is decoded once here, to measure it)."""

    def __init__(self, config: MixCallsConfig, utterances: Sequence[Utterance], speakers: Sequence[str]) -> None:
        self.config = config
        self.rng = np.random.default_rng([config.seed, 0])
        by_speaker: dict[str, list[Utterance]] = defaultdict(list)
        for u in utterances:
            by_speaker[u.speaker].append(u)
        self.speakers = list(speakers)
        self.decks = {s: Deck(by_speaker[s], self.rng) for s in self.speakers}
        self.cuts: dict[str, ClipCut] = {}
        self._pairs: list[tuple[str, str]] = []

    def _cut(self, utt: Utterance) -> ClipCut:
        if utt.utterance_id not in self.cuts:
            self.cuts[utt.utterance_id] = prepare_clip(utt, self.config)[1]
        return self.cuts[utt.utterance_id]

    def _seconds(self, bounds: tuple[float, float]) -> int:
        return int(round(self.rng.uniform(*bounds) * self.config.sample_rate))

    def next_pair(self) -> tuple[str, str]:
        """(agent, customer): the next ordered pair of a shuffled cycle through all of them."""
        if not self._pairs:
            pairs = [(a, b) for a in self.speakers for b in self.speakers if a != b]
            self._pairs = [pairs[int(i)] for i in self.rng.permutation(len(pairs))]
        return self._pairs.pop(0)

    def plan_call(self) -> tuple[list[ClipTurn], int]:
        """The turns of the next call, and its length in samples."""
        c, sr = self.config, self.config.sample_rate
        pair = self.next_pair()
        limit = None if c.minutes is None else int(round(c.minutes * 60 * sr))
        turns: list[ClipTurn] = []
        t = self._seconds(EDGE_S)  # where the next turn's speech starts
        while c.n_turns is None or len(turns) < c.n_turns:
            channel = len(turns) % 2
            deck = self.decks[pair[channel]]
            utt = deck.draw()
            cut = self._cut(utt)
            start = t - cut.speech_from
            if limit is not None and start + max(cut.length, cut.speech_to + int(EDGE_S[0] * sr)) > limit:
                deck.put_back(utt)
                break
            turn = ClipTurn(channel, start, cut.length, utt, cut, c)
            turns.append(turn)
            t = turn.speech[1] + self._seconds(PAUSE_S)
        if len(turns) < 2:
            raise ValueError(f"mix_calls.minutes={c.minutes} leaves no room for two turns of "
                             f"{pair[0]} and {pair[1]}'s clips")
        last = turns[-1]
        n = limit if limit is not None else max(last.start + last.length, last.speech[1] + self._seconds(EDGE_S))
        return turns, n


def mix_calls(manifest: str | Path, out_dir: str | Path, config: MixCallsConfig, progress: bool = True) -> dict:
    """Write ``config.calls`` calls, the ground truth, the sources and a summary; return the summary."""
    started = time.perf_counter()
    utterances = read_manifest(manifest)
    speakers = resolve_speakers(config.speakers, utterances, f"manifest {manifest}")
    chosen = [u for u in utterances if u.speaker in speakers]
    planner = Planner(config, chosen, speakers)
    sr = config.sample_rate
    noise = LineNoise(config.line_noise_db, config.hum_db, config.hum_hz)
    plans = []
    for call in tqdm(range(config.calls), desc="planning", unit="call", disable=not progress):
        turns, n = planner.plan_call()
        plans.append((turns, n, noise_peak(noise, np.random.default_rng([config.seed, 1, call]), n, sr)))
    used = {t.utterance.utterance_id: t.cut for turns, _, _ in plans for t in turns}
    loudest = max(cut.peak for cut in used.values())
    headroom = PEAK_CEILING - max(p for _, _, p in plans)
    if headroom <= 0:
        raise ValueError(f"mix_calls: line noise (hiss {config.line_noise_db} dB, hum {config.hum_db} dB) "
                         f"alone reaches full scale")
    gain = min(1.0, headroom / loudest)
    bleed = None if config.bleed_db is None else 10 ** (config.bleed_db / 20)

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    sources: list[dict] = []
    total_s = sum(n for _, n, _ in plans) / sr
    with tqdm(total=round(total_s), unit="s", desc="mix-calls", disable=not progress) as bar:
        for call, (turns, n, _) in enumerate(plans):
            name = f"call_{call + 1:04d}.wav"
            write_call(root / name, [replace(t, gain=gain) for t in turns], n, sr, config.encoding,
                       noise, np.random.default_rng([config.seed, 1, call]), bleed, on_block=bar.update)
            for t in turns:
                u, (s, e) = t.utterance, t.speech
                row = sidecar_row(name, t.channel, s, e, sr, u.emotion, str(u.custom.get("intensity", "")))
                rows.append(row)
                clip_s = t.cut.clip_start + t.cut.speech_from
                sources.append({"path": name, "channel": t.channel, "start_s": row["start_s"],
                                "end_s": row["end_s"], "utterance_id": u.utterance_id,
                                "speaker": u.speaker, "source": u.path,
                                "clip_start_s": round(clip_s / sr, 4),
                                "clip_end_s": round((clip_s + e - s) / sr, 4)})
    write_sidecar(root, rows)
    write_sidecar(root, sources, SOURCES, SOURCE_COLUMNS)
    dealt = sum(d.dealt for d in planner.decks.values())
    summary = {
        "root": str(root), "manifest": str(manifest), "config": asdict(config), "speakers": speakers,
        "gain_db": round(20 * float(np.log10(gain)), 3), "loudest_clip_peak": round(loudest, 6),
        "audio_seconds": round(total_s, 3), "turns": len(rows),
        "speech_seconds": round(sum(r["end_s"] - r["start_s"] for r in rows), 3),
        "clips_available": len(chosen), "clips_used": len(used), "clips_reused": dealt - len(used),
        "emotions": {role: dict(Counter(r["emotion"] for r in rows if r["role"] == role).most_common())
                     for role in ROLES},
    }
    (root / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    summary["elapsed_s"] = round(time.perf_counter() - started, 2)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", metavar="MANIFEST", help="manifest Parquet (ser manifest) of labelled clips")
    parser.add_argument("output", metavar="OUT", help="folder to write call_*.wav, ground_truth.csv, sources.csv into")
    parser.add_argument("--speakers", default=None,
                        help="comma-separated speakers to mix, e.g. ravdess:03,ravdess:06 (or bare 03,06)")
    parser.add_argument("--calls", type=int, default=None, help="number of calls (default 4)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--turns", type=int, default=None, help=f"turns per call (default {DEFAULT_TURNS})")
    length.add_argument("--minutes", type=float, default=None, help="length of each call, instead of --turns")
    parser.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    parser.add_argument("--sample-rate", dest="sample_rate", type=int, default=None, help="Hz (default 8000)")
    parser.add_argument("--encoding", choices=sorted(SUBTYPES), default=None, help="pcm16 (default) or ulaw")
    parser.add_argument("--noise-db", dest="line_noise_db", default=None, metavar="DB|off",
                        help="line hiss, RMS dBFS per channel, or off (default -55)")
    parser.add_argument("--bleed-db", dest="bleed_db", default=None, metavar="DB|off",
                        help="crosstalk: each speaker also on the other channel this many dB down, "
                             "or off (default off)")
    parser.add_argument("--trim-db", dest="trim_db", default=None, metavar="DB|off",
                        help="a turn is its clip's span within this many dB of its loudest frame, "
                             "or off for whole clips (default 60)")
    parser.add_argument("--params", default=None, help="params.yaml to read the 'mix_calls' section from")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    config = build_config(MixCallsConfig, load_section(args.params, "mix_calls"),
                          flags(args, "speakers", "calls", "turns", "minutes", "seed", "sample_rate",
                                "encoding", "line_noise_db", "bleed_db", "trim_db"))
    s = mix_calls(args.manifest, args.output, config, progress=args.progress)
    plural = "s" if config.calls != 1 else ""
    print(f"wrote {config.calls} call{plural} of {', '.join(s['speakers'])} ({s['audio_seconds'] / 60:.1f} min, "
          f"{s['turns']} turns, {s['speech_seconds'] / 60:.1f} min of speech, {config.sample_rate} Hz "
          f"{config.encoding}, gain {s['gain_db']:+.2f} dB) to {s['root']} in {s['elapsed_s']:.1f} s; "
          f"{s['clips_used']} of {s['clips_available']} clips used, {s['clips_reused']} reused; "
          f"ground truth in {SIDECAR}")
    for role, counts in s["emotions"].items():
        print(f"  {role:<8} " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "no turns"))
    return 0
