"""The features shard contract, one home for the pipeline that writes shards and the
training that reads them (docs/CONTRACTS.md).

``DIR/features-SSSSS-of-NNNNN.parquet``: one row per utterance (or per window of one, or
per augmented copy) with the manifest columns, ``source_id`` and ``variant`` (the clip a
row comes from, and ``""`` or the augmentation that made it), the span of the clip it
covers (``start_s``, ``end_s``), ``n_frames``, ``sample_rate`` and ``features`` (frames x
dims, float32). The schema metadata holds the front-end (``ser.features``: JSON of
:meth:`~ser_core.features.FeatureConfig.to_dict`), how the rows were made (``ser.rows``:
:class:`RowConfig`) and provenance (``ser.provenance``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ser_core import augmentation
from ser_core.features import FeatureConfig
from ser_core.records import MANIFEST_SCHEMA
from ser_core.segmentation import CLIP_SEGMENTATIONS, CUT_DECIDES, SegmentConfig
from ser_core.storage import read_schema

FEATURES_PREFIX = "features"  # shards DIR/features-*.parquet
METADATA_KEY = b"ser.features"  # Parquet schema metadata: JSON of FeatureConfig.to_dict()
ROWS_METADATA_KEY = b"ser.rows"  # ... and JSON of how the rows were made (augmentations, segmentation)
PROVENANCE_KEY = b"ser.provenance"
COLUMNS = ("utterance_id", "corpus", "speaker", "gender", "emotion", "n_frames", "features")
ROW_COLUMNS = ("source_id", "variant")  # absent from shards written before augmentation existed
ORIGINAL = augmentation.ORIGINAL  # the variant of an unaugmented row ("")


@dataclass(frozen=True)
class RowConfig:
    """params.yaml ``features`` keys that decide which rows a clip gives (not the front-end).

    ``segmentation``: ``none`` (the whole clip, as the paper trains), ``speech`` (the clip
    trimmed to the speech the labelling detector finds: first to last speech region, pads
    included) or ``windows`` (the labelling windows over that speech, one row each, every
    one carrying its clip's emotion, speaker and ``source_id``). ``segment_config`` is how
    ``ser label`` cuts calls (the ``label`` section of the same params file), so a model
    meant for labelling is trained on the audio it will see. The cutting itself is
    :func:`ser_core.segmentation.cut_clip` (``Labeller.predict_clip`` cuts a clip
    with it too).
    """

    augment: tuple[str, ...] = ()
    segmentation: str = "none"
    segment_config: SegmentConfig = SegmentConfig()

    def __post_init__(self) -> None:
        names = self.augment.split(",") if isinstance(self.augment, str) else list(self.augment or ())
        object.__setattr__(self, "augment", tuple(augmentation.check_names([n for n in names if n.strip()])))
        if self.segmentation not in CLIP_SEGMENTATIONS:
            raise ValueError(f"features.segmentation must be one of {CLIP_SEGMENTATIONS}, got {self.segmentation!r}")
        if isinstance(self.segment_config, Mapping):
            object.__setattr__(self, "segment_config", SegmentConfig.from_dict(self.segment_config))

    @property
    def variants(self) -> tuple[str, ...]:
        return (augmentation.ORIGINAL,) + self.augment

    def to_dict(self) -> dict[str, Any]:
        cut = None if self.segmentation == "none" else self.segment_config.to_dict()
        return {"augment": list(self.augment),
                "segmentation": {"mode": self.segmentation, "segment_config": cut}}


ROW_KEYS = ("augment", "segmentation")


def segmentation_differences(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """How rows cut as ``actual`` differ from rows cut as ``expected`` (both ``{"mode",
    "segment_config"}``, as features (``ser.rows``) and checkpoints carry them), in what
    decides what a model hears (:data:`~ser_core.segmentation.CUT_DECIDES`, by which
    labelling warns too): whole clips, speech or windows; the speech detector; the windows'
    length and hop. E.g. ``["segmentation: none, expected
    windows"]``."""
    mode, want = actual.get("mode", "none"), expected.get("mode", "none")
    if mode != want:
        return [f"segmentation: {mode}, expected {want}"]
    got_cut = SegmentConfig.from_dict(actual.get("segment_config") or {})
    want_cut = SegmentConfig.from_dict(expected.get("segment_config") or {})
    return [f"{'detector' if name == 'segmentation' else name}: {getattr(got_cut, name)}, "
            f"expected {getattr(want_cut, name)}"
            for name in CUT_DECIDES[want] if getattr(got_cut, name) != getattr(want_cut, name)]


def features_schema(config: FeatureConfig, provenance: Mapping[str, Any],
                    rows: RowConfig = RowConfig()) -> pa.Schema:
    """Manifest columns, source_id, variant, span, n_frames, sample_rate, features; config,
    row settings and provenance as metadata."""
    fields = list(MANIFEST_SCHEMA) + [
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("n_frames", pa.int32(), nullable=False),
        pa.field("sample_rate", pa.int32(), nullable=False),
        pa.field("features", pa.list_(pa.list_(pa.float32())), nullable=False),
    ]
    return pa.schema(fields).with_metadata({
        METADATA_KEY: json.dumps(config.to_dict(), sort_keys=True).encode(),
        ROWS_METADATA_KEY: json.dumps(rows.to_dict(), sort_keys=True).encode(),
        PROVENANCE_KEY: json.dumps(dict(provenance), sort_keys=True).encode(),
    })


def read_feature_config(path: str) -> dict[str, Any]:
    """The feature settings a features shard (local or URL) was written with, as stored
    (``ser.features``: JSON of :meth:`FeatureConfig.to_dict`); ``FeatureConfig.from_dict``
    turns it into a config. Read from the Parquet footer only."""
    raw = (read_schema(path).metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path}: no {METADATA_KEY.decode()} schema metadata; not a features shard")
    return json.loads(raw)


def read_shard(path: str) -> tuple[dict, list[np.ndarray]]:
    """One shard's columns (as lists) and its feature matrices, checked against ``n_frames``."""
    names = pq.read_schema(str(path)).names
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{path}: not a features shard, missing columns {missing}")
    table = pq.read_table(str(path), columns=list(COLUMNS) + [c for c in ROW_COLUMNS if c in names])
    arrays: list[np.ndarray] = []
    for chunk in table.column("features").chunks:
        if len(chunk) == 0:
            continue
        if chunk.null_count:
            raise ValueError(f"{path}: null features in {chunk.null_count} row(s)")
        frames = chunk.flatten()  # one list per frame
        n_dims = np.unique(pc.list_value_length(frames).to_numpy(zero_copy_only=False))
        if len(n_dims) != 1:
            raise ValueError(f"{path}: frames must all have one size, found {n_dims.tolist()}")
        values = frames.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        bounds = np.cumsum(pc.list_value_length(chunk).to_numpy(zero_copy_only=False))[:-1]
        arrays += np.split(values.reshape(-1, int(n_dims[0])), bounds)
    columns = table.select([c for c in table.column_names if c != "features"]).to_pydict()
    columns.setdefault("source_id", list(columns["utterance_id"]))
    columns.setdefault("variant", [ORIGINAL] * len(columns["utterance_id"]))
    for uid, n, x in zip(columns["utterance_id"], columns["n_frames"], arrays):
        if x.shape[0] == 0 or x.shape[0] != n:
            raise ValueError(f"{path}: utterance {uid!r} has {x.shape[0]} frames, n_frames says {n}")
    return columns, arrays


def read_rows_config(path: str | Path) -> dict:
    """How a features shard's rows were made (``ser.rows``: augmentations, segmentation);
    shards written before it existed hold whole, unaugmented clips."""
    raw = (read_schema(str(path)).metadata or {}).get(ROWS_METADATA_KEY)
    rows = json.loads(raw) if raw else {}
    rows.setdefault("augment", [])
    rows.setdefault("segmentation", {"mode": "none", "segment_config": None})
    return rows
