"""Bulk labelling: the Beam pipeline against a plain per-file loop, and memory on a 2-hour call.

    python benchmarks/label.py [--hours 8] [--call-minutes 10] [--long-hours 2] [--workers 2]
                               [--model CHECKPOINT] [--plain-default] [--skip-plain-rss]
                               [--out benchmarks/out/label]

1. Archive: stereo 8 kHz demo calls (``ser demo-archive``) of ``--call-minutes`` each,
   ``--hours`` in all (default 8: start-up costs are then a small part of the pipeline's
   time, as in any real archive), and the first ``--long-hours`` of them joined into one file.
2. Model: ``--model``, or a ResLSTM-SA-h64 checkpoint with random weights, the 8 kHz
   mfcc_chroma front-end and speaker normalisation (its labels mean nothing: only speed
   and memory are measured; the work per window is the same as a trained model's).
3. Plain loop (one process): per file, decode the whole file, run the same detector and
   windows, extract features per window, normalise per channel, run the model on each
   window alone, with one BLAS and one torch thread (``--plain-default`` adds a run with
   the libraries' default threading, which on a small busy machine contends badly).
4. Pipeline: ``ser label`` with the DirectRunner, ``multi_processing``, ``--workers``.
5. Peak RSS while labelling the long file: the pipeline in one process (in-memory
   DirectRunner: runner and worker together), from ``wait4``; and the plain loop's, for
   contrast (it holds the whole decoded call).

Every run is a child process timed from start to exit (imports and Beam start-up
included): those are the end-to-end rates the targets are judged on. Each is also timed
on a one-second file, its fixed start-up cost, to show the rate without it.
Targets (issue 5): pipeline >= 3x the plain loop; peak RSS for a 2-hour file <= 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 3.0
TARGET_RSS_MB = 1024.0


# ---------------------------------------------------------------- inputs


def make_archive(out: Path, hours: float, call_minutes: float, long_hours: float) -> tuple[list[Path], Path]:
    """Demo calls (reused when present) and one file joining the first ``long_hours`` of them."""
    from ser_core.demo.archive import generate_demo_archive

    calls = max(1, round(hours * 60 / call_minutes))
    archive = out / f"archive-{calls}x{call_minutes:g}min"
    paths = sorted(archive.glob("call_*.wav"))
    if len(paths) != calls:
        shutil.rmtree(archive, ignore_errors=True)
        generate_demo_archive(archive, calls=calls, minutes=call_minutes, seed=0, progress=False)
        paths = sorted(archive.glob("call_*.wav"))
    joined = out / "long" / f"joined-{long_hours:g}h.wav"
    if not joined.is_file():
        joined.parent.mkdir(parents=True, exist_ok=True)
        tmp = joined.with_suffix(".tmp.wav")
        remaining = int(round(long_hours * 3600 * 8000))
        with sf.SoundFile(str(tmp), "w", samplerate=8000, channels=2, subtype="PCM_16") as dst:
            for i in range(10 ** 6):  # cycle through the calls until long enough
                for block in sf.blocks(str(paths[i % len(paths)]), blocksize=8000 * 60, dtype="float32"):
                    dst.write(block[:remaining])
                    remaining -= len(block[:remaining])
                if remaining <= 0:
                    break
        os.replace(tmp, joined)
    return paths, joined


def make_model(path: Path) -> Path:
    """A random-init ResLSTM-SA-h64 with the telephone-rate front-end (speed only)."""
    import torch

    from ser_core.features import FeatureConfig
    from ser_core.labels import RAVDESS_LABELS
    from ser_core.model import ModelConfig, SERModel
    from ser_core.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    fc = FeatureConfig(sample_rate=8000)
    model = SERModel(ModelConfig(n_dims=fc.n_dims, n_classes=len(RAVDESS_LABELS), hidden=64))
    return save_checkpoint(path, model, feature_config=fc.to_dict(), labels=RAVDESS_LABELS,
                           normalisation={"mode": "speaker", "mean": [0.0] * fc.n_dims,
                                          "std": [1.0] * fc.n_dims},
                           train_params={"note": "random weights, for benchmarking only"},
                           provenance={"benchmark": True})


# ---------------------------------------------------------------- the plain loop (child)


def plain_loop(model_path: str, paths: list[str], single_thread: bool) -> dict:
    """Whole file -> detector -> windows -> features -> model, one window at a time."""
    if single_thread:
        import torch
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
        torch.set_num_threads(1)
    from ser_core import audio
    from ser_core.features import FeatureConfig, extract
    from ser_core.inference.segment import SegmentConfig, segment_channel
    from ser_core.training.checkpoint import load_checkpoint
    from ser_core.training.data import frame_stats

    checkpoint = load_checkpoint(model_path)
    fc = FeatureConfig.from_dict(checkpoint.feature_config)
    seg = SegmentConfig()
    speaker = checkpoint.normalisation["mode"] == "speaker"
    audio_s, windows = 0.0, 0
    for path in paths:
        data, sr = audio.load(path, fc.sample_rate, channels="separate", quality=fc.resample_quality)
        audio_s += data.shape[1] / sr
        for channel in data:
            cut, _ = segment_channel(channel, sr, seg)
            feats = [extract(fc, w.samples) for w in cut]
            stats = frame_stats(feats) if feats and speaker else None
            for x in feats:
                checkpoint.predict_proba([x], stats)
            windows += len(feats)
    return {"audio_s": audio_s, "windows": windows}


# ---------------------------------------------------------------- measuring children


def run_child(cmd: list[str]) -> dict:
    """Run ``cmd``; wall seconds and the peak RSS of it and its waited-for children (MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "output": output}


def label_cmd(model: Path, inputs: list[str], output: Path, beam_args: list[str]) -> list[str]:
    shutil.rmtree(output, ignore_errors=True)
    cmd = [sys.executable, "-m", "pipelines.label", "--model", str(model), "--output", str(output),
           "--roles", "agent,customer"]
    for pattern in inputs:
        cmd += ["--input", pattern]
    return cmd + beam_args


def pipeline_windows(output: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in output.glob("segments-*.parquet"))


def tiny_file(out: Path) -> Path:
    """One second of a call: what is left of a run's wall time is its start-up cost."""
    path = out / "startup" / "one_second.wav"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), [[0.0, 0.0]] * 8000, 8000, subtype="PCM_16")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=8.0, help="archive length (>= 2)")
    parser.add_argument("--call-minutes", dest="call_minutes", type=float, default=10.0)
    parser.add_argument("--long-hours", dest="long_hours", type=float, default=2.0,
                        help="length of the one long file for the memory measurement")
    parser.add_argument("--model", help="checkpoint to label with (default: random-init h64)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "label"))
    parser.add_argument("--plain-default", action="store_true",
                        help="also time the plain loop with the libraries' default threading")
    parser.add_argument("--skip-plain-rss", action="store_true", help="skip the plain loop on the long file")
    parser.add_argument("--plain", nargs="+", help=argparse.SUPPRESS)  # child: MODEL MODE PATHS...
    args = parser.parse_args()
    if args.plain:
        model, mode, *paths = args.plain
        print(json.dumps(plain_loop(model, paths, mode == "single")))
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    paths, joined = make_archive(out, args.hours, args.call_minutes, args.long_hours)
    hours = len(paths) * args.call_minutes / 60
    print(f"{os.cpu_count()} CPU cores, load average {load:.1f} at start")
    print(f"archive: {len(paths)} stereo 8 kHz calls x {args.call_minutes:g} min = {hours:.2f} h "
          f"(+ one {args.long_hours:g} h file), ready in {time.perf_counter() - t0:.0f} s")
    if args.model:
        model = Path(args.model)
        print(f"model: {model}")
    else:
        model = make_model(out / "random-h64-8k.pt")
        print("model: ResLSTM-SA-h64 with RANDOM weights (speed and memory only), mfcc_chroma "
              "front-end at 8 kHz, speaker normalisation")
    short = tiny_file(out)
    results: dict = {"audio_hours": hours, "calls": len(paths), "long_file_hours": args.long_hours,
                     "workers": args.workers, "cpu_cores": os.cpu_count(), "load_average_start": load}

    def report(name: str, wall: float, startup: float, windows: int) -> dict:
        rate = hours * 3600 / wall
        marginal = hours * 3600 / max(wall - startup, 1e-9)
        print(f"{name}: {wall:.1f} s, {windows} windows: {rate:.0f} audio-h per wall-h "
              f"(start-up {startup:.1f} s; without it {marginal:.0f})")
        return {"wall_s": wall, "startup_s": startup, "windows": windows,
                "audio_h_per_h": rate, "audio_h_per_h_after_startup": marginal}

    modes = ("single", "default") if args.plain_default else ("single",)
    for mode in modes:
        plain = [sys.executable, __file__, "--plain", str(model), mode]
        startup = run_child(plain + [str(short)])["wall_s"]
        r = run_child(plain + [str(p) for p in paths])
        windows = json.loads(r["output"].strip().splitlines()[-1])["windows"]
        results[f"plain_{mode}"] = report(f"plain loop, {mode} threading", r["wall_s"], startup, windows)

    beam_args = ["--direct_running_mode", "multi_processing", "--direct_num_workers", str(args.workers)]
    startup = run_child(label_cmd(model, [str(short)], out / "labels-startup", beam_args))["wall_s"]
    r = run_child(label_cmd(model, [str(paths[0].parent / "call_*.wav")], out / "labels", beam_args))
    pipe = results["pipeline"] = report(f"pipeline, DirectRunner multi_processing x {args.workers}",
                                        r["wall_s"], startup, pipeline_windows(out / "labels"))
    for mode in modes:
        base = results[f"plain_{mode}"]
        ratio = results[f"ratio_vs_plain_{mode}"] = pipe["audio_h_per_h"] / base["audio_h_per_h"]
        marginal = pipe["audio_h_per_h_after_startup"] / base["audio_h_per_h_after_startup"]
        results[f"ratio_vs_plain_{mode}_after_startup"] = marginal
        verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
        print(f"  pipeline / plain loop ({mode} threading): {ratio:.2f}x end to end "
              f"(target >= {TARGET_RATIO:g}x: {verdict}); {marginal:.2f}x without start-up")

    r = run_child(label_cmd(model, [str(joined)], out / "labels-long", []))
    results["pipeline_long_file"] = {"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]}
    verdict = "met" if r["peak_rss_mb"] <= TARGET_RSS_MB else "MISSED"
    print(f"peak RSS labelling one {args.long_hours:g} h stereo file (pipeline, one process: runner and "
          f"worker): {r['peak_rss_mb']:.0f} MB in {r['wall_s']:.1f} s "
          f"(target <= {TARGET_RSS_MB:.0f} MB: {verdict})")
    if not args.skip_plain_rss:
        r = run_child([sys.executable, __file__, "--plain", str(model), "single", str(joined)])
        results["plain_long_file"] = {"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]}
        print(f"  plain loop on the same file: {r['peak_rss_mb']:.0f} MB in {r['wall_s']:.1f} s")
    results["load_average_end"] = os.getloadavg()[0]
    print(f"load average {results['load_average_end']:.1f} at the end")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results -> {out / 'results.json'}")


if __name__ == "__main__":
    main()
