"""benchmarks/train.py times the real training loop: it must keep up with its signature."""

import dataclasses
import importlib.util

import numpy as np
import torch

from ser_core.codebase import ROOT
from ser_core.training.config import TrainConfig


def test_the_training_benchmark_runs_the_recipe_loop():
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "benchmarks" / "train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data = bench.ravdess_sized()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the benchmark and `ser train` run (two threads collapse on a busy machine)
    cfg = TrainConfig(hidden=4, batch_size=64, mixup_alpha=0.4)
    target = bench.unlabelled_corpus(n_dims=data.n_dims, speakers=2, clips=20)
    distil = dataclasses.replace(cfg, distil=1.0, distil_from="(random teachers)")
    try:  # the plain loop, the domain-adversarial one against an unlabelled corpus, distillation on it
        runs = [bench.epoch_seconds(data, cfg, epochs=1),
                bench.epoch_seconds(data, dataclasses.replace(cfg, domain_adversarial=0.3), epochs=1, target=target),
                bench.epoch_seconds(data, distil, epochs=1, target=target)]
    finally:
        torch.set_num_threads(threads)
    for times in runs:
        assert len(times) == 1 and np.isfinite(times).all() and times[0] > 0
