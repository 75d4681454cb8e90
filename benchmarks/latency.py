"""Edge latency: ResLSTM-SA per 3-s window on one core in PyTorch, ONNX fp32 and ONNX int8,
file sizes, and whole-file labelling throughput per engine on one core.

    python benchmarks/latency.py [--checkpoint CKPT] [--runs 300] [--hours 1] [--call-minutes 10]
                                 [--workers 2] [--oof TRAIN_DIR FEATURES_DIR] [--out benchmarks/out/latency]

1. Model: ``--checkpoint``, or a ResLSTM-SA-h64 with random weights, the paper's front-end
   at 8 kHz and speaker normalisation (speed only: the work per window is a trained
   model's). Exported with ``ser export`` to fp32 and int8 ONNX under ``--out``.
2. One thread everywhere: torch (intra- and inter-op), BLAS (threadpoolctl) and
   onnxruntime (``OnnxModel.load(threads=1)``); the process is not pinned to a core.
3. Per window: a 3-s window of demo-call speech at 8 kHz written as a WAV file. "decode +
   features" is ``ser_core.audio.load`` of that file plus the checkpoint's extractor
   (resampling first when the model's rate is not 8 kHz); "model" is
   ``predict_proba([x], stats)`` of each engine on its features (normalisation included,
   as the labelling code calls it). Median and p95 over ``--runs`` timed calls after 20
   untimed ones.
4. Whole files: ``--hours`` of stereo 8 kHz demo calls (``ser demo-archive``), labelled
   per engine on one core by ``ser_core.Labeller.label_file`` (the pipeline's own code:
   streamed decoding, the speech detector, windows, features, each channel's statistics,
   the engine in batches of 64, the output rows), after the model is loaded; audio-hours
   per wall-hour and the share of the time spent in the model. Then ``ser label`` itself
   per engine, DirectRunner ``multi_processing`` on ``--workers`` workers, timed from
   launch to exit (Beam's start-up included, as a user waits for it): audio-hours per
   wall-hour (``benchmarks/label.py`` compares it with the single-process loops).
5. ``--oof TRAIN_DIR FEATURES_DIR`` (a ``ser train`` output and the features it was trained
   on): every ``TRAIN_DIR/runs/seed<S>/fold<F>/checkpoint.pt`` is exported to fp32 and int8
   and predicts its fold's test speakers (provenance ``test_speakers``, each speaker
   normalised with its own statistics as in training); pooled out-of-fold UAR per engine
   (mean over seeds), and the share of PyTorch's labels that agree with the run's own
   ``predictions.csv``. Issue 11's bound: int8 within 1 point of fp32.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf

from ser_core import Labeller, audio
from ser_core.export import export_onnx
from ser_core.features import FeatureConfig, make_extractor, warm_up
from ser_core.segmentation import SegmentConfig, segment_channel
from ser_core.onnx_model import OnnxModel
from ser_core.checkpoint import load_checkpoint
from ser_core.normalisation import frame_stats
from ser_core.training.data import load_features
from ser_core.training.evaluate import uar

ROOT = Path(__file__).resolve().parents[1]
WINDOW_S = 3.0
ARCHIVE_RATE = 8000
BLOCK_S = 30.0  # the labelling pipeline's default decoding block
BATCH_SIZE = 64
WARM_UP = 20
INT8_UAR_POINTS = 1.0  # issue 11: int8's pooled UAR within 1 point of fp32


def one_thread() -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    threadpool_limits(limits=1, user_api="blas")


def make_model(path: Path) -> Path:
    """A random-init ResLSTM-SA-h64 on the paper's front-end at 8 kHz (speed only)."""
    import torch

    from ser_core.labels import RAVDESS_LABELS
    from ser_core.model import ModelConfig, SERModel
    from ser_core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    fc = FeatureConfig(sample_rate=ARCHIVE_RATE)
    model = SERModel(ModelConfig(n_dims=fc.n_dims, n_classes=len(RAVDESS_LABELS), hidden=64))
    return save_checkpoint(path, model, feature_config=fc.to_dict(), labels=RAVDESS_LABELS,
                           normalisation={"mode": "speaker", "mean": [0.0] * fc.n_dims,
                                          "std": [1.0] * fc.n_dims, "std_floor": 1e-4},
                           train_params={"note": "random weights, for benchmarking only"},
                           provenance={"benchmark": True})


def make_archive(out: Path, hours: float, call_minutes: float) -> list[Path]:
    """Stereo 8 kHz demo calls, ``hours`` in all (reused when already there)."""
    from ser_core.demo.archive import generate_demo_archive

    calls = max(1, round(hours * 60 / call_minutes))
    folder = out / f"archive-{calls}x{call_minutes:g}min"
    paths = sorted(folder.glob("call_*.wav"))
    if len(paths) != calls:
        generate_demo_archive(folder, calls=calls, minutes=call_minutes, seed=0, progress=False)
        paths = sorted(folder.glob("call_*.wav"))
    return paths


def window_file(call: Path, out: Path) -> Path:
    """The first full 3-s speech window of the call's first channel, as a mono PCM16 WAV."""
    samples, sr = audio.load(call, ARCHIVE_RATE, channels="separate")
    windows, _ = segment_channel(samples[0], sr, SegmentConfig(window_s=WINDOW_S))
    full = [w for w in windows if w.end - w.start == int(WINDOW_S * sr)]
    path = out / "window-3s-8k.wav"
    sf.write(str(path), full[0].samples, sr, subtype="PCM_16")
    return path


def timings(fn: Callable[[], object], runs: int) -> dict:
    for _ in range(WARM_UP):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    ms = 1000 * np.array(times)
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}


# ---------------------------------------------------------------- whole files


class TimedModel:
    """An engine whose calls to the model are timed (every other attribute passes through)."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.model_s = 0.0

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def predict_normalised(self, features, batch_size: int = BATCH_SIZE):
        start = time.perf_counter()
        try:
            return self._engine.predict_normalised(features, batch_size)
        finally:
            self.model_s += time.perf_counter() - start


def throughput(paths: Sequence[Path], engine) -> dict:
    """Whole files on one core through ``Labeller.label_file`` (the pipeline's code)."""
    timed = TimedModel(engine)
    labeller = Labeller.for_model(timed, roles=["agent", "customer"], batch_size=BATCH_SIZE, block_s=BLOCK_S, threads=1)
    start = time.perf_counter()
    audio_s, windows = 0.0, 0
    for path in paths:
        result = labeller.label_file(str(path))
        audio_s += result.file["duration_s"]
        windows += result.segments.num_rows
    wall = time.perf_counter() - start
    return {"audio_h": audio_s / 3600, "wall_s": wall, "windows": windows, "model_s": timed.model_s,
            "audio_h_per_wall_h": audio_s / wall}


def pipeline_throughput(model: Path, paths: Sequence[Path], workers: int, out: Path) -> dict:
    """``ser label`` on ``workers`` DirectRunner workers, launch to exit."""
    output = out / f"labels-{model.name}"
    shutil.rmtree(output, ignore_errors=True)
    cmd = [sys.executable, "-m", "pipelines.label", "--model", str(model), "--output", str(output),
           "--input", str(paths[0].parent / "call_*.wav"), "--roles", "agent,customer",
           "--direct_running_mode", "multi_processing", "--direct_num_workers", str(workers)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    audio_s = sum(sf.info(str(p)).duration for p in paths)
    return {"wall_s": wall, "audio_h_per_wall_h": audio_s / wall}


# ---------------------------------------------------------------- out-of-fold UAR


def out_of_fold(train_dir: Path, features_dir: Path, out: Path) -> dict:
    """Pooled out-of-fold UAR of every fold checkpoint in PyTorch, ONNX fp32 and ONNX int8."""
    checkpoints = sorted(train_dir.glob("runs/seed*/fold*/checkpoint.pt"))
    if not checkpoints:
        sys.exit(f"no runs/seed*/fold*/checkpoint.pt under {train_dir}")
    first = load_checkpoint(checkpoints[0])
    data = load_features(features_dir, first.labels)
    engines = ("torch", "onnx_fp32", "onnx_int8")
    per_seed: dict[str, dict[str, list]] = {}
    agree, total, max_diff = 0, 0, {"onnx_fp32": 0.0, "onnx_int8": 0.0}
    for path in checkpoints:
        ckpt = load_checkpoint(path)
        if ckpt.labels != first.labels or ckpt.feature_config != data.feature_config:
            sys.exit(f"{path}: labels or feature configuration differ from {features_dir}'s")
        seed = path.parent.parent.name
        folder = out / "oof" / seed / path.parent.name
        models = {"torch": ckpt,
                  "onnx_fp32": OnnxModel.load(export_onnx(path, folder / "model.onnx").path),
                  "onnx_int8": OnnxModel.load(export_onnx(path, folder / "model.int8.onnx", int8=True).path)}
        rows = per_seed.setdefault(seed, {"y": [], "ids": [], **{e: [] for e in engines}})
        for speaker in ckpt.provenance["test_speakers"]:
            idx = data.indices([speaker])
            feats = [data.features[i] for i in idx]
            stats = frame_stats(feats)  # ignored in global mode
            probs = {e: models[e].predict_proba(feats, stats) for e in engines}
            for e in ("onnx_fp32", "onnx_int8"):
                max_diff[e] = max(max_diff[e], float(np.abs(probs[e] - probs["torch"]).max()))
            rows["y"] += data.y[idx].tolist()
            rows["ids"] += [data.utterance_ids[i] for i in idx]
            for e in engines:
                rows[e] += probs[e].argmax(axis=1).tolist()
        saved = path.parent / "predictions.csv"
        if saved.is_file():
            with open(saved, newline="") as fh:
                recorded = {r["utterance_id"]: r["predicted"] for r in csv.DictReader(fh)}
            mine = dict(zip(rows["ids"], rows["torch"]))
            for uid, label in recorded.items():
                if uid in mine:
                    total += 1
                    agree += first.labels[mine[uid]] == label
    n_classes = len(first.labels)
    uars = {e: [uar(np.array(r["y"]), np.array(r[e]), n_classes) for r in per_seed.values()] for e in engines}
    int8_vs_fp32 = [np.mean(np.array(r["onnx_int8"]) == np.array(r["onnx_fp32"])) for r in per_seed.values()]
    return {"checkpoints": len(checkpoints), "seeds": sorted(per_seed),
            "n_predictions": sum(len(r["y"]) for r in per_seed.values()),
            "uar": {e: float(np.mean(v)) for e, v in uars.items()},
            "max_abs_prob_diff_vs_torch": max_diff,
            "int8_fp32_same_label": float(np.mean(int8_vs_fp32)),
            "torch_agrees_with_predictions_csv": agree / total if total else None}


# ---------------------------------------------------------------- report


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint to measure (default: random-init h64 at 8 kHz)")
    parser.add_argument("--runs", type=int, default=300, help="timed calls per per-window figure")
    parser.add_argument("--hours", type=float, default=1.0, help="archive length for the throughput")
    parser.add_argument("--call-minutes", dest="call_minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2, help="workers of the pipeline's throughput run")
    parser.add_argument("--oof", nargs=2, metavar=("TRAIN_DIR", "FEATURES_DIR"),
                        help="also: pooled out-of-fold UAR of a ser train output, torch vs fp32 vs int8")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "latency"))
    args = parser.parse_args()

    one_thread()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start; one thread per engine")
    ckpt_path = Path(args.checkpoint) if args.checkpoint else make_model(out / "random-h64-8k.pt")
    fp32_path = export_onnx(ckpt_path, out / "model.onnx").path
    int8_path = export_onnx(ckpt_path, out / "model.int8.onnx", int8=True).path
    engines = {"PyTorch": load_checkpoint(ckpt_path), "ONNX fp32": OnnxModel.load(fp32_path),
               "ONNX int8": OnnxModel.load(int8_path)}
    files = {"PyTorch": ckpt_path, "ONNX fp32": fp32_path, "ONNX int8": int8_path}
    fc = FeatureConfig.from_dict(engines["PyTorch"].feature_config)
    warm_up(fc)
    mc = engines["PyTorch"].model_config
    print(f"model: {'random-init ' if not args.checkpoint else ''}{mc.arch} h{mc.hidden}, "
          f"{fc.kind} at {fc.sample_rate} Hz, {engines['PyTorch'].normalisation['mode']} normalisation")

    t0 = time.perf_counter()
    calls = make_archive(out, args.hours, args.call_minutes)
    print(f"archive: {len(calls)} stereo {ARCHIVE_RATE} Hz calls x {args.call_minutes:g} min, "
          f"ready in {time.perf_counter() - t0:.0f} s")
    wav = window_file(calls[0], out)
    extract = make_extractor(fc)
    x = extract(audio.load(wav, fc.sample_rate)[0])
    stats = frame_stats([x])
    results: dict = {"frames_per_window": int(x.shape[0]),
                     "front_end": timings(lambda: extract(audio.load(wav, fc.sample_rate)[0]), args.runs)}
    for name, engine in engines.items():
        results[name] = timings(lambda e=engine: e.predict_proba([x], stats), args.runs)
        results[name]["size_kb"] = files[name].stat().st_size / 1024
    for name, engine in engines.items():
        results[name]["files"] = throughput(calls, engine)
    for name in engines:
        results[name]["pipeline"] = pipeline_throughput(files[name], calls, args.workers, out)

    fe = results["front_end"]
    rows = [["", "per 3-s window: median ms", "p95 ms", "file KB", "whole files, 1 core: audio-h / wall-h",
             "model share of time", f"ser label, {args.workers} workers: audio-h / wall-h"],
            ["decode + features", f"{fe['median_ms']:.2f}", f"{fe['p95_ms']:.2f}", "", "", "", ""]]
    for name in engines:
        r, f = results[name], results[name]["files"]
        rows.append([f"model, {name}", f"{r['median_ms']:.3f}", f"{r['p95_ms']:.3f}", f"{r['size_kb']:.1f}",
                     f"{f['audio_h_per_wall_h']:.0f}", f"{100 * f['model_s'] / f['wall_s']:.1f}%",
                     f"{r['pipeline']['audio_h_per_wall_h']:.0f}"])
    f = results["PyTorch"]["files"]
    print(f"\n{x.shape[0]} frames per window; whole files: {f['audio_h']:.2f} h of stereo calls, "
          f"{f['windows']} windows, one process, one thread (Labeller); ser label from launch to exit, "
          f"Beam's start-up included\n")
    print(table(rows))
    if args.oof:
        o = results["oof"] = out_of_fold(Path(args.oof[0]), Path(args.oof[1]), out)
        u = o["uar"]
        print(f"\nout-of-fold ({o['checkpoints']} fold checkpoints, seeds {', '.join(o['seeds'])}, "
              f"{o['n_predictions']} predictions):")
        print(table([["engine", "pooled UAR", "max |p - torch|"],
                     ["PyTorch", f"{u['torch']:.4f}", ""],
                     ["ONNX fp32", f"{u['onnx_fp32']:.4f}", f"{o['max_abs_prob_diff_vs_torch']['onnx_fp32']:.2g}"],
                     ["ONNX int8", f"{u['onnx_int8']:.4f}", f"{o['max_abs_prob_diff_vs_torch']['onnx_int8']:.2g}"]]))
        gap = 100 * (u["onnx_int8"] - u["onnx_fp32"])
        print(f"int8 - fp32: {gap:+.2f} UAR points (bound: within {INT8_UAR_POINTS:g}); same label "
              f"{100 * o['int8_fp32_same_label']:.1f}% of clips"
              + ("" if o["torch_agrees_with_predictions_csv"] is None else
                 f"; PyTorch agrees with the run's predictions.csv on "
                 f"{100 * o['torch_agrees_with_predictions_csv']:.1f}%"))
    (out / "latency.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n-> {out / 'latency.json'}")


if __name__ == "__main__":
    main()
