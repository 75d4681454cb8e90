"""benchmarks/train.py times the real training loop: it must keep up with its signature."""

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
    try:
        times = bench.epoch_seconds(data, TrainConfig(hidden=4, batch_size=64, mixup_alpha=0.4), epochs=1)
    finally:
        torch.set_num_threads(threads)
    assert len(times) == 1 and np.isfinite(times).all() and times[0] > 0
    torch.set_num_threads(1)
    try:  # and the domain-adversarial loop, against an unlabelled corpus
        target = bench.unlabelled_corpus(n_dims=data.n_dims, speakers=2, clips=20)
        times = bench.epoch_seconds(data, TrainConfig(hidden=4, batch_size=64, mixup_alpha=0.4,
                                                      domain_adversarial=0.3), epochs=1, target=target)
    finally:
        torch.set_num_threads(threads)
    assert len(times) == 1 and np.isfinite(times).all() and times[0] > 0
