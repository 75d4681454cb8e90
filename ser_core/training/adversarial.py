"""Domain-adversarial training (Ganin & Lempitsky 2015): a representation that cannot tell
the corpora apart, so that what the emotion classifier learns on one corpus reads the same
on another.

With ``train.domain_adversarial`` = w > 0, a small corpus classifier (:class:`DomainHead`:
Linear(H, H) -> ReLU -> Linear(H, corpora)) reads what the emotion classifier reads
(:meth:`ser_core.model.SERModel.represent`) through a gradient reversal layer: the head
learns to name each example's corpus, and the network underneath is pushed, with weight w
(ramped in from 0 over training as in the paper: ``w * (2 / (1 + exp(-10 p)) - 1)``, p the
fraction of epochs done), to make that impossible. The head is dropped afterwards: the
saved model is the plain ResLSTM-SA, parameters and checkpoint layout unchanged.

The corpora it separates (:func:`domain_rows`) are those of the training rows, and every
corpus of the test rows that no training row comes from: a corpus left out by ``ser
transfer`` takes part through its clips' features only, never their labels (transductive
adaptation, as ``train.adapt_batchnorm``'s statistics are). Each training step then adds
as many of its clips (drawn at random, cropped like the training rows) to the batch; they
count in the corpus loss only, and the batch's BatchNorm statistics (running statistics
included) span both corpora. Trained on one corpus with nothing to adapt to, there is
nothing to separate, and asking for it is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence

from ser_core.training.augment import draw_rows


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient times ``-weight`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:  # noqa: D102
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return -ctx.weight * grad, None


def reverse_gradient(x: torch.Tensor, weight: float) -> torch.Tensor:
    """``x`` unchanged; the gradient flowing back through it is multiplied by ``-weight``."""
    return _ReverseGradient.apply(x, float(weight))


class DomainHead(nn.Module):
    """The corpus classifier that sits behind the gradient reversal (training only)."""

    def __init__(self, n_in: int, n_domains: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, n_in), nn.ReLU(), nn.Linear(n_in, n_domains))

    def forward(self, z: torch.Tensor, weight: float) -> torch.Tensor:
        """Corpus logits (B, n_domains) of representations ``z`` (B, H)."""
        return self.net(reverse_gradient(z, weight))


def ramp(weight: float, progress: float) -> float:
    """The paper's schedule: 0 at the start, ``weight`` at the end (``progress`` in [0, 1])."""
    return float(weight) * (2.0 / (1.0 + math.exp(-10.0 * float(progress))) - 1.0)


def left_out_rows(corpora: Sequence[str], train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
    """The test rows of corpora no training row comes from (a corpus ``ser transfer`` left out)."""
    trained = {corpora[i] for i in train_idx}
    return np.array([i for i in test_idx if corpora[i] not in trained], dtype=np.int64)


def domain_rows(corpora: Sequence[str], train_idx: np.ndarray,
                test_idx: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(the corpora to separate, sorted; the test rows of corpora with no training row:
    the unlabelled target)."""
    trained = {corpora[i] for i in train_idx}
    target = left_out_rows(corpora, train_idx, test_idx)
    names = sorted(trained | {corpora[i] for i in target})
    if len(names) < 2:
        raise ValueError(
            f"train.domain_adversarial needs two corpora to tell apart: the training rows come "
            f"from {sorted(trained)} and no test corpus lies outside them (train on several "
            f"corpora, or leave one out with ser transfer)")
    return names, target


@dataclass
class Adversary:
    """The corpus classifier of one fold, the rows it reads and its own random stream."""

    head: DomainHead
    domain: torch.Tensor          # (N_rows,) corpus index of every row of the feature set
    target: list[torch.Tensor]    # the unlabelled target rows' normalised features
    target_domain: torch.Tensor   # (N_target,) their corpus indices
    crop_frames: int
    rng: np.random.Generator
    weight: float = 0.0           # this epoch's reversal weight (:func:`ramp`)

    @classmethod
    def build(cls, corpora: Sequence[str], features: Sequence[torch.Tensor], train_idx: np.ndarray,
              test_idx: np.ndarray, n_repr: int, crop_frames: int,
              rng: np.random.Generator) -> "Adversary":
        names, target = domain_rows(corpora, train_idx, test_idx)
        index = {name: k for k, name in enumerate(names)}
        domain = torch.tensor([index.get(c, -1) for c in corpora], dtype=torch.int64)
        return cls(DomainHead(n_repr, len(names)), domain, [features[i] for i in target],
                   domain[torch.as_tensor(target, dtype=torch.int64)], int(crop_frames), rng)

    def target_batch(self, n: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``n`` unlabelled target rows drawn at random (cropped as training rows are), and
        their corpus indices; nothing when there is no target corpus."""
        if not self.target:
            return [], self.target_domain[:0]
        rows, pick = draw_rows(self.target, n, self.crop_frames, self.rng)
        return rows, self.target_domain[torch.as_tensor(pick)]

    def loss(self, z: torch.Tensor, domain: torch.Tensor, partner: torch.Tensor | None = None,
             lam: float = 1.0) -> torch.Tensor:
        """Cross-entropy of the corpus head on representations ``z`` (B, H) of corpora
        ``domain`` (B,); a mixup-blended row counts as ``lam`` of its corpus and ``1 - lam``
        of its partner's (``partner``: (B,) the partners' corpora)."""
        logits = self.head(z, self.weight)
        loss = F.cross_entropy(logits, domain)
        if partner is None or lam == 1.0:
            return loss
        return lam * loss + (1.0 - lam) * F.cross_entropy(logits, partner)


def append_rows(x: torch.Tensor, lengths: torch.Tensor,
                rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The padded batch ``x`` (B, T, D) with ``rows`` ((T_i, D) each) appended: (B + n, T', D)."""
    if not rows:
        return x, lengths
    extra = pad_sequence(list(rows), batch_first=True)  # (n, T2, D)
    t = max(x.shape[1], extra.shape[1])
    x = F.pad(x, (0, 0, 0, t - x.shape[1]))
    extra = F.pad(extra, (0, 0, 0, t - extra.shape[1]))
    more = torch.tensor([r.shape[0] for r in rows], dtype=lengths.dtype)
    return torch.cat([x, extra]), torch.cat([lengths, more])
