"""``ser score``: segment-level UAR and accuracy of labelled segments against ground truth.

Reads ``DIR/segments-*.parquet`` (``ser label``; DIR may be local or a URL such as
gs://, read through :mod:`ser_core.storage`) and a ground-truth sidecar CSV with the
columns ``path, channel, start_s, end_s, emotion`` (``ser demo-archive`` writes one; a
``role`` column, if present, is ignored). Sidecar paths that are relative are taken
relative to the sidecar's folder; a segment's file is matched by its resolved path, or,
failing that, by its file name when that name is unique in the sidecar.

A segment's truth is the emotion of the ground-truth turn it overlaps most on the same
file and channel (a mixed-down segment, channel -1, may overlap turns on any channel).
Segments that overlap no turn, and segments of files the sidecar does not list, are
counted but not scored (``turn_coverage``, the share of the labelled files' turns that
some segment overlaps, measures the speech detector's recall); so are segments whose true
emotion is not one of the model's labels (dropped and counted, never relabelled). UAR averages recall over the classes
present among the scored truths, as ``ser evaluate`` does.

Segments labelled ``uncertain`` (``ser label --min-confidence``) are scored as WRONG
predictions in ``uar``, ``wa`` and ``per_class_recall``: abstaining is not a hit. Beside
them: ``coverage``, the share of scored segments that are not uncertain, and
``uar_confident`` / ``wa_confident``, the same measures over those confident segments
only; ``uncertain_per_class`` counts the uncertain ones by true class, and ``confusion``
holds the confident ones (without a threshold, all of them).

Writes ``--output`` (metrics JSON: ``uar``, ``wa`` (accuracy), ``per_class_recall``,
``confusion``, the coverage figures, counts) and optionally ``--confusion``
(actual,predicted per scored segment, predicted ``uncertain`` included, for ``dvc
plots``' confusion template).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from ser_core.inference import MIX_CHANNEL, UNCERTAIN
from ser_core.inference.outputs import SEGMENTS_PREFIX
from ser_core.metrics import PROB_PREFIX, confusion_matrix, recall_per_class, uar
from ser_core.params import build_config, flags, load_section
from ser_core.storage import path_key, read_shards, write_csv

GROUND_TRUTH_COLUMNS = ("path", "channel", "start_s", "end_s", "emotion")


@dataclass
class ScoreConfig:
    """params.yaml ``score``."""

    segments: str | None = None      # directory of segments-*.parquet
    ground_truth: str | None = None  # sidecar CSV
    output: str | None = None        # metrics JSON
    confusion: str | None = None     # optional actual,predicted CSV


@dataclass(frozen=True)
class Turn:
    path: str
    channel: int
    start_s: float
    end_s: float
    emotion: str


def read_ground_truth(path: str | Path) -> list[Turn]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth sidecar not found: {path}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in GROUND_TRUTH_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: ground truth lacks column(s) {missing}; "
                             f"expected {', '.join(GROUND_TRUTH_COLUMNS)}")
        rows = list(reader)
    base = str(path.parent)
    turns = []
    for i, r in enumerate(rows, start=2):
        try:
            turn = Turn(path_key(r["path"], base), int(r["channel"]), float(r["start_s"]),
                        float(r["end_s"]), r["emotion"].strip())
        except ValueError as exc:
            raise ValueError(f"{path}:{i}: bad ground-truth row ({exc})") from exc
        if turn.end_s <= turn.start_s:
            raise ValueError(f"{path}:{i}: turn ends before it starts ({turn.start_s}..{turn.end_s})")
        turns.append(turn)
    return turns


def read_segments(segments_dir: str) -> tuple[pa.Table, list[str]]:
    """Every segments shard (local or on a Beam filesystem, as ``ser label`` wrote them) as
    one table, and the model's labels (prob_* column order)."""
    table = read_shards(segments_dir, SEGMENTS_PREFIX)
    labels = [c[len(PROB_PREFIX):] for c in table.column_names if c.startswith(PROB_PREFIX)]
    if not labels:
        raise ValueError(f"{segments_dir}: segments have no {PROB_PREFIX}* columns")
    return table, labels


def truth_of_segments(paths: Sequence[str], channels: Sequence[int], starts: Sequence[float],
                      ends: Sequence[float], turns: Sequence[Turn]) -> tuple[list[str | None], dict]:
    """Each segment's true emotion (None: no overlapping turn or unknown file), and counts."""
    by_file: dict[str, list[Turn]] = defaultdict(list)
    for t in turns:
        by_file[t.path].append(t)
    names: dict[str, list[str]] = defaultdict(list)
    for key in by_file:
        names[os.path.basename(key)].append(key)
    keys: dict[str, str | None] = {}
    for p in set(paths):
        key = path_key(p)
        if key not in by_file:
            same_name = names.get(os.path.basename(key), [])
            key = same_name[0] if len(same_name) == 1 else None
        keys[p] = key
    truths: list[str | None] = []
    counts = {"n_segments_unknown_file": 0, "n_segments_no_turn": 0}
    touched: set[Turn] = set()
    for p, ch, s, e in zip(paths, channels, starts, ends):
        key = keys[p]
        if key is None:
            counts["n_segments_unknown_file"] += 1
            truths.append(None)
            continue
        best, best_overlap = None, 0.0
        for t in by_file[key]:
            if ch != MIX_CHANNEL and t.channel != ch:
                continue
            overlap = min(e, t.end_s) - max(s, t.start_s)
            if overlap > 0:
                touched.add(t)
            if overlap > best_overlap:
                best, best_overlap = t.emotion, overlap
        if best is None:
            counts["n_segments_no_turn"] += 1
        truths.append(best)
    labelled = {k for k in keys.values() if k is not None}
    n_turns = sum(len(by_file[k]) for k in labelled)
    counts["n_files"] = len(keys)
    counts["n_files_unknown"] = len(keys) - len(labelled)
    counts["n_turns"] = n_turns  # ground-truth turns in the labelled files ...
    counts["turn_coverage"] = len(touched) / n_turns if n_turns else None  # ... share met by a segment
    return truths, counts


def score(table: pa.Table, labels: Sequence[str], turns: Sequence[Turn]) -> tuple[dict, list[dict]]:
    """Metrics and the (actual, predicted) rows of the scored segments."""
    cols = table.select(["path", "channel", "start_s", "end_s", "emotion"]).to_pydict()
    truths, counts = truth_of_segments(cols["path"], cols["channel"], cols["start_s"],
                                       cols["end_s"], turns)
    n = len(labels)
    index = {label: i for i, label in enumerate(labels)}
    index.setdefault(UNCERTAIN, n)  # never equal to a true class: a wrong prediction
    names = [*labels, UNCERTAIN]
    outside: dict[str, int] = defaultdict(int)
    y, pred = [], []
    for truth, predicted in zip(truths, cols["emotion"]):
        if truth is None:
            continue
        if truth not in index or index[truth] == n:
            outside[truth] += 1
            continue
        if predicted not in index:
            raise ValueError(f"a segment's emotion {predicted!r} is neither one of the labels {list(labels)} "
                             f"nor {UNCERTAIN!r}")
        y.append(index[truth])
        pred.append(index[predicted])
    y_arr, pred_arr = np.array(y, dtype=np.int64), np.array(pred, dtype=np.int64)
    sure = pred_arr != n
    recalls = recall_per_class(y_arr, pred_arr, n)
    metrics = {
        "uar": uar(y_arr, pred_arr, n) if y else None,
        "wa": float((y_arr == pred_arr).mean()) if y else None,
        "per_class_recall": {lab: float(r) for lab, r in zip(labels, recalls) if not np.isnan(r)},
        "n_segments": len(truths),
        "n_scored": len(y),
        "n_uncertain": int((~sure).sum()),
        "coverage": float(sure.mean()) if y else None,
        "uar_confident": uar(y_arr[sure], pred_arr[sure], n) if sure.any() else None,
        "wa_confident": float((y_arr[sure] == pred_arr[sure]).mean()) if sure.any() else None,
        "uncertain_per_class": {lab: int(((y_arr == i) & ~sure).sum()) for i, lab in enumerate(labels)
                                if ((y_arr == i) & ~sure).any()},
        **counts,
        "n_segments_truth_outside_labels": sum(outside.values()),
        "truth_outside_labels": dict(sorted(outside.items())),
        "labels": list(labels),
        "confusion": confusion_matrix(y_arr[sure], pred_arr[sure], n).tolist(),
    }
    rows = [{"actual": names[a], "predicted": names[b]} for a, b in zip(y, pred)]
    return metrics, rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--segments", help="directory holding segments-*.parquet (ser label --output)")
    parser.add_argument("--ground-truth", dest="ground_truth", help="ground-truth sidecar CSV")
    parser.add_argument("--output", help="metrics JSON to write")
    parser.add_argument("--confusion", help="also write actual,predicted CSV for dvc plots")
    parser.add_argument("--params", default=None, help="params.yaml to read the 'score' section from")


def main(args: argparse.Namespace) -> int:
    cfg = build_config(ScoreConfig, load_section(args.params, "score"),
                       flags(args, "segments", "ground_truth", "output", "confusion"))
    for name in ("segments", "ground_truth", "output"):
        if not getattr(cfg, name):
            raise ValueError(f"--{name.replace('_', '-')} is required (or params.yaml score.{name})")
    table, labels = read_segments(cfg.segments)
    metrics, rows = score(table, labels, read_ground_truth(cfg.ground_truth))
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    if cfg.confusion:
        Path(cfg.confusion).parent.mkdir(parents=True, exist_ok=True)
        write_csv(Path(cfg.confusion), rows, ["actual", "predicted"])
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"UAR {fmt(metrics['uar'])}, accuracy {fmt(metrics['wa'])} over {metrics['n_scored']} of "
          f"{metrics['n_segments']} segments ({metrics['n_segments_no_turn']} overlap no turn, "
          f"{metrics['n_segments_unknown_file']} in files without ground truth) -> {out}")
    if metrics["n_uncertain"]:
        print(f"  {metrics['n_uncertain']} uncertain segments scored as wrong; coverage {fmt(metrics['coverage'])}, "
              f"UAR {fmt(metrics['uar_confident'])} and accuracy {fmt(metrics['wa_confident'])} over the confident ones")
    return 0
