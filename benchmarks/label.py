"""Bulk labelling: the Beam pipeline against a plain per-file loop, and memory on a 2-hour call.

    python benchmarks/label.py [--hours 8] [--call-minutes 10] [--long-hours 2] [--workers 2]
                               [--model CHECKPOINT | --kind speaker_encoder] [--plain-default]
                               [--skip-plain-rss]
                               [--out benchmarks/out/label]

1. Archive: stereo 8 kHz demo calls (``ser demo-archive``) of ``--call-minutes`` each,
   ``--hours`` in all (default 8: start-up costs are then a small part of the pipeline's
   time, as in any real archive), and the first ``--long-hours`` of them joined into one file.
2. Model: ``--model``, or a checkpoint with random weights and speaker normalisation (its
   labels mean nothing: only speed and memory are measured; the work per window is the same
   as a trained model's): by default ResLSTM-SA-h64 on the 8 kHz mfcc_chroma front-end;
   with ``--kind speaker_encoder`` the telephone variant's shape, the pooled model (hidden
   64) on the pretrained speaker encoder's frames at 16 kHz, 300-3400 Hz.
3. Plain loops (one process each), per file: decode the whole file, cut each channel
   with the same detector and windows, extract features per window, normalise per
   channel, run the model on each window alone, with one BLAS and one torch thread
   (``--plain-default`` adds runs with the libraries' default threading, which on a
   small busy machine contends badly). Two front-ends:

   - headline, what a typical SER script does: ``librosa.load(path, sr=<model rate>,
     mono=False)`` and, per window, after the checkpoint's ``band_hz`` limit if it has one,
     ``librosa.feature.mfcc`` + ``librosa.feature.chroma_stft`` with its n_fft and hop, or
     for the speaker encoder Resemblyzer's own path (``normalize_volume``,
     ``wav_to_mel_spectrogram`` through librosa, its ``VoiceEncoder``'s LSTM) averaged into
     the checkpoint's frames (librosa and numba are warmed up first);
   - "plain loop with our front-end": ``ser_core.audio.load`` and ``ser_core.features``,
     which already holds most of the pipeline's per-window speed-up (the front-end is
     ~90% of the work), so this ratio isolates what Beam's parallelism and batching add;
   - "Labeller loop": ``ser_core.Labeller.label_file`` per file, the pipeline's own code
     (streamed decoding, the same windows, batched inference, the same rows) in one
     process without Beam: pipeline / (workers x this) is Beam's parallel efficiency.

   All must cut the same windows; on the first call the librosa and our front-end's
   features and class probabilities are compared window by window.
4. Pipeline: ``ser label`` with the DirectRunner, ``multi_processing``, ``--workers``.
5. Peak RSS while labelling the long file: the pipeline in one process (in-memory
   DirectRunner: runner and worker together), from ``wait4``; and the librosa plain
   loop's, for contrast (it holds the whole decoded call).

Every run is a child process timed from start to exit (imports and Beam start-up
included): those are the end-to-end rates the targets are judged on. Each is also timed
on a one-second file, its fixed start-up cost, to show the rate without it, and its CPU
seconds (its own and its waited-for children's, Beam's workers included) are counted: on
a machine shared with other work, wall-clock ratios depend on what else runs, while CPU
seconds per audio-hour show the pipeline's own overhead.
Targets: pipeline >= 3x the librosa plain loop and peak RSS for a 2-hour file <= 1 GB
(issue 5); pipeline on 2 workers >= 90% of twice the single-process loop (issue 11).
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
TARGET_PARALLEL = 0.9  # issue 11: pipeline on N workers >= 90% of N x the single-process loop


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


# The random-weights model of each front-end (--kind), as the run prints it.
RANDOM_MODELS = {"mfcc_chroma": "ResLSTM-SA-h64 with RANDOM weights (speed and memory only), mfcc_chroma "
                                "front-end at 8 kHz, speaker normalisation",
                 "speaker_encoder": "pooled-h64 with RANDOM weights (speed and memory only), speaker_encoder "
                                    "front-end at 16 kHz, 300-3400 Hz, speaker normalisation"}
KINDS = tuple(RANDOM_MODELS)


def make_model(path: Path, kind: str = "mfcc_chroma") -> Path:
    """A random-init model (speed only): ResLSTM-SA-h64 on mfcc_chroma at 8 kHz, or the
    telephone variant's shape (pooled, hidden 64) on the speaker encoder at 16 kHz."""
    import torch

    from ser_core.features import FeatureConfig
    from ser_core.labels import RAVDESS_LABELS
    from ser_core.model import ModelConfig, SERModel
    from ser_core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    if kind == "speaker_encoder":
        fc = FeatureConfig(kind=kind, sample_rate=16000, band_hz=(300.0, 3400.0))
        arch = "pooled"
    else:
        fc, arch = FeatureConfig(sample_rate=8000), "reslstm"
    model = SERModel(ModelConfig(n_dims=fc.n_dims, n_classes=len(RAVDESS_LABELS), hidden=64, arch=arch))
    return save_checkpoint(path, model, feature_config=fc.to_dict(), labels=RAVDESS_LABELS,
                           normalisation={"mode": "speaker", "mean": [0.0] * fc.n_dims,
                                          "std": [1.0] * fc.n_dims},
                           train_params={"note": "random weights, for benchmarking only"},
                           provenance={"benchmark": True})


# ---------------------------------------------------------------- the plain loops (child)


FRONTENDS = ("librosa", "ours", "labeller")


def librosa_frontend(fc):
    """Whole-file loader and per-window extractor as a typical SER script writes them."""
    import librosa
    import numpy as np

    from ser_core.features import band_limit

    if fc.kind not in KINDS:
        sys.exit(f"the librosa plain loop implements {' and '.join(KINDS)}, the model uses {fc.kind}")

    def load(path: str):
        y, _ = librosa.load(path, sr=fc.sample_rate, mono=False)
        return np.atleast_2d(y)  # (C, N)

    features = resemblyzer_frames(fc) if fc.kind == "speaker_encoder" else None

    def extract(y):
        if fc.band_hz is not None:  # the checkpoint's band limit, as the model was trained
            y = band_limit(y, fc.sample_rate, fc.band_hz)
        if features is not None:
            return features(y)
        mfcc = librosa.feature.mfcc(y=y, sr=fc.sample_rate, n_mfcc=fc.n_mfcc, n_fft=fc.n_fft,
                                    hop_length=fc.hop_length, n_mels=fc.n_mels, fmin=fc.fmin, fmax=fc.fmax)
        chroma = librosa.feature.chroma_stft(y=y, sr=fc.sample_rate, n_fft=fc.n_fft,
                                             hop_length=fc.hop_length, n_chroma=fc.n_chroma)
        return np.vstack([mfcc, chroma]).T.astype(np.float32)  # (T, D)

    # numba compiles librosa's kernels on first use: do it before any file is timed
    extract(np.random.default_rng(0).standard_normal(fc.sample_rate * 3).astype(np.float32) * 0.1)
    return load, extract


def resemblyzer_frames(fc):
    """The speaker encoder's frames as Resemblyzer computes them (benchmarks/encoder.py's
    ``resemblyzer_steps``), averaged into the checkpoint's frames: (T, 256)."""
    import numpy as np

    from encoder import resemblyzer_steps  # benchmarks/encoder.py
    from ser_core import encoder
    from ser_core.features import pool_to_frames

    steps_of = resemblyzer_steps()

    def frames(y):
        steps = steps_of(y)
        centres = np.arange(len(steps)) * (encoder.HOP / encoder.SAMPLE_RATE)
        return pool_to_frames(steps, centres, fc.n_frames(len(y)), fc.hop_s)
    return frames


def our_frontend(fc):
    from ser_core import audio
    from ser_core.features import make_extractor, warm_up

    warm_up(fc)
    return (lambda path: audio.load(path, fc.sample_rate, channels="separate", quality=fc.resample_quality)[0],
            make_extractor(fc))


def label_file(checkpoint, fc, load, extract, path: str) -> tuple[float, list[tuple]]:
    """(seconds of audio, [(channel, window, features, probabilities)]) for one file, the
    model run on one window at a time."""
    from ser_core.segmentation import SegmentConfig, segment_channel
    from ser_core.normalisation import frame_stats

    data = load(path)  # (C, N)
    speaker = checkpoint.normalisation["mode"] == "speaker"
    out = []
    for c, channel in enumerate(data):
        cut, _ = segment_channel(channel, fc.sample_rate, SegmentConfig())
        feats = [extract(w.samples) for w in cut]
        stats = frame_stats(feats) if feats and speaker else None
        out += [(c, w, x, checkpoint.predict_proba([x], stats)[0]) for w, x in zip(cut, feats)]
    return data.shape[1] / fc.sample_rate, out


def single_threaded() -> None:
    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    torch.set_num_threads(1)


def labeller_loop(model_path: str, paths: list[str], single_thread: bool) -> dict:
    """The pipeline's code in one process: ``Labeller.label_file`` per file."""
    if single_thread:
        single_threaded()
    from ser_core import Labeller

    labeller = Labeller.load(model_path, roles=["agent", "customer"], threads=1 if single_thread else 0)
    audio_s, windows = 0.0, 0
    for path in paths:
        result = labeller.label_file(path)
        audio_s += result.file["duration_s"]
        windows += result.segments.num_rows
    return {"audio_s": audio_s, "windows": windows}


def plain_loop(model_path: str, paths: list[str], single_thread: bool, frontend: str) -> dict:
    """Whole file -> detector -> windows -> features -> model, one window at a time."""
    if frontend == "labeller":
        return labeller_loop(model_path, paths, single_thread)
    if single_thread:
        single_threaded()
    from ser_core.features import FeatureConfig
    from ser_core.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(model_path)
    fc = FeatureConfig.from_dict(checkpoint.feature_config)
    load, extract = (librosa_frontend if frontend == "librosa" else our_frontend)(fc)
    audio_s, windows = 0.0, 0
    for path in paths:
        seconds, labelled = label_file(checkpoint, fc, load, extract, path)
        audio_s += seconds
        windows += len(labelled)
    return {"audio_s": audio_s, "windows": windows}


def compare_frontends(model_path: str, path: str) -> dict:
    """Both plain loops on one file: same windows? how far apart are features and probabilities?"""
    import numpy as np

    from ser_core.features import FeatureConfig
    from ser_core.checkpoint import load_checkpoint

    single_threaded()
    checkpoint = load_checkpoint(model_path)
    fc = FeatureConfig.from_dict(checkpoint.feature_config)
    ours = label_file(checkpoint, fc, *our_frontend(fc), path)[1]
    theirs = label_file(checkpoint, fc, *librosa_frontend(fc), path)[1]
    same = [(c, w.start, w.end) for c, w, _, _ in ours] == [(c, w.start, w.end) for c, w, _, _ in theirs]
    result = {"file": path, "windows_ours": len(ours), "windows_librosa": len(theirs), "same_windows": same}
    if same and ours:
        feats_ours = np.concatenate([x for _, _, x, _ in ours])
        feats_lib = np.concatenate([x for _, _, x, _ in theirs])
        span = feats_lib.max(axis=0) - feats_lib.min(axis=0)  # per-dimension range
        rel = np.abs(feats_ours - feats_lib) / np.maximum(span, 1e-9)  # (frames, D)
        blocks = ({"MFCC": slice(0, fc.n_mfcc), "chroma": slice(fc.n_mfcc, None)} if fc.kind == "mfcc_chroma"
                  else {"encoder frames": slice(None)})
        result["max_abs_diff_over_range"] = {name: float(rel[:, cols].max()) for name, cols in blocks.items()}
        ends = np.cumsum([x.shape[0] for _, _, x, _ in ours])[:-1]
        result["windows_agreeing_1e-4"] = int(sum(r.max() <= 1e-4 for r in np.split(rel, ends)))
        result["max_abs_prob_diff"] = float(np.abs(np.stack([p for *_, p in ours])
                                                   - np.stack([p for *_, p in theirs])).max())
        result["same_top_emotion"] = float(np.mean([np.argmax(a[3]) == np.argmax(b[3])
                                                    for a, b in zip(ours, theirs)]))
    return result


# ---------------------------------------------------------------- measuring children


def run_child(cmd: list[str]) -> dict:
    """Run ``cmd``; wall seconds, CPU seconds and the peak RSS (MB) of it and its
    waited-for children."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-3000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "output": output}


def label_cmd(model: Path, inputs: list[str], output: Path, beam_args: list[str]) -> list[str]:
    shutil.rmtree(output, ignore_errors=True)
    cmd = [sys.executable, "-m", "pipelines.label", "--model", str(model), "--output", str(output),
           "--roles", "agent,customer"]
    for pattern in inputs:
        cmd += ["--input", pattern]
    return cmd + beam_args


def pipeline_windows(output: Path) -> int:
    from ser_core.storage import count_rows

    return count_rows(str(output), "segments")


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
    parser.add_argument("--model", help="checkpoint to label with (default: random weights, --kind)")
    parser.add_argument("--kind", choices=KINDS, default="mfcc_chroma",
                        help="front-end of the random-weights model (without --model)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "label"))
    parser.add_argument("--plain-default", action="store_true",
                        help="also time the plain loop with the libraries' default threading")
    parser.add_argument("--skip-plain-rss", action="store_true", help="skip the plain loop on the long file")
    parser.add_argument("--plain", nargs="+", help=argparse.SUPPRESS)  # child: MODEL MODE FRONTEND PATHS...
    parser.add_argument("--compare", nargs=2, help=argparse.SUPPRESS)  # child: MODEL PATH
    args = parser.parse_args()
    if args.plain:
        model, mode, frontend, *paths = args.plain
        print(json.dumps(plain_loop(model, paths, mode == "single", frontend)))
        return
    if args.compare:
        print(json.dumps(compare_frontends(*args.compare)))
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
        model = make_model(out / f"random-h64-{args.kind}.pt", args.kind)
        print(f"model: {RANDOM_MODELS[args.kind]}")
    short = tiny_file(out)
    results: dict = {"audio_hours": hours, "calls": len(paths), "long_file_hours": args.long_hours,
                     "workers": args.workers, "cpu_cores": os.cpu_count(), "load_average_start": load}

    def report(name: str, run: dict, startup: dict, windows: int) -> dict:
        wall, cpu = run["wall_s"], run["cpu_s"]
        rate = hours * 3600 / wall
        marginal = hours * 3600 / max(wall - startup["wall_s"], 1e-9)
        cpu_per_h = (cpu - startup["cpu_s"]) / hours  # CPU seconds per audio-hour, start-up excluded
        print(f"{name}: {wall:.1f} s, {windows} windows: {rate:.0f} audio-h per wall-h "
              f"(start-up {startup['wall_s']:.1f} s; without it {marginal:.0f}); CPU {cpu:.1f} s "
              f"(start-up {startup['cpu_s']:.1f} s), {cpu_per_h:.2f} CPU-s per audio-h after it")
        return {"wall_s": wall, "startup_s": startup["wall_s"], "cpu_s": cpu, "startup_cpu_s": startup["cpu_s"],
                "cpu_s_per_audio_h": cpu_per_h, "windows": windows,
                "audio_h_per_h": rate, "audio_h_per_h_after_startup": marginal}

    modes = ("single", "default") if args.plain_default else ("single",)
    names = {"librosa": "plain loop (librosa.load + librosa features, a typical SER script)",
             "ours": "plain loop with our front-end (ser_core.audio + ser_core.features)",
             "labeller": "Labeller loop (the pipeline's code, one process, no Beam)"}
    plains = [(f"plain_{frontend}_{mode}", frontend, mode) for frontend in FRONTENDS for mode in modes]
    for key, frontend, mode in plains:
        plain = [sys.executable, __file__, "--plain", str(model), mode, frontend]
        startup = run_child(plain + [str(short)])
        r = run_child(plain + [str(p) for p in paths])
        windows = json.loads(r["output"].strip().splitlines()[-1])["windows"]
        results[key] = report(f"{names[frontend]}, {mode} threading", r, startup, windows)

    beam_args = ["--direct_running_mode", "multi_processing", "--direct_num_workers", str(args.workers)]
    startup = run_child(label_cmd(model, [str(short)], out / "labels-startup", beam_args))
    r = run_child(label_cmd(model, [str(paths[0].parent / "call_*.wav")], out / "labels", beam_args))
    pipe = results["pipeline"] = report(f"pipeline, DirectRunner multi_processing x {args.workers}",
                                        r, startup, pipeline_windows(out / "labels"))
    for key, frontend, mode in plains:
        base = results[key]
        ratio = results[f"ratio_vs_{key}"] = pipe["audio_h_per_h"] / base["audio_h_per_h"]
        marginal = pipe["audio_h_per_h_after_startup"] / base["audio_h_per_h_after_startup"]
        results[f"ratio_vs_{key}_after_startup"] = marginal
        label = {"librosa": "plain loop (librosa)", "ours": "plain loop with our front-end",
                 "labeller": "Labeller loop"}[frontend]
        if frontend == "librosa":
            verdict = f"target >= {TARGET_RATIO:g}x: {'met' if ratio >= TARGET_RATIO else 'MISSED'}"
        else:  # issue 11: >= 90% of N x the single-process loop
            share = ratio / args.workers
            verdict = (f"{100 * share:.0f}% of {args.workers} x the loop, target >= {100 * TARGET_PARALLEL:.0f}%: "
                       f"{'met' if share >= TARGET_PARALLEL else 'MISSED'}")
        # CPU per audio-hour: what N workers would reach on N idle cores, start-up aside
        efficiency = results[f"cpu_efficiency_vs_{key}"] = base["cpu_s_per_audio_h"] / pipe["cpu_s_per_audio_h"]
        print(f"  pipeline / {label}, {mode} threading: {ratio:.2f}x end to end ({verdict}); "
              f"{marginal:.2f}x without start-up; CPU per audio-hour: the loop's is {100 * efficiency:.0f}% "
              f"of the pipeline's")
    counts = {key: results[key]["windows"] for key, _, _ in plains} | {"pipeline": pipe["windows"]}
    results["same_window_counts"] = len(set(counts.values())) == 1
    print(f"windows labelled: {'all equal' if results['same_window_counts'] else 'DIFFER'} {counts}")
    check = results["frontend_check"] = json.loads(run_child(
        [sys.executable, __file__, "--compare", str(model), str(paths[0])])["output"].strip().splitlines()[-1])
    if check["same_windows"]:
        print(f"librosa vs our front-end on {Path(check['file']).name}: same {check['windows_ours']} windows; "
              f"{check['windows_agreeing_1e-4']} of them with every feature within 1e-4 of its range; "
              "max |diff| / range: " + ", ".join(f"{name} {value:.1e}"
                                                  for name, value in check["max_abs_diff_over_range"].items())
              + "; "
              f"max |probability diff| {check['max_abs_prob_diff']:.1e}, "
              f"same top emotion on {100 * check['same_top_emotion']:.1f}% of windows")
    else:
        print(f"librosa vs our front-end on {Path(check['file']).name}: windows DIFFER "
              f"({check['windows_librosa']} vs {check['windows_ours']})")

    r = run_child(label_cmd(model, [str(joined)], out / "labels-long", []))
    results["pipeline_long_file"] = {"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]}
    verdict = "met" if r["peak_rss_mb"] <= TARGET_RSS_MB else "MISSED"
    print(f"peak RSS labelling one {args.long_hours:g} h stereo file (pipeline, one process: runner and "
          f"worker): {r['peak_rss_mb']:.0f} MB in {r['wall_s']:.1f} s "
          f"(target <= {TARGET_RSS_MB:.0f} MB: {verdict})")
    if not args.skip_plain_rss:
        r = run_child([sys.executable, __file__, "--plain", str(model), "single", "librosa", str(joined)])
        results["plain_long_file"] = {"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]}
        print(f"  plain loop (librosa) on the same file: {r['peak_rss_mb']:.0f} MB in {r['wall_s']:.1f} s")
    results["load_average_end"] = os.getloadavg()[0]
    print(f"load average {results['load_average_end']:.1f} at the end")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results -> {out / 'results.json'}")


if __name__ == "__main__":
    main()
