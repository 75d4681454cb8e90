"""Distilling a seed ensemble into one model, on the corpus it is to label (Hinton et al.
2015; transductive, as ``train.adapt_batchnorm`` and ``train.domain_adversarial`` are).

A seed ensemble labels a corpus left out better than its seeds do on average, but it is
several models. With ``train.distil`` = w > 0 and ``train.distil_from`` = a finished ``ser
transfer`` output (the teachers: every seed of it), one model is trained as ``ser transfer``
trains any, and learns in addition to say, on the left-out corpus's clips, what the
teachers' ensemble says of them: each training step appends as many of that corpus's rows
(drawn at random, cropped like the training rows) to the batch, and adds ``w`` x the
Kullback-Leibler divergence from the ensemble's probabilities of each row's clip (the mean
over the teachers' seeds of what ``ser transfer`` wrote in its ``predictions.csv``) to the
model's, over the classes the training corpora carry (a class no training corpus has was
never learnt by the teachers: their numbers for it mean nothing; a clip they gave to such
classes alone is given no preference among the others). Probabilities that are not finite
and non-negative are an error, never a target.

The left-out corpus takes part through its features and the teachers' predictions of them,
never its labels; the model is validated and kept on the training corpora's validation
speakers, as every model is. The teachers must have been trained on the same training
corpora (the same ``ser transfer`` folds); their predictions must cover every clip.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ser_core.metrics import PROB_PREFIX
from ser_core.training.augment import draw_rows

TEACHERS = "predictions.csv"  # the merged predictions of a ser transfer output


def teachers_file(folder: str | Path) -> Path:
    path = Path(folder) / TEACHERS
    if not path.is_file():
        raise FileNotFoundError(f"train.distil_from: {path} not found: give a finished ser transfer "
                                f"output (its runs' merged predictions)")
    return path


def teachers_fingerprint(folder: str | Path) -> str:
    """A hash of the teachers' predictions (a run distilled from other teachers is another run)."""
    return hashlib.sha256(teachers_file(folder).read_bytes()).hexdigest()[:16]


def ensemble_probabilities(folder: str | Path, trained_on: str, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Clip id -> the teachers' mean probabilities (C,) over their seeds, for the teachers
    trained on ``trained_on`` (e.g. ``ravdess``; ``+``-joined when several)."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    names = set()
    with open(teachers_file(folder), newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [label for label in labels if PROB_PREFIX + label not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"train.distil_from: the teachers' predictions lack the classes {missing} "
                             f"(trained on another label set)")
        for row in reader:
            names.add(row["trained_on"])
            if row["trained_on"] != trained_on:
                continue
            p = np.array([float(row[PROB_PREFIX + label]) for label in labels])
            uid = row["utterance_id"]
            if not (np.isfinite(p).all() and (p >= 0).all()):
                raise ValueError(f"train.distil_from: the teachers' probabilities of {uid!r} (seed "
                                 f"{row.get('seed')}) are not all finite and >= 0: {p.tolist()}")
            sums[uid] = sums.get(uid, 0.0) + p
            counts[uid] = counts.get(uid, 0) + 1
    if not sums:
        raise ValueError(f"train.distil_from: no teacher was trained on {trained_on!r} "
                         f"(the teachers' training sets: {sorted(names)})")
    return {uid: sums[uid] / counts[uid] for uid in sums}


@dataclass
class Teacher:
    """The ensemble's probabilities of one fold's unlabelled target rows, and the loss that
    pulls the model towards them."""

    rows: list[torch.Tensor]   # the target rows' normalised features
    probs: torch.Tensor        # (N_target, C) the ensemble's probabilities of each row's clip
    learnt: torch.Tensor       # (C,) bool: the classes the training corpora carry
    weight: float
    crop_frames: int
    rng: np.random.Generator

    @classmethod
    def build(cls, folder: str | Path, trained_on: str, labels: Sequence[str], clip_ids: Sequence[str],
              features: Sequence[torch.Tensor], target: np.ndarray, learnt: np.ndarray, weight: float,
              crop_frames: int, rng: np.random.Generator) -> "Teacher":
        """``target``: the rows of the corpus left out; ``clip_ids``: every row's clip id."""
        ensemble = ensemble_probabilities(folder, trained_on, labels)
        unknown = sorted({clip_ids[i] for i in target} - set(ensemble))
        if unknown:
            raise ValueError(f"train.distil_from: the teachers trained on {trained_on!r} did not label "
                             f"{len(unknown)} of the target's clips (e.g. {unknown[:3]}): teachers from "
                             f"other features?")
        learnt = np.asarray(learnt, dtype=bool)
        probs = np.stack([ensemble[clip_ids[i]] for i in target]) * learnt  # (N_target, C)
        # a clip the teachers gave only to classes never learnt: no preference among the others
        probs = np.where(probs.sum(axis=1, keepdims=True) > 0, probs, learnt)
        probs /= probs.sum(axis=1, keepdims=True)
        return cls([features[i] for i in target], torch.tensor(probs, dtype=torch.float32),
                   torch.from_numpy(learnt), float(weight), int(crop_frames), rng)

    def batch(self, n: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``n`` target rows drawn at random (cropped as training rows are) and the
        ensemble's probabilities of their clips (n, C)."""
        rows, pick = draw_rows(self.rows, n, self.crop_frames, self.rng)
        return rows, self.probs[torch.as_tensor(pick)]

    def loss(self, logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """``weight`` x KL(ensemble || model) over the learnt classes, mean over the rows."""
        logq = torch.log_softmax(logits.masked_fill(~self.learnt, float("-inf")), dim=1)
        p = probs[:, self.learnt]
        kl = (p * (torch.log(p.clamp_min(1e-12)) - logq[:, self.learnt])).sum(1)
        return self.weight * kl.mean()
