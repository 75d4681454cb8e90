"""Labelling on real speech: calls mixed from real clips of held-out speakers, labelled and
scored, beside the same model's clip-level UAR on the same speakers' clips.

    python benchmarks/label_real.py --model models/telephone/final.pt \
        --manifest data/manifest.parquet --features data/features/telephone \
        --speakers 03,06 [--calls 6 --turns 20 --noise-db -55] --work benchmarks/out/label_real

The default speakers are fold 0's validation actors, which the final model never trained
on. Prints: clip-level UAR (each speaker normalised over all their clips, and over groups
of clips the size of one call channel), segment UAR of the labelled calls (`ser score`),
and the share of ground-truth turns a labelled segment overlaps.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from ser_core.checkpoint import load_checkpoint
from ser_core.cli import main as ser
from ser_core.metrics import uar
from ser_core.normalisation import frame_stats
from ser_core.training.data import load_features


def clip_level(model: str, features: str, speakers: list[str], group: int | None, seed: int = 0) -> float:
    """UAR of the model's clip-level predictions (windows averaged per clip) on the speakers'
    clips, each speaker normalised over all its clips (group None) or over random groups of
    ``group`` clips (what one call channel gives the labeller)."""
    ckpt = load_checkpoint(model)
    data = load_features(features, ckpt.labels)
    rng = np.random.default_rng(seed)
    ys, preds = [], []
    for speaker in speakers:
        clips = data.clips(data.indices([speaker]))
        order = rng.permutation(len(clips))
        size = group or len(clips)
        for start in range(0, len(order), size):
            chosen = [clips[k] for k in order[start:start + size]]
            feats = [data.features[i] for c in chosen for i in c]
            probs, pos = ckpt.predict_proba(feats, stats=frame_stats(feats)), 0
            for c in chosen:
                preds.append(int(probs[pos:pos + len(c)].mean(axis=0).argmax()))
                ys.append(int(data.y[c[0]]))
                pos += len(c)
    return uar(np.array(ys), np.array(preds), len(ckpt.labels))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True, help="manifest of the real corpus (ser manifest)")
    p.add_argument("--features", required=True, help="the model's features of the same corpus")
    p.add_argument("--speakers", default="03,06")
    p.add_argument("--calls", type=int, default=6)
    p.add_argument("--turns", type=int, default=20)
    p.add_argument("--noise-db", default="-55")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="benchmarks/out/label_real")
    args = p.parse_args(argv)
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    calls, labels = work / "calls", work / "labels"
    steps = [
        ["mix-calls", args.manifest, str(calls), "--speakers", args.speakers, "--calls", str(args.calls),
         "--turns", str(args.turns), "--seed", str(args.seed), "--noise-db", args.noise_db, "--no-progress"],
        ["label", "--model", args.model, "--input", str(calls / "*.wav"), "--output", str(labels),
         "--direct_running_mode", "multi_processing", "--direct_num_workers", "2"],
        ["score", "--segments", str(labels), "--ground-truth", str(calls / "ground_truth.csv"),
         "--output", str(work / "score.json")],
    ]
    for step in steps:
        if ser(step) != 0:
            print(f"step failed: ser {' '.join(step)}", file=sys.stderr)
            return 1
    score = json.loads((work / "score.json").read_text())
    speakers = [s if ":" in s else f"ravdess:{s}" for s in args.speakers.split(",")]
    per_channel = args.turns // 2
    whole = clip_level(args.model, args.features, speakers, None)
    grouped = clip_level(args.model, args.features, speakers, per_channel)
    print(f"\nspeakers {speakers}, {args.calls} calls x {args.turns} turns, line hiss {args.noise_db} dBFS")
    print("| measure | value |\n|---|---|")
    print(f"| clip-level UAR, each speaker normalised over all its clips | {whole:.4f} |")
    print(f"| clip-level UAR, normalised over {per_channel} clips (one call channel's worth) | {grouped:.4f} |")
    print(f"| segment UAR of the labelled calls (ser score) | {score['uar']:.4f} |")
    print(f"| segment accuracy | {score['wa']:.4f} |")
    print(f"| ground-truth turns overlapped by a segment | {score['turn_coverage']:.4f} "
          f"({score['n_turns']} turns) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
