"""What int8 costs, and what making it CPU-independent costs: every fold checkpoint of a
``ser train`` output labels its own test speakers (out of fold) in PyTorch, ONNX fp32,
ONNX int8 as ``ser export --int8`` writes it (7-bit weights: the same labels on AVX2 and
AVX-512 VNNI CPUs) and int8 with 8-bit weights (what it wrote before; its labels on an
AVX2-only CPU differ from these).

    python benchmarks/int8.py TRAIN_DIR FEATURES_DIR [--out benchmarks/out/int8]

Per engine: pooled out-of-fold UAR over the model's rows (a telephone model's rows are the
3-s windows ``ser label`` labels) and over clips (mean probabilities of a clip's windows),
the share of rows whose label equals fp32's, and the largest |probability - fp32's|. Each
speaker is normalised with its own statistics, as the test folds are in training.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from ser_core.checkpoint import load_checkpoint
from ser_core.export import _quantise, export_onnx
from ser_core.metrics import uar
from ser_core.normalisation import frame_stats
from ser_core.onnx_model import OnnxModel
from ser_core.training.data import load_features

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("torch", "fp32", "int8 (7-bit, ser export)", "int8 (8-bit weights)")


def engines_for(path: Path, folder: Path) -> dict:
    """The four engines of one checkpoint; 8-bit: ser export's fp32 graph re-quantised
    without reduce_range, metadata carried over."""
    fp32 = export_onnx(path, folder / "model.onnx").path
    int8 = export_onnx(path, folder / "model.int8.onnx", int8=True).path
    eight = folder / "model.int8-8bit.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        _quantise(fp32, Path(tmp) / "q.onnx", reduce_range=False)
        import onnx

        model = onnx.load(str(Path(tmp) / "q.onnx"))
        onnx.helper.set_model_props(model, {p.key: p.value for p in onnx.load(str(int8)).metadata_props})
        onnx.save(model, str(eight))
    return {"torch": load_checkpoint(path), "fp32": OnnxModel.load(fp32),
            "int8 (7-bit, ser export)": OnnxModel.load(int8), "int8 (8-bit weights)": OnnxModel.load(eight)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_dir", type=Path)
    parser.add_argument("features_dir", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "int8")
    args = parser.parse_args()
    checkpoints = sorted(args.train_dir.glob("runs/seed*/fold*/checkpoint.pt"))
    if not checkpoints:
        sys.exit(f"no runs/seed*/fold*/checkpoint.pt under {args.train_dir}")
    labels = load_checkpoint(checkpoints[0]).labels
    data = load_features(args.features_dir, labels)
    y, clips, probs = [], [], {e: [] for e in ENGINES}
    for path in checkpoints:
        models = engines_for(path, args.out / path.parent.parent.name / path.parent.name)
        for speaker in models["torch"].provenance["test_speakers"]:
            idx = data.indices([speaker])
            feats = [data.features[i] for i in idx]
            stats = frame_stats(feats)
            for e in ENGINES:
                probs[e].append(models[e].predict_proba(feats, stats))
            y += data.y[idx].tolist()
            clips += [data.sources[i] for i in idx]
    y = np.array(y)
    p = {e: np.concatenate(v) for e, v in probs.items()}
    order = {c: i for i, c in enumerate(dict.fromkeys(clips))}
    clip_of = np.array([order[c] for c in clips])
    clip_y = np.zeros(len(order), dtype=int)
    clip_y[clip_of] = y
    n = len(labels)
    print(f"{len(checkpoints)} fold checkpoints of {args.train_dir}; {len(y)} out-of-fold rows, {len(order)} clips")
    print("| engine | UAR (rows) | UAR (clips) | rows labelled as fp32 | max abs prob diff vs fp32 |")
    print("|---|---|---|---|---|")
    for e in ENGINES:
        clip_p = np.zeros((len(order), n))
        np.add.at(clip_p, clip_of, p[e])
        same = float(np.mean(p[e].argmax(1) == p["fp32"].argmax(1)))
        print(f"| {e} | {uar(y, p[e].argmax(1), n):.4f} | {uar(clip_y, clip_p.argmax(1), n):.4f} | "
              f"{100 * same:.2f}% | {np.abs(p[e] - p['fp32']).max():.4f} |")


if __name__ == "__main__":
    main()
