"""``ser evaluate``: metrics of the out-of-fold test predictions that ``ser train`` wrote.

UAR (unweighted average recall: the mean over classes of each class's recall) is the
paper's measure. A run's UAR is computed the paper's way, over the pooled out-of-fold
predictions of all folds; the mean +- std over folds is reported beside it. With several
seeds, ``uar_mean``/``uar_std``/``uar_max`` summarise the runs' pooled UARs; ``uar_std`` uses
ddof=1 (the paper used ddof=0: ``uar_std_ddof0``). ``uar``, ``wa`` and the per-class
recalls pool every run's predictions (each run tests every utterance once, so ``uar``
equals ``uar_mean``). Recall averages run over the classes present among the true labels.
With several seeds, the seed ensemble (each utterance's probabilities averaged over the
runs) is reported beside the single-model figures (``ensemble_uar``, ``ensemble_wa``),
never instead of them. Calibration: ``ece`` (expected calibration error, 15 bins) of the
test probabilities as the model outputs them and ``ece_calibrated`` after each fold's
temperature (fitted on that fold's validation speakers, column ``temperature``).

Cross-corpus scoring (``--model CKPT --features DIR``): the checkpoint labels another
corpus's features (its own speakers' statistics in ``speaker`` normalisation). Utterances
whose label the model does not know are dropped and counted (``dropped``); the model
still chooses among all its labels, so predicting a label the corpus lacks is an error, as
in deployment. UAR averages over the labels the corpus and the model share.

Writes to ``--output-dir``: ``metrics.json``; ``confusion.csv`` (actual,predicted per test
prediction of every run, for ``dvc plots``' confusion template) and ``confusion.png``;
``speakers.csv`` (per-speaker UAR), ``runs.csv`` (per seed), ``folds.csv`` (per seed and
fold); ``report.md`` with the paper's published figure beside ours.
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ser_core.errors import StageError
from ser_core.labels import RAVDESS_LABELS
from ser_core.metrics import (PROB_PREFIX, apply_temperature, argmax_within, confusion_matrix,
                              expected_calibration_error, recall_per_class, uar)
from ser_core.splits import corpus_of
from ser_core.storage import write_csv

# Published UAR (mean, std with ddof=0, max over 10 runs) per (arch, hidden): docs/PAPER.md.
# The authors tuned hyper-parameters on the test folds and normalised with test speakers'
# statistics, so these are optimistic.
PAPER_UAR = {
    ("lstm", 32): (0.5352, 0.0123, 0.5547),
    ("lstm", 64): (0.5751, 0.0108, 0.5996),
    ("lstm", 128): (0.5895, 0.0076, 0.6022),
    ("reslstm", 32): (0.6130, 0.0111, 0.6315),
    ("reslstm", 64): (0.6232, 0.0119, 0.6517),
    ("reslstm", 128): (0.6107, 0.0134, 0.6348),
}
PAPER_H64_RECALL = {"neutral": 0.573, "calm": 0.750, "angry": 0.625, "happy": 0.448,
                    "disgust": 0.734, "sad": 0.620, "fearful": 0.620, "surprised": 0.583}


@dataclass
class Predictions:
    """Out-of-fold test predictions, as ``ser train`` writes them (predictions.csv)."""

    labels: list[str]
    utterance_ids: list[str]
    speakers: np.ndarray
    seeds: np.ndarray
    folds: np.ndarray
    y: np.ndarray
    pred: np.ndarray
    probs: np.ndarray  # (N, C)
    temperature: np.ndarray | None = None  # (N,) each row's fold temperature, where recorded


def read_predictions(path: str | Path) -> Predictions:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        rows = list(reader)
    labels = [f[len(PROB_PREFIX):] for f in fields if f.startswith(PROB_PREFIX)]
    needed = ["utterance_id", "speaker", "seed", "fold", "label", "predicted"]
    missing = [f for f in needed if f not in fields]
    if missing or not labels:
        raise ValueError(f"{path}: not a predictions file (missing {missing or 'prob_* columns'})")
    if not rows:
        raise ValueError(f"{path}: no predictions")
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({r[c] for r in rows for c in ("label", "predicted")} - set(labels))
    if unknown:
        raise ValueError(f"{path}: labels {unknown} have no {PROB_PREFIX}* column")
    return Predictions(
        labels=labels,
        utterance_ids=[r["utterance_id"] for r in rows],
        speakers=np.array([r["speaker"] for r in rows]),
        seeds=np.array([int(r["seed"]) for r in rows]),
        folds=np.array([int(r["fold"]) for r in rows]),
        y=np.array([index[r["label"]] for r in rows]),
        pred=np.array([index[r["predicted"]] for r in rows]),
        probs=np.array([[float(r[PROB_PREFIX + label]) for label in labels] for r in rows]),
        temperature=(np.array([float(r["temperature"]) for r in rows]) if "temperature" in fields else None),
    )


def _std(values: Sequence[float], ddof: int) -> float | None:
    return float(np.std(values, ddof=ddof)) if len(values) > ddof else None


def compute_metrics(p: Predictions) -> tuple[dict, list[dict], list[dict]]:
    """``metrics.json`` (see the module docstring), and the UAR of every run and fold."""
    n = len(p.labels)
    runs = []
    for seed in sorted(set(p.seeds.tolist())):
        m = p.seeds == seed
        ids = [u for u, keep in zip(p.utterance_ids, m) if keep]
        if len(set(ids)) != len(ids):
            raise ValueError(f"seed {seed}: an utterance is tested more than once")
        runs.append({"seed": seed, "uar": uar(p.y[m], p.pred[m], n),
                     "wa": float(np.mean(p.y[m] == p.pred[m])), "n_test": int(m.sum())})
    folds = []
    for seed, fold in sorted(set(zip(p.seeds.tolist(), p.folds.tolist()))):
        m = (p.seeds == seed) & (p.folds == fold)
        folds.append({"seed": seed, "fold": fold, "uar": uar(p.y[m], p.pred[m], n), "n_test": int(m.sum())})
    run_uars = [r["uar"] for r in runs]
    fold_uars = [f["uar"] for f in folds]
    recall = recall_per_class(p.y, p.pred, n)
    extra = calibration_metrics(p)
    if len(runs) > 1:
        extra.update(ensemble_metrics(p))
    corpora = np.array([corpus_of(s) for s in p.speakers])
    if len(set(corpora.tolist())) > 1:
        extra["per_corpus"] = per_corpus_metrics(p, corpora)
    return {
        "uar": uar(p.y, p.pred, n),
        "wa": float(np.mean(p.y == p.pred)),
        "per_class_recall": {label: None if np.isnan(r) else float(r)
                             for label, r in zip(p.labels, recall)},
        "n_test": len(set(p.utterance_ids)),
        "n_runs": len(runs),
        "uar_mean": float(np.mean(run_uars)),
        "uar_std": _std(run_uars, 1),
        "uar_std_ddof0": _std(run_uars, 0),
        "uar_max": float(np.max(run_uars)),
        "fold_uar_mean": float(np.mean(fold_uars)),
        "fold_uar_std": _std(fold_uars, 1),
        **extra,
    }, runs, folds


def per_corpus_metrics(p: Predictions, corpora: np.ndarray) -> dict:
    """Several corpora tested together (a joint model's folds): each corpus's pooled UAR
    (mean over seeds) as written, and restricted to the classes its clips carry."""
    return {corpus: {"n_test": m["n_test"], "uar": float(np.mean(m["uar"])),
                     "uar_restricted": float(np.mean(m["uar_restricted"]))}
            for corpus, m in per_corpus_seed_uars(p, corpora).items()}


def per_corpus_seed_uars(p: Predictions, corpora: np.ndarray) -> dict:
    """Each corpus's clips (``n_test``) and its UAR per seed, in seed order: as written
    (``uar``) and restricted to the classes its clips carry (``uar_restricted``)."""
    n = len(p.labels)
    out = {}
    for corpus in sorted(set(corpora.tolist())):
        c = corpora == corpus
        present = np.zeros(n, dtype=bool)
        present[np.unique(p.y[c])] = True
        restricted = argmax_within(p.probs, present)
        seeds = sorted(set(p.seeds[c].tolist()))
        out[corpus] = {
            "n_test": len(set(u for u, keep in zip(p.utterance_ids, c) if keep)),
            "uar": [uar(p.y[c & (p.seeds == s)], p.pred[c & (p.seeds == s)], n) for s in seeds],
            "uar_restricted": [uar(p.y[c & (p.seeds == s)], restricted[c & (p.seeds == s)], n) for s in seeds],
        }
    return out


def calibration_metrics(p: Predictions) -> dict:
    """ECE before and after the folds' temperatures (absent when none was recorded)."""
    out = {"ece": expected_calibration_error(p.probs, p.y)}
    if p.temperature is not None:
        calibrated = np.empty_like(p.probs)
        for t in np.unique(p.temperature):  # each fold's rows with that fold's temperature
            rows = p.temperature == t
            calibrated[rows] = apply_temperature(p.probs[rows], t)
        out["ece_calibrated"] = expected_calibration_error(calibrated, p.y)
    return out


def ensemble_metrics(p: Predictions) -> dict:
    """UAR/accuracy of the seed ensemble: per utterance, the mean probabilities of every run."""
    ids = sorted(set(p.utterance_ids))
    index = {u: i for i, u in enumerate(ids)}
    rows = np.array([index[u] for u in p.utterance_ids])
    total = np.zeros((len(ids), len(p.labels)))
    np.add.at(total, rows, p.probs)
    y = np.empty(len(ids), dtype=np.int64)
    y[rows] = p.y
    pred = total.argmax(axis=1)
    return {"ensemble_uar": uar(y, pred, len(p.labels)), "ensemble_wa": float(np.mean(y == pred)),
            "ensemble_runs": len(set(p.seeds.tolist()))}


def speaker_uars(p: Predictions) -> list[dict]:
    """UAR per test speaker, pooled over seeds."""
    out = []
    for speaker in sorted(set(p.speakers.tolist())):
        m = p.speakers == speaker
        out.append({"speaker": speaker, "uar": uar(p.y[m], p.pred[m], len(p.labels)),
                    "wa": float(np.mean(p.y[m] == p.pred[m])), "n": int(m.sum())})
    return out


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix (colour: recall share; text: counts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(labels), 0.8 + 0.6 * len(labels)))
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def speaker_table(speakers: Sequence[dict]) -> list[str]:
    """The reports' per-speaker table (rows of :func:`speaker_uars`)."""
    return (["| speaker | UAR | accuracy | predictions |", "|---|---|---|---|"]
            + [f"| {s['speaker']} | {s['uar']:.4f} | {s['wa']:.4f} | {s['n']} |" for s in speakers])


def format_report(metrics: dict, speakers: Sequence[dict], run_info: dict | None) -> str:
    """A markdown report: our figures, and the paper's published ones where comparable."""
    cfg = (run_info or {}).get("config", {})
    arch, hidden = cfg.get("arch"), cfg.get("hidden")
    name = {"reslstm": "ResLSTM-SA", "lstm": "LSTM-SA", "pooled": "Pooled"}.get(arch, "model")
    title = f"{name}-h{hidden}" if hidden is not None else name
    lines = [f"# Evaluation: {title}", ""]
    if cfg:
        lines += [f"split `{cfg.get('split')}`, normalisation `{cfg.get('normalisation')}`, "
                  f"{cfg.get('epochs')} epochs, seeds {cfg.get('seeds')}", ""]
    lines += ["| measure | ours | paper (tuned on test folds) |", "|---|---|---|"]
    comparable = cfg.get("labels", list(RAVDESS_LABELS)) == list(RAVDESS_LABELS)
    paper = PAPER_UAR.get((arch, hidden)) if comparable else None
    paper_uar = f"{paper[0]:.4f} ± {paper[1]:.4f} (ddof=0), max {paper[2]:.4f}" if paper else "-"
    std = metrics["uar_std"]
    ours = f"{metrics['uar_mean']:.4f}" + (f" ± {std:.4f} (ddof=1)" if std is not None else "")
    lines += [f"| pooled out-of-fold UAR, {metrics['n_runs']} run(s) | {ours}, max "
              f"{metrics['uar_max']:.4f} | {paper_uar} |",
              f"| per-fold UAR mean ± std | {metrics['fold_uar_mean']:.4f} ± "
              f"{_fmt(metrics['fold_uar_std'])} | - |",
              f"| accuracy (WA) | {metrics['wa']:.4f} | not reported |",
              *([f"| seed ensemble of {metrics['ensemble_runs']} (mean probabilities): UAR, accuracy | "
                 f"{metrics['ensemble_uar']:.4f}, {metrics['ensemble_wa']:.4f} | - |"]
                if "ensemble_uar" in metrics else []),
              f"| expected calibration error: as trained, after temperature | {metrics['ece']:.4f}, "
              f"{_fmt(metrics.get('ece_calibrated'))} | - |",
              f"| test utterances | {metrics['n_test']} | 1440 |", ""]
    lines += ["| class | recall | paper (one ResLSTM-SA-h64 run) |", "|---|---|---|"]
    for label, r in metrics["per_class_recall"].items():
        ref = PAPER_H64_RECALL.get(label) if comparable else None
        lines.append(f"| {label} | {_fmt(r)} | {'-' if ref is None else f'{ref:.3f}'} |")
    lines += ["", *speaker_table(speakers)]
    lines += ["", "The paper's figures are from RAVDESS with hyper-parameters searched on the test "
              "folds and normalisation statistics that include the test speakers; ours choose "
              "every checkpoint on validation speakers and never look at test speakers' labels.", ""]
    return "\n".join(lines)


def format_cross_report(metrics: dict, speakers: Sequence[dict]) -> str:
    """The markdown report of a checkpoint scored on another corpus (``metrics["cross_corpus"]``):
    its views with their chance levels, what was dropped, per class and per speaker; no
    paper column (the paper's figures are RAVDESS's own)."""
    cc = metrics["cross_corpus"]
    lines = [f"# Cross-corpus: `{cc['model']}` on `{cc['features']}`", "",
             f"{metrics['n_test']} clips" + (", BatchNorm statistics adapted to them (AdaBN)" if cc["adapt_batchnorm"]
                                             else "") + f"; dropped {cc['n_dropped']} with labels the model lacks "
             f"{cc['dropped']}; labels the model has and the corpus lacks: "
             f"{', '.join(cc['model_labels_absent_from_corpus']) or 'none'}.", "",
             "| view | UAR | chance |", "|---|---|---|"]
    words = {"as_written": "as written (the model chooses among all its labels)",
             "restricted": "restricted (chosen among the corpus's classes)",
             "shared": "shared (the classes both the corpus and the model's training speakers have)",
             "core4": "4 core classes (neutral, happy, sad, angry; on their clips)"}
    lines += [f"| {words[view]} | {_fmt(value)} | {_fmt(cc['chance'][view])} |" for view, value in cc["views"].items()]
    lines += [f"| accuracy (as written) | {metrics['wa']:.4f} | - |", ""]
    lines += ["| class | recall (as written) |", "|---|---|"]
    lines += [f"| {label} | {_fmt(r)} |" for label, r in metrics["per_class_recall"].items()]
    lines += ["", *speaker_table(speakers)]
    return "\n".join(lines + [""])


def transfer_views(p: Predictions, trained: Sequence[str] | None = None) -> dict:
    """The views ``ser transfer`` reports, of predictions on another corpus, with their chance
    levels, so a corpus scored by ``ser evaluate --model`` reads like a cell of the transfer
    matrix. ``trained``: the labels the model's training speakers carried (its checkpoint's
    ``provenance.trained_classes``); without it (checkpoints before it was recorded) there
    is no "shared" view."""
    from ser_core.training.transfer import VIEW_CHANCE, score_views  # (torch: not at module level)

    learnt = None if trained is None else np.isin(np.asarray(p.labels), list(trained))
    scores = score_views(p.y, p.probs, p.labels, learnt)
    views = [view for view in VIEW_CHANCE if view != "shared" or learnt is not None]
    return {"views": {view: scores[view] for view in views},
            "chance": {view: scores[VIEW_CHANCE[view]] for view in views}}


def evaluate(predictions: str | Path, output_dir: str | Path, run_info: dict | None = None,
             cross_corpus: dict | None = None) -> dict:
    """Compute and write every output; returns the metrics. ``cross_corpus``: the predictions
    are a checkpoint's on another corpus (:func:`score_other_corpus`), recorded in the metrics
    and reported as such."""
    p = read_predictions(predictions)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics, runs, folds = compute_metrics(p)
    if cross_corpus is not None:
        metrics["cross_corpus"] = {**cross_corpus, **transfer_views(p, cross_corpus.get("trained_classes"))}
    speakers = speaker_uars(p)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_csv(out / "confusion.csv",
              [{"actual": p.labels[a], "predicted": p.labels[b]} for a, b in zip(p.y, p.pred)],
              ["actual", "predicted"])
    write_csv(out / "speakers.csv", speakers, ["speaker", "uar", "wa", "n"])
    write_csv(out / "runs.csv", runs, ["seed", "uar", "wa", "n_test"])
    write_csv(out / "folds.csv", folds, ["seed", "fold", "uar", "n_test"])
    plot_confusion(confusion_matrix(p.y, p.pred, len(p.labels)), p.labels, out / "confusion.png",
                   f"pooled out-of-fold, UAR {metrics['uar']:.3f}")
    (out / "report.md").write_text(format_report(metrics, speakers, run_info) if cross_corpus is None
                                   else format_cross_report(metrics, speakers))
    return metrics


def cross_corpus_predictions(model: str | Path, features_dir: str | Path,
                             adapt: bool = False) -> tuple[list[dict], dict]:
    """A checkpoint's predictions on another corpus's features: one row per clip (rows of
    ``predictions.csv``: fold -1, the checkpoint's seed), and what was dropped. ``adapt``:
    the model's BatchNorm statistics are first re-estimated on the whole corpus's windows
    (unlabelled; :func:`ser_core.adaptation.adapt_batchnorm`)."""
    import dataclasses

    import torch

    from ser_core.adaptation import adapt_batchnorm
    from ser_core.checkpoint import load_checkpoint
    from ser_core.feature_shards import segmentation_differences
    from ser_core.features import frontend_differences
    from ser_core.training.data import load_features
    from ser_core.training.train import prediction_fields

    ckpt = load_checkpoint(model)
    data = load_features(features_dir, ckpt.labels)
    differences = (frontend_differences(ckpt.feature_config, data.feature_config)
                   + segmentation_differences(ckpt.segmentation, data.rows_config["segmentation"]))
    if differences:
        # a front-end off by a band or a rate gives numbers, and wrong ones: refused
        raise StageError(f"{features_dir} was not made as {model} hears audio ({'; '.join(differences)}); "
                         f"make its features with: ser features --manifest MANIFEST --like {model} --output DIR")
    rows = []
    seed = ckpt.provenance.get("seed", -1)
    speakers = sorted(set(data.speakers))
    # each speaker normalised with its own statistics, as ser train tests
    normalised = {s: ckpt.normalise([data.features[i] for i in data.indices([s])]) for s in speakers}
    if adapt:
        windows = [torch.from_numpy(np.asarray(x, dtype=np.float32)) for s in speakers for x in normalised[s]]
        ckpt = dataclasses.replace(ckpt, model=adapt_batchnorm(ckpt.model, windows))
    for speaker in speakers:
        idx = data.indices([speaker])
        # raw probabilities (T = 1) with the temperature beside them, as ser train writes them
        probs = apply_temperature(ckpt.predict_normalised(normalised[speaker]), 1.0 / ckpt.temperature)
        for group in data.clips(idx, positions=True):
            i, p = idx[group[0]], probs[group].mean(axis=0)
            row = {"utterance_id": data.sources[i], "speaker": speaker, "gender": data.genders[i], "fold": -1,
                   "seed": seed, "label": data.labels[data.y[i]], "predicted": data.labels[int(p.argmax())],
                   "temperature": f"{ckpt.temperature:.6f}"}
            row.update({PROB_PREFIX + label: f"{v:.6f}" for label, v in zip(data.labels, p)})
            rows.append(row)
    fields = prediction_fields(data.labels)
    present = sorted({r["label"] for r in rows}, key=list(ckpt.labels).index)
    info = {"model": str(model), "features": str(features_dir), "adapt_batchnorm": adapt,
            "dropped": dict(sorted(data.dropped.items())),
            "n_dropped": int(sum(data.dropped.values())), "shared_labels": present,
            "model_labels_absent_from_corpus": [x for x in ckpt.labels if x not in present],
            "trained_classes": ckpt.provenance.get("trained_classes"), "fields": fields}
    return rows, info


def score_other_corpus(model: str | Path, features_dir: str | Path, output_dir: str | Path,
                       adapt: bool = False) -> dict:
    """``ser evaluate --model --features [--adapt-batchnorm]``: predictions.csv and every evaluate output."""
    rows, info = cross_corpus_predictions(model, features_dir, adapt)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "predictions.csv", rows, info.pop("fields"))
    return evaluate(out / "predictions.csv", out, None, cross_corpus=info)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predictions",
                        help="out-of-fold predictions CSV written by `ser train` (OUTPUT/predictions.csv)")
    parser.add_argument("--model", help="cross-corpus: a checkpoint to score on --features")
    parser.add_argument("--features", help="cross-corpus: features-*.parquet folder of another corpus")
    parser.add_argument("--adapt-batchnorm", action="store_true",
                        help="cross-corpus: re-estimate the model's BatchNorm statistics on the corpus's "
                             "windows first (unlabelled; AdaBN)")
    parser.add_argument("--output-dir", required=True, help="directory for metrics.json, plots, report")
    parser.add_argument("--run-info", default=None,
                        help="the training run's run.json (default: beside the predictions, if there)")


def main(args: argparse.Namespace) -> int:
    if bool(args.model) != bool(args.features) or bool(args.model) == bool(args.predictions):
        raise ValueError("give either --predictions (out-of-fold) or --model and --features (cross-corpus)")
    if args.adapt_batchnorm and not args.model:
        raise ValueError("--adapt-batchnorm adapts a --model to the --features it scores (cross-corpus)")
    if args.model:
        m = score_other_corpus(args.model, args.features, args.output_dir, args.adapt_batchnorm)
        cc = m["cross_corpus"]
        views = cc["views"]
        core = "" if views["core4"] is None else f", the 4 core classes {views['core4']:.4f}"
        if views.get("shared") is not None:
            core = f", the classes it was trained on {views['shared']:.4f}" + core
        print(f"UAR {m['uar']:.4f} over {len(cc['shared_labels'])} shared labels (restricted to the corpus's "
              f"classes {views['restricted']:.4f}{core}), accuracy {m['wa']:.4f}, {m['n_test']} clips; dropped "
              f"{cc['n_dropped']} with labels the model lacks {cc['dropped']} -> {args.output_dir}")
        return 0
    info_path = Path(args.run_info) if args.run_info else Path(args.predictions).with_name("run.json")
    if args.run_info and not info_path.is_file():
        raise FileNotFoundError(f"run info not found: {info_path}")
    run_info = json.loads(info_path.read_text()) if info_path.is_file() else None
    m = evaluate(args.predictions, args.output_dir, run_info)
    std = "" if m["uar_std"] is None else f" ± {m['uar_std']:.4f}"
    print(f"UAR {m['uar']:.4f} (runs: mean {m['uar_mean']:.4f}{std}, max {m['uar_max']:.4f}; "
          f"folds: {m['fold_uar_mean']:.4f}), accuracy {m['wa']:.4f}, {m['n_test']} test utterances "
          f"-> {args.output_dir}")
    return 0
