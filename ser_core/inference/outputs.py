"""The outputs of ``ser label`` (docs/CONTRACTS.md): their schemas and the pure functions
that build their rows. ``ser score``, ``ser report``, the Python API and any other reader
rely on these.

- ``segments-*.parquet`` (:func:`segments_schema`): path, channel (-1 when mixed down),
  role, start_s, end_s, emotion (the most probable label, or ``uncertain`` when its
  probability is below ``--min-confidence``), confidence (that probability, calibrated),
  ``prob_<label>`` per class;
- ``files-*.parquet`` (:func:`files_schema`): one row per input file: path, duration_s,
  sample_rate and channels (the file's own), speech_s (labelled seconds, summed over the
  channels), n_segments, dominant_emotion (most seconds; null without confident segments),
  ``share_<label>`` and ``share_uncertain`` (fractions of the labelled seconds), and
  per_channel: one entry per labelled channel with its role summary
  (:func:`ser_core.inference.summary.role_schema` without path and duration_s: speech_s,
  detected_s, n_segments, dominant emotion, shares, and per third of the call its
  seconds and dominant emotion);
- ``timeline-*.parquet`` (:data:`~ser_core.inference.summary.TIMELINE_SCHEMA`): each
  channel's windows merged into turns (start, end, emotion, mean confidence);
- ``errors-*.parquet``: :data:`ser_core.errors.ERRORS_SCHEMA`, stage decode, features,
  spill or inference.

Every number of a files or timeline row is seconds, never window counts
(:mod:`ser_core.inference.summary`). Segments, files and timeline shards carry what made
the labels (model, its SHA-256, engine, labels, feature, normalisation and segmentation
settings, the model's own segmentation, confidence threshold, channels, roles, warnings)
in the schema metadata :data:`METADATA_KEY` (:func:`label_metadata`). A file ends as
either one error row or a files row with its segments and turns (:func:`finish_file`),
so files rows + error rows = inputs.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import pyarrow as pa

from ser_core.errors import error_row
from ser_core.inference import UNCERTAIN
from ser_core.segmentation import SegmentConfig
from ser_core.inference.summary import (DEFAULT_MAX_GAP_S, TIMELINE_SCHEMA, dominant, emotion_seconds,
                                        role_schema, shares, summarise_file, uncertain_share)
from ser_core.inference.windows import FileInfo, SegmentKey
from ser_core.metrics import PROB_PREFIX

SEGMENTS_PREFIX, FILES_PREFIX, TIMELINE_PREFIX = "segments", "files", "timeline"
SHARE_PREFIX = "share_"
METADATA_KEY = b"ser.label"
FILE_LEVEL = ("path", "duration_s")  # role-row fields a files row holds once, not per channel


def label_metadata(model: str, model_sha256: str, labels: Sequence[str], feature_config: Mapping[str, Any],
                   normalisation: str, seg: SegmentConfig, channels: str, roles: Sequence[str], *,
                   engine: str = "torch", min_confidence: float = 0.0,
                   model_segmentation: Mapping[str, Any] | None = None,
                   warnings: Sequence[str] = (), model_labels: Sequence[str] | None = None) -> dict[bytes, bytes]:
    """What made these labels (``ser.label`` schema metadata of every output shard):
    ``labels`` those written, ``model_labels`` the model's own (more when ``restrict_to``
    kept a subset; default: the same)."""
    info = {"model": model, "model_sha256": model_sha256, "engine": engine, "labels": list(labels),
            "model_labels": list(model_labels or labels),
            "feature_config": dict(feature_config), "normalisation": normalisation,
            "segment_config": seg.to_dict(), "model_segmentation": dict(model_segmentation or {}),
            "min_confidence": float(min_confidence), "channels": channels, "roles": list(roles),
            "warnings": list(warnings)}
    return {METADATA_KEY: json.dumps(info, sort_keys=True).encode()}


def check_min_confidence(min_confidence: float, labels: Sequence[str]) -> float:
    """A confidence threshold that can be applied to these labels (ValueError otherwise)."""
    value = float(min_confidence)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
    if value > 0 and UNCERTAIN in labels:
        raise ValueError(f"the model has a label {UNCERTAIN!r}: --min-confidence cannot mark segments {UNCERTAIN!r}")
    return value


def segments_schema(labels: Sequence[str], metadata: Mapping[bytes, bytes] | None = None) -> pa.Schema:
    fields = [pa.field("path", pa.string()), pa.field("channel", pa.int32()),
              pa.field("role", pa.string()), pa.field("start_s", pa.float64()),
              pa.field("end_s", pa.float64()), pa.field("emotion", pa.string()),
              pa.field("confidence", pa.float32())]
    fields += [pa.field(PROB_PREFIX + label, pa.float32()) for label in labels]
    return pa.schema(fields, metadata=metadata)


def channel_type(labels: Sequence[str]) -> pa.StructType:
    """One ``per_channel`` entry: a role summary without the file-level fields."""
    return pa.struct([f for f in role_schema(labels) if f.name not in FILE_LEVEL])


def files_schema(labels: Sequence[str], metadata: Mapping[bytes, bytes] | None = None) -> pa.Schema:
    fields = [pa.field("path", pa.string()), pa.field("duration_s", pa.float64()),
              pa.field("sample_rate", pa.int32()), pa.field("channels", pa.int32()),
              pa.field("speech_s", pa.float64()), pa.field("n_segments", pa.int32()),
              pa.field("dominant_emotion", pa.string())]
    fields += [pa.field(SHARE_PREFIX + label, pa.float64()) for label in labels]
    fields.append(pa.field(SHARE_PREFIX + UNCERTAIN, pa.float64()))
    fields.append(pa.field("per_channel", pa.list_(channel_type(labels))))
    return pa.schema(fields, metadata=metadata)


def timeline_schema(metadata: Mapping[bytes, bytes] | None = None) -> pa.Schema:
    return TIMELINE_SCHEMA.with_metadata(metadata) if metadata else TIMELINE_SCHEMA


def segment_row(key: SegmentKey, probs: np.ndarray, labels: Sequence[str],
                min_confidence: float = 0.0) -> dict[str, Any]:
    """One segments row: the window's key, its most probable label (``uncertain`` when that
    label's probability is below ``min_confidence``) and every probability."""
    best = int(np.argmax(probs))
    confidence = float(probs[best])
    row = {"path": key.path, "channel": key.channel, "role": key.role, "start_s": key.start_s,
           "end_s": key.end_s, "emotion": labels[best] if confidence >= min_confidence else UNCERTAIN,
           "confidence": confidence}
    row.update({PROB_PREFIX + label: float(p) for label, p in zip(labels, probs)})
    return row


class FileRows(NamedTuple):
    """Everything one labelled file gives: its files row, segments, role summaries, turns."""

    files_row: dict[str, Any]
    segments: list[dict[str, Any]]
    roles: list[dict[str, Any]]
    timeline: list[dict[str, Any]]


def finish_file(path: str, infos: Sequence[FileInfo], segments: Sequence[Mapping], errors: Sequence[Mapping],
                labels: Sequence[str], max_gap_s: float = DEFAULT_MAX_GAP_S) -> tuple[FileRows | None, dict | None]:
    """(rows, None) for a labelled file or (None, error row): one file ends as either. A
    file whose windows did not all come back labelled is an error, never a partial row.
    ``max_gap_s`` (the labelling hop) joins windows into turns."""
    if not errors and not infos:
        errors = [error_row({"path": path}, "label", "no result (internal error)")]
    if not errors and len(segments) != infos[0].n_windows:
        errors = [error_row({"path": path}, "inference",
                            f"{len(segments)} of {infos[0].n_windows} windows came back labelled")]
    if errors:
        first = dict(sorted(errors, key=lambda e: (e["stage"], e["error"]))[0])
        if len(errors) > 1:
            first["error"] += f" (and {len(errors) - 1} more error(s))"
        return None, first
    info = infos[0]
    segments = sorted((dict(s) for s in segments), key=lambda s: (s["channel"], s["start_s"]))
    roles, timeline = summarise_file(
        path, segments, labels, duration_s=info.duration_s, max_gap_s=max_gap_s,
        channels=[(c["channel"], c["role"]) for c in info.per_channel],
        detected_s={c["channel"]: c["speech_s"] for c in info.per_channel})
    seconds = emotion_seconds(segments)
    row = {"path": path, "duration_s": info.duration_s, "sample_rate": info.sample_rate,
           "channels": info.channels, "speech_s": sum(r["speech_s"] for r in roles),
           "n_segments": len(segments), "dominant_emotion": dominant(seconds, labels),
           **shares(seconds, labels), SHARE_PREFIX + UNCERTAIN: uncertain_share(seconds),
           "per_channel": [{k: v for k, v in r.items() if k not in FILE_LEVEL} for r in roles]}
    return FileRows(row, segments, roles, timeline), None
