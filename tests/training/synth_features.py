"""Features shards in the docs/CONTRACTS.md format, written without the features pipeline.

Frames are learnable but not trivially: each class has its own mean vector, each speaker
adds an offset (so speaker-independent is harder than speaker-dependent), and every frame
adds noise. Deterministic per seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ser_core.labels import RAVDESS_LABELS

FEATURE_CONFIG = {"name": "synthetic", "n_dims": 6}
RAVDESS_SPEAKERS = tuple((f"ravdess:{a:02d}", "male" if a % 2 else "female") for a in range(1, 25))


def feature_table(speakers: Sequence[tuple[str, str]] = RAVDESS_SPEAKERS,
                  emotions: Sequence[str] = RAVDESS_LABELS, per_class: int = 2, n_dims: int = 6,
                  frames: tuple[int, int] = (8, 20), class_sep: float = 1.0,
                  speaker_scale: float = 1.0, seed: int = 0) -> pa.Table:
    """One row per utterance: manifest columns, n_frames, sample_rate, features."""
    rng = np.random.default_rng(seed)
    class_means = {e: rng.normal(0, class_sep, n_dims) for e in emotions}
    rows = []
    for speaker, gender in speakers:
        offset = rng.normal(0, speaker_scale, n_dims)
        scale = rng.uniform(0.5, 2.0, n_dims)  # per-speaker channel gain
        for emotion in emotions:
            for k in range(per_class):
                t = int(rng.integers(frames[0], frames[1] + 1))
                x = (class_means[emotion] + offset + rng.normal(0, 1.0, (t, n_dims))) * scale
                corpus, ident = speaker.split(":")
                uid = f"{corpus}:{ident}-{emotion}-{k}"
                rows.append({"utterance_id": uid, "corpus": corpus, "path": f"{uid}.wav",
                             "speaker": speaker, "gender": gender, "emotion": emotion,
                             "custom": "{}", "n_frames": t, "sample_rate": 48000,
                             "features": x.astype(np.float32).tolist()})
    schema = pa.schema([(c, pa.string()) for c in
                        ("utterance_id", "corpus", "path", "speaker", "gender", "emotion", "custom")]
                       + [("n_frames", pa.int32()), ("sample_rate", pa.int32()),
                          ("features", pa.list_(pa.list_(pa.float32())))])
    config = dict(FEATURE_CONFIG, n_dims=n_dims)
    schema = schema.with_metadata({b"ser.features": json.dumps(config).encode()})
    return pa.Table.from_pylist(rows, schema=schema)


def write_shards(root: str | Path, table: pa.Table, n_shards: int = 2) -> Path:
    """Split ``table`` into ``n_shards`` interleaved features-*.parquet files under ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for s in range(n_shards):
        idx = np.arange(s, table.num_rows, n_shards)
        pq.write_table(table.take(pa.array(idx)), str(root / f"features-{s:05d}-of-{n_shards:05d}.parquet"))
    return root


def with_augmented_rows(table: pa.Table, variants: Sequence[str], seed: int = 1) -> pa.Table:
    """``table`` plus, for every row, one copy per variant (``<id>@<variant>``, features
    perturbed), with the ``source_id``/``variant`` columns the features pipeline writes."""
    rng = np.random.default_rng(seed)
    rows = table.to_pylist()
    out = [{**r, "source_id": r["utterance_id"], "variant": ""} for r in rows]
    for variant in variants:
        for r in rows:
            x = np.asarray(r["features"], np.float32)
            out.append({**r, "utterance_id": f"{r['utterance_id']}@{variant}", "source_id": r["utterance_id"],
                        "variant": variant,
                        "features": (x + rng.normal(0, 0.3, x.shape)).astype(np.float32).tolist()})
    schema = table.schema.append(pa.field("source_id", pa.string())).append(pa.field("variant", pa.string()))
    return pa.Table.from_pylist(out, schema=schema.with_metadata(table.schema.metadata))
