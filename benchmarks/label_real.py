"""Labelling on real speech: calls mixed from real clips of held-out speakers, labelled and
scored, beside the same model's clip-level UAR on the same speakers' clips.

One model, the speakers it never trained on (default: fold 0's validation actors, whom the
final model never saw):

    python benchmarks/label_real.py --model models/telephone/final.pt \
        --manifest data/manifest.parquet --features data/features/telephone \
        --speakers 03,06 [--calls 6 --turns 20 --noise-db -55] --work benchmarks/out/label_real

Every actor, each by the fold model that held it out (``ser train``'s folds of one seed;
3 calls of 20 turns per test speaker, so each clip is used about once):

    python benchmarks/label_real.py --train-dir models/telephone/train \
        --manifest data/manifest.parquet --features data/features/telephone --noise-db off

A model trained on several corpora is scored per corpus with ``--corpus NAME`` (each fold's
speakers of that corpus only; ``--manifest`` and ``--features`` that corpus's):

    python benchmarks/label_real.py --train-dir runs/joint --corpus nemo \
        --manifest nemo.parquet --features feat_nemo --noise-db -55 \
        [--restrict-to neutral,happy,sad,angry,fearful,surprised]

(``--restrict-to``: the model chooses among those labels only, as ``ser label --restrict-to``
labels an archive whose label set is known.)

``--part val`` labels each fold's validation speakers instead (10 actors, which chose the
fold's epoch but were never trained on): the figure to compare labelling recipes by, so
that the choice never looks at the test folds.

Prints: clip-level UAR (each speaker normalised over all their clips, and over groups of
clips the size of one call channel), segment UAR of the labelled calls (`ser score`; with
``--train-dir`` pooled over the folds' segments), and the share of ground-truth turns a
labelled segment overlaps. Labelling uses ``--params`` when given, else the cut each model
was trained on (its detector levels and windows).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from ser_core.checkpoint import Checkpoint, load_checkpoint
from ser_core.cli import main as ser
from ser_core.metrics import argmax_within, uar
from ser_core.normalisation import frame_stats
from ser_core.splits import corpus_of
from ser_core.training.data import FeatureSet, load_features


def clip_level(ckpt: Checkpoint, data: FeatureSet, speakers: list[str], group: int | None,
               seed: int = 0, keep: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(true, predicted) classes of the model's clip-level predictions (windows averaged
    per clip) on the speakers' clips, each speaker normalised over all its clips (group
    None) or over random groups of ``group`` clips (what one call channel gives the labeller);
    ``keep``: chosen among those labels only (``ser label --restrict-to``)."""
    allowed = np.array([keep is None or label in keep for label in ckpt.labels])
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
                preds.append(int(argmax_within(probs[pos:pos + len(c)].mean(axis=0)[None], allowed)[0]))
                ys.append(int(data.y[c[0]]))
                pos += len(c)
    return np.array(ys), np.array(preds)


def label_calls(model: str, manifest: str, speakers: list[str], work: Path, args: argparse.Namespace,
                calls: int) -> dict:
    """Mix, label and score one set of calls; returns ser score's metrics plus the scored
    segments' (actual, predicted) pairs."""
    calls_dir, labels = work / "calls", work / "labels"
    label = ["label", "--model", model, "--input", str(calls_dir / "*.wav"), "--output", str(labels),
             "--direct_running_mode", "multi_processing", "--direct_num_workers", "2"]
    steps = [
        ["mix-calls", manifest, str(calls_dir), "--speakers", ",".join(speakers), "--calls", str(calls),
         "--turns", str(args.turns), "--seed", str(args.seed), "--noise-db", args.noise_db, "--no-progress"]
        + (["--trim-db", args.trim_db] if args.trim_db else []),
        label + (["--params", args.params] if args.params else [])
        + (["--restrict-to", args.restrict_to] if args.restrict_to else []),
        ["score", "--segments", str(labels), "--ground-truth", str(calls_dir / "ground_truth.csv"),
         "--output", str(work / "score.json"), "--confusion", str(work / "confusion.csv")],
    ]
    for step in steps:
        if ser(step) != 0:
            raise RuntimeError(f"step failed: ser {' '.join(step)}")
    score = json.loads((work / "score.json").read_text())
    with open(work / "confusion.csv", newline="") as fh:
        score["pairs"] = [(r["actual"], r["predicted"]) for r in csv.DictReader(fh)]
    return score


def fold_models(train_dir: Path, seed: int, part: str = "test") -> list[tuple[str, list[str]]]:
    """(checkpoint, speakers) of every fold of one seed of a ``ser train`` run: each fold's
    ``part`` speakers ("test", or "val": the validation speakers that chose its epoch)."""
    info = json.loads((train_dir / "run.json").read_text())
    out = []
    for fold in info["folds"]:
        ckpt = train_dir / "runs" / f"seed{seed}" / f"fold{fold['index']}" / "checkpoint.pt"
        if not ckpt.is_file():
            raise FileNotFoundError(f"{ckpt} not found: train_dir must hold seed {seed}'s folds")
        out.append((str(ckpt), list(fold[part])))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="one checkpoint, scored on --speakers")
    which.add_argument("--train-dir", help="a ser train output: every fold's model on its test speakers")
    p.add_argument("--part", choices=("test", "val"), default="test",
                   help="with --train-dir: label each fold's test speakers, or its validation speakers "
                        "(to compare recipes without touching the test folds)")
    p.add_argument("--manifest", required=True, help="manifest of the real corpus (ser manifest)")
    p.add_argument("--features", required=True, help="the model's features of the same corpus")
    p.add_argument("--speakers", default="03,06", help="with --model: the speakers to mix")
    p.add_argument("--calls", type=int, default=6, help="with --model: number of calls")
    p.add_argument("--turns", type=int, default=20)
    p.add_argument("--noise-db", default="-55", help="line hiss in dBFS, or off")
    p.add_argument("--trim-db", help="ser mix-calls --trim-db: how much of each clip is a turn (default its default)")
    p.add_argument("--seed", type=int, default=0, help="mixing seed; with --train-dir also the run's seed")
    p.add_argument("--params", help="params.yaml whose label section cuts the calls (default: each model's own cut)")
    p.add_argument("--corpus", help="with --train-dir: only the folds' speakers of this corpus (a model trained "
                                    "on several)")
    p.add_argument("--restrict-to", help="ser label --restrict-to: the labels the model chooses among "
                                         "(e.g. the corpus's own), in the calls and at clip level")
    p.add_argument("--work", default="benchmarks/out/label_real")
    args = p.parse_args(argv)
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    if args.model:
        speakers = [s if ":" in s else f"ravdess:{s}" for s in args.speakers.split(",")]
        jobs = [(args.model, speakers, args.calls)]
    else:
        # 3 calls of `turns` turns per speaker: each speaker's 60 clips about once
        folds = fold_models(Path(args.train_dir), args.seed, args.part)
        if args.corpus:
            folds = [(m, [s for s in speakers if corpus_of(s) == args.corpus]) for m, speakers in folds]
            folds = [(m, speakers) for m, speakers in folds if speakers]
            if not folds:
                p.error(f"no {args.part} speaker of corpus {args.corpus!r} in {args.train_dir}")
        jobs = [(m, s, max(1, round(len(s) * 60 / args.turns))) for m, s in folds]
    pairs, turns, covered, whole, grouped = [], 0, 0.0, [], []
    data: FeatureSet | None = None
    per_channel = args.turns // 2
    alone = []  # a fold with one speaker of the corpus: a call needs two, so clip level only
    keep = args.restrict_to.split(",") if args.restrict_to else None
    for i, (model, speakers, calls) in enumerate(jobs):
        ckpt = load_checkpoint(model)
        if data is None or data.labels != ckpt.labels:  # the features are read once
            data = load_features(args.features, ckpt.labels)
        whole.append(clip_level(ckpt, data, speakers, None, keep=keep))
        grouped.append(clip_level(ckpt, data, speakers, per_channel, keep=keep))
        if len(speakers) < 2:
            alone += speakers
            print(f"{model}: {speakers}: alone in its fold, clip level only (a call needs two speakers)",
                  file=sys.stderr)
            continue
        score = label_calls(model, args.manifest, speakers, work / f"part{i}", args, calls)
        pairs += score["pairs"]
        turns += score["n_turns"]
        covered += score["turn_coverage"] * score["n_turns"]
        print(f"{model}: {speakers}: segment UAR {score['uar']:.4f}, turns found {score['turn_coverage']:.4f}",
              file=sys.stderr)
    labels = ckpt.labels
    index = {label: k for k, label in enumerate(labels)}
    y = np.array([index[a] for a, _ in pairs])
    pred = np.array([index.get(b, -1) for _, b in pairs])  # 'uncertain' counts as wrong

    def pooled(parts: list[tuple[np.ndarray, np.ndarray]]) -> float:
        return uar(np.concatenate([t for t, _ in parts]), np.concatenate([q for _, q in parts]), len(labels))

    n_speakers = sum(len(s) for _, s, _ in jobs)
    which = f"{args.part} " if args.train_dir else ""
    n_calls = sum(c for _, s, c in jobs if len(s) >= 2)
    print(f"\n{n_speakers} {which}speakers by {len(jobs)} model(s), {n_calls} calls x {args.turns} "
          f"turns, line hiss {args.noise_db} dBFS" + (f"; {', '.join(alone)} alone in a fold: in the clip-level "
                                                      f"rows, not in the calls" if alone else ""))
    print("| measure | value |\n|---|---|")
    print(f"| clip-level UAR, each speaker normalised over all its clips | {pooled(whole):.4f} |")
    print(f"| clip-level UAR, normalised over {per_channel} clips (one call channel's worth) | {pooled(grouped):.4f} |")
    print(f"| segment UAR of the labelled calls (ser score) | {uar(y, pred, len(labels)):.4f} |")
    print(f"| segment accuracy | {float(np.mean(y == pred)):.4f} ({len(y)} segments) |")
    print(f"| ground-truth turns overlapped by a segment | {covered / turns:.4f} ({turns} turns) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
