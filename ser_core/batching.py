"""Variable-length feature matrices -> zero-padded batches of similar lengths, and the
batched forward pass that training, evaluation and labelling share.

The model masks the padding (it gets each item's valid length), so a prediction does not
depend on what it was batched with; sorting by length only keeps the padding small.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence


def length_batches(lengths: np.ndarray, batch_size: int,
                   rng: np.random.Generator | None = None, pool: int = 8) -> list[np.ndarray]:
    """Index batches of similar lengths (little padding). With ``rng`` (training): shuffled,
    sorted by length within pools of ``pool`` batches, batch order shuffled. Without: in
    order of length."""
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    perm = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(perm), batch_size * pool):
        chunk = perm[start:start + batch_size * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(tensors: Sequence[torch.Tensor], idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded (B, T, D) batch and its lengths (B,) from per-utterance (T, D) tensors."""
    batch = [tensors[i] for i in idx]
    lengths = torch.tensor([t.shape[0] for t in batch], dtype=torch.int64)
    return pad_sequence(batch, batch_first=True), lengths


@torch.no_grad()
def predict_logits(model: torch.nn.Module, tensors: Sequence[torch.Tensor],
                   batch_size: int = 64) -> torch.Tensor:
    """Logits (N, C) in input order; the model is run in eval mode and left as it was."""
    was_training = model.training
    model.eval()
    lengths = np.array([t.shape[0] for t in tensors])
    out = torch.empty(len(tensors), model.config.n_classes)
    for idx in length_batches(lengths, batch_size):
        out[torch.as_tensor(idx)] = model(*collate(tensors, idx))
    model.train(was_training)
    return out
