"""``ser tune``: choose a training recipe on VALIDATION speakers only.

Each candidate recipe (params.yaml ``tune.candidates``: a name -> overrides of ``train``) is
trained on every fold of the protocol with the fold's TEST SPEAKERS REMOVED from the data
before anything is fitted or predicted, so no test speaker's features, predictions or
labels can reach the objective. The objective is the UAR of the pooled validation
predictions over the folds' validation speakers (each fold's checkpoint chosen on them, as
in ``ser train``), averaged over ``tune.seeds``. Every trial is recorded in ``trials.csv``
(one row per candidate: its overrides, per-fold and pooled validation UAR, seconds) and
``trials.json``; the best candidate goes to ``best.json``. The test folds are then scored
once, by ``ser train`` + ``ser evaluate`` with the chosen recipe written into params.yaml.

Candidates are evaluated in order; a finished candidate is skipped on a re-run when its
recorded key (recipe, seeds, features, code) still matches, so a long search resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ser_core.params import ParamsError, build_config, load_section
from ser_core.splits import Fold, make_folds
from ser_core.metrics import uar
from ser_core.storage import write_csv
from ser_core.training.data import FeatureSet, load_features
from ser_core.training.config import TrainConfig
from ser_core.training.fold import train_fold
from ser_core.training.train import code_fingerprint

log = logging.getLogger(__name__)


def subset(data: FeatureSet, speakers: Sequence[str]) -> FeatureSet:
    """The rows (augmented ones too) of ``speakers`` only: a new FeatureSet; the rest is not carried."""
    idx = data.indices(speakers, sorted(set(data.variants)))
    return dataclasses.replace(
        data, utterance_ids=[data.utterance_ids[i] for i in idx], speakers=[data.speakers[i] for i in idx],
        genders=[data.genders[i] for i in idx], features=[data.features[i] for i in idx], y=data.y[idx],
        sources=[data.sources[i] for i in idx], variants=[data.variants[i] for i in idx])


@dataclasses.dataclass
class FoldValidation:
    fold: int
    seed: int
    y_true: np.ndarray  # (N_val_clips,)
    y_pred: np.ndarray  # (N_val_clips,) of the kept model
    best_epoch: int


def validate_fold(data: FeatureSet, fold: Fold, cfg: TrainConfig, seed: int,
                  train: Callable[..., Any] = train_fold) -> FoldValidation:
    """Train one fold on its training speakers and predict its validation speakers, with
    the fold's test speakers removed beforehand (an empty test set is passed on)."""
    seen = subset(data, list(fold.train) + list(fold.val))
    blind = dataclasses.replace(fold, test=())
    result = train(seen, blind, cfg, seed, False)
    # the kept model's validation predictions, clip by clip (windows of a clip averaged)
    return FoldValidation(fold.index, seed, result.val_y, result.val_probs.argmax(1), result.best_epoch)


def trial_key(overrides: Mapping[str, Any], cfg: TrainConfig, fingerprint: str, code: str) -> str:
    params = {k: v for k, v in cfg.to_dict().items() if k != "threads"}
    blob = json.dumps({"overrides": dict(overrides), "params": params, "features": fingerprint,
                       "code": code}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def run_trial(data: FeatureSet, cfg: TrainConfig, folds: Sequence[Fold]) -> dict[str, Any]:
    """Pooled validation UAR (mean over seeds) of one recipe, with per-fold figures."""
    start = time.perf_counter()
    n_classes = len(data.labels)
    per_seed, per_fold, epochs = [], {f.index: [] for f in folds}, []
    for seed in cfg.seeds:
        results = [validate_fold(data, fold, cfg, seed) for fold in folds]
        y_true = np.concatenate([r.y_true for r in results])
        y_pred = np.concatenate([r.y_pred for r in results])
        per_seed.append(uar(y_true, y_pred, n_classes))
        for r in results:
            per_fold[r.fold].append(uar(r.y_true, r.y_pred, n_classes))
            epochs.append(r.best_epoch)
    return {"val_uar": float(np.mean(per_seed)), "val_uar_per_seed": [round(v, 4) for v in per_seed],
            "val_uar_per_fold": {str(k): round(float(np.mean(v)), 4) for k, v in per_fold.items()},
            "mean_best_epoch": round(float(np.mean(epochs)), 1),
            "seconds": round(time.perf_counter() - start, 1)}


@dataclasses.dataclass
class TuneConfig:
    """params.yaml ``tune``."""

    candidates: dict[str, dict[str, Any]] = dataclasses.field(default_factory=lambda: {"paper": {}})
    seeds: list[int] = dataclasses.field(default_factory=lambda: [100])
    # overrides of `train` under every candidate: params.yaml resets the chosen recipe to
    # the paper's training here, so each candidate lists its changes from the paper
    base: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ParamsError("tune.candidates must name at least one recipe")
        for name, overrides in self.candidates.items():
            if not isinstance(overrides, dict):
                raise ParamsError(f"tune.candidates.{name} must be a mapping of train overrides")
        self.seeds = [int(s) for s in ([self.seeds] if isinstance(self.seeds, int) else self.seeds)]


def run_tuning(data: FeatureSet, base: Mapping[str, Any], tune: TuneConfig, output: Path,
               only: Sequence[str] | None = None) -> dict[str, Any]:
    """Every candidate (or ``only`` these; finished ones resume); writes trials.csv/json and
    best.json over every trial recorded in ``output`` (one per candidate name)."""
    output.mkdir(parents=True, exist_ok=True)
    store = output / "trials.json"
    trials: dict[str, dict] = json.loads(store.read_text()) if store.is_file() else {}
    fingerprint, code = data.fingerprint(), code_fingerprint()
    for name, overrides in tune.candidates.items():
        if only and name not in only:
            continue
        cfg = build_config(TrainConfig, base, tune.base, overrides, {"seeds": tune.seeds})
        folds = make_folds(cfg.split, data.speaker_genders(), k=cfg.k, n_val=cfg.n_val, seed=cfg.split_seed)
        key = trial_key(overrides, cfg, fingerprint, code)
        if trials.get(name, {}).get("key") == key:
            log.info("trial %s: already done (validation UAR %.4f)", name, trials[name]["val_uar"])
            continue
        log.info("trial %s: %s", name, overrides or "(base recipe)")
        trials[name] = {"name": name, "overrides": overrides, "key": key, "feature_config": data.feature_config,
                        **run_trial(data, cfg, folds)}
        log.info("trial %s: validation UAR %.4f in %.0f s", name, trials[name]["val_uar"],
                 trials[name]["seconds"])
        store.write_text(json.dumps(trials, indent=2) + "\n")
    done = [trials[n] for n in tune.candidates if n in trials]
    rows = [{"name": t["name"], "val_uar": round(t["val_uar"], 4),
             "val_uar_per_seed": " ".join(map(str, t["val_uar_per_seed"])),
             "mean_best_epoch": t["mean_best_epoch"], "seconds": t["seconds"],
             "overrides": json.dumps(t["overrides"], sort_keys=True)} for t in done]
    write_csv(output / "trials.csv", rows, list(rows[0]))
    best = max(done, key=lambda t: t["val_uar"])
    (output / "best.json").write_text(json.dumps(
        {"name": best["name"], "val_uar": best["val_uar"], "overrides": best["overrides"],
         "objective": "pooled validation UAR over the folds' validation speakers (test speakers removed)"},
        indent=2) + "\n")
    return best


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, help="directory of features-*.parquet shards")
    parser.add_argument("--output", required=True, help="directory for trials.csv/json and best.json")
    parser.add_argument("--params", default=None, help="params.yaml: 'train' is the base, 'tune' the candidates")
    parser.add_argument("--only", nargs="+", help="evaluate only these candidates")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")


def main(args: argparse.Namespace) -> int:
    base = load_section(args.params, "train")
    tune = build_config(TuneConfig, load_section(args.params, "tune"))
    if args.only:
        unknown = sorted(set(args.only) - set(tune.candidates))
        if unknown:
            raise ParamsError(f"unknown candidate(s) {unknown}; known: {sorted(tune.candidates)}")
    torch.set_num_threads(max(1, args.threads))
    data = load_features(args.features, build_config(TrainConfig, base).labels)
    best = run_tuning(data, base, tune, Path(args.output), args.only)
    print(f"best recipe on validation speakers: {best['name']} (UAR {best['val_uar']:.4f}); "
          f"every trial in {Path(args.output) / 'trials.csv'}")
    return 0
