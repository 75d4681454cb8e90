"""One fold of training: normalise, train with the recipe, keep the best validation epoch,
predict the test speakers (:func:`train_fold`); ``ser train`` and ``ser tune`` and ``ser
transfer`` all train through it. Several corpora train together: a class a corpus lacks is
masked out of its clips' loss (:func:`masked_cross_entropy`) and epochs draw as many rows
from each corpus (:func:`balanced_draw`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ser_core.adaptation import adapt_batchnorm
from ser_core.batching import collate, length_batches, predict_logits
from ser_core.metrics import argmax_within, fit_temperature, uar
from ser_core.model import SERModel
from ser_core.normalisation import ClipGroupStats, Normaliser
from ser_core.splits import Fold
from ser_core.training.adversarial import Adversary, append_rows, left_out_rows, ramp
from ser_core.training.augment import Augment, mask_batch, mixup_batch, random_crops
from ser_core.training.config import TrainConfig
from ser_core.training.data import FeatureSet
from ser_core.training.distillation import Teacher

log = logging.getLogger(__name__)

HISTORY_FIELDS = ("epoch", "lr", "train_loss", "train_uar", "val_loss", "val_uar")


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
    val_uar_by_corpus: dict[str, float] = field(default_factory=dict)  # several corpora validating: each one's


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
                masks: torch.Tensor | None = None, adversary: Adversary | None = None,
                domains: torch.Tensor | None = None, teacher: Teacher | None = None,
                mix_groups: torch.Tensor | None = None) -> tuple[float, np.ndarray]:
    """One pass over ``batches`` (``ema``, when given, averages the weights after every
    step; ``masks`` (N, C), when given, the classes of each example's corpus; ``mix_groups``
    (N,), when given, mixup partners only within a group (each example's corpus); ``adversary``
    with ``domains`` (N,), each example's corpus index: domain-adversarial training, its
    unlabelled target rows appended to every batch; ``teacher``: distillation, as many target
    rows again appended, pulled towards the teachers' probabilities); returns the mean loss
    (emotion, corpus and distillation) and the (train-mode) predictions."""
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
        lam, perm = 1.0, None
        if aug.mixup_alpha > 0 and len(idx) > 1:
            lam = float(objective.rng.beta(aug.mixup_alpha, aug.mixup_alpha))
            x, lengths, perm = mixup_batch(x, lengths, lam, objective.gen,
                                           None if mix_groups is None else mix_groups[idx])
        extra: list[torch.Tensor] = []  # unlabelled target rows joining the batch
        if adversary is not None:
            extra, target_domain = adversary.target_batch(len(idx))
        n_adv = len(idx) + len(extra)  # the rows the corpus classifier reads
        if teacher is not None:
            taught, soft = teacher.batch(len(idx))
            extra = extra + taught
        if not extra:
            logits = model(x, lengths)  # (B, C)
        else:  # one pass over the batch and the target rows (BatchNorm sees both)
            z = model.represent(*append_rows(x, lengths, extra))  # (B + n, H)
            every = model.classifier(model.dropout(z if teacher is not None else z[:len(idx)]))
            logits = every[:len(idx)]  # (B, C)
        m = None if masks is None else masks[idx]
        if perm is not None:
            loss = (lam * objective.loss(logits, y[idx], m)
                    + (1 - lam) * objective.loss(logits, y[idx][perm], None if m is None else m[perm]))
        else:
            loss = objective.loss(logits, y[idx], m)
        if adversary is not None:
            d = domains[idx]
            loss = loss + adversary.loss(z[:n_adv], torch.cat([d, target_domain]), None if perm is None
                                         else torch.cat([d[perm], target_domain]), lam)
        if teacher is not None:
            loss = loss + teacher.loss(every[n_adv:], soft)
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


def corpus_uars(y: np.ndarray, probs: np.ndarray, corpora: Sequence[str],
                classes: Mapping[str, np.ndarray], n_classes: int) -> dict[str, float]:
    """Each corpus's UAR on its own clips, each clip's prediction chosen among its corpus's
    classes (a corpus missing from ``classes``: among all)."""
    corpora = np.asarray(corpora)
    every = np.ones(n_classes, dtype=bool)
    return {corpus: uar(y[corpora == corpus], argmax_within(probs[corpora == corpus], classes.get(corpus, every)),
                        n_classes)
            for corpus in sorted(set(corpora.tolist()))}


def restricted_uar(y: np.ndarray, probs: np.ndarray, corpora: Sequence[str],
                   classes: Mapping[str, np.ndarray], n_classes: int) -> float:
    """Mean over corpora of :func:`corpus_uars`. With one corpus that has every class: the
    plain UAR."""
    return float(np.mean(list(corpus_uars(y, probs, corpora, classes, n_classes).values())))


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
    several = len(set(val_corpora)) > 1  # several corpora validate: each one's figure is kept too
    by_corpus = multi or several  # validation UAR: the mean over corpora

    s = fold_seed(seed, fold.index)
    groups = ClipGroupStats(data, cfg.stats_clips) if cfg.stats_clips else None
    if groups is not None:  # validation speakers as call channels see them: one fixed grouping
        x_val = [torch.from_numpy(x) for x in groups.normalise(val_idx, np.random.default_rng((s, 3)))]
    group_rng = np.random.default_rng((s, 4))  # each epoch's grouping of the training clips
    torch.manual_seed(s)
    rng = np.random.default_rng(s)
    model = SERModel(cfg.model_config(data.n_dims))
    params = list(model.parameters())
    adversary = None
    if cfg.domain_adversarial > 0:  # a corpus classifier behind a gradient reversal (training only)
        adversary = Adversary.build(data.corpora, features, train_idx, test_idx, model.n_repr,
                                    cfg.crop_frames, np.random.default_rng((s, 7)))
        params += list(adversary.head.parameters())
    teacher = None
    if cfg.distil > 0:  # a seed ensemble's probabilities of the corpus left out (training only)
        trained = sorted({data.corpora[i] for i in train_idx})
        target = left_out_rows(data.corpora, train_idx, test_idx)
        if not len(target):
            raise ValueError(f"train.distil needs a corpus left out to distil on: the test speakers all come "
                             f"from the training corpora {trained} (use ser transfer)")
        learnt = np.logical_or.reduce([classes[c] for c in trained])
        teacher = Teacher.build(cfg.distil_from, "+".join(trained), data.labels, data.sources, features,
                                target, learnt, cfg.distil, cfg.crop_frames, np.random.default_rng((s, 8)))
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
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
    row_corpus = None  # each row's corpus, as mixup partners within a corpus need it
    if cfg.mixup_pairs == "corpus" and len(set(train_corpora)) > 1:
        row_corpus = torch.from_numpy(np.unique(np.asarray(data.corpora), return_inverse=True)[1].astype(np.int64))
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
        if adversary is not None:
            adversary.weight = ramp(cfg.domain_adversarial, (epoch - 1) / cfg.epochs)
        loss, pred = train_epoch(model, x_epoch, y_epoch, batches, optimizer, objective, ema,
                                 masks_all[rows] if multi else None, adversary,
                                 None if adversary is None else adversary.domain[torch.as_tensor(rows)], teacher,
                                 None if row_corpus is None else row_corpus[torch.as_tensor(rows)])
        scheduler.step()
        logits = predict_logits(judged, x_val)
        val_loss = float(masked_cross_entropy(logits, y_val, masks_all[val_idx]) if multi
                         else F.cross_entropy(logits, y_val))
        if by_corpus:
            val_uar = restricted_uar(y_val_clips, clip_level(logits, val_clips), val_corpora, classes, n_classes)
        else:
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
        labeller = adapt_batchnorm(model, x_test) if cfg.adapt_batchnorm else model
        probs = clip_level(predict_logits(labeller, x_test), data.clips(test_idx, positions=True))  # (N_clips, C)
    val_probs = clip_level(val_logits, val_clips)
    return FoldResult(fold, seed, model, normaliser, history, best_epoch, best[0], probs, temperature,
                      y_val_clips, val_probs,
                      corpus_uars(y_val_clips, val_probs, val_corpora, classes, n_classes) if several else {})
