"""Adapting a trained model to audio it has never heard, without labels.

ResLSTM-SA normalises inside with two BatchNorm layers (after the residual block, and
before the classifier) whose running statistics are the training corpora's. On another
corpus (another language, microphone, acting style) the same layers see other statistics,
and every later layer works off-centre. Re-estimating those statistics on the new audio
(AdaBN, Li et al. 2016) moves the model to it and changes nothing else: no label, no weight,
no gradient. It is what speaker normalisation does to the input, one level deeper.

:func:`adapt_batchnorm` returns an adapted copy (the model given is left as it was): each
BatchNorm layer in turn, in the order the forward pass meets them, takes the exact mean and
(unbiased) variance of its inputs over all the given examples, the layers before it already
adapted; with ``mask_padding`` those inputs are the valid frames only, as in training.
``ser train``/``ser transfer`` use it with ``train.adapt_batchnorm``: the test speakers'
windows (all of a left-out corpus's clips) adapt the model that labels them.
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ser_core.batching import collate, length_batches


def _channels_last(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, C) or (N, C, L) BatchNorm1d input as (rows, C)."""
    return x if x.dim() == 2 else x.transpose(1, 2).reshape(-1, channels)


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, tensors: Sequence[torch.Tensor], batch_size: int = 64) -> nn.Module:
    """A copy of ``model`` whose BatchNorm statistics are those of ``tensors`` ((T, D) normalised
    features, unlabelled); ``model`` itself is unchanged. Needs at least two frames."""
    if len(tensors) == 0:
        raise ValueError("adapt_batchnorm needs examples of the target audio, got none")
    adapted = copy.deepcopy(model)
    layers = [m for m in adapted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    lengths = np.array([t.shape[0] for t in tensors])
    batches = length_batches(lengths, batch_size)
    # The model's training path (valid frames only into BatchNorm), but every BatchNorm on its
    # running statistics and no dropout: nothing is updated by the passes themselves.
    adapted.train()
    for module in adapted.modules():
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.Dropout)):
            module.eval()
    for layer in layers:
        sums = {"n": 0, "s": torch.zeros(layer.num_features, dtype=torch.float64),
                "ss": torch.zeros(layer.num_features, dtype=torch.float64)}

        def collect(module: nn.Module, args: tuple, sums: dict = sums) -> None:
            x = _channels_last(args[0].detach(), module.num_features).to(torch.float64)
            sums["n"] += x.shape[0]
            sums["s"] += x.sum(dim=0)
            sums["ss"] += (x * x).sum(dim=0)

        handle = layer.register_forward_pre_hook(collect)
        try:
            for idx in batches:
                adapted(*collate(tensors, idx))
        finally:
            handle.remove()
        n = sums["n"]
        if n < 2:
            raise ValueError(f"adapt_batchnorm needs at least two frames, got {n}")
        mean = sums["s"] / n
        var = (sums["ss"] / n - mean * mean).clamp_min(0.0) * (n / (n - 1))
        layer.running_mean.copy_(mean.to(layer.running_mean.dtype))
        layer.running_var.copy_(var.to(layer.running_var.dtype))
    adapted.eval()
    return adapted
