"""Checkpoints and real-clip features for the ONNX export tests.

Real features: the paper's front-end (48 kHz MFCC + chroma) on a few of the real RAVDESS
clips beside the project (tests/synth_audio.py REAL_RAVDESS), some cut short, so a batch
mixes lengths from one frame to a whole clip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ser_core import audio
from ser_core.features import FeatureConfig, extract
from ser_core.labels import RAVDESS_LABELS
from ser_core.model import ModelConfig, SERModel
from ser_core.checkpoint import save_checkpoint

PAPER = FeatureConfig()
CLIPS = ("Actor_01/03-01-01-01-02-01-01.wav", "Actor_02/03-01-05-02-02-02-02.wav",
         "Actor_05/03-01-03-01-01-01-05.wav", "Actor_08/03-01-04-01-01-01-08.wav",
         "Actor_13/03-01-06-02-02-01-13.wav", "Actor_16/03-01-07-02-02-01-16.wav")
CUTS = (None, 9, None, 1, 40, None)  # frames kept of each clip (None: all of it)


def real_features(root: Path) -> list[np.ndarray]:
    """(T, 46) float32 features of :data:`CLIPS` under ``root``, cut to :data:`CUTS`."""
    out = []
    for rel, cut in zip(CLIPS, CUTS):
        samples, _ = audio.load(root / rel, PAPER.sample_rate)
        x = extract(PAPER, samples)
        out.append(x if cut is None else x[:cut])
    return out


def hand_set_batchnorm(model: SERModel, seed: int = 1) -> None:
    """Running statistics and affine parameters far from BatchNorm's defaults."""
    rng = np.random.default_rng(seed)
    for bn in (getattr(model, "bn_in", None), model.bn_out):
        if bn is None:
            continue
        n = bn.num_features
        with torch.no_grad():
            bn.running_mean.copy_(torch.from_numpy(rng.normal(0, 0.5, n)))
            bn.running_var.copy_(torch.from_numpy(rng.uniform(0.2, 3.0, n)))
            bn.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, n)))
            bn.bias.copy_(torch.from_numpy(rng.normal(0, 0.3, n)))


def make_checkpoint(path: Path, *, hidden: int = 64, arch: str = "reslstm", mask_padding: bool = True,
                    batchnorm: str = "default", mode: str = "speaker", calibration: dict | None = None,
                    seed: int = 0, segmentation: dict | None = None) -> Path:
    """A random-init 8-class checkpoint on the paper's 46 features; ``batchnorm='hand-set'``
    gives it non-trivial BatchNorm statistics; ``calibration`` is stored as training's
    calibration step would store it; ``segmentation`` as training records how its clips
    were cut (default: whole clips)."""
    torch.manual_seed(seed)
    model = SERModel(ModelConfig(n_dims=PAPER.n_dims, n_classes=len(RAVDESS_LABELS), hidden=hidden,
                                 arch=arch, mask_padding=mask_padding))
    if batchnorm == "hand-set":
        hand_set_batchnorm(model, seed + 1)
    rng = np.random.default_rng(seed)
    normalisation = {"mode": mode, "mean": rng.normal(0, 10, PAPER.n_dims).tolist(),
                     "std": rng.uniform(1, 20, PAPER.n_dims).tolist(), "std_floor": 1e-4}
    save_checkpoint(path, model, feature_config=PAPER.to_dict(), labels=RAVDESS_LABELS,
                    normalisation=normalisation, train_params={"lr": 3e-4, "hidden": hidden},
                    provenance={"fold": 0, "seed": seed, "test_speakers": ["ravdess:02"]},
                    segmentation=segmentation)
    if calibration is not None:
        data = torch.load(path, weights_only=True)
        data["calibration"] = calibration
        torch.save(data, path)
    return path
