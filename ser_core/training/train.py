"""``ser train``: speaker-independent cross-validation of ResLSTM-SA, then the final model.

For every seed and every fold (:mod:`ser_core.splits`): normalise (training speakers'
statistics, or each speaker's own), train with Adam + CosineAnnealingWarmRestarts
(T_0=t0, T_mult=1, eta_min=0.01*lr, stepped once per epoch) on cross-entropy (plain in the
paper; optionally class-balanced and label-smoothed, with SpecAugment-style masking and
mixup from :mod:`ser_core.training.augment`), keep the epoch with the best VALIDATION UAR
(ties: lower validation loss), stop early after ``patience`` epochs without a better one
(0: never), and predict the fold's test speakers with it. Then the final model for labelling: every speaker trains
except fold 0's validation speakers, which choose its checkpoint (first seed).

Seeds. Each entry of ``seeds`` is one independent run. Fold f of the run with seed s
draws its initialisation, dropout and batch order from ``SeedSequence((s, f + 1))``; the
final model from ``SeedSequence((s, 0))``. Folds of a run therefore differ, and runs
differ in every fold (the authors re-used the same seeds in every run). On CPU a run is
deterministic for a given seed and thread count.

Restarts. Each fold writes its outputs, then ``done.json`` holding a hash of the params
that affect it, of the features and of the training code; a re-run skips folds whose
marker matches (so a DVC stage may keep its output with ``persist: true``).

Outputs under ``--output``: ``runs/seed<S>/fold<F>/`` (checkpoint.pt, history.csv,
predictions.csv, done.json) and ``runs/final/``; merged ``predictions.csv`` (out-of-fold
test predictions, for ``ser evaluate``), ``history.csv`` (per seed, fold and epoch),
``curves.csv`` (per epoch, mean over seeds and folds, for ``dvc plots``), ``run.json``;
and the final checkpoint at ``--final`` (default ``OUTPUT/final.pt``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from ser_core.checkpoint import save_checkpoint
from ser_core.codebase import ROOT, import_closure
from ser_core.metrics import PROB_PREFIX
from ser_core.splits import Fold, final_split, make_folds
from ser_core.storage import write_csv
from ser_core.training.config import TrainConfig, add_overrides, config_from_args
from ser_core.training.data import FeatureSet, load_features
from ser_core.training.distillation import teachers_fingerprint
from ser_core.training.fold import HISTORY_FIELDS, FoldResult, train_fold

log = logging.getLogger(__name__)

TIMING = "timing.json"  # wall times, kept out of DVC's hashes by .dvcignore
FINAL_RULE = ("trained on every speaker except fold 0's validation speakers, which chose the "
              "checkpoint (best validation UAR); first seed")


# ---------------------------------------------------------------- outputs and restarts


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def prediction_fields(labels: Sequence[str]) -> list[str]:
    return (["utterance_id", "speaker", "gender", "fold", "seed", "label", "predicted", "temperature"]
            + [PROB_PREFIX + label for label in labels])


def prediction_rows(data: FeatureSet, result: FoldResult) -> list[dict]:
    """One row per test clip (its windows' mean probabilities when rows are windows); the
    probabilities are uncalibrated, ``temperature`` is the fold's (``ser evaluate`` applies it)."""
    rows = []
    for group, p in zip(data.clips(data.indices(result.fold.test)), result.test_probs):
        i = group[0]
        row = {"utterance_id": data.sources[i], "speaker": data.speakers[i],
               "gender": data.genders[i], "fold": result.fold.index, "seed": result.seed,
               "label": data.labels[data.y[i]], "predicted": data.labels[int(np.argmax(p))],
               "temperature": f"{result.temperature:.6f}"}
        row.update({PROB_PREFIX + label: f"{v:.6f}" for label, v in zip(data.labels, p)})
        rows.append(row)
    return rows


def training_code(root: Path | None = None) -> dict[str, Path]:
    """The modules ``ser train`` runs: this one and what it imports, directly or not (the
    model, splits, labels, normalisation, batching, checkpoint, metrics, data, ...), but not
    ``ser evaluate``'s module, whose report wording does not change a trained fold."""
    return import_closure("ser_core.training.train", root or ROOT)


def code_fingerprint(root: Path | None = None) -> str:
    """Digest of the code a fold's result depends on: a finished fold is stale once it changes."""
    h = hashlib.sha256()
    for name, path in training_code(root).items():
        h.update(name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def result_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``train`` settings a fold's result depends on: all but seeds and threads. A
    config written before an option existed was trained without it: the option's default."""
    return {k: v for k, v in {**TrainConfig().to_dict(), **config}.items() if k not in ("seeds", "threads")}


def fold_key(cfg: TrainConfig, fold: Fold, seed: int, fingerprint: str, code: str) -> str:
    """Hash of everything a fold's result depends on (not threads, not the other seeds;
    with distillation, the teachers' predictions)."""
    params = result_settings(cfg.to_dict())
    inputs = {"params": params, "fold": fold.to_dict(), "seed": seed, "features": fingerprint, "code": code}
    if cfg.distil > 0:
        inputs["teachers"] = teachers_fingerprint(cfg.distil_from)
    blob = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def is_done(fold_dir: Path, key: str) -> bool:
    marker = fold_dir / "done.json"
    return marker.is_file() and json.loads(marker.read_text()).get("key") == key


def _seconds(fold_dir: Path) -> float | None:
    path = fold_dir / TIMING
    return json.loads(path.read_text())["seconds"] if path.is_file() else None


def save_fold(fold_dir: Path, data: FeatureSet, cfg: TrainConfig, result: FoldResult, key: str,
              fingerprint: str) -> None:
    """Checkpoint, history and predictions, then the done marker (written last);
    ``fingerprint`` is ``data.fingerprint()``, computed once per run."""
    if fold_dir.exists():
        shutil.rmtree(fold_dir)
    fold_dir.mkdir(parents=True)
    f = result.fold
    provenance = {"fold": f.index, "seed": result.seed, "train_speakers": list(f.train),
                  "val_speakers": list(f.val), "test_speakers": list(f.test),
                  "best_epoch": result.best_epoch, "val_uar": result.val_uar,
                  "features_fingerprint": fingerprint,
                  # the labels its training speakers carried (scoring another corpus: the "shared" view)
                  "trained_classes": [data.labels[c] for c in sorted(set(data.y[data.indices(f.train)].tolist()))]}
    by_corpus = {"val_uar_by_corpus": result.val_uar_by_corpus} if result.val_uar_by_corpus else {}
    provenance.update(by_corpus)  # several corpora validating: each one's, beside their mean
    if f.index < 0:
        provenance["rule"] = FINAL_RULE
    save_checkpoint(fold_dir / "checkpoint.pt", result.model, feature_config=data.feature_config,
                    labels=data.labels, normalisation=result.normaliser.to_dict(),
                    train_params=cfg.to_dict(), provenance=provenance,
                    calibration={"temperature": result.temperature, "fitted_on": "validation speakers",
                                 "speakers": list(f.val)},
                    segmentation=data.rows_config["segmentation"])
    write_csv(fold_dir / "history.csv", result.history, HISTORY_FIELDS)
    write_csv(fold_dir / "predictions.csv", prediction_rows(data, result), prediction_fields(data.labels))
    done = {"key": key, "best_epoch": result.best_epoch, "val_uar": result.val_uar, **by_corpus}
    (fold_dir / "done.json").write_text(json.dumps(done, indent=2) + "\n")


def mean_curves(histories: Sequence[list[dict]]) -> list[dict]:
    """Per epoch, the mean of each history field over every fold and seed."""
    epochs = min(len(h) for h in histories)
    return [{"epoch": e + 1, **{k: float(np.mean([float(h[e][k]) for h in histories]))
                                for k in HISTORY_FIELDS if k != "epoch"}} for e in range(epochs)]


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """torch's deterministic algorithms within the block (on CPU a run then repeats exactly)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def train_unless_done(data: FeatureSet, fold: Fold, cfg: TrainConfig, seed: int, fold_dir: Path,
                      fingerprints: tuple[str, str], name: str, progress: bool = True) -> dict:
    """Train and save one fold into ``fold_dir`` unless its marker shows it done with these
    settings, ``fingerprints`` (of the features, of the code) and seed; its marker's content."""
    key = fold_key(cfg, fold, seed, *fingerprints)
    if is_done(fold_dir, key):
        log.info("%s: already done, skipped (%s)", name, fold_dir)
    else:
        start = time.perf_counter()
        result = train_fold(data, fold, cfg, seed, progress)
        save_fold(fold_dir, data, cfg, result, key, fingerprints[0])
        # wall time is the one thing that differs between identical runs: it goes to
        # timing.json files, which .dvcignore keeps out of the outputs' hashes
        (fold_dir / TIMING).write_text(json.dumps({"seconds": round(time.perf_counter() - start, 1)}) + "\n")
    done = json.loads((fold_dir / "done.json").read_text())
    each = "".join(f", {c} {v:.4f}" for c, v in done.get("val_uar_by_corpus", {}).items())
    log.info("%s: best epoch %d, validation UAR %.4f%s", name, done["best_epoch"], done["val_uar"],
             f" (the mean over corpora{each})" if each else "")
    return done


def run_training(data: FeatureSet, cfg: TrainConfig, output: Path, final_path: Path | None = None,
                 progress: bool = True) -> dict:
    """Every fold of every seed (skipping finished ones), then the final model; returns run info."""
    output.mkdir(parents=True, exist_ok=True)
    final_path = final_path or output / "final.pt"
    folds = make_folds(cfg.split, data.speaker_genders(), k=cfg.k, n_val=cfg.n_val, seed=cfg.split_seed)
    fingerprint, code = data.fingerprint(), code_fingerprint()
    predictions, histories, history_rows, summary = [], [], [], []
    start = time.perf_counter()
    with deterministic():
        jobs = [(seed, fold, output / "runs" / f"seed{seed}" / f"fold{fold.index}")
                for seed in cfg.seeds for fold in folds]
        jobs.append((cfg.seeds[0], final_split(folds), output / "runs" / "final"))
        for seed, fold, fold_dir in jobs:
            name = f"seed {seed} " + ("final model" if fold.index < 0 else f"fold {fold.index}")
            done = train_unless_done(data, fold, cfg, seed, fold_dir, (fingerprint, code), name, progress)
            summary.append({"seed": seed, "fold": fold.index, **{k: v for k, v in done.items() if k != "key"}})
            if fold.index >= 0:
                predictions += read_rows(fold_dir / "predictions.csv")
                histories.append(read_rows(fold_dir / "history.csv"))
                history_rows += [{"seed": seed, "fold": fold.index, **row} for row in histories[-1]]
    final_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(output / "runs" / "final" / "checkpoint.pt", final_path)
    write_csv(output / "predictions.csv", predictions, prediction_fields(data.labels))
    write_csv(output / "history.csv", history_rows, ("seed", "fold") + HISTORY_FIELDS)
    write_csv(output / "curves.csv", mean_curves(histories), HISTORY_FIELDS)
    info = {"config": cfg.to_dict(), "n_utterances": len(data.y), "n_speakers": len(set(data.speakers)),
            "dropped": dict(sorted(data.dropped.items())), "feature_config": data.feature_config,
            "features_fingerprint": fingerprint, "folds": [f.to_dict() for f in folds],
            "final": {"rule": FINAL_RULE, **final_split(folds).to_dict()},
            "results": summary}
    timing = {f"seed{r['seed']}/fold{r['fold']}" if r["fold"] >= 0 else "final":
              _seconds(output / "runs" / ("final" if r["fold"] < 0 else f"seed{r['seed']}/fold{r['fold']}"))
              for r in summary}
    (output / TIMING).write_text(json.dumps({"this_call_seconds": round(time.perf_counter() - start, 1),
                                             "fold_seconds": timing}, indent=2) + "\n")
    (output / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


# ---------------------------------------------------------------- command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, action="append",
                        help="directory of features-*.parquet shards; repeat for one folder per corpus")
    parser.add_argument("--output", required=True, help="directory for folds, predictions, curves")
    parser.add_argument("--final", default=None, help="final checkpoint path (default OUTPUT/final.pt)")
    parser.add_argument("--params", default=None, help="params.yaml to read the 'train' section from")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_overrides(parser)


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    data = load_features(args.features, cfg.labels)
    log.info("%d utterances of %d speakers, %d dims; dropped %s", len(data.y),
             len(set(data.speakers)), data.n_dims, dict(data.dropped) or "none")
    final = Path(args.final) if args.final else None
    info = run_training(data, cfg, Path(args.output), final, progress=not args.no_progress)
    folds = [r for r in info["results"] if r["fold"] >= 0]
    seconds = json.loads((Path(args.output) / TIMING).read_text())["this_call_seconds"]
    print(f"trained {len(folds)} fold(s) x {len(cfg.seeds)} seed(s) + final model in "
          f"{seconds} s; mean validation UAR {np.mean([r['val_uar'] for r in folds]):.4f}; "
          f"final checkpoint {final or Path(args.output) / 'final.pt'}")
    return 0
