"""``ser transfer``: do the emotion labels carry to a corpus the model never heard?

For every corpus left out, a model is trained on all the other corpora (and, with three or
more, on each corpus alone) exactly as ``ser train`` trains a fold (same recipe, masked
classes, corpus-balanced epochs; :func:`ser_core.splits.corpus_transfer_folds`: a few
speakers of each training corpus validate and choose the checkpoint) and labels every clip
of each corpus it did not train on, each speaker normalised with its own statistics. Nothing
about the tested corpus chooses anything.

Each tested corpus is scored on two parts: its validation speakers (the ones that validate
when it is among the training corpora), on which recipes for transfer may be compared, and
its other speakers, the test part, scored once per recipe and reported. Three views of each
part (UAR, the mean recall over the classes its clips carry):

- ``as_written``: the model chooses among all its labels, as it does when it labels a call
  (a label the corpus lacks is an error);
- ``restricted``: it chooses among the corpus's own classes;
- ``shared``: the clips of the classes both the training corpora and the tested corpus
  carry, chosen among those (a class the model never learnt is not counted against it);
- ``core4``: the clips of the four classes nearly every corpus has (neutral, happy, sad,
  angry: :data:`ser_core.labels.CORE_LABELS`), chosen among those four.

Outputs under ``--output``: ``runs/seed<S>/<training corpora>/`` (checkpoint, history,
predictions, done marker: a re-run skips what is done, as ``ser train`` does),
``predictions.csv`` (every tested clip, every seed), and ``matrix.json`` (one row per training
set, tested corpus and seed, and the mean over seeds) that ``ser results --transfer``
renders as the corpus x corpus matrix of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ser_core.labels import CORE_LABELS
from ser_core.metrics import PROB_PREFIX, argmax_within, uar
from ser_core.splits import corpus_of, corpus_transfer_folds, corpus_validation_speakers
from ser_core.storage import write_atomic, write_csv
from ser_core.training.data import FeatureSet, load_features
from ser_core.training.config import TrainConfig, add_overrides, config_from_args
from ser_core.training.train import (code_fingerprint, deterministic, prediction_fields, read_rows,
                                     train_unless_done)

log = logging.getLogger(__name__)

VIEWS = ("as_written", "restricted", "shared", "core4")
VIEW_CHANCE = {"as_written": "chance", "restricted": "chance", "shared": "shared_chance",
               "core4": "core_chance"}  # each view's chance level among score_views' keys
MATRIX = "matrix.json"


def score_views(y: np.ndarray, probs: np.ndarray, labels: Sequence[str],
                learnt: np.ndarray | None = None) -> dict:
    """UAR of one tested corpus's clips in the four views (module docstring), with chance
    and clip counts; ``learnt``: (C,) bool, the classes the model was trained on (default:
    all). A view the corpus cannot give (fewer than two of its classes) is None."""
    n = len(labels)
    present = np.zeros(n, dtype=bool)
    present[np.unique(y)] = True
    core = np.zeros(n, dtype=bool)
    core[[labels.index(c) for c in CORE_LABELS if c in labels]] = True
    core &= present
    shared = present & (np.ones(n, dtype=bool) if learnt is None else learnt)
    out = {"n_clips": int(len(y)), "n_classes": int(present.sum()),
           "as_written": uar(y, probs.argmax(1), n),
           "restricted": uar(y, argmax_within(probs, present), n),
           "chance": 1.0 / present.sum(), "n_core_clips": int(core[y].sum()), "core_classes": int(core.sum()),
           "shared_classes": int(shared.sum())}
    for view, classes in (("shared", shared), ("core4", core)):
        keep = classes[y]
        out[view] = uar(y[keep], argmax_within(probs[keep], classes), n) if classes.sum() >= 2 else None
        out[view + "_chance"] = 1.0 / classes.sum() if classes.sum() >= 2 else None
    out["core_chance"] = out.pop("core4_chance")
    return out


def corpus_classes(rows: Sequence[dict], labels: Sequence[str],
                   recorded: dict[str, Sequence[str]] | None = None) -> dict[str, np.ndarray]:
    """Each corpus's classes, (C,) bool: as ``transfer.json`` records them, else from the
    prediction rows (a corpus left out has all its clips there)."""
    out: dict[str, np.ndarray] = {}
    for r in rows:
        out.setdefault(corpus_of(r["speaker"]), np.zeros(len(labels), dtype=bool))[labels.index(r["label"])] = True
    for corpus, names in (recorded or {}).items():
        out[corpus] = np.isin(np.asarray(labels), list(names))
    return out


def score_rows(members: Sequence[dict], labels: Sequence[str], classes: dict[str, np.ndarray]) -> dict:
    """:func:`score_views` of prediction rows of one model (one ``trained_on``); ``classes``:
    each corpus's (:func:`corpus_classes`), whose union over the training corpora is what the
    model learnt."""
    index = {label: i for i, label in enumerate(labels)}
    none = np.zeros(len(labels), dtype=bool)
    y = np.array([index[r["label"]] for r in members])
    probs = np.array([[float(r[PROB_PREFIX + label]) for label in labels] for r in members])
    learnt = np.logical_or.reduce([classes.get(c, none) for c in members[0]["trained_on"].split("+")])
    return score_views(y, probs, labels, learnt)


def matrix_rows(rows: Sequence[dict], labels: Sequence[str], validation: set[str],
                classes: dict[str, np.ndarray]) -> list[dict]:
    """Per (training corpora, tested corpus, part, seed), the four views, from prediction
    rows; ``validation``: the speakers of the validation part; ``classes``: each corpus's
    (:func:`corpus_classes`)."""
    groups: dict[tuple[str, str, str, int], list[dict]] = {}
    for r in rows:
        part = "val" if r["speaker"] in validation else "test"
        groups.setdefault((r["trained_on"], corpus_of(r["speaker"]), part, int(r["seed"])), []).append(r)
    return [{"trained_on": trained, "tested": tested, "part": part, "seed": seed,
             **score_rows(members, labels, classes)}
            for (trained, tested, part, seed), members in sorted(groups.items())]


def ensemble_rows(rows: Sequence[dict], labels: Sequence[str], validation: set[str],
                  classes: dict[str, np.ndarray]) -> list[dict]:
    """Per (training corpora, tested corpus, part), the four views of the seed ensemble:
    each clip's probabilities averaged over the seeds (only with two seeds or more)."""
    if len({r["seed"] for r in rows}) < 2:
        return []
    merged: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["trained_on"], r["utterance_id"])
        probs = np.array([float(r[PROB_PREFIX + label]) for label in labels])
        if key in merged:
            merged[key]["sum"] += probs
            merged[key]["n"] += 1
        else:
            merged[key] = {"row": r, "sum": probs, "n": 1}
    mean_rows = [{**m["row"], "seed": -1, **{PROB_PREFIX + label: v for label, v in zip(labels, m["sum"] / m["n"])}}
                 for m in merged.values()]
    return [{k: v for k, v in r.items() if k != "seed"} for r in matrix_rows(mean_rows, labels, validation, classes)]


def mean_over_seeds(rows: Sequence[dict]) -> list[dict]:
    """One row per (training corpora, tested corpus, part): each view's mean and std over seeds."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["trained_on"], r["tested"], r["part"]), []).append(r)
    out = []
    for (trained, tested, part), members in sorted(groups.items()):
        row = {"trained_on": trained, "tested": tested, "part": part, "seeds": [r["seed"] for r in members],
               "n_clips": members[0]["n_clips"], "chance": members[0]["chance"],
               "shared_chance": members[0]["shared_chance"], "core_chance": members[0]["core_chance"]}
        for view in VIEWS:
            values = [r[view] for r in members if r[view] is not None]
            row[view] = float(np.mean(values)) if values else None
            row[view + "_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        out.append(row)
    return out


RUN_INFO = "transfer.json"


def write_run_info(data: FeatureSet, cfg: TrainConfig, output: Path, only: Sequence[str] = ()) -> list:
    """``transfer.json`` (labels, settings, folds, validation parts); returns the folds
    (``only``: just the training sets named, e.g. ``ravdess`` or ``crema_d+ravdess``)."""
    genders = data.speaker_genders()
    corpora = sorted(set(data.corpora))
    # One corpus (the demo): nothing is left to transfer to; the matrix says so and stays empty.
    folds = corpus_transfer_folds(genders, n_val=cfg.n_val, seed=cfg.split_seed) if len(corpora) > 1 else []
    if only:
        unknown = sorted(set(only) - {"+".join(t) for t, _ in folds})
        if unknown:
            raise ValueError(f"--only {unknown}: no such training set; there are "
                             f"{['+'.join(t) for t, _ in folds]}")
        folds = [(t, f) for t, f in folds if "+".join(t) in only]
    validation = corpus_validation_speakers(genders, cfg.n_val, cfg.split_seed) if folds else {}
    present = data.corpus_classes(np.arange(len(data.y)))
    info = {"corpora": corpora, "labels": list(data.labels), "core_labels": list(CORE_LABELS), "views": list(VIEWS),
            "corpus_classes": {c: [l for l, on in zip(data.labels, present[c]) if on] for c in corpora},
            "feature_config": data.feature_config, "config": cfg.to_dict(),
            "folds": [{"trained_on": list(t), **f.to_dict()} for t, f in folds],
            "validation_speakers": {c: list(v) for c, v in sorted(validation.items())}}
    record_run_info(output, info)
    return folds


def record_run_info(output: Path, info: dict) -> None:
    """``info`` into ``output/transfer.json``, its seeds merged with an earlier run's
    (:func:`merged_seeds`); seeds started at once in separate processes merge one after the
    other (:func:`folder_lock`)."""
    with folder_lock(output):
        info["config"]["seeds"] = merged_seeds(output / RUN_INFO, info)
        write_atomic(output / RUN_INFO, json.dumps(info, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def folder_lock(folder: Path):
    """An exclusive lock on ``folder`` among processes of this machine (POSIX ``flock`` on a
    file in it; where there is none, no lock: the merge is then only as safe as its timing)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    with open(folder / f".{RUN_INFO}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def merged_seeds(path: Path, info: dict) -> list[int]:
    """The seeds ``transfer.json`` lists: this run's, plus those of an earlier run of the same
    experiment in the same folder (everything else equal: seeds run as separate processes,
    e.g. one per core, all count). An earlier file of another experiment is replaced, and
    its runs, trained under other keys, no longer count (logged)."""
    seeds = list(info["config"]["seeds"])
    if not path.is_file():
        return seeds
    earlier = json.loads(path.read_text())
    before = earlier.get("config", {}).get("seeds", [])
    if not isinstance(before, list) or not all(isinstance(s, int) for s in before):
        raise ValueError(f"{path}: config.seeds is not a list of whole numbers: {before!r}")
    if _without_seeds(earlier) != _without_seeds(info):
        if set(before) - set(seeds):
            log.warning("%s described another experiment (seeds %s): replaced; only seeds %s count now",
                        path, before, seeds)
        return seeds
    return sorted(set(before) | set(seeds))


def _without_seeds(info: dict) -> dict:
    return {**info, "config": {k: v for k, v in info.get("config", {}).items() if k != "seeds"}}


def run_dir(output: Path, seed: int, trained_on: str) -> Path:
    """One run's folder: the model of ``seed`` trained on ``trained_on`` (e.g. ``nemo+ravdess``)."""
    return output / "runs" / f"seed{seed}" / trained_on


def run_transfer(data: FeatureSet, cfg: TrainConfig, output: Path, progress: bool = True,
                 only: Sequence[str] = ()) -> dict:
    """Every training set (or ``only`` those) of every seed (skipping finished ones); writes
    and returns the matrix."""
    output.mkdir(parents=True, exist_ok=True)
    folds = write_run_info(data, cfg, output, only)
    fingerprints = (data.fingerprint(), code_fingerprint())
    with deterministic():
        for seed in cfg.seeds:
            for trained, fold in folds:
                name = "+".join(trained)
                train_unless_done(data, fold, cfg, seed, run_dir(output, seed, name), fingerprints,
                                  f"seed {seed}, trained on {name}", progress)
    return write_matrix(output)


def build_matrix(output: str | Path) -> tuple[dict, list[dict]]:
    """The matrix and the merged prediction rows, rebuilt from the runs under ``output``
    alone (``transfer.json`` and each run's predictions): the same runs give the same matrix.
    Reads only."""
    output = Path(output)
    if not (output / RUN_INFO).is_file():
        raise FileNotFoundError(f"{output / RUN_INFO} not found: not a ser transfer output")
    info = json.loads((output / RUN_INFO).read_text())
    labels = info["labels"]
    names = ["+".join(fold["trained_on"]) for fold in info["folds"]]
    runs = {seed: [(name, run_dir(output, seed, name) / "predictions.csv") for name in names]
            for seed in info["config"]["seeds"]}

    def done(path: Path) -> bool:  # the done marker is written last
        return path.is_file() and (path.parent / "done.json").is_file()

    finished = [seed for seed, paths in runs.items() if all(done(path) for _, path in paths)]
    for seed in sorted(set(runs) - set(finished)):
        missing = next(path for _, path in runs[seed] if not done(path))
        log.warning("seed %d left out of the matrix: %s not found (still running, or re-run ser transfer "
                    "--seeds %d)", seed, missing, seed)
    if runs and not finished:
        raise FileNotFoundError(f"no seed of {output} has finished all its runs (seeds {sorted(runs)}): "
                                "re-run ser transfer")
    rows = []
    for seed in finished:
        for name, path in runs[seed]:
            rows += [{"trained_on": name, **r} for r in read_rows(path)]
    validation = {s for speakers in info["validation_speakers"].values() for s in speakers}
    classes = corpus_classes(rows, labels, info.get("corpus_classes"))
    per_seed = matrix_rows(rows, labels, validation, classes)
    matrix = {**info, "per_seed": per_seed, "mean": mean_over_seeds(per_seed),
              "ensemble": ensemble_rows(rows, labels, validation, classes)}
    return matrix, rows


def write_matrix(output: str | Path) -> dict:
    """``matrix.json`` and the merged ``predictions.csv`` under ``output``, from
    :func:`build_matrix` (byte-identical for the same runs)."""
    output = Path(output)
    matrix, rows = build_matrix(output)
    write_csv(output / "predictions.csv", rows, ["trained_on"] + prediction_fields(matrix["labels"]))
    (output / MATRIX).write_text(json.dumps(matrix, indent=2, sort_keys=True) + "\n")
    return matrix


def format_matrix(matrix: dict) -> str:
    """The matrix as a markdown table: a row per training set and tested corpus."""
    def cell(value, std, chance):
        if value is None:
            return "-"
        spread = f" ± {std:.3f}" if std is not None else ""
        return f"{value:.3f}{spread} ({chance:.2f})" if chance else f"{value:.3f}{spread}"

    if not matrix["mean"]:
        return (f"Only one corpus ({', '.join(matrix['corpora'])}): nothing to transfer to. Add one to "
                f"manifest.sources (README, between corpora).\n")
    lines = ["| trained on | tested on | part | clips | seeds | UAR as written (chance) | restricted to its "
             "classes | shared classes | 4 core classes |", "|---|---|---|---|---|---|---|---|---|"]
    for r in matrix["mean"] + matrix.get("ensemble", []):
        seeds = len(r["seeds"]) if "seeds" in r else "ensemble"
        lines.append(f"| {r['trained_on']} | {r['tested']} | {r['part']} | {r['n_clips']} | {seeds} | " + " | ".join(
            cell(r[view], r.get(view + "_std"), r[chance]) for view, chance in VIEW_CHANCE.items()) + " |")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, action="append",
                        help="features-*.parquet folder holding several corpora, or one folder per "
                             "corpus (repeat), all made with one feature configuration")
    parser.add_argument("--output", required=True, help="directory for runs, predictions and matrix.json")
    parser.add_argument("--params", default=None, help="params.yaml to read the 'train' section from")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--only", default="", help="comma-separated training sets to run (e.g. ravdess), "
                                                   "not all of them")
    add_overrides(parser)


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    data = load_features(args.features, cfg.labels)
    log.info("%d rows of %d speakers in corpora %s", len(data.y), len(set(data.speakers)),
             sorted(set(data.corpora)))
    only = [s for s in args.only.split(",") if s]
    matrix = run_transfer(data, cfg, Path(args.output), progress=not args.no_progress, only=only)
    print(format_matrix(matrix), end="")
    return 0
