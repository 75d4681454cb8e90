"""Benchmark: what each augmented copy costs (``ser features --augment``), against the features.

    python benchmarks/augment.py --manifest MANIFEST [--clips 100] [--sample-rate 8000]
                                 [--names speed1.1,hiss,gsm,reverb,vtlp] [--repeats 3]

Every copy a feature set holds is its clip transformed, then analysed like the clip itself:
its cost is the transform's plus one more feature extraction. The same decoded real clips,
in the same process, alternately, ``--repeats`` times:

- features: the default front-end (log-mel + deltas, at ``--sample-rate``) of each clip: the
  cost every copy pays on top of its transform;
- each augmentation named (:func:`ser_core.augmentation.transform`);
- plain: librosa's pitch shift by one semitone (``librosa.effects.pitch_shift``: phase
  vocoder, then resampling), the usual library call for changing a voice without its tempo,
  beside ``vtlp``, which moves the formants and keeps pitch and tempo.

Printed: CPU seconds per repeat (median) for each, audio seconds per CPU second, and each
transform's cost as a share of one feature extraction; and ``vtlp`` against the plain pitch
shift as a ratio. Written to benchmarks/out/augment/figures.json as well.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "out" / "augment"
PLAIN = "librosa pitch_shift +1 st"


def sample_rows(manifest: str, n: int) -> list:
    """``n`` rows of a manifest, evenly spread over it (so over its speakers and emotions)."""
    from ser_core.records import read_manifest

    rows = read_manifest(manifest)
    return rows[::max(1, len(rows) // n)][:n]


def load_clips(manifest: str, n: int, sample_rate: int) -> list:
    from ser_core.audio import load

    return [load(row.path, sample_rate)[0] for row in sample_rows(manifest, n)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="a ser manifest of real speech")
    p.add_argument("--clips", type=int, default=100)
    p.add_argument("--sample-rate", type=int, default=8000)
    p.add_argument("--names", default="speed1.1,hiss,gsm,reverb,vtlp", help="augmentations to time")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(OUT), help="folder for figures.json")
    args = p.parse_args(argv)
    import librosa

    from ser_core import augmentation
    from ser_core.features import FeatureConfig, make_extractor

    sr = args.sample_rate
    names = augmentation.check_names(args.names.split(","))
    clips = load_clips(args.manifest, args.clips, sr)
    audio_s = sum(len(c) for c in clips) / sr
    extract = make_extractor(FeatureConfig(kind="logmel_deltas", sample_rate=sr, n_mels=23))
    jobs = {"features (logmel_deltas)": lambda y, i: extract(y)}
    jobs.update({name: (lambda y, i, f=augmentation.transform(name): f(y, sr, f"clip{i}")) for name in names})
    jobs[PLAIN] = lambda y, i: librosa.effects.pitch_shift(y, sr=sr, n_steps=1.0)
    for job in jobs.values():  # first calls build filterbanks, compile numba, load codecs
        job(clips[0], 0)
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(args.repeats):
        for name, job in jobs.items():
            t = time.process_time()
            for i, y in enumerate(clips):
                job(y, i)
            times[name].append(time.process_time() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["features (logmel_deltas)"]
    print(f"{len(clips)} clips, {audio_s:.0f} s of audio at {sr} Hz, {args.repeats} repeats (CPU seconds, median)")
    for k, v in med.items():
        print(f"  {k:26s} {v:7.2f} s  {audio_s / v:7.0f} audio s per CPU s  {v / base:5.2f}x one feature extraction")
    if "vtlp" in med:
        print(f"  ratio: vtlp costs {med['vtlp'] / med[PLAIN]:.2f}x the plain pitch shift")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures.json").write_text(json.dumps(
        {"clips": len(clips), "audio_s": audio_s, "sample_rate": sr, "repeats": args.repeats,
         "cpu_s_median": med, "share_of_features": {k: v / base for k, v in med.items()}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
