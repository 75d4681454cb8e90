"""``train``'s settings: :class:`TrainConfig` (params.yaml ``train``), each field also a flag
of ``ser train`` and ``ser transfer`` (:func:`add_overrides`), declared once."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ser_core.labels import RAVDESS_LABELS
from ser_core.model import ARCHS, ModelConfig
from ser_core.normalisation import NORMALISATIONS
from ser_core.params import add_flags, build_config, flags, load_section, setting
from ser_core.splits import SPLITS
from ser_core.training.augment import MIXUP_PAIRS, Augment

CLASS_WEIGHTS = ("none", "balanced")


@dataclass
class TrainConfig:
    """params.yaml ``train``; defaults are the setting docs/PAPER.md measured on real RAVDESS.
    Each field is also a ``ser train``/``ser transfer`` flag (``--field-name``) with this help."""

    arch: str = setting("reslstm", choices=ARCHS,
                        help="ResLSTM-SA, the LSTM-SA baseline, or pooled (frame statistics, no recurrence)")
    hidden: int = setting(64, help="hidden units (of the second LSTM, or of the pooled model's layer: "
                                   "0 makes it linear)")
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
    n_val: int = setting(2, help="speaker_kfold: validation speakers of each corpus per fold")
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
    mixup_pairs: str = setting("batch", choices=MIXUP_PAIRS,
                               help="mixup partners: any row of the batch, or (several corpora) a row of "
                                    "the same corpus, so no blend is half one corpus, half another; "
                                    "the same draw as 'batch' with one corpus")
    patience: int = setting(0, help="early stop after N epochs without a better validation UAR (0 = never)")
    ema_decay: float = setting(0.0, help="moving average of the weights (and BatchNorm statistics), "
                                         "e.g. 0.998, validated and kept instead of the raw weights; 0 = off")
    balance_corpora: bool = setting(True, help="several corpora: every epoch draws as many rows from each, "
                                               "so the largest does not set the boundaries alone "
                                               "(no effect, and no random draw, with one)")
    crop_frames: int = setting(0, help="each epoch, training rows longer than N frames are cut to a random "
                                       "span of them (validation and test rows stay whole); 0 = off")
    adapt_batchnorm: bool = setting(False, help="before labelling the test speakers, re-estimate the model's "
                                                "BatchNorm statistics on their windows (unlabelled; AdaBN: "
                                                "ser_core/adaptation.py); the saved model stays as trained")
    domain_adversarial: float = setting(0.0, help="weight of domain-adversarial training: a corpus classifier "
                                                  "behind a gradient reversal makes the corpora (and a corpus "
                                                  "left out, through its unlabelled clips) indistinguishable "
                                                  "(ser_core/training/adversarial.py); 0 = off")
    distil: float = setting(0.0, help="weight of distillation on a corpus left out: the model also learns "
                                      "to give that corpus's unlabelled clips the probabilities a seed "
                                      "ensemble (train.distil_from) gave them (ser_core/training/"
                                      "distillation.py); 0 = off")
    distil_from: str = setting("", help="the teachers: a finished ser transfer output folder, all its seeds "
                                        "(train.distil)")
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
        if self.mixup_pairs not in MIXUP_PAIRS:
            raise ValueError(f"train.mixup_pairs must be one of {MIXUP_PAIRS}, got {self.mixup_pairs!r}")
        if not 0.0 <= float(self.label_smoothing) < 1.0 or float(self.mixup_alpha) < 0:
            raise ValueError(f"train.label_smoothing must be in [0, 1) and mixup_alpha >= 0, "
                             f"got {self.label_smoothing}, {self.mixup_alpha}")
        for name in ("time_masks", "time_mask_frames", "freq_masks", "freq_mask_dims", "patience", "crop_frames"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)!r}")
        if int(self.stats_clips) < 0 or (self.stats_clips and self.normalisation != "speaker"):
            raise ValueError(f"train.stats_clips must be >= 0 and needs normalisation 'speaker', "
                             f"got {self.stats_clips!r} with {self.normalisation!r}")
        if float(self.domain_adversarial) < 0:
            raise ValueError(f"train.domain_adversarial must be >= 0, got {self.domain_adversarial!r}")
        if float(self.distil) < 0 or (float(self.distil) > 0) != bool(self.distil_from):
            raise ValueError(f"train.distil must be >= 0, and > 0 exactly when train.distil_from names the "
                             f"teachers, got {self.distil!r} and {self.distil_from!r}")
        if not 0.0 <= float(self.ema_decay) < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"train.lr must be > 0 and weight_decay >= 0, "
                             f"got {self.lr}, {self.weight_decay}")
        try:  # the model's own checks (hidden, dropout), before any data is read
            self.model_config(n_dims=1)
        except ValueError as e:
            raise ValueError(str(e).replace("ModelConfig.", "train.")) from None

    def batch_augment(self) -> Augment:
        return Augment(self.time_masks, self.time_mask_frames, self.freq_masks, self.freq_mask_dims,
                       self.mixup_alpha)

    def model_config(self, n_dims: int) -> ModelConfig:
        return ModelConfig(n_dims=n_dims, n_classes=len(self.labels), hidden=self.hidden,
                           arch=self.arch, dropout=self.dropout, mask_padding=self.mask_padding)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
