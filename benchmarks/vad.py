"""Speech detectors against ground truth: frame precision, recall, F1 and cost.

    python benchmarks/vad.py [--corpus ../shared/corpora/ravdess_full] [--speakers 03,06]
                             [--calls 12] [--turns 20] [--set NAME=DIR ...]
                             [--detectors energy,webrtc0,...] [--out benchmarks/out/vad]

Archives (each a folder of stereo calls with ``ground_truth.csv``), made under ``--out``
unless ``--set`` names existing ones:

- ``demo``: ``ser demo-archive`` with its defaults (4 calls of 3 min, synthetic voices);
- ``real``: ``ser mix-calls`` of the real corpus's speakers ``--speakers`` (``--calls``
  calls of ``--turns`` turns, line hiss at -55 dBFS, no crosstalk), natural levels;
- ``real-noisy``: the same calls with hiss at -40 dBFS and crosstalk at -30 dB;
- ``real-bleed``: the same calls with hiss at -55 dBFS and crosstalk at -20 dB (each
  speaker clearly audible on the other channel: any detector hears it).
  The real sets are skipped when ``--corpus`` is absent.

Every channel of every call is decoded once (8 kHz, the telephone model's rate) and cut
by each detector with the labelling code itself (:func:`segment_channel`, 30 s blocks),
as the telephone model's calls are cut: listening within its band (``--band-hz``, default
300,3400) and, for ``energy``, params.yaml's floor (``--min-db``, default -70 dBFS);
``SegmentConfig`` defaults otherwise. Scored on 10 ms frames against each channel's own turns
(speech on a channel during the other speaker's turn, e.g. crosstalk, is a false
positive):

- ``P``, ``R``, ``F1``: the detector's kept speech regions (after merging pauses shorter
  than ``min_silence_s``, dropping blips, padding by ``pad_s``: what ``speech_s`` counts);
- ``turns``: share of ground-truth turns that some labelled window overlaps (``ser
  score``'s ``turn_coverage``), ``win P``: share of windowed frames that are speech;
- ``x rt``: audio seconds per second of detection on one core (one thread; decoding
  excluded, both passes of the energy detector included).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ser_core import audio  # noqa: E402
from ser_core.features import parse_band  # noqa: E402
from ser_core.inference.score import read_ground_truth  # noqa: E402
from ser_core.segmentation import SegmentConfig, segment_channel  # noqa: E402
from ser_core.storage import path_key  # noqa: E402

SR = 8000
FRAME = SR // 100  # 10 ms scoring frames
BLOCK = 30 * SR
DETECTORS = {  # name -> SegmentConfig overrides
    "energy": dict(segmentation="energy"),
    # as before the fix: the floor is a low percentile of every chunk, speech or not
    "energy-unsteady-floor": dict(segmentation="energy", stationary_db=1000.0, max_floor_db=0.0, margin_db=12.0),
    "webrtc0": dict(segmentation="webrtc", webrtc_mode=0),
    "webrtc1": dict(segmentation="webrtc", webrtc_mode=1),
    "webrtc2": dict(segmentation="webrtc", webrtc_mode=2),
    "webrtc3": dict(segmentation="webrtc", webrtc_mode=3),
    "silero0.5": dict(segmentation="silero", silero_threshold=0.5),
    "silero0.3": dict(segmentation="silero", silero_threshold=0.3),
}


def make_archives(out: Path, corpus: Path | None, speakers: str, calls: int, turns: int) -> dict[str, Path]:
    """The default archives, generated under ``out`` (reused when already there)."""
    from ser_core.demo.archive import generate_demo_archive
    sets = {"demo": out / "demo"}
    if not (sets["demo"] / "ground_truth.csv").is_file():
        generate_demo_archive(sets["demo"], progress=False)
    if corpus is None or not corpus.is_dir():
        print(f"no corpus at {corpus}: real-speech calls skipped")
        return sets
    from ser_core.corpora import prepare
    from ser_core.demo.calls import MixCallsConfig, mix_calls
    from ser_core.records import write_manifest
    manifest = out / "manifest.parquet"
    if not manifest.is_file():
        write_manifest(prepare("ravdess", str(corpus)).utterances, manifest)
    for name, extra in (("real", {}), ("real-noisy", dict(line_noise_db=-40.0, bleed_db=-30.0)),
                        ("real-bleed", dict(bleed_db=-20.0))):
        sets[name] = out / name
        if not (sets[name] / "ground_truth.csv").is_file():
            config = MixCallsConfig(speakers=speakers, calls=calls, turns=turns, **extra)
            mix_calls(manifest, sets[name], config, progress=False)
    return sets


def load_set(root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(channel samples at 8 kHz, reference speech mask on 10 ms frames) per channel."""
    truth = read_ground_truth(root / "ground_truth.csv")
    spans: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for t in truth:
        spans[(t.path, t.channel)].append((t.start_s, t.end_s))
    out = []
    for path in sorted({t.path for t in truth}):
        data, _ = audio.load(path, SR, channels="separate")  # (C, N)
        data = data.reshape(-1, data.shape[-1])
        for channel, samples in enumerate(data):
            ref = np.zeros(len(samples) // FRAME, dtype=bool)
            for a, b in spans[(path_key(path), channel)]:
                ref[int(round(a * 100)):int(round(b * 100))] = True
            out.append((samples, ref))
    return out


def mask(spans: list[tuple[int, int]], n: int) -> np.ndarray:
    """10 ms frames whose centre lies in one of the sample ``spans``."""
    centres = np.arange(n) * FRAME + FRAME // 2
    m = np.zeros(n, dtype=bool)
    for a, b in spans:
        m[(centres >= a) & (centres < b)] = True
    return m


def turns_met(ref: np.ndarray, windowed: np.ndarray) -> tuple[int, int]:
    """(turns some window overlaps, turns) on one channel."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ref.astype(np.int8), [0]])))
    starts, ends = edges[0::2], edges[1::2]
    return sum(bool(windowed[a:b].any()) for a, b in zip(starts, ends)), len(starts)


def evaluate(channels, config: SegmentConfig, band_hz: tuple[float, float] | None = None) -> dict:
    tp = fp = fn = wtp = wfp = met = turns = 0
    seconds = elapsed = 0.0
    for samples, ref in channels:
        regions: list[tuple[int, int]] = []
        started = time.process_time()
        windows, _ = segment_channel(samples, SR, config, block_len=BLOCK, band_hz=band_hz,
                                     on_region=lambda a, b: regions.append((a, b)))
        elapsed += time.process_time() - started
        seconds += len(samples) / SR
        hyp = mask(regions, len(ref))
        win = mask([(w.start, w.end) for w in windows], len(ref))
        tp += int(np.sum(hyp & ref))
        fp += int(np.sum(hyp & ~ref))
        fn += int(np.sum(~hyp & ref))
        wtp += int(np.sum(win & ref))
        wfp += int(np.sum(win & ~ref))
        m, n = turns_met(ref, win)
        met, turns = met + m, turns + n
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "turn_coverage": met / turns if turns else None,
            "window_precision": wtp / (wtp + wfp) if wtp + wfp else 0.0,
            "x_real_time": seconds / elapsed if elapsed else float("inf"), "audio_s": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpora" / "ravdess_full")
    parser.add_argument("--speakers", default="03,06", help="speakers of the real-speech calls")
    parser.add_argument("--calls", type=int, default=12, help="calls per real-speech archive")
    parser.add_argument("--turns", type=int, default=20, help="turns per real-speech call")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=DIR",
                        help="an existing archive to score instead of the generated ones (repeatable)")
    parser.add_argument("--detectors", default=",".join(DETECTORS),
                        help=f"comma-separated names among: {', '.join(DETECTORS)}")
    parser.add_argument("--band-hz", default="300,3400",
                        help="the band the detectors listen within (the model's; 'none': full band)")
    parser.add_argument("--min-db", type=float, default=-70.0, help="energy detector's floor, dBFS")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "vad")
    args = parser.parse_args()
    band = parse_band(args.band_hz)

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=1)
    args.out.mkdir(parents=True, exist_ok=True)
    sets = (dict(s.split("=", 1) for s in args.set) if args.set
            else make_archives(args.out, args.corpus, args.speakers, args.calls, args.turns))
    names = [d.strip() for d in args.detectors.split(",") if d.strip()]
    unknown = [d for d in names if d not in DETECTORS]
    if unknown:
        parser.error(f"unknown detector(s) {unknown}; known: {list(DETECTORS)}")

    results: dict[str, dict[str, dict]] = {}
    for set_name, root in sets.items():
        channels = load_set(Path(root))
        hours = sum(len(s) for s, _ in channels) / SR / 3600
        print(f"\n{set_name}: {root} ({len(channels)} channels, {hours * 60:.1f} channel-minutes)")
        print(f"  {'detector':<28} {'P':>6} {'R':>6} {'F1':>6} {'turns':>6} {'win P':>6} {'x rt':>7}")
        results[set_name] = {}
        for name in names:
            r = evaluate(channels, SegmentConfig(**{"min_db": args.min_db, **DETECTORS[name]}), band)
            results[set_name][name] = r
            print(f"  {name:<28} {r['precision']:6.3f} {r['recall']:6.3f} {r['f1']:6.3f} "
                  f"{r['turn_coverage']:6.3f} {r['window_precision']:6.3f} {r['x_real_time']:7.0f}", flush=True)
    report = {"defaults": dataclasses.asdict(SegmentConfig(min_db=args.min_db)), "band_hz": band,
              "sets": {k: str(v) for k, v in sets.items()},
              "results": results}
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
