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
import dataclasses
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ser_core.batching import collate, length_batches, predict_logits
from ser_core.checkpoint import save_checkpoint
from ser_core.codebase import ROOT, import_closure
from ser_core.labels import RAVDESS_LABELS
from ser_core.metrics import PROB_PREFIX, argmax_within, fit_temperature, uar
from ser_core.model import ModelConfig, SERModel
from ser_core.normalisation import NORMALISATIONS, ClipGroupStats, Normaliser
from ser_core.params import add_flags, build_config, flags, load_section, setting
from ser_core.splits import SPLITS, Fold, final_split, make_folds
from ser_core.storage import write_csv
from ser_core.training.augment import Augment, mask_batch, mixup_batch, random_crops
from ser_core.training.data import FeatureSet, load_features

log = logging.getLogger(__name__)

HISTORY_FIELDS = ("epoch", "lr", "train_loss", "train_uar", "val_loss", "val_uar")
CLASS_WEIGHTS = ("none", "balanced")
TIMING = "timing.json"  # wall times, kept out of DVC's hashes by .dvcignore
FINAL_RULE = ("trained on every speaker except fold 0's validation speakers, which chose the "
              "checkpoint (best validation UAR); first seed")


@dataclass
class TrainConfig:
    """params.yaml ``train``; defaults are the setting docs/PAPER.md measured on real RAVDESS.
    Each field is also a ``ser train``/``ser transfer`` flag (``--field-name``) with this help."""

    arch: str = setting("reslstm", choices=("reslstm", "lstm"), help="ResLSTM-SA or the LSTM-SA baseline")
    hidden: int = setting(64, help="LSTM hidden units")
    dropout: float = setting(0.3, help="dropout before the classifier")
    mask_padding: bool = setting(True, help="mask padded frames in attention and BatchNorm "
                                            "(--no-mask-padding: the authors' unmasked model)")
    epochs: int = setting(100, help="epochs per fold")
    batch_size: int = setting(16, help="clips per batch")
    lr: float = setting(3e-4, help="Adam learning rate")
    weight_decay: float = setting(1.6e-3, help="Adam weight decay")
    t0: int = setting(5, help="CosineAnnealingWarmRestarts T_0 (epochs)")
    labels: list[str] = setting(default_factory=lambda: list(RAVDESS_LABELS),
                                help="comma-separated label set, in class order")
    split: str = setting("ravdess_paper", choices=SPLITS, help="the paper's five folds, or folds of speakers")
    k: int = setting(5, help="speaker_kfold: number of folds")
    n_val: int = setting(2, help="speaker_kfold: validation speakers per fold")
    split_seed: int = setting(0, help="speaker_kfold: the speaker shuffle (fixed across runs)")
    seeds: list[int] = setting(default_factory=lambda: [0], help="one independent run per seed")
    normalisation: str = setting("speaker", choices=NORMALISATIONS,
                                 help="each speaker with its own statistics, or the training speakers'")
    stats_clips: int = setting(0, help="speaker statistics over random groups of N clips, dealt afresh "
                                       "every epoch (a call channel's worth of turns, as labelling "
                                       "normalises); 0 = all of a speaker's clips; test clips are always "
                                       "normalised per speaker")
    # The recipe beyond the paper (all off by default = the paper's training).
    class_weights: str = setting("none", choices=CLASS_WEIGHTS,
                                 help="balanced: inverse class frequency of the training rows")
    label_smoothing: float = setting(0.0, help="label smoothing of the loss")
    time_masks: int = setting(0, help="SpecAugment time masks per example")
    time_mask_frames: int = setting(0, help="longest time mask, frames")
    freq_masks: int = setting(0, help="SpecAugment feature-dimension masks per example")
    freq_mask_dims: int = setting(0, help="widest feature mask, dimensions")
    mixup_alpha: float = setting(0.0, help="mixup Beta(alpha, alpha); 0 = off")
    patience: int = setting(0, help="early stop after N epochs without a better validation UAR (0 = never)")
    ema_decay: float = setting(0.0, help="moving average of the weights (and BatchNorm statistics), "
                                         "e.g. 0.998, validated and kept instead of the raw weights; 0 = off")
    balance_corpora: bool = setting(True, help="several corpora: every epoch draws as many rows from each, "
                                               "so the largest does not set the boundaries alone "
                                               "(no effect, and no random draw, with one)")
    crop_frames: int = setting(0, help="each epoch, training rows longer than N frames are cut to a random "
                                       "span of them (validation and test rows stay whole); 0 = off")
    augment: list[str] = setting(default_factory=list,
                                 help="comma-separated augmented rows (ser features --augment) to draw "
                                      "from: every epoch each training clip is replaced by one of itself "
                                      "and its copies; 'none' for none")
    threads: int = setting(1, help="torch CPU threads (0: torch's default); one is as fast as two for "
                                   "this small model and does not collapse when processes share the cores")

    def __post_init__(self) -> None:
        if isinstance(self.labels, str):
            self.labels = [s.strip() for s in self.labels.split(",") if s.strip()]
        if isinstance(self.seeds, int):
            self.seeds = [self.seeds]
        if isinstance(self.augment, str):
            self.augment = [s.strip() for s in self.augment.split(",") if s.strip() and s.strip() != "none"]
        self.augment = list(self.augment)
        self.labels, self.seeds = list(self.labels), [int(s) for s in self.seeds]
        if self.split not in SPLITS:
            raise ValueError(f"train.split must be one of {SPLITS}, got {self.split!r}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"train.normalisation must be one of {NORMALISATIONS}, "
                             f"got {self.normalisation!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"train.seeds must be distinct non-negative integers, got {self.seeds}")
        for name in ("epochs", "batch_size", "t0"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.class_weights not in CLASS_WEIGHTS:
            raise ValueError(f"train.class_weights must be one of {CLASS_WEIGHTS}, got {self.class_weights!r}")
        if not 0.0 <= float(self.label_smoothing) < 1.0 or float(self.mixup_alpha) < 0:
            raise ValueError(f"train.label_smoothing must be in [0, 1) and mixup_alpha >= 0, "
                             f"got {self.label_smoothing}, {self.mixup_alpha}")
        for name in ("time_masks", "time_mask_frames", "freq_masks", "freq_mask_dims", "patience", "crop_frames"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)!r}")
        if int(self.stats_clips) < 0 or (self.stats_clips and self.normalisation != "speaker"):
            raise ValueError(f"train.stats_clips must be >= 0 and needs normalisation 'speaker', "
                             f"got {self.stats_clips!r} with {self.normalisation!r}")
        if not 0.0 <= float(self.ema_decay) < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"train.lr must be > 0 and weight_decay >= 0, "
                             f"got {self.lr}, {self.weight_decay}")

    def batch_augment(self) -> Augment:
        return Augment(self.time_masks, self.time_mask_frames, self.freq_masks, self.freq_mask_dims,
                       self.mixup_alpha)

    def model_config(self, n_dims: int) -> ModelConfig:
        return ModelConfig(n_dims=n_dims, n_classes=len(self.labels), hidden=self.hidden,
                           arch=self.arch, dropout=self.dropout, mask_padding=self.mask_padding)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class FoldResult:
    fold: Fold
    seed: int
    model: SERModel  # the best-validation-UAR weights
    normaliser: Normaliser
    history: list[dict]
    best_epoch: int
    val_uar: float
    test_probs: np.ndarray  # (N_test_clips, C), uncalibrated, clips in data.clips(test rows) order
    temperature: float = 1.0  # fitted on the validation speakers
    val_y: np.ndarray | None = None      # (N_val_clips,) true classes of the validation clips ...
    val_probs: np.ndarray | None = None  # (N_val_clips, C) ... and the kept model's probabilities


def fold_seed(seed: int, fold_index: int) -> int:
    """The seed of one fold of one run (the final model is fold_index -1)."""
    return int(np.random.SeedSequence((seed, fold_index + 1)).generate_state(1)[0])


@dataclass
class Objective:
    """The training loss and augmentation of one fold, with its own random streams."""

    weight: torch.Tensor | None  # (C,) class weights, or None
    label_smoothing: float
    augment: Augment
    gen: torch.Generator
    rng: np.random.Generator

    def loss(self, logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy; ``mask`` (B, C) bool: the classes of each example's corpus."""
        return masked_cross_entropy(logits, y, mask, self.weight, self.label_smoothing)


def masked_cross_entropy(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None,
                         weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over each example's own classes: a class its corpus lacks (``mask``
    False) is neither its target nor a negative (softmax over the allowed classes only;
    label smoothing spread over them). With no mask, or one that allows every class, it is
    ``F.cross_entropy`` exactly (class weights: a weighted mean over the batch)."""
    if mask is None or bool(mask.all()):
        return F.cross_entropy(logits, y, weight=weight, label_smoothing=label_smoothing)
    logp = torch.log_softmax(logits.masked_fill(~mask, float("-inf")), dim=1)  # (B, C)
    nll = -logp.gather(1, y[:, None])[:, 0]  # (B,)
    if label_smoothing:
        spread = -logp.masked_fill(~mask, 0.0).sum(1) / mask.sum(1)  # (B,) mean over allowed classes
        nll = (1 - label_smoothing) * nll + label_smoothing * spread
    w = torch.ones_like(nll) if weight is None else weight[y]
    return (w * nll).sum() / w.sum()


def class_weights(y: np.ndarray, n_classes: int, mode: str) -> torch.Tensor | None:
    """Inverse class frequency of the training rows, mean 1 over the classes present ('balanced')."""
    if mode == "none":
        return None
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def train_epoch(model: SERModel, tensors: Sequence[torch.Tensor], y: torch.Tensor,
                batches: Sequence[np.ndarray], optimizer: torch.optim.Optimizer,
                objective: Objective, ema: AveragedModel | None = None,
                masks: torch.Tensor | None = None) -> tuple[float, np.ndarray]:
    """One pass over ``batches`` (``ema``, when given, averages the weights after every
    step; ``masks`` (N, C), when given, the classes of each example's corpus); returns the
    mean loss and the (train-mode) predictions."""
    model.train()
    total, pred = 0.0, np.empty(len(y), dtype=np.int64)
    aug = objective.augment
    for idx in batches:
        if len(idx) < 2:  # BatchNorm cannot train on one example; it sits this epoch out
            pred[idx] = -1
            continue
        x, lengths = collate(tensors, idx)
        if aug.masking:
            x = mask_batch(x, lengths, aug, objective.gen)
        if aug.mixup_alpha > 0 and len(idx) > 1:
            lam = float(objective.rng.beta(aug.mixup_alpha, aug.mixup_alpha))
            x, lengths, perm = mixup_batch(x, lengths, lam, objective.gen)
            logits = model(x, lengths)  # (B, C)
            m = None if masks is None else masks[idx]
            loss = (lam * objective.loss(logits, y[idx], m)
                    + (1 - lam) * objective.loss(logits, y[idx][perm], None if m is None else m[perm]))
        else:
            logits = model(x, lengths)  # (B, C)
            loss = objective.loss(logits, y[idx], None if masks is None else masks[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        total += loss.item() * len(idx)
        pred[idx] = logits.argmax(1).numpy()
    return total / len(y), pred


def augmentation_pools(data: FeatureSet, train_idx: np.ndarray, augment: Sequence[str]) -> list[np.ndarray]:
    """For each training row (an original clip), the rows it may be replaced by in an
    epoch: itself and its copies in ``augment``, which come from the same clip and so the
    same (training) speaker (with windowed rows: any window of those copies). A requested
    augmentation the features lack is an error."""
    if not augment:
        return [np.array([i]) for i in train_idx]
    missing = sorted(set(augment) - set(data.augmentations))
    if missing:
        raise ValueError(f"train.augment asks for {missing}, but the features hold "
                         f"{data.augmentations or 'no augmented rows'} (ser features --augment)")
    copies: dict[str, list[int]] = {}
    wanted = set(augment)
    for i, (source, variant) in enumerate(zip(data.sources, data.variants)):
        if variant in wanted:
            copies.setdefault(source, []).append(i)
    return [np.array([i] + copies.get(data.sources[i], [])) for i in train_idx]


def balanced_draw(corpora: Sequence[str], rng: np.random.Generator) -> np.ndarray | None:
    """Positions of one epoch's rows drawn so that every corpus gives the same number
    (``len(corpora)`` draws with replacement, each corpus an equal share); None with one
    corpus (the epoch is every row once, as without balancing)."""
    names, inverse, counts = np.unique(np.asarray(corpora), return_inverse=True, return_counts=True)
    if len(names) < 2:
        return None
    p = 1.0 / (len(names) * counts[inverse])
    return np.sort(rng.choice(len(corpora), size=len(corpora), replace=True, p=p / p.sum()))


def restricted_uar(y: np.ndarray, probs: np.ndarray, corpora: Sequence[str],
                   classes: Mapping[str, np.ndarray], n_classes: int) -> float:
    """Mean over corpora of the UAR on each corpus's clips, each clip's prediction chosen
    among its corpus's classes. With one corpus that has every class: the plain UAR."""
    corpora = np.asarray(corpora)
    every = np.ones(n_classes, dtype=bool)
    scores = []
    for corpus in sorted(set(corpora.tolist())):
        sel = corpora == corpus
        allowed = classes.get(corpus, every)
        scores.append(uar(y[sel], argmax_within(probs[sel], allowed), n_classes))
    return float(np.mean(scores))


def clip_level(logits: torch.Tensor, groups: Sequence[np.ndarray]) -> np.ndarray:
    """Class probabilities per clip (G, C): the mean of the softmax of its rows' logits
    (whole-clip rows: one row per clip; windows: every window of the clip)."""
    probs = torch.softmax(logits, 1).numpy()
    return np.stack([probs[g].mean(axis=0) for g in groups]) if groups else probs[:0]


def train_fold(data: FeatureSet, fold: Fold, cfg: TrainConfig, seed: int,
               progress: bool = True) -> FoldResult:
    """Train one fold from scratch and predict its test speakers with the best checkpoint."""
    train_idx, val_idx, test_idx = (data.indices(s) for s in (fold.train, fold.val, fold.test))
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(f"fold {fold.index}: no training or validation utterances")
    pools = augmentation_pools(data, train_idx, cfg.augment)  # augmented rows: training speakers only
    normaliser = Normaliser.fit(cfg.normalisation, data, np.concatenate(pools), cfg.stats_clips)
    features = [torch.from_numpy(x) for x in normaliser.apply(data)]
    y_all = torch.from_numpy(data.y)
    x_train, x_val, x_test = ([features[i] for i in idx] for idx in (train_idx, val_idx, test_idx))
    y_train, y_val = y_all[train_idx], y_all[val_idx]
    n_classes = len(data.labels)
    val_clips = data.clips(val_idx, positions=True)  # windows of one clip are judged together
    y_val_clips = y_val.numpy()[[g[0] for g in val_clips]]
    # Several corpora: a class a corpus lacks is masked out of its clips' loss and predictions.
    classes = data.corpus_classes(np.concatenate([train_idx, val_idx]))
    masks_all = torch.from_numpy(data.class_masks(np.arange(len(data.y)), classes))
    multi = not bool(masks_all.all())
    val_corpora = [data.corpora[val_idx[g[0]]] for g in val_clips]

    s = fold_seed(seed, fold.index)
    groups = ClipGroupStats(data, cfg.stats_clips) if cfg.stats_clips else None
    if groups is not None:  # validation speakers as call channels see them: one fixed grouping
        x_val = [torch.from_numpy(x) for x in groups.normalise(val_idx, np.random.default_rng((s, 3)))]
    group_rng = np.random.default_rng((s, 4))  # each epoch's grouping of the training clips
    torch.manual_seed(s)
    rng = np.random.default_rng(s)
    model = SERModel(cfg.model_config(data.n_dims))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=cfg.t0, T_mult=1, eta_min=0.01 * cfg.lr)
    lengths = np.array([t.shape[0] for t in x_train])
    gen = torch.Generator().manual_seed(s)
    objective = Objective(class_weights(y_train.numpy(), n_classes, cfg.class_weights),
                          float(cfg.label_smoothing), cfg.batch_augment(), gen, np.random.default_rng((s, 1)))

    # The model that is validated and kept: the raw weights, or their moving average
    # (BatchNorm's running statistics averaged with them: use_buffers).
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(cfg.ema_decay)), use_buffers=True)
           if cfg.ema_decay > 0 else None)
    if ema is not None:
        ema.update_parameters(model)  # the average starts at the initial weights, not the first step's
    judged = ema.module if ema is not None else model
    history, best, best_epoch = [], (-1.0, -np.inf), 0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    val_logits = torch.empty(0)  # the kept epoch's (epoch 1 always beats the start)
    name = "final" if fold.index < 0 else f"fold {fold.index}"
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"seed {seed} {name}", unit="epoch",
               disable=not progress, dynamic_ncols=True, mininterval=0.5)
    draw = np.random.default_rng((s, 2))  # which copy of each clip an epoch trains on
    corpus_draw = np.random.default_rng((s, 5))  # which rows an epoch draws from each corpus
    crop_rng = np.random.default_rng((s, 6))  # where each epoch's crops start
    train_corpora = [data.corpora[i] for i in train_idx]
    balance = cfg.balance_corpora and len(set(train_corpora)) > 1
    for epoch in bar:
        lr = optimizer.param_groups[0]["lr"]
        rows, x_epoch, y_epoch, epoch_pools = train_idx, x_train, y_train, pools
        if balance:  # positions into the training rows, each corpus an equal share
            pick = balanced_draw(train_corpora, corpus_draw)
            rows, y_epoch = train_idx[pick], y_train[pick]
            epoch_pools = [pools[i] for i in pick]
            x_epoch = [x_train[i] for i in pick]
            lengths = np.array([t.shape[0] for t in x_epoch])
        if cfg.augment:
            rows = np.array([pool[draw.integers(len(pool))] for pool in epoch_pools])
            x_epoch = [features[i] for i in rows]
            lengths = np.array([t.shape[0] for t in x_epoch])
        if groups is not None:
            x_epoch = [torch.from_numpy(x) for x in groups.normalise(rows, group_rng)]
        if cfg.crop_frames:
            x_epoch = random_crops(x_epoch, cfg.crop_frames, crop_rng)
            lengths = np.array([t.shape[0] for t in x_epoch])
        batches = length_batches(lengths, cfg.batch_size, rng)
        loss, pred = train_epoch(model, x_epoch, y_epoch, batches, optimizer, objective, ema,
                                 masks_all[rows] if multi else None)
        scheduler.step()
        logits = predict_logits(judged, x_val)
        if multi:
            val_loss = float(masked_cross_entropy(logits, y_val, masks_all[val_idx]))
            val_uar = restricted_uar(y_val_clips, clip_level(logits, val_clips), val_corpora, classes, n_classes)
        else:
            val_loss = float(F.cross_entropy(logits, y_val))
            val_uar = uar(y_val_clips, clip_level(logits, val_clips).argmax(1), n_classes)
        history.append({"epoch": epoch, "lr": lr, "train_loss": loss,
                        "train_uar": uar(y_epoch.numpy(), pred, n_classes),
                        "val_loss": val_loss, "val_uar": val_uar})
        if (val_uar, -val_loss) > best:
            best = (val_uar, -val_loss)
            best_state = {k: v.detach().clone() for k, v in judged.state_dict().items()}
            best_epoch, val_logits = epoch, logits
        bar.set_postfix(loss=f"{loss:.3f}", val_uar=f"{val_uar:.3f}", best=f"{best[0]:.3f}",
                        refresh=False)
        if cfg.patience and epoch - best_epoch >= cfg.patience:
            log.info("%s: no better validation UAR for %d epochs; stopped at epoch %d",
                     name, cfg.patience, epoch)
            break
    model.load_state_dict(best_state)
    model.eval()
    # Temperature scaling on the validation speakers' rows (never the test speakers'), with
    # the kept epoch's validation logits (the same weights, in eval mode: no second pass).
    temperature = fit_temperature(val_logits.numpy(), y_val.numpy())
    probs = np.zeros((0, n_classes), dtype=np.float32)
    if x_test:
        probs = clip_level(predict_logits(model, x_test), data.clips(test_idx, positions=True))  # (N_clips, C)
    return FoldResult(fold, seed, model, normaliser, history, best_epoch, best[0], probs, temperature,
                      y_val_clips, clip_level(val_logits, val_clips))


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
    """Hash of everything a fold's result depends on (not threads, not the other seeds)."""
    params = result_settings(cfg.to_dict())
    blob = json.dumps({"params": params, "fold": fold.to_dict(), "seed": seed,
                       "features": fingerprint, "code": code}, sort_keys=True)
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
                  "features_fingerprint": fingerprint}
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
    (fold_dir / "done.json").write_text(json.dumps(
        {"key": key, "best_epoch": result.best_epoch, "val_uar": result.val_uar}, indent=2) + "\n")


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
        log.info("%s: best epoch %d, validation UAR %.4f", name, result.best_epoch, result.val_uar)
    return json.loads((fold_dir / "done.json").read_text())


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
            summary.append({"seed": seed, "fold": fold.index, "best_epoch": done["best_epoch"],
                            "val_uar": done["val_uar"]})
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


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """The flags that override params.yaml ``train`` (``ser train``, ``ser transfer``): one
    per :class:`TrainConfig` field, derived from it."""
    add_flags(parser.add_argument_group("overrides of params.yaml 'train'"), TrainConfig)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """params.yaml ``train`` under the command line's overrides; torch's threads set from it."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    cfg = build_config(TrainConfig, load_section(args.params, "train"), flags(args, *names))
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    return cfg


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
