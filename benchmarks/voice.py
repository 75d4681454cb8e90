"""Benchmark: our voice descriptors (``features.kind: voice``) against openSMILE's eGeMAPS.

    python benchmarks/voice.py --manifest MANIFEST [--clips 200] [--sample-rate 8000]
                               [--band-hz 300,3400] [--repeats 3]

Both sides take the same decoded clips (resampled and band-limited as the front-end does)
in the same process, alternately, ``--repeats`` times:

- plain: openSMILE's eGeMAPS v02 low-level descriptors (``opensmile.Smile(...).process_signal``,
  the ``egemaps`` front-end's engine; needs the ``opensmile`` extra);
- ours: :func:`ser_core.voice.descriptors` (numpy).

Printed: the median seconds per repeat for each, audio seconds per CPU second, and their
ratio; then, per descriptor of the same kind, how well the two agree over the clips, for
each clip's mean over its voiced (F0 > 0 in openSMILE) 10 ms steps: Pearson's r across clips
and within each speaker after removing the speaker's mean (what speaker normalisation
leaves). Low agreement does not say which one is right: openSMILE measures jitter and
shimmer per glottal cycle, ours per 10 ms step (ser_core/voice.py says why); the alpha
ratio is low over high band as Eyben et al. (2016) define it, openSMILE's the inverse (r = -1);
on a synthetic vowel of formants 500/1500/2500 Hz at 8 kHz, band-limited, ours measure
469/1510/2491 Hz and openSMILE's 325/1335/2431 (``tests/test_voice.py`` holds ours to 8 %),
and on real band-limited speech openSMILE's F1-F3 sit several hundred Hz above ours.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# ours -> openSMILE's eGeMAPS v02 LLD column
PAIRS = {
    "loudness": "Loudness_sma3", "alpha_ratio": "alphaRatio_sma3", "hammarberg": "hammarbergIndex_sma3",
    "slope_0_500": "slope0-500_sma3", "slope_500_1500": "slope500-1500_sma3", "flux": "spectralFlux_sma3",
    "mfcc1": "mfcc1_sma3", "mfcc2": "mfcc2_sma3", "mfcc3": "mfcc3_sma3", "mfcc4": "mfcc4_sma3",
    "f0_semitones": "F0semitoneFrom27.5Hz_sma3nz", "jitter": "jitterLocal_sma3nz",
    "shimmer_db": "shimmerLocaldB_sma3nz", "hnr_db": "HNRdBACF_sma3nz", "h1_h2": "logRelF0-H1-H2_sma3nz",
    "h1_a3": "logRelF0-H1-A3_sma3nz", "f1_hz": "F1frequency_sma3nz", "f1_bw": "F1bandwidth_sma3nz",
    "f1_db": "F1amplitudeLogRelF0_sma3nz", "f2_hz": "F2frequency_sma3nz", "f2_bw": "F2bandwidth_sma3nz",
    "f2_db": "F2amplitudeLogRelF0_sma3nz", "f3_hz": "F3frequency_sma3nz", "f3_bw": "F3bandwidth_sma3nz",
    "f3_db": "F3amplitudeLogRelF0_sma3nz",
}


def load_clips(manifest: str, n: int, sample_rate: int, band: tuple[float, float]) -> tuple[list, list]:
    from augment import sample_rows  # benchmarks/augment.py: the same spread over the manifest

    from ser_core.audio import load
    from ser_core.features import band_limit

    rows = sample_rows(manifest, n)
    return ([band_limit(load(row.path, sample_rate)[0], sample_rate, band) for row in rows],
            [row.speaker for row in rows])


def voiced_means(steps: list[np.ndarray], voiced: list[np.ndarray]) -> np.ndarray:
    return np.array([s[v].mean(axis=0) if v.any() else np.full(s.shape[1], np.nan) for s, v in zip(steps, voiced)])


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep] - a[keep].mean(), b[keep] - b[keep].mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b))) if (a @ a) > 0 and (b @ b) > 0 else float("nan")


def within_speaker(x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    out = x.copy()
    for s in np.unique(speakers):
        m = speakers == s
        out[m] -= np.nanmean(x[m], axis=0)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="a ser manifest of real speech")
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--sample-rate", type=int, default=8000)
    p.add_argument("--band-hz", default="300,3400")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    try:
        import opensmile
    except ImportError:
        print("needs the opensmile package: pip install 'ser-pipelines[opensmile]'", file=sys.stderr)
        return 2
    from ser_core import voice

    band = tuple(float(v) for v in args.band_hz.split(","))
    sr = args.sample_rate
    clips, speakers = load_clips(args.manifest, args.clips, sr, band)
    audio_s = sum(len(c) for c in clips) / sr
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    columns = list(smile.feature_names)
    voice.descriptors(clips[0], sr, band)  # first calls build the analysis tables
    times = {"openSMILE eGeMAPS": [], "ours (voice)": []}
    for _ in range(args.repeats):
        t = time.process_time()
        theirs = [smile.process_signal(c, sr).to_numpy(dtype=np.float64) for c in clips]
        times["openSMILE eGeMAPS"].append(time.process_time() - t)
        t = time.process_time()
        ours = [voice.descriptors(c, sr, band) for c in clips]
        times["ours (voice)"].append(time.process_time() - t)
    print(f"{len(clips)} clips, {audio_s:.0f} s of audio at {sr} Hz, band {band[0]:g}-{band[1]:g} Hz, "
          f"{args.repeats} repeats (CPU seconds, median)")
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"  {k:18s} {v:7.2f} s   {audio_s / v:7.0f} audio s per CPU s")
    print(f"  ratio: ours is {med['openSMILE eGeMAPS'] / med['ours (voice)']:.1f}x openSMILE's speed")

    f0 = columns.index(PAIRS["f0_semitones"])
    voiced_theirs = [t[:, f0] > 0 for t in theirs]
    # openSMILE's rows are 10 ms apart from 10 ms (20 ms windows): align ours, centred at k * 10 ms, by index
    n = [min(len(a), len(b)) for a, b in zip(ours, theirs)]
    a = voiced_means([o[1:k + 1] for o, k in zip(ours, n)], [v[:k] for v, k in zip(voiced_theirs, n)])
    b = voiced_means([t[:k] for t, k in zip(theirs, n)], [v[:k] for v, k in zip(voiced_theirs, n)])
    spk = np.asarray(speakers)
    wa, wb = within_speaker(a, spk), within_speaker(b, spk)
    print("\nagreement over clips (each clip's mean over its voiced steps), Pearson r:")
    print(f"  {'descriptor':16s} {'across clips':>12s} {'within speaker':>15s}")
    for i, name in enumerate(voice.DESCRIPTORS):
        j = columns.index(PAIRS[name])
        print(f"  {name:16s} {pearson(a[:, i], b[:, j]):12.2f} {pearson(wa[:, i], wb[:, j]):15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
