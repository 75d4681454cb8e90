"""Training speed of ResLSTM-SA on RAVDESS-sized data, with the real training loop.

Generates RAVDESS's shape (24 speakers x 60 clips of 80-110 frames x 46 dims; fold 0 of
the paper's split trains on 1020 clips and validates on 120) and times epochs of
``ser train``'s loop (length-bucketed padded batches, Adam step, validation pass) after a
warm-up epoch. The median epoch is extrapolated to the full protocol: 5 folds x 100
epochs, and with the final model (22 speakers) on top. On a shared machine other work
inflates some epochs: the median and minimum are both printed. Two torch threads gain
little over one on this small model and collapse when other processes busy the cores.
The loop runs the default recipe's batch augmentation (mixup 0.4; speed-perturbed copies
replace clips, so an epoch costs the same). Target: one run of the chosen recipe (5 folds x
100 epochs, an upper bound for its early-stopped run) in <= 10 minutes on this machine.

With ``--domain-adversarial W`` it also times the same loop with domain-adversarial training
(``train.domain_adversarial``: every batch joined by as many clips of an unlabelled second
corpus, nEMO-sized: 9 speakers x 500 clips, and a corpus classifier behind a gradient
reversal) and prints its cost as a ratio to the plain loop, measured in the same run. With
``--distil W`` likewise for seed-ensemble distillation (``train.distil``: every batch joined
by as many of that corpus's clips, pulled towards teachers' probabilities, here random ones).

    python benchmarks/train.py [--epochs 10] [--batch-size 16 32] [--threads 1 2] [--mixup-alpha 0.4]
                               [--domain-adversarial 0.3] [--distil 1.0]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from ser_core.batching import length_batches, predict_logits
from ser_core.labels import RAVDESS_LABELS
from ser_core.model import SERModel
from ser_core.splits import final_split, ravdess_paper
from ser_core.training.data import FeatureSet
from ser_core.training.config import TrainConfig
from ser_core.training.adversarial import Adversary, ramp
from ser_core.training.distillation import Teacher
from ser_core.training.fold import Objective, train_epoch

CLIPS_PER_SPEAKER = 60
TARGET_MINUTES = 10.0  # one run of the chosen recipe


def ravdess_sized(seed: int = 0, n_dims: int = 46) -> FeatureSet:
    rng = np.random.default_rng(seed)
    ids, speakers, genders, feats, y = [], [], [], [], []
    for actor in range(1, 25):
        for k in range(CLIPS_PER_SPEAKER):
            label = k % len(RAVDESS_LABELS)
            t = int(rng.integers(80, 111))
            feats.append((rng.normal(size=(t, n_dims)) + 0.3 * label).astype(np.float32))
            ids.append(f"ravdess:{actor:02d}-{k:02d}")
            speakers.append(f"ravdess:{actor:02d}")
            genders.append("male" if actor % 2 else "female")
            y.append(label)
    return FeatureSet(ids, speakers, genders, feats, np.array(y), RAVDESS_LABELS, {"n_dims": n_dims})


def unlabelled_corpus(seed: int = 1, n_dims: int = 46, speakers: int = 9, clips: int = 500) -> list[np.ndarray]:
    """nEMO's shape, features only: the left-out corpus of domain-adversarial training."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.integers(40, 111)), n_dims)).astype(np.float32)
            for _ in range(speakers * clips)]


def epoch_seconds(data: FeatureSet, cfg: TrainConfig, epochs: int,
                  target: list[np.ndarray] | None = None) -> list[float]:
    """Wall time of each epoch (training + validation pass), after one warm-up epoch; with
    ``target`` and ``cfg.domain_adversarial`` > 0, domain-adversarial against those clips;
    with ``cfg.distil`` > 0, distilled on them (teachers' probabilities drawn at random)."""
    fold = ravdess_paper(sorted(set(data.speakers)))[0]
    tensors = [torch.from_numpy(x) for x in data.features]
    train_idx, val_idx = data.indices(fold.train), data.indices(fold.val)
    x_train, x_val = [tensors[i] for i in train_idx], [tensors[i] for i in val_idx]
    y_train = torch.from_numpy(data.y[train_idx])
    lengths = np.array([t.shape[0] for t in x_train])
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = SERModel(cfg.model_config(data.n_dims))
    params, adversary, domains = list(model.parameters()), None, None
    if target and cfg.domain_adversarial > 0:
        every = tensors + [torch.from_numpy(x) for x in target]
        corpora = ["ravdess"] * len(tensors) + ["target"] * len(target)
        adversary = Adversary.build(corpora, every, train_idx, np.arange(len(tensors), len(every)),
                                    cfg.hidden, cfg.crop_frames, np.random.default_rng(2))
        adversary.weight = ramp(cfg.domain_adversarial, 0.5)
        params += list(adversary.head.parameters())
        domains = adversary.domain[torch.as_tensor(train_idx)]
    teacher = None
    if target and cfg.distil > 0:
        probs = np.random.default_rng(3).dirichlet(np.ones(len(data.labels)), size=len(target))
        teacher = Teacher([torch.from_numpy(x) for x in target], torch.tensor(probs, dtype=torch.float32),
                          torch.ones(len(data.labels), dtype=torch.bool), cfg.distil, cfg.crop_frames,
                          np.random.default_rng(4))
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    objective = Objective(None, cfg.label_smoothing, cfg.batch_augment(), torch.Generator().manual_seed(0),
                          np.random.default_rng(1))
    times = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        train_epoch(model, x_train, y_train, length_batches(lengths, cfg.batch_size, rng), optimizer, objective,
                    adversary=adversary, domains=domains, teacher=teacher)
        predict_logits(model, x_val)
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs timed per batch size")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--arch", default="reslstm", choices=("reslstm", "lstm"))
    parser.add_argument("--mixup-alpha", type=float, default=0.4, help="0: the paper's plain training")
    parser.add_argument("--domain-adversarial", type=float, default=0.0,
                        help="also time domain-adversarial training at this weight, against an unlabelled "
                             "nEMO-sized corpus, and print its cost over the plain loop")
    parser.add_argument("--distil", type=float, default=0.0,
                        help="also time seed-ensemble distillation at this weight on that corpus")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)  # as `ser train` runs

    data = ravdess_sized()
    target = unlabelled_corpus(n_dims=data.n_dims) if args.domain_adversarial > 0 or args.distil > 0 else None
    folds = ravdess_paper(sorted(set(data.speakers)))
    train_clips = [len(f.train) * CLIPS_PER_SPEAKER for f in folds]
    final_clips = len(final_split(folds).train) * CLIPS_PER_SPEAKER
    print(f"{args.arch} h{args.hidden}; fold 0: {train_clips[0]} training / "
          f"{len(folds[0].val) * CLIPS_PER_SPEAKER} validation clips of 80-110 frames x {data.n_dims} dims; "
          f"{args.epochs} epochs timed; minutes extrapolated from the median epoch")
    print(f"{'threads':>7} {'batch':>5} {'s/epoch median':>15} {'min':>6} {'5x100 min':>10} {'+final':>7}  target")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batch_size:
            cfg = TrainConfig(arch=args.arch, hidden=args.hidden, batch_size=batch, mixup_alpha=args.mixup_alpha)
            times = epoch_seconds(data, cfg, args.epochs)
            per_clip = float(np.median(times)) / train_clips[0]
            cv = per_clip * sum(train_clips) * 100 / 60
            total = cv + per_clip * final_clips * 100 / 60
            verdict = "met" if cv <= TARGET_MINUTES else "MISSED"
            print(f"{threads:>7} {batch:>5} {np.median(times):>15.2f} {min(times):>6.2f} {cv:>10.1f} "
                  f"{total:>7.1f}  <= {TARGET_MINUTES:.0f} min: {verdict}")
            variants = []
            if args.domain_adversarial > 0:
                variants.append((f"domain-adversarial {args.domain_adversarial:g}",
                                 dataclasses.replace(cfg, domain_adversarial=args.domain_adversarial)))
            if args.distil > 0:
                variants.append((f"distillation {args.distil:g}",
                                 dataclasses.replace(cfg, distil=args.distil, distil_from="(random teachers)")))
            for name, other in variants:
                more = epoch_seconds(data, other, args.epochs, target)
                print(f"{'':>7} {'':>5} {np.median(more):>15.2f} {min(more):>6.2f} "
                      f"{cv * np.median(more) / np.median(times):>10.1f} {'':>7}  {name}: "
                      f"{np.median(more) / np.median(times):.2f}x the plain loop's median epoch")


if __name__ == "__main__":
    main()
