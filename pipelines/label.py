"""Beam pipeline: label audio archives with a trained checkpoint, resumably.

    ser label --model MODEL.pt --input 'calls/**.wav' [--input ...] --output labels/
              [--params params.yaml] [--channels mix|separate] [--roles agent,customer]
              [--segmentation vad|fixed] [--window-s 3] [--hop-s 1.5] [--min-speech-s 1]
              [--block-s 30] [--batch-size 64] [--chunk-files 1000] [Beam options]

Inputs are globs on any Beam filesystem (local paths, gs://, s3://; ``**`` crosses
folders) in any format libsndfile reads (WAV PCM, mu-law/A-law, FLAC, OGG Vorbis/Opus,
MP3). Per file, one worker:

1. streams the audio block by block (``--block-s``), resampled to the checkpoint's
   feature rate, mixed to mono (``--channels mix``) or kept as channels (``separate``,
   named by ``--roles`` when the file has that many channels, else ch0, ch1, ...);
2. pass 1: each channel's frame-energy histogram (constant memory) -> its speech
   threshold; pass 2: speech regions -> windows -> features, spilled to a local
   temporary file while each channel's feature statistics accumulate (what ``speaker``
   normalisation needs before any window is labelled); pass 3: the windows are read back
   and sent, keyed, to RunInference. Memory does not grow with the recording's length.
3. RunInference with a ``KeyedModelHandler`` (``ser_core.inference.handler``) labels
   batches of windows; the results are grouped per file into segment and file rows.

Outputs in ``--output``:

- ``segments-*.parquet``: path, channel (-1 when mixed down), role, start_s, end_s,
  emotion (the most probable label), confidence (its probability), prob_<label> per class;
- ``files-*.parquet``: one row per input file: path, duration_s, sample_rate and channels
  (the file's own), speech_s (detected speech, summed over the labelled channels),
  n_segments, dominant_emotion (the most frequent segment label; null without segments),
  share_<label> (fraction of the file's segments with that label) and per_channel (list
  of channel, role, speech_s, n_segments, dominant_emotion);
- ``errors-*.parquet``: utterance_id (empty), path, stage (decode, features, spill,
  inference), error (the reason).

Segments and files shards carry the model, labels, feature and segmentation settings in
the schema metadata ``ser.label``. A file whose decoding, features or inference failed
has one error row and no other rows; a file without speech has a files row with 0
segments. So files rows + error rows = input files.

Resuming: the inputs are matched once, at launch, with Beam's ``FileSystems.match`` (the
globbing ``fileio.MatchFiles`` does, but the list must be known before any pipeline runs
to skip finished files and cut chunks); files already present in the output's files or
errors shards are skipped (paths compared in resolved form), and the rest is labelled in
chunks of ``--chunk-files``, one Beam pipeline per chunk. A chunk writes into ``OUTPUT/_staging/<run>-<chunk>/``, marks it
``_SUCCESS`` when the pipeline has finished, then moves its shards into OUTPUT. At start
a staging folder with the mark is moved in (the move was interrupted), one without is
deleted (the chunk was interrupted). A run killed at any moment therefore loses at most
its unfinished chunk, and a re-run labels every file exactly once. (To retry files that
failed, delete the errors shard that lists them.) Do not run two jobs on one output.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from pipelines.common import (ERRORS_PREFIX, ERRORS_SCHEMA, WriteShards, count_rows, counter,
                              counter_value, describe_failure, error_row, limit_blas_threads, open_audio,
                              pipeline_options, pipeline_parser, read_shards, shard_paths)
from ser_core import audio
from ser_core.features import FeatureConfig, make_extractor, warm_up
from ser_core.inference import MIX_CHANNEL, MIX_ROLE
from ser_core.inference.handler import RunningStats, SegmentExample, SERModelHandler, open_checkpoint
from ser_core.inference.segment import EnergyHistogram, SegmentConfig, Segmenter
from ser_core.params import ParamsError, build_config, flags, load_section
from ser_core.training.evaluate import PROB_PREFIX

LOGGER = logging.getLogger(__name__)
SEGMENTS_PREFIX, FILES_PREFIX = "segments", "files"
STAGING, SUCCESS = "_staging", "_SUCCESS"
METADATA_KEY = b"ser.label"


# ---------------------------------------------------------------- configuration


@dataclass
class LabelConfig:
    """params.yaml ``label`` (with the SegmentConfig keys beside these); flags override."""

    model: str | None = None
    input: list[str] | str | None = None
    output: str | None = None
    channels: str = "separate"       # 'mix' | 'separate'
    roles: list[str] | str = field(default_factory=list)  # names of channels 0, 1, ...
    block_s: float = 30.0            # decoding block
    batch_size: int = 64             # windows per model call
    chunk_files: int = 1000          # files per pipeline run (the unit of resumption)
    threads: int = 1                 # BLAS and torch threads per worker process

    def __post_init__(self) -> None:
        if isinstance(self.input, str):
            self.input = [self.input]
        if isinstance(self.roles, str):
            self.roles = [r.strip() for r in self.roles.split(",") if r.strip()]
        if self.channels not in audio.CHANNEL_MODES:
            raise ParamsError(f"channels must be one of {audio.CHANNEL_MODES}, got {self.channels!r}")
        for name in ("block_s", "batch_size", "chunk_files", "threads"):
            if not getattr(self, name) > 0:
                raise ParamsError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("model", "input", "output"):
            if not getattr(self, name):
                raise ParamsError(f"--{name} is required (or params.yaml label.{name})")


def resolve_configs(args: argparse.Namespace) -> tuple[LabelConfig, SegmentConfig]:
    """Defaults <- params.yaml ``label`` <- flags, split between the two configs."""
    section = load_section(args.params, "label")
    seg_names = {f.name for f in dataclasses.fields(SegmentConfig)}
    known = seg_names | {f.name for f in dataclasses.fields(LabelConfig)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ParamsError(f"unknown label parameter(s) {unknown}; known: {sorted(known)}")
    seg_flags = flags(args, "segmentation", "window_s", "hop_s", "min_speech_s")
    label_flags = flags(args, "model", "input", "output", "channels", "roles", "block_s",
                        "batch_size", "chunk_files", "threads")
    try:
        seg = build_config(SegmentConfig, {k: v for k, v in section.items() if k in seg_names}, seg_flags)
    except ValueError as exc:
        raise ParamsError(str(exc)) from exc
    cfg = build_config(LabelConfig, {k: v for k, v in section.items() if k not in seg_names}, label_flags)
    return cfg, seg


# ---------------------------------------------------------------- typed pure helpers


class SegmentKey(NamedTuple):
    """What rides through RunInference beside each window."""

    path: str
    channel: int
    role: str
    start_s: float
    end_s: float


def channel_roles(n_channels: int, mode: str, roles: Sequence[str]) -> list[tuple[int, str]]:
    """(channel, role) per labelled stream: one mixed stream, or every channel named by
    ``roles`` when the file has exactly that many channels (else ch0, ch1, ...)."""
    if mode == "mix":
        return [(MIX_CHANNEL, MIX_ROLE)]
    named = len(roles) == n_channels
    return [(c, roles[c] if named else f"ch{c}") for c in range(n_channels)]


def model_digest(path: str) -> str:
    """SHA-256 of the checkpoint file: which model made a label, wherever the file lives."""
    digest = hashlib.sha256()
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def label_metadata(model: str, model_sha256: str, labels: Sequence[str], feature_config: Mapping[str, Any],
                   normalisation: str, seg: SegmentConfig, cfg: LabelConfig) -> dict[bytes, bytes]:
    """What made these labels (``ser.label`` schema metadata of segments and files shards)."""
    info = {"model": model, "model_sha256": model_sha256, "labels": list(labels),
            "feature_config": dict(feature_config), "normalisation": normalisation,
            "segment_config": seg.to_dict(), "channels": cfg.channels, "roles": list(cfg.roles)}
    return {METADATA_KEY: json.dumps(info, sort_keys=True).encode()}


def check_same_settings(output: str, metadata: Mapping[bytes, bytes]) -> None:
    """Refuse to resume into an output labelled by another model or with other settings
    (the checkpoint's path may change; its content may not)."""
    shards = shard_paths(output, FILES_PREFIX) or shard_paths(output, SEGMENTS_PREFIX)
    if not shards:
        return
    with FileSystems.open(shards[0], compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        before = json.loads((pq.read_schema(fh).metadata or {}).get(METADATA_KEY, b"{}"))
    now = json.loads(metadata[METADATA_KEY])
    differ = sorted(k for k in set(before) | set(now) if k != "model" and before.get(k) != now.get(k))
    if differ:
        raise ValueError(f"{output} already holds labels made with other {', '.join(differ)} "
                         f"(see {shards[0]}); label into a new --output")


def segments_schema(labels: Sequence[str], metadata: Mapping[bytes, bytes] | None = None) -> pa.Schema:
    fields = [pa.field("path", pa.string()), pa.field("channel", pa.int32()),
              pa.field("role", pa.string()), pa.field("start_s", pa.float64()),
              pa.field("end_s", pa.float64()), pa.field("emotion", pa.string()),
              pa.field("confidence", pa.float32())]
    fields += [pa.field(PROB_PREFIX + label, pa.float32()) for label in labels]
    return pa.schema(fields, metadata=metadata)


CHANNEL_TYPE = pa.struct([("channel", pa.int32()), ("role", pa.string()), ("speech_s", pa.float64()),
                          ("n_segments", pa.int32()), ("dominant_emotion", pa.string())])


def files_schema(labels: Sequence[str], metadata: Mapping[bytes, bytes] | None = None) -> pa.Schema:
    fields = [pa.field("path", pa.string()), pa.field("duration_s", pa.float64()),
              pa.field("sample_rate", pa.int32()), pa.field("channels", pa.int32()),
              pa.field("speech_s", pa.float64()), pa.field("n_segments", pa.int32()),
              pa.field("dominant_emotion", pa.string())]
    fields += [pa.field("share_" + label, pa.float64()) for label in labels]
    fields.append(pa.field("per_channel", pa.list_(CHANNEL_TYPE)))
    return pa.schema(fields, metadata=metadata)


def segment_row(key: SegmentKey, probs: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
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


def finish_file(path: str, infos: Sequence[Mapping], segments: Sequence[Mapping], errors: Sequence[Mapping],
                labels: Sequence[str]) -> tuple[dict | None, list[dict], dict | None]:
    """(files row, segment rows, error row) for one file: either an error or the rest."""
    if not errors and not infos:
        errors = [error_row({"path": path}, "label", "no result (internal error)")]
    if not errors and len(segments) != infos[0]["n_windows"]:
        errors = [error_row({"path": path}, "inference",
                            f"{len(segments)} of {infos[0]['n_windows']} windows came back labelled")]
    if errors:
        first = dict(sorted(errors, key=lambda e: (e["stage"], e["error"]))[0])
        if len(errors) > 1:
            first["error"] += f" (and {len(errors) - 1} more error(s))"
        return None, [], first
    info = infos[0]
    segments = sorted(segments, key=lambda s: (s["channel"], s["start_s"]))
    emotions = [s["emotion"] for s in segments]
    per_channel = []
    for ch in info["per_channel"]:
        mine = [s["emotion"] for s in segments if s["channel"] == ch["channel"]]
        per_channel.append({**ch, "n_segments": len(mine), "dominant_emotion": dominant(mine, labels)})
    row = {"path": path, "duration_s": info["duration_s"], "sample_rate": info["sample_rate"],
           "channels": info["channels"], "speech_s": sum(c["speech_s"] for c in per_channel),
           "n_segments": len(segments), "dominant_emotion": dominant(emotions, labels),
           "per_channel": per_channel}
    counts = Counter(emotions)
    row.update({"share_" + label: counts[label] / len(segments) if segments else 0.0 for label in labels})
    return row, segments, None


def inference_errors(dead_letter: tuple) -> Iterator[tuple[str, dict]]:
    """A failed batch -> one error row per file it held."""
    batch, failure = dead_letter
    for path in sorted({key.path for key, _ in batch}):
        yield path, error_row({"path": path}, "inference", describe_failure(failure))


# ---------------------------------------------------------------- DoFns


class Spill:
    """A file's window features parked in a local temporary file between passes 2 and 3,
    with each stream's running feature statistics: memory holds only the index."""

    def __init__(self, n_streams: int, n_dims: int):
        self.file = tempfile.TemporaryFile(prefix="ser-label-")
        self.n_dims = n_dims
        self.stats = [RunningStats(n_dims) for _ in range(n_streams)]
        self.index: list[tuple[int, int, int, int]] = []  # (stream, start, end, frames)

    def add(self, stream: int, start: int, end: int, features: np.ndarray) -> None:
        self.stats[stream].update(features)
        self.file.write(np.ascontiguousarray(features, dtype=np.float32).tobytes())
        self.index.append((stream, start, end, features.shape[0]))

    def read(self) -> Iterator[tuple[int, int, int, np.ndarray]]:
        self.file.seek(0)
        for stream, start, end, frames in self.index:
            data = self.file.read(frames * self.n_dims * 4)
            yield stream, start, end, np.frombuffer(data, dtype=np.float32).reshape(frames, self.n_dims)

    def close(self) -> None:
        self.file.close()


class SegmentFileFn(beam.DoFn):
    """Audio path -> keyed windows (main output), then ``info`` (a good file) or one
    ``errors`` row (a failed file). See the module docstring for the three passes."""

    def __init__(self, feature_config: Mapping[str, Any], segment_config: SegmentConfig,
                 channels: str, roles: Sequence[str], block_s: float, speaker_stats: bool,
                 threads: int | None = 1):
        self._feature_config = dict(feature_config)
        self._seg = segment_config
        self._channels = channels
        self._roles = list(roles)
        self._block_s = block_s
        self._speaker_stats = speaker_stats
        self._threads = threads

    def setup(self) -> None:
        self._blas_limits = limit_blas_threads(self._threads) if self._threads else None
        self._fc = FeatureConfig.from_dict(self._feature_config)
        warm_up(self._fc)
        self._extract = make_extractor(self._fc)
        self._files, self._failed = counter("label_files"), counter("label_failed")
        self._windows, self._audio_ms = counter("label_windows"), counter("label_audio_ms")

    def teardown(self) -> None:
        if self._blas_limits is not None:
            self._blas_limits.restore_original_limits()

    def _blocks(self, path: str) -> Iterator[np.ndarray]:
        """The file's blocks as (streams, samples) arrays at the feature rate."""
        with open_audio(path) as source:
            for block in audio.iter_blocks(source, self._block_s, self._fc.sample_rate,
                                           channels=self._channels, quality=self._fc.resample_quality):
                yield block[None, :] if block.ndim == 1 else block

    def _header(self, path: str) -> audio.AudioInfo:
        with open_audio(path) as source:
            return audio.info(source)

    def process(self, path: str) -> Iterator[Any]:
        self._stage, spill = "decode", None
        try:
            header = self._header(path)
            streams = channel_roles(header.channels, self._channels, self._roles)
            sr = self._fc.sample_rate
            # pass 1: each stream's speech threshold
            hists = [EnergyHistogram(self._seg, sr) for _ in streams]
            for block in self._blocks(path):
                for hist, samples in zip(hists, block):
                    hist.update(samples)
            # pass 2: speech -> windows -> features, spilled; statistics accumulate
            segs = [Segmenter(self._seg, sr, h.threshold_db()) for h in hists]
            spill = Spill(len(streams), self._fc.n_dims)
            n_samples = 0
            for block in self._blocks(path):
                n_samples += block.shape[1]
                for i, (seg, samples) in enumerate(zip(segs, block)):
                    self._add(spill, i, seg.feed(samples))
            for i, seg in enumerate(segs):
                self._add(spill, i, seg.flush())
            # pass 3: the windows, keyed, with their stream's statistics
            self._stage = "spill"
            stats = [s.result() if self._speaker_stats and s.n else None for s in spill.stats]
            for i, start, end, x in spill.read():
                channel, role = streams[i]
                yield SegmentKey(path, channel, role, start / sr, end / sr), SegmentExample(x, stats[i])
        except Exception as exc:  # every failure of one file becomes its error row
            self._failed.inc()
            LOGGER.warning("%s failed at %s: %s", path, self._stage, exc)
            reason = getattr(exc, "reason", None) or str(exc)  # AudioError keeps the path apart
            yield beam.pvalue.TaggedOutput("errors", (path, error_row(
                {"path": path}, self._stage, f"{type(exc).__name__}: {reason}")))
            return
        finally:
            if spill is not None:
                spill.close()
        self._files.inc()
        self._windows.inc(len(spill.index))
        self._audio_ms.inc(int(round(1000 * n_samples / sr)))
        yield beam.pvalue.TaggedOutput("info", (path, {
            "path": path, "duration_s": n_samples / sr, "sample_rate": header.sample_rate,
            "channels": header.channels, "n_windows": len(spill.index),
            "per_channel": [{"channel": c, "role": r, "speech_s": seg.speech_samples / sr}
                            for (c, r), seg in zip(streams, segs)]}))

    def _add(self, spill: Spill, stream: int, windows: Sequence) -> None:
        for w in windows:
            self._stage = "features"
            spill.add(stream, w.start, w.end, self._extract(w.samples))  # (T, D)
        self._stage = "decode"


class FinishFileFn(beam.DoFn):
    """(path, {info, segments, errors}) -> files row (main), ``segments`` rows, ``errors`` row."""

    def __init__(self, labels: Sequence[str]):
        self._labels = list(labels)

    def process(self, element: tuple[str, Mapping[str, Iterable]]) -> Iterator[Any]:
        path, grouped = element
        row, segments, error = finish_file(path, list(grouped["info"]), list(grouped["segments"]),
                                           list(grouped["errors"]), self._labels)
        if error is not None:
            yield beam.pvalue.TaggedOutput("errors", error)
            return
        for s in segments:
            yield beam.pvalue.TaggedOutput("segments", s)
        yield row


class LabelFiles(beam.PTransform):
    """PCollection of audio paths -> (files rows, segment rows, error rows)."""

    def __init__(self, model: str, labels: Sequence[str], feature_config: Mapping[str, Any],
                 normalisation: str, seg: SegmentConfig, channels: str = "separate",
                 roles: Sequence[str] = (), block_s: float = 30.0, batch_size: int = 64,
                 threads: int | None = 1):
        super().__init__()
        self._labels = list(labels)
        self._segment_fn = SegmentFileFn(feature_config, seg, channels, roles, block_s,
                                         speaker_stats=normalisation == "speaker", threads=threads)
        self._handler = KeyedModelHandler(SERModelHandler(model, batch_size=batch_size,
                                                          torch_threads=threads))

    def expand(self, paths: beam.PCollection):
        labels = self._labels
        parts = (paths
                 | "Redistribute" >> beam.Reshuffle()
                 | "DecodeSegmentFeatures" >> beam.ParDo(self._segment_fn).with_outputs(
                     "info", "errors", main="windows"))
        results, dlq = (parts.windows
                        | "Label" >> RunInference(self._handler).with_exception_handling())
        segments = results | "SegmentRows" >> beam.MapTuple(
            lambda key, result: (key.path, segment_row(key, result.inference, labels)))
        failed = dlq.failed_inferences | "InferenceErrors" >> beam.FlatMap(inference_errors)
        errors = (parts.errors, failed) | "AllErrors" >> beam.Flatten()
        out = ({"info": parts.info, "segments": segments, "errors": errors}
               | "GroupPerFile" >> beam.CoGroupByKey()
               | "Aggregate" >> beam.ParDo(FinishFileFn(labels)).with_outputs(
                   "segments", "errors", main="files"))
        return out.files, out.segments, out.errors


# ---------------------------------------------------------------- inputs, resumption


def _key(path: str) -> str:
    """Comparable form of a path (relative local paths resolved), so a resumed run
    recognises files however the glob was spelled."""
    return path if "://" in path else os.path.normpath(os.path.abspath(path))


def match_inputs(patterns: Sequence[str]) -> list[str]:
    """Every file the globs match (sorted, each once); a glob matching nothing is logged."""
    found: dict[str, str] = {}
    for pattern, result in zip(patterns, FileSystems.match(list(patterns))):
        if not result.metadata_list:
            LOGGER.warning("input %r matched no files", pattern)
        for m in result.metadata_list:
            found.setdefault(_key(m.path), m.path)
    return sorted(found.values())


def completed_paths(output: str) -> Counter:
    """How many files/errors rows each input path already has in ``output``."""
    done: Counter = Counter()
    for prefix in (FILES_PREFIX, ERRORS_PREFIX):
        if shard_paths(output, prefix):
            paths = read_shards(output, prefix, columns=["path"]).column("path").to_pylist()
            done.update(_key(p) for p in paths)
    return done


def _staging_dirs(output: str) -> list[str]:
    """The chunk folders under OUTPUT/_staging (local: listed; object stores: by prefix)."""
    root = FileSystems.join(output, STAGING)
    if "://" not in root:
        return sorted(os.path.join(root, d) for d in os.listdir(root)) if os.path.isdir(root) else []
    names = {m.path[len(root):].lstrip("/").split("/")[0]
             for r in FileSystems.match([FileSystems.join(root, "**")]) for m in r.metadata_list}
    return sorted(FileSystems.join(root, n) for n in names if n)


def _delete_tree(path: str) -> None:
    files = [m.path for r in FileSystems.match([FileSystems.join(path, "**")]) for m in r.metadata_list]
    if files:
        FileSystems.delete(files)
    if FileSystems.exists(path):  # local folders (object stores have none left)
        FileSystems.delete([path])


def _num_rows(path: str) -> int:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        return pq.ParquetFile(fh).metadata.num_rows


def commit(staging: str, output: str) -> int:
    """Move a finished chunk's non-empty shards into ``output`` (idempotent: a shard already
    moved is no longer in ``staging``), then delete ``staging``; returns how many moved."""
    moved = 0
    for prefix in (SEGMENTS_PREFIX, ERRORS_PREFIX, FILES_PREFIX):
        for src in shard_paths(staging, prefix):
            if _num_rows(src):
                FileSystems.rename([src], [FileSystems.join(output, FileSystems.split(src)[1])])
                moved += 1
    _delete_tree(staging)
    _remove_empty_staging(output)
    return moved


def _remove_empty_staging(output: str) -> None:
    root = FileSystems.join(output, STAGING)  # (object stores have no folders to remove)
    if "://" not in root and os.path.isdir(root) and not os.listdir(root):
        os.rmdir(root)


def recover(output: str) -> None:
    """Finish the commit of chunks marked done; delete chunks that never finished."""
    for staging in _staging_dirs(output):
        if FileSystems.exists(FileSystems.join(staging, SUCCESS)):
            LOGGER.info("completing the interrupted commit of %s", staging)
            commit(staging, output)
        else:
            LOGGER.info("discarding unfinished chunk %s", staging)
            _delete_tree(staging)
    _remove_empty_staging(output)


def write_outputs(outputs, staging: str, tag: str, labels: Sequence[str],
                  metadata: Mapping[bytes, bytes]) -> None:
    files, segments, errors = outputs
    _ = files | "WriteFiles" >> WriteShards(staging, f"{FILES_PREFIX}-{tag}", files_schema(labels, metadata))
    _ = segments | "WriteSegments" >> WriteShards(staging, f"{SEGMENTS_PREFIX}-{tag}",
                                                 segments_schema(labels, metadata))
    _ = errors | "WriteErrors" >> WriteShards(staging, f"{ERRORS_PREFIX}-{tag}", ERRORS_SCHEMA)


# ---------------------------------------------------------------- pipeline


def _defaults() -> dict[str, Any]:
    return {f.name: f.default for cls in (LabelConfig, SegmentConfig) for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING}


def parse_known_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Our options; everything else is left for Beam's PipelineOptions."""
    parser = pipeline_parser("ser label", "Beam pipeline: label audio archives with a trained checkpoint (resumable).")
    parser.add_argument("--model", help="checkpoint (ser train), local or on a Beam filesystem")
    parser.add_argument("--input", action="append", help="audio glob; repeat for more (gs:// too)")
    parser.add_argument("--output", help="output folder; files already labelled there are skipped")
    parser.add_argument("--params", help="params.yaml to read the `label` section from")
    g = parser.add_argument_group("overrides of params.yaml `label` (defaults in brackets)")
    d = _defaults()
    g.add_argument("--channels", choices=audio.CHANNEL_MODES,
                   help=f"mix down to mono, or label each channel [{d['channels']}]")
    g.add_argument("--roles", help="comma-separated names of channels 0, 1, ... (used for files with "
                                   "exactly that many channels), e.g. agent,customer [ch0, ch1, ...]")
    g.add_argument("--segmentation", choices=("vad", "fixed"),
                   help=f"energy speech detector, or windows over the whole channel [{d['segmentation']}]")
    g.add_argument("--window-s", dest="window_s", type=float, help=f"window length, s [{d['window_s']}]")
    g.add_argument("--hop-s", dest="hop_s", type=float, help=f"step between windows, s [{d['hop_s']}]")
    g.add_argument("--min-speech-s", dest="min_speech_s", type=float,
                   help=f"shortest speech region labelled, s [{d['min_speech_s']}]")
    g.add_argument("--block-s", dest="block_s", type=float, help=f"decoding block, s [{d['block_s']}]")
    g.add_argument("--batch-size", dest="batch_size", type=int,
                   help=f"windows per model call [{d['batch_size']}]")
    g.add_argument("--chunk-files", dest="chunk_files", type=int,
                   help=f"files per pipeline run: the unit of resumption [{d['chunk_files']}]")
    g.add_argument("--threads", type=int,
                   help=f"BLAS and torch threads per worker process; run one worker per core [{d['threads']}]")
    return parser.parse_known_args(argv)


@dataclass(frozen=True)
class Summary:
    """What a run did, and what the output holds now."""

    output: str
    matched: int
    skipped: int
    labelled: int
    chunks: int
    files_rows: int
    error_rows: int
    audio_s: float
    wall_s: float

    def format(self) -> str:
        speed = (f", {self.audio_s / 3600:.2f} h of audio in {self.wall_s:.1f} s "
                 f"({self.audio_s / max(self.wall_s, 1e-9):.0f}x real time)") if self.audio_s else ""
        return (f"ser label: {self.matched} input files, {self.skipped} already done, {self.labelled} "
                f"labelled in {self.chunks} chunk(s){speed}\n"
                f"  {self.output} now holds {self.files_rows} files rows + {self.error_rows} error rows")


def run(argv: Sequence[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> Summary:
    """Check inputs, recover, skip what is done, label the rest chunk by chunk."""
    args, pipeline_args = parse_known_args(argv)
    options = pipeline_options(pipeline_args)
    try:
        cfg, seg = resolve_configs(args)
        checkpoint = open_checkpoint(cfg.model)
        feature_config = FeatureConfig.from_dict(checkpoint.feature_config)
        if feature_config.n_dims != checkpoint.model_config.n_dims:
            raise ValueError(f"{cfg.model}: features have {feature_config.n_dims} dims, "
                             f"the model takes {checkpoint.model_config.n_dims}")
        inputs = match_inputs(cfg.input)
        if not inputs:
            raise FileNotFoundError(f"no input files match {cfg.input}")
        labels, mode = list(checkpoint.labels), checkpoint.normalisation["mode"]
        metadata = label_metadata(cfg.model, model_digest(cfg.model), labels, checkpoint.feature_config,
                                  mode, seg, cfg)
        if not FileSystems.exists(cfg.output):
            FileSystems.mkdirs(cfg.output)
        recover(cfg.output)
        check_same_settings(cfg.output, metadata)
    except (ParamsError, ValueError, OSError) as exc:
        sys.exit(f"ser label: error: {exc}")
    done = completed_paths(cfg.output)
    todo = [p for p in inputs if _key(p) not in done]
    size = len(todo) if test_pipeline is not None else cfg.chunk_files
    chunks = [todo[i:i + size] for i in range(0, len(todo), size)] if todo else []
    LOGGER.info("%d input files: %d already done, %d to label in %d chunk(s); model %s (%s, %s "
                "normalisation)", len(inputs), len(inputs) - len(todo), len(todo), len(chunks),
                cfg.model, labels, mode)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    start, audio_s = time.perf_counter(), 0.0
    for n, chunk in enumerate(chunks):
        tag = f"{run_id}-{n:04d}"
        staging = FileSystems.join(cfg.output, STAGING, tag)
        pipeline = test_pipeline or beam.Pipeline(options=options)
        outputs = (pipeline
                   | "Inputs" >> beam.Create(chunk)
                   | "LabelFiles" >> LabelFiles(cfg.model, labels, checkpoint.feature_config, mode, seg,
                                                cfg.channels, cfg.roles, cfg.block_s, cfg.batch_size,
                                                cfg.threads))
        write_outputs(outputs, staging, tag, labels, metadata)
        result = pipeline.run()
        result.wait_until_finish()
        audio_s += (counter_value(result, "label_audio_ms") or 0) / 1000
        FileSystems.create(FileSystems.join(staging, SUCCESS)).close()
        commit(staging, cfg.output)
        LOGGER.info("chunk %d/%d committed (%d files)", n + 1, len(chunks), len(chunk))

    summary = Summary(cfg.output, len(inputs), len(inputs) - len(todo), len(todo), len(chunks),
                      count_rows(cfg.output, FILES_PREFIX), count_rows(cfg.output, ERRORS_PREFIX),
                      audio_s, time.perf_counter() - start)
    print(summary.format())
    twice = sorted(p for p, n in completed_paths(cfg.output).items() if n > 1)
    if twice:
        raise RuntimeError(f"{len(twice)} file(s) have more than one row in {cfg.output}, e.g. {twice[0]}")
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Run the importable module, not __main__: worker processes must find its classes by name.
    from pipelines import label
    from ser_core.cli import exit_without_teardown

    label.run()
    exit_without_teardown(0)
