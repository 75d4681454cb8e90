"""Augmentation inside the training loop, on normalised feature batches (never at test time).

- SpecAugment-style masking (Park et al. 2019): ``time_masks`` spans of up to
  ``time_mask_frames`` frames and ``freq_masks`` bands of up to ``freq_mask_dims`` feature
  dimensions are set to 0 (the normalised mean) in each training example; spans fall inside
  the example's own valid frames, so padding stays padding.
- mixup (Zhang et al. 2018): each batch is blended with a shuffled copy of itself,
  ``x = lam * x_a + (1 - lam) * x_b`` with ``lam ~ Beta(alpha, alpha)`` drawn once per batch,
  and the loss is the same blend of the two targets' losses. The blended example is as long
  as the longer of the two. With several corpora, ``mixup_pairs='corpus'`` draws each row's
  partner from its own corpus's rows in the batch (no blend of two corpora).

Every draw comes from a ``torch.Generator`` seeded per fold, so a run stays deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

MIXUP_PAIRS = ("batch", "corpus")


@dataclass(frozen=True)
class Augment:
    time_masks: int = 0
    time_mask_frames: int = 0
    freq_masks: int = 0
    freq_mask_dims: int = 0
    mixup_alpha: float = 0.0

    @property
    def active(self) -> bool:
        return self.masking or self.mixup_alpha > 0

    @property
    def masking(self) -> bool:
        return (self.time_masks > 0 and self.time_mask_frames > 0) or (
            self.freq_masks > 0 and self.freq_mask_dims > 0)


def mask_batch(x: torch.Tensor, lengths: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """A copy of ``x`` (B, T, D) with SpecAugment masks inside each example's valid frames."""
    x = x.clone()
    batch, _, dims = x.shape
    for b in range(batch):
        n = int(lengths[b])
        for _ in range(aug.time_masks if aug.time_mask_frames > 0 else 0):
            width = int(torch.randint(0, min(aug.time_mask_frames, n) + 1, (1,), generator=gen))
            start = int(torch.randint(0, n - width + 1, (1,), generator=gen))
            x[b, start:start + width] = 0.0
        for _ in range(aug.freq_masks if aug.freq_mask_dims > 0 else 0):
            width = int(torch.randint(0, min(aug.freq_mask_dims, dims) + 1, (1,), generator=gen))
            start = int(torch.randint(0, dims - width + 1, (1,), generator=gen))
            x[b, :n, start:start + width] = 0.0
    return x


def mixup_batch(x: torch.Tensor, lengths: torch.Tensor, lam: float, gen: torch.Generator,
                groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mixed x, mixed lengths, partner index): partner ``perm[i]`` is blended into ``i`` with
    weight ``1 - lam`` (``lam`` drawn by the caller from Beta(alpha, alpha)). ``groups`` (B,),
    when given, confines partners to rows of the same group (a row alone in its group is its
    own partner); one group draws exactly what no groups draws."""
    perm = partners(x.shape[0], gen, groups)
    mixed = lam * x + (1.0 - lam) * x[perm]  # (B, T, D); padding is 0 in both
    return mixed, torch.maximum(lengths, lengths[perm]), perm


def partners(n: int, gen: torch.Generator, groups: torch.Tensor | None = None) -> torch.Tensor:
    """A shuffle of ``range(n)`` that keeps every position within its group (``groups`` (n,))."""
    if groups is None or bool((groups == groups[0]).all()):
        return torch.randperm(n, generator=gen)
    perm = torch.arange(n)
    for g in torch.unique(groups):  # sorted: a fixed order of draws
        pos = torch.nonzero(groups == g)[:, 0]
        perm[pos] = pos[torch.randperm(len(pos), generator=gen)]
    return perm


def random_crops(x: Sequence[torch.Tensor], frames: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """Each sequence longer than ``frames`` cut to a random contiguous span of ``frames``
    frames (shorter ones kept whole): the model cannot lean on where in a sentence a cue
    falls, which a corpus of two sentences (RAVDESS) otherwise teaches it."""
    out = []
    for t in x:
        if t.shape[0] > frames:
            start = int(rng.integers(t.shape[0] - frames + 1))
            t = t[start:start + frames]
        out.append(t)
    return out


def draw_rows(rows: Sequence[torch.Tensor], n: int, crop_frames: int,
              rng: np.random.Generator) -> tuple[list[torch.Tensor], np.ndarray]:
    """``n`` of ``rows`` drawn at random with replacement, cropped to ``crop_frames`` as
    training rows are (0: whole), and the positions drawn (unlabelled target rows joining a
    batch: domain-adversarial training, distillation)."""
    pick = rng.integers(len(rows), size=n)
    drawn = [rows[i] for i in pick]
    return (random_crops(drawn, crop_frames, rng) if crop_frames else drawn), pick
