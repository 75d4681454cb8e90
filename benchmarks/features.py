"""Benchmark: the Beam features pipeline against the plain per-file librosa loop.

    python benchmarks/features.py [--corpus DIR] [--speakers 24] [--workers 2] [--repeats 1]

Both sides compute the paper's front-end (34 MFCC + 12 STFT chroma, n_fft 4096, hop 2048)
on the same clips in the same run, each in its own process:

- plain: what a typical SER script does, one process, one file at a time::

      y, sr = librosa.load(path, sr=None)
      mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=34, n_fft=4096, hop_length=2048)
      chroma = librosa.feature.chroma_stft(y=y, sr=sr, n_fft=4096, hop_length=2048)

- pipeline: ``python -m pipelines.features`` on DirectRunner multi_processing with
  ``--workers`` processes, writing Parquet shards.

Throughput is audio seconds per wall second of the whole process (interpreter start,
imports, Beam start-up and Parquet writing included); the loop-only / pipeline-only
times are shown beside it. Peak RSS: the largest single process (getrusage) and the
peak sum over the process tree (sampled from /proc). The two feature sets must agree
within 1e-4 of each dimension's range over the set, or the exit status is 1.

The corpus is the embedded demo corpus (RAVDESS layout, 60 clips per speaker, 48 kHz),
generated once under benchmarks/out/, or any RAVDESS-layout folder given with --corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out"
TOLERANCE = 1e-4
N_FFT, HOP, N_MFCC = 4096, 2048, 34


# ---------------------------------------------------------------- the two sides (subprocesses)


def plain_loop(manifest: str, output: str) -> None:
    """The per-file librosa loop; saves features to ``output`` (.npz) and prints timings."""
    started = time.perf_counter()
    import librosa

    from ser_core.records import read_manifest

    rows = read_manifest(manifest)  # paths resolved against the manifest's corpus folders
    loop_start = time.perf_counter()
    ids, feats, audio_s = [], [], 0.0
    for row in rows:
        y, sr = librosa.load(row.path, sr=None)
        mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=N_MFCC, n_fft=N_FFT, hop_length=HOP)
        chroma = librosa.feature.chroma_stft(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP)
        ids.append(row.utterance_id)
        feats.append(np.vstack([mfcc, chroma]).T.astype(np.float32))
        audio_s += len(y) / sr
    loop_s = time.perf_counter() - loop_start
    np.savez(output, ids=np.array(ids), lengths=np.array([len(f) for f in feats]), data=np.concatenate(feats))
    print(json.dumps({"inner_s": loop_s, "audio_s": audio_s, "startup_s": loop_start - started,
                      "self_rss_mb": _maxrss_mb(resource.RUSAGE_SELF)}))


def pipeline_side(manifest: str, output: str, workers: int) -> None:
    """``ser features`` on DirectRunner multi_processing; prints timings."""
    from pipelines import features

    summary = features.run(["--manifest", manifest, "--output", output,
                            "--direct_running_mode", "multi_processing", "--direct_num_workers", str(workers)])
    print(json.dumps({"inner_s": summary.wall_s, "audio_s": summary.audio_s, "rows": summary.rows,
                      "errors": summary.errors, "self_rss_mb": _maxrss_mb(resource.RUSAGE_SELF),
                      "workers_rss_mb": _maxrss_mb(resource.RUSAGE_CHILDREN)}))


def _maxrss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: kilobytes


# ---------------------------------------------------------------- measuring


def _tree_rss_mb(pid: int) -> float:
    """Sum of VmRSS over pid and its descendants (Linux /proc; 0 elsewhere)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/statm") as fh:
                rss[int(entry)] = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack += children.get(p, [])
    return total / 2**20


def measure(args: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``benchmarks/features.py <args>`` as a subprocess: its JSON line, wall and peak tree RSS."""
    peak = [0.0]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, **(env or {})})

    def poll() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_mb(proc.pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    watcher.join()
    if proc.returncode != 0:
        sys.exit(f"benchmark side {args[0]} failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    return {**result, "wall_s": wall, "tree_rss_mb": peak[0]}


def prepare_corpus(corpus: str | None, speakers: int) -> tuple[Path, Path]:
    """(corpus root, manifest path): --corpus as given, else the demo corpus generated once."""
    from ser_core.corpora import prepare
    from ser_core.records import write_manifest

    if corpus:
        root = Path(corpus)
    else:
        root = OUT / f"demo-corpus-{speakers}"
        if len(list(root.glob("Actor_*/*.wav"))) != 60 * speakers:
            print(f"generating the demo corpus ({60 * speakers} clips) in {root} ...", flush=True)
            _generate(root, speakers)
    manifest = OUT / "manifest.parquet"
    write_manifest(prepare("ravdess", str(root)).utterances, manifest)
    return root, manifest


def _generate(root: Path, speakers: int) -> None:
    try:
        from ser_core.demo.corpus import generate_demo_corpus
    except ImportError:  # no demo generator: seeded tone-plus-noise clips in RAVDESS layout
        from tests.synth_audio import write_audio

        for actor in range(1, speakers + 1):
            for i in range(60):
                emotion, statement, rep = 1 + i % 8, 1 + (i // 8) % 2, 1 + (i // 16) % 2
                name = f"03-01-{emotion:02d}-01-{statement:02d}-{rep:02d}-{actor:02d}.wav"
                write_audio(root / f"Actor_{actor:02d}" / f"{i:02d}-{name}", 3.5, 48000, seed=actor * 100 + i)
        return
    generate_demo_corpus(root, speakers=speakers, seed=0, sample_rate=48000, workers=os.cpu_count() or 1,
                         progress=False)


def compare(plain_npz: Path, features_dir: Path) -> tuple[float, int]:
    """(max over dimensions of max |pipeline - plain| / range of the dimension, frames compared)."""
    from ser_core.storage import read_shards

    ref = np.load(plain_npz)
    table = read_shards(str(features_dir), "features", ["utterance_id", "features"])
    ours = {uid: np.asarray(f, dtype=np.float32)
            for uid, f in zip(table.column("utterance_id").to_pylist(), table.column("features").to_pylist())}
    if set(ours) != set(ref["ids"].tolist()):
        sys.exit("the two sides produced different sets of utterances")
    data = ref["data"]
    aligned = np.concatenate([ours[uid] for uid in ref["ids"].tolist()])
    if aligned.shape != data.shape:
        sys.exit(f"shape mismatch: pipeline {aligned.shape} vs plain {data.shape}")
    span = data.max(axis=0) - data.min(axis=0)
    deviation = np.abs(aligned - data).max(axis=0) / np.where(span > 0, span, 1.0)
    return float(deviation.max()), int(data.shape[0])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_plain":
        plain_loop(*sys.argv[2:4])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_pipeline":
        pipeline_side(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", help="RAVDESS-layout folder (default: the demo corpus, generated once)")
    parser.add_argument("--speakers", type=int, default=24, help="demo corpus size: 60 clips per speaker")
    parser.add_argument("--workers", type=int, default=2, help="DirectRunner worker processes")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side; medians are reported")
    parser.add_argument("--plain-blas-threads", type=int, default=None,
                        help="cap the plain loop's BLAS threads (default: library defaults, as a typical "
                             "script runs; the pipeline always uses one per worker)")
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    root, manifest = prepare_corpus(args.corpus, args.speakers)
    plain_npz, features_dir = OUT / "plain-features.npz", OUT / "features"
    print(f"corpus: {root} | machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before", flush=True)
    warm_up_librosa(manifest)

    plain_env = {} if args.plain_blas_threads is None else {
        v: str(args.plain_blas_threads) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    plain_runs, pipe_runs = [], []
    for _ in range(args.repeats):
        plain_runs.append(measure(["_plain", str(manifest), str(plain_npz)], plain_env))
        pipe_runs.append(measure(["_pipeline", str(manifest), str(features_dir), str(args.workers)]))
    deviation, frames = compare(plain_npz, features_dir)

    def med(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    audio_s = plain_runs[0]["audio_s"]
    plain_x, pipe_x = audio_s / med(plain_runs, "wall_s"), audio_s / med(pipe_runs, "wall_s")
    clips = pipe_runs[0]["rows"] + pipe_runs[0]["errors"]
    print(f"clips: {clips} ({pipe_runs[0]['errors']} errors), {audio_s:.1f} s of audio, {frames} frames; "
          f"repeats {args.repeats} (medians)")
    blas = "default BLAS threads" if args.plain_blas_threads is None else f"BLAS threads {args.plain_blas_threads}"
    print(f"plain librosa loop, 1 process ({blas}): {med(plain_runs, 'wall_s'):6.2f} s wall -> {plain_x:7.1f}x real time "
          f"(loop alone {med(plain_runs, 'inner_s'):.2f} s = {audio_s / med(plain_runs, 'inner_s'):.1f}x); "
          f"peak RSS {med(plain_runs, 'self_rss_mb'):.0f} MB")
    print(f"Beam pipeline, {args.workers} workers (multi_processing): {med(pipe_runs, 'wall_s'):6.2f} s wall -> "
          f"{pipe_x:7.1f}x real time (pipeline.run alone {med(pipe_runs, 'inner_s'):.2f} s = "
          f"{audio_s / med(pipe_runs, 'inner_s'):.1f}x); peak RSS main {med(pipe_runs, 'self_rss_mb'):.0f} MB, "
          f"largest worker {med(pipe_runs, 'workers_rss_mb'):.0f} MB, whole tree {med(pipe_runs, 'tree_rss_mb'):.0f} MB "
          f"(plain tree {med(plain_runs, 'tree_rss_mb'):.0f} MB)")
    print(f"speed-up (whole-process wall): {pipe_x / plain_x:.2f}x | "
          f"load average {os.getloadavg()[0]:.2f} after")
    ok = deviation <= TOLERANCE
    print(f"max |pipeline - plain| / dimension range: {deviation:.2e} (limit {TOLERANCE:g}) {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


def warm_up_librosa(manifest: Path) -> None:
    """Run the plain side once on one clip, untimed: librosa compiles its numba kernels
    on first use (seconds) and caches them on disk; a timed run should not pay that."""
    import pyarrow.parquet as pq

    one = manifest.with_name("warmup.parquet")
    pq.write_table(pq.read_table(manifest).slice(0, 1), one)
    measure(["_plain", str(one), str(OUT / "warmup.npz")])


if __name__ == "__main__":
    sys.exit(main())
