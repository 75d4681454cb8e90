"""ResLSTM-SA and the LSTM-SA baseline (docs/PAPER.md), small enough to hold in one's head.

ResLSTM-SA-hH:  X (B, T, D)
    -> LSTM1 (D -> D) -> X + LSTM1(X) -> BatchNorm1d(D)      residual block
    -> LSTM2 (D -> H)                                          (B, T, H)
    -> attention: e_t = u . h_t, alpha = softmax_t(e), c = sum_t alpha_t h_t   (B, H)
    -> BatchNorm1d(H) -> Dropout(p) -> Linear(H -> C)          (B, C) logits
LSTM-SA-hH drops the residual block: a single LSTM (D -> H), then the same attention and head.
Pooled-hH (``arch='pooled'``) has no recurrence: each dimension's mean and standard deviation
over the valid frames (B, 2D) -> Linear(2D -> H) -> ReLU, then the same head (``hidden=0``:
no hidden layer, the head reads the 2D statistics: a linear classifier). It sees what
an utterance-level functionals classifier sees (eGeMAPS's own use) and cannot learn the
order of frames: a baseline for transfer between corpora, where a corpus of two sentences
(RAVDESS) teaches a sequence model their timing (docs/training.md, "Between corpora").

Padding. Utterances in a batch are zero-padded at the end to the longest. Both LSTMs are
unidirectional, so their outputs on valid frames never see the trailing padding: running
them on the padded batch gives exactly what packed sequences give on every valid frame,
about five times faster on CPU (PyTorch's packed LSTM steps through varying batch sizes).
With ``mask_padding=True`` (the default) padded frames then take no part anywhere: the
input BatchNorm computes its batch statistics (and updates its running statistics) over
valid frames only, and padded steps are masked out of the attention softmax, so an
utterance's output in eval mode is the same whatever it is batched with.
``mask_padding=False`` reproduces the authors' code: the BatchNorm statistics include the
zero padding and padded steps (h_t = 0, as their packed LSTM left them) take attention
weight. The two modes share one state_dict layout.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

ARCH_NAMES = {"reslstm": "ResLSTM-SA", "lstm": "LSTM-SA", "pooled": "Pooled"}
ARCHS = tuple(ARCH_NAMES)


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network (stored in every checkpoint)."""

    n_dims: int = 46
    n_classes: int = 8
    hidden: int = 64
    arch: str = "reslstm"  # 'reslstm' (ResLSTM-SA) | 'lstm' (LSTM-SA baseline) | 'pooled'
    dropout: float = 0.3
    mask_padding: bool = True

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"ModelConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.arch == "pooled" and int(self.hidden) == 0:
            pass  # no hidden layer: linear on the statistics
        elif int(self.hidden) < 1:
            raise ValueError(f"ModelConfig.hidden must be >= 1 (0 only with arch 'pooled'), got {self.hidden!r}")
        for name in ("n_dims", "n_classes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def name(self) -> str:
        """As the paper writes it: ResLSTM-SA-h64, LSTM-SA-h32; Pooled-h64 (Pooled-h0: linear)."""
        return f"{ARCH_NAMES[self.arch]}-h{self.hidden}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        return cls(**dict(data))


def init_lstm(lstm: nn.LSTM) -> None:
    """The published init: Xavier-normal input weights, orthogonal recurrent weights,
    zero biases with the forget-gate slice set to 1 in both bias vectors."""
    h = lstm.hidden_size
    for name, param in lstm.named_parameters():
        if name.startswith("weight_ih"):
            nn.init.xavier_normal_(param)
        elif name.startswith("weight_hh"):
            nn.init.orthogonal_(param)
        elif name.startswith("bias"):
            nn.init.zeros_(param)
            with torch.no_grad():
                param[h:2 * h].fill_(1.0)  # PyTorch gate order: input, forget, cell, output


class SoftAttention(nn.Module):
    """Mirsamadi et al. (2017) attention pooling: one learned vector u, no bias, no tanh."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.empty(hidden))
        nn.init.xavier_normal_(self.u.data.view(hidden, 1))

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # h: (B, T, H); mask: (B, T) True on valid frames, or None to attend to every step
        e = h @ self.u  # (B, T)
        if mask is not None:
            e = e.masked_fill(~mask, float("-inf"))
        alpha = torch.softmax(e, dim=1)  # (B, T)
        return torch.bmm(alpha.unsqueeze(1), h).squeeze(1)  # (B, H)


class SERModel(nn.Module):
    """ResLSTM-SA-hH (``arch='reslstm'``), LSTM-SA-hH (``arch='lstm'``) or Pooled-hH
    (``arch='pooled'``): module docstring."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d, h = config.n_dims, config.hidden
        if config.arch == "reslstm":
            self.lstm1 = nn.LSTM(d, d, batch_first=True)
            self.bn_in = nn.BatchNorm1d(d)
            init_lstm(self.lstm1)
        if config.arch == "pooled":
            self.pool = nn.Linear(2 * d, h) if h else nn.Identity()
            h = h or 2 * d
        else:
            self.lstm2 = nn.LSTM(d, h, batch_first=True)
            init_lstm(self.lstm2)
            self.attention = SoftAttention(h)
        self.n_repr = h  # the width of what the classifier reads (:meth:`represent`)
        self.bn_out = nn.BatchNorm1d(h)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(h, config.n_classes)
        nn.init.xavier_uniform_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) for zero-padded features ``x`` (B, T, D) with valid ``lengths`` (B,)."""
        return self.classifier(self.dropout(self.represent(x, lengths)))  # (B, C)

    def represent(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """What the classifier reads (B, H): the attention context after its BatchNorm
        (domain-adversarial training puts its corpus classifier here too)."""
        steps = torch.arange(x.shape[1], device=x.device)
        mask = steps.unsqueeze(0) < lengths.to(x.device).unsqueeze(1)  # (B, T) True on valid frames
        if self.config.arch == "pooled":
            stats = pooled_statistics(x, mask)  # (B, 2D)
            return self.bn_out(torch.relu(self.pool(stats)) if self.config.hidden else stats)  # (B, H or 2D)
        if self.config.arch == "reslstm":
            x = self._residual_block(x, mask)  # (B, T, D)
        h, _ = self.lstm2(x)  # (B, T, H)
        if self.config.mask_padding:
            context = self.attention(h, mask)  # (B, H)
        else:  # the authors' packed LSTM left h_t = 0 on padded steps, which still took weight
            context = self.attention(h * mask.unsqueeze(-1), None)  # (B, H)
        return self.bn_out(context)  # (B, H)

    def _residual_block(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm1(x)  # (B, T, D)
        res = x + out  # (B, T, D)
        if self.config.mask_padding:
            if not self.training:
                # Eval: BatchNorm is a fixed per-dimension affine map (running statistics),
                # so apply it everywhere and zero the padding: the same numbers as below,
                # without boolean indexing (which ONNX export cannot express).
                normed = self.bn_in(res.reshape(-1, res.shape[-1])).reshape(res.shape)  # (B, T, D)
                return normed * mask.unsqueeze(-1)
            # BatchNorm over the valid frames only: batch and running statistics ignore padding.
            normed = torch.zeros_like(res)
            normed[mask] = self.bn_in(res[mask])  # (N_valid, D)
            return normed
        # The authors' way: normalise the zero-padded (B, D, T) tensor, padding included.
        res = res * mask.unsqueeze(-1)
        return self.bn_in(res.transpose(1, 2)).transpose(1, 2)  # (B, T, D)


def pooled_statistics(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, 2D): each dimension's mean and standard deviation (population, at least 1e-5)
    over the valid frames of ``x`` (B, T, D), ``mask`` (B, T) True on them. Padding takes no
    part, through multiplications rather than boolean indexing (which ONNX cannot express)."""
    weights = mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
    n = weights.sum(dim=1).clamp_min(1.0)  # (B, 1)
    mean = (x * weights).sum(dim=1) / n  # (B, D)
    var = (((x - mean.unsqueeze(1)) ** 2) * weights).sum(dim=1) / n  # (B, D)
    return torch.cat([mean, torch.sqrt(var.clamp_min(1e-10))], dim=1)  # (B, 2D)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the figure docs/PAPER.md tabulates)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
