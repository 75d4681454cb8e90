"""The outputs of ``ser label`` (docs/CONTRACTS.md): their schemas and the pure functions
that build their rows. ``ser score`` and any other reader rely on these.

- ``segments-*.parquet`` (:func:`segments_schema`): path, channel (-1 when mixed down),
  role, start_s, end_s, emotion (the most probable label), confidence (its probability),
  ``prob_<label>`` per class;
- ``files-*.parquet`` (:func:`files_schema`): one row per input file: path, duration_s,
  sample_rate and channels (the file's own), speech_s (detected speech, summed over the
  labelled channels), n_segments, dominant_emotion (the most frequent segment label;
  null without segments), ``share_<label>`` (fraction of the file's segments with that
  label) and per_channel (list of channel, role, speech_s, n_segments, dominant_emotion);
- ``errors-*.parquet``: :data:`ser_core.errors.ERRORS_SCHEMA`, stage decode, features,
  spill or inference.

Segments and files shards carry what made the labels (model, its SHA-256, labels,
feature, normalisation and segmentation settings, channels, roles) in the schema metadata
:data:`METADATA_KEY` (:func:`label_metadata`). A file ends as either one error row or a
files row with its segments (:func:`finish_file`), so files rows + error rows = inputs.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from ser_core.errors import error_row
from ser_core.inference.segment import SegmentConfig
from ser_core.inference.windows import FileInfo, SegmentKey
from ser_core.metrics import PROB_PREFIX

SEGMENTS_PREFIX, FILES_PREFIX = "segments", "files"
SHARE_PREFIX = "share_"
METADATA_KEY = b"ser.label"
CHANNEL_TYPE = pa.struct([("channel", pa.int32()), ("role", pa.string()), ("speech_s", pa.float64()),
                          ("n_segments", pa.int32()), ("dominant_emotion", pa.string())])


def label_metadata(model: str, model_sha256: str, labels: Sequence[str], feature_config: Mapping[str, Any],
                   normalisation: str, seg: SegmentConfig, channels: str,
                   roles: Sequence[str]) -> dict[bytes, bytes]:
    """What made these labels (``ser.label`` schema metadata of segments and files shards)."""
    info = {"model": model, "model_sha256": model_sha256, "labels": list(labels),
            "feature_config": dict(feature_config), "normalisation": normalisation,
            "segment_config": seg.to_dict(), "channels": channels, "roles": list(roles)}
    return {METADATA_KEY: json.dumps(info, sort_keys=True).encode()}


def segments_schema(labels: Sequence[str], metadata: Mapping[bytes, bytes] | None = None) -> pa.Schema:
    fields = [pa.field("path", pa.string()), pa.field("channel", pa.int32()),
              pa.field("role", pa.string()), pa.field("start_s", pa.float64()),
              pa.field("end_s", pa.float64()), pa.field("emotion", pa.string()),
              pa.field("confidence", pa.float32())]
    fields += [pa.field(PROB_PREFIX + label, pa.float32()) for label in labels]
    return pa.schema(fields, metadata=metadata)


def files_schema(labels: Sequence[str], metadata: Mapping[bytes, bytes] | None = None) -> pa.Schema:
    fields = [pa.field("path", pa.string()), pa.field("duration_s", pa.float64()),
              pa.field("sample_rate", pa.int32()), pa.field("channels", pa.int32()),
              pa.field("speech_s", pa.float64()), pa.field("n_segments", pa.int32()),
              pa.field("dominant_emotion", pa.string())]
    fields += [pa.field(SHARE_PREFIX + label, pa.float64()) for label in labels]
    fields.append(pa.field("per_channel", pa.list_(CHANNEL_TYPE)))
    return pa.schema(fields, metadata=metadata)


def segment_row(key: SegmentKey, probs: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """One segments row: the window's key, its most probable label and every probability."""
    best = int(np.argmax(probs))
    row = {"path": key.path, "channel": key.channel, "role": key.role, "start_s": key.start_s,
           "end_s": key.end_s, "emotion": labels[best], "confidence": float(probs[best])}
    row.update({PROB_PREFIX + label: float(p) for label, p in zip(labels, probs)})
    return row


def dominant(emotions: Sequence[str], labels: Sequence[str]) -> str | None:
    """The most frequent emotion (ties: earlier in ``labels``); None with no segments."""
    if not emotions:
        return None
    counts = Counter(emotions)
    return max(labels, key=lambda label: (counts[label], -labels.index(label)))


def finish_file(path: str, infos: Sequence[FileInfo], segments: Sequence[Mapping], errors: Sequence[Mapping],
                labels: Sequence[str]) -> tuple[dict | None, list[dict], dict | None]:
    """(files row, segment rows, error row) for one file: either an error or the rest. A
    file whose windows did not all come back labelled is an error, never a partial row."""
    if not errors and not infos:
        errors = [error_row({"path": path}, "label", "no result (internal error)")]
    if not errors and len(segments) != infos[0].n_windows:
        errors = [error_row({"path": path}, "inference",
                            f"{len(segments)} of {infos[0].n_windows} windows came back labelled")]
    if errors:
        first = dict(sorted(errors, key=lambda e: (e["stage"], e["error"]))[0])
        if len(errors) > 1:
            first["error"] += f" (and {len(errors) - 1} more error(s))"
        return None, [], first
    info = infos[0]
    segments = sorted(segments, key=lambda s: (s["channel"], s["start_s"]))
    emotions = [s["emotion"] for s in segments]
    per_channel = []
    for ch in info.per_channel:
        mine = [s["emotion"] for s in segments if s["channel"] == ch["channel"]]
        per_channel.append({**ch, "n_segments": len(mine), "dominant_emotion": dominant(mine, labels)})
    row = {"path": path, "duration_s": info.duration_s, "sample_rate": info.sample_rate,
           "channels": info.channels, "speech_s": sum(c["speech_s"] for c in per_channel),
           "n_segments": len(segments), "dominant_emotion": dominant(emotions, labels),
           "per_channel": per_channel}
    counts = Counter(emotions)
    row.update({SHARE_PREFIX + label: counts[label] / len(segments) if segments else 0.0 for label in labels})
    return row, segments, None
