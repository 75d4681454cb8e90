"""Per corpus, on a clean line and on noisier ones: how a ``ser train`` output's fold models
label their own test speakers (out of fold).

    python benchmarks/corpus_lines.py TRAIN_DIR --features DIR [--features DIR ...] [--variants hiss-55]

The features hold each test clip as it was recorded and as copies through a line (``ser
features --augment hiss-55`` adds every clip again under -55 dBFS of line hiss, cut by the
speech detector as a call would be). Every fold checkpoint labels its test speakers' rows of
each variant, each speaker normalised with its own statistics over those rows (one call
channel's worth of one line), windows averaged per clip. Per corpus and variant: pooled UAR
as written (the model chooses among all its labels) and restricted to the corpus's classes,
mean over seeds, and the clips scored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ser_core.checkpoint import load_checkpoint
from ser_core.metrics import argmax_within, uar
from ser_core.normalisation import frame_stats
from ser_core.training.data import ORIGINAL, load_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_dir", type=Path)
    parser.add_argument("--features", action="append", required=True)
    parser.add_argument("--variants", default="", help="comma-separated augmented variants to score beside the clean rows")
    args = parser.parse_args()
    checkpoints = sorted(args.train_dir.glob("runs/seed*/fold*/checkpoint.pt"))
    if not checkpoints:
        sys.exit(f"no runs/seed*/fold*/checkpoint.pt under {args.train_dir}")
    labels = load_checkpoint(checkpoints[0]).labels
    data = load_features(args.features, labels)
    variants = [ORIGINAL] + [v for v in args.variants.split(",") if v]
    missing = sorted(set(variants) - {ORIGINAL} - set(data.augmentations))
    if missing:
        sys.exit(f"the features hold no rows of {missing} (ser features --augment)")
    classes = data.corpus_classes(np.arange(len(data.y)))
    n = len(labels)
    # (corpus, variant, seed) -> clip truths, probabilities
    found: dict[tuple[str, str, str], tuple[list, list]] = {}
    for path in checkpoints:
        ckpt = load_checkpoint(path)
        seed = path.parent.parent.name
        for speaker in ckpt.provenance["test_speakers"]:
            for variant in variants:
                idx = data.indices([speaker], variants=(variant,))
                if len(idx) == 0:
                    continue
                feats = [data.features[i] for i in idx]
                probs = ckpt.predict_proba(feats, frame_stats(feats))
                for group in data.clips(idx, positions=True):
                    i = idx[group[0]]
                    y, p = found.setdefault((data.corpora[i], variant, seed), ([], []))
                    y.append(int(data.y[i]))
                    p.append(probs[group].mean(axis=0))
    print(f"{len(checkpoints)} fold checkpoints of {args.train_dir}")
    print("| corpus | line | clips | UAR as written | restricted to its classes |")
    print("|---|---|---|---|---|")
    for corpus in sorted(classes):
        for variant in variants:
            runs = [(np.array(y), np.array(p)) for (c, v, _), (y, p) in sorted(found.items())
                    if c == corpus and v == variant]
            if not runs:
                continue
            written = np.mean([uar(y, p.argmax(1), n) for y, p in runs])
            allowed = classes[corpus]
            restricted = np.mean([uar(y, argmax_within(p, allowed), n) for y, p in runs])
            print(f"| {corpus} | {variant or 'clean'} | {len(runs[0][0])} | {written:.4f} | {restricted:.4f} |")


if __name__ == "__main__":
    main()
