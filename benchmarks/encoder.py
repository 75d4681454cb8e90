"""Benchmark: the speaker_encoder front-end against Resemblyzer's own way to the same frames.

    python benchmarks/encoder.py --manifest MANIFEST [--clips 200] [--repeats 3] [--threads 1]

Both sides take the same clips, decoded at 16 kHz, in the same process, alternately,
``--repeats`` times, with torch and BLAS at ``--threads``:

- plain: Resemblyzer's path (``normalize_volume`` to -30 dBFS, ``wav_to_mel_spectrogram``
  through librosa, its ``VoiceEncoder``'s LSTM), the frames its embeddings are made from;
- ours: :func:`ser_core.encoder.frames` (the mel analysis on :mod:`ser_core.spectral`, the
  same weights read from the wheel without importing the package).

Printed: the median CPU seconds per repeat for each, audio seconds per CPU second, their
ratio, and the largest absolute difference between the two sides' frames over all clips.
Needs librosa and resemblyzer (``make setup`` installs both).
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


def resemblyzer_steps():
    """Resemblyzer's own path to the encoder's frames (its volume rule, its librosa mel, its
    ``VoiceEncoder``'s LSTM): a function of 16 kHz audio -> (steps, 256), one per 10 ms."""
    import torch
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram

    from ser_core import encoder

    lstm = VoiceEncoder("cpu", verbose=False).lstm

    def steps(y: np.ndarray) -> np.ndarray:
        mel = wav_to_mel_spectrogram(normalize_volume(y, encoder.TARGET_DBFS, increase_only=True))
        with torch.inference_mode():
            return lstm(torch.from_numpy(mel)[None])[0][0].numpy()
    return steps


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="a ser manifest of real speech")
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    from augment import load_clips  # benchmarks/augment.py: the same clips, spread over the manifest

    from ser_core import encoder

    torch.set_num_threads(args.threads)
    clips = load_clips(args.manifest, args.clips, encoder.SAMPLE_RATE)
    audio_s = sum(len(c) for c in clips) / encoder.SAMPLE_RATE
    sides = {"Resemblyzer (librosa mel)": resemblyzer_steps(), "ours (speaker_encoder)": encoder.frames}
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for side in sides.values():
            side(clips[0])  # first calls: librosa's numba compilation, the weights loaded
        times = {name: [] for name in sides}
        outputs = {}
        for _ in range(args.repeats):
            for name, side in sides.items():
                t = time.process_time()
                outputs[name] = [side(c) for c in clips]
                times[name].append(time.process_time() - t)
    print(f"{len(clips)} clips, {audio_s:.0f} s of audio at 16 kHz, {args.repeats} repeats, "
          f"{args.threads} thread(s) (CPU seconds, median)")
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"  {k:26s} {v:7.2f} s   {audio_s / v:7.0f} audio s per CPU s")
    plain, ours = med["Resemblyzer (librosa mel)"], med["ours (speaker_encoder)"]
    print(f"  ratio: ours is {plain / ours:.2f}x Resemblyzer's speed")
    diff = max(float(np.abs(a - b).max()) for a, b in zip(*outputs.values()))
    print(f"  largest absolute difference between the two sides' frames: {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
