"""Beam pipeline: label audio archives with a trained checkpoint, resumably.

    ser label --model MODEL.pt|MODEL.onnx --input 'calls/**.wav' [--input ...] --output labels/
              [--params params.yaml] [--engine torch|onnx] [--channels mix|separate]
              [--roles agent,customer] [--segmentation energy|webrtc|silero|fixed] [--window-s 3]
              [--hop-s 1.5] [--min-speech-s 1] [--min-confidence 0] [--block-s 30] [--batch-size 64]
              [--chunk-files 1000] [Beam options]

Inputs are globs on any Beam filesystem (local paths, gs://, s3://; ``**`` crosses
folders) in any format libsndfile reads (WAV PCM, mu-law/A-law, FLAC, OGG Vorbis/Opus,
MP3). Per file, one worker streams the audio block by block, finds speech, cuts it into
windows and computes their features (:mod:`ser_core.inference.windows`: memory does not
grow with the recording's length); RunInference with a ``KeyedModelHandler``
(:mod:`ser_core.inference.handler`) labels batches of windows with the checkpoint in
PyTorch or an exported ONNX model in onnxruntime (``--engine``, by default the model
file's extension decides); the results are grouped per file into segment, files and
timeline rows (:mod:`ser_core.inference.outputs`). :class:`ser_core.Labeller` runs the
same library functions on one file without Beam.

Outputs in ``--output``: ``segments-*.parquet``, ``files-*.parquet`` (one row per input
file, in seconds per role), ``timeline-*.parquet`` (each channel's merged turns) and
``errors-*.parquet`` (one row per file that could not be labelled, with the stage and
reason), so files rows + error rows = input files. A file without speech has a files row
with 0 segments. Segments whose confidence is below ``--min-confidence`` are labelled
``uncertain`` (kept).

How the model was trained decides the defaults: a model trained on labelling windows
(checkpoint ``segmentation.mode`` windows) labels windows of its own ``window_s`` and
``hop_s`` unless params or flags set them; a whole-clip model, or settings that differ
from the model's, are logged as warnings and recorded in the ``ser.label`` metadata.

Resuming (:mod:`pipelines.resume`): files already in the output are skipped and the
rest is labelled in chunks of ``--chunk-files``, one Beam pipeline per chunk, each
committed all or nothing. A run killed at any moment loses at most its unfinished chunk;
a re-run labels every file exactly once, and refuses an output made with another model
or other settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from pipelines.common import (WriteSortedShards, counter, counter_value, describe_failure, limit_blas_threads,
                              pipeline_options, pipeline_parser)
from pipelines.resume import (check_same_settings, commit, completed_paths, mark_done, match_inputs, pending,
                              prepare_output, staging_dir)
from ser_core import audio
from ser_core.errors import ERRORS_PREFIX, ERRORS_SCHEMA, FileError, ParamsError, StageError, error_row
from ser_core.features import FeatureConfig
from ser_core.inference import UNCERTAIN
from ser_core.inference.engine import (ENGINES, check_model, engine_for, load_model, model_windows,
                                      segmentation_warnings)
from ser_core.inference.handler import SERModelHandler
from ser_core.inference.outputs import (FILES_PREFIX, METADATA_KEY, SEGMENTS_PREFIX, TIMELINE_PREFIX,
                                        check_min_confidence, files_schema, finish_file, label_metadata, segment_row, segments_schema,
                                        timeline_schema)
from ser_core.segmentation import CHANNEL_SEGMENTATIONS, SegmentConfig
from ser_core.inference.windows import Windower
from ser_core.params import build_config, flags, load_section
from ser_core.storage import count_rows, sha256

LOGGER = logging.getLogger(__name__)


# ---------------------------------------------------------------- configuration


@dataclass
class LabelConfig:
    """params.yaml ``label`` (with the SegmentConfig keys beside these); flags override."""

    model: str | None = None
    input: list[str] | str | None = None
    output: str | None = None
    engine: str | None = None        # torch | onnx; None: by the model file's extension
    min_confidence: float = 0.0      # segments less confident than this are 'uncertain' (0: off)
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
        if self.engine is not None and self.engine not in ENGINES:
            raise ParamsError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        for name in ("model", "input", "output"):
            if not getattr(self, name):
                raise ParamsError(f"--{name} is required (or params.yaml label.{name})")


def label_section(args: argparse.Namespace) -> tuple[dict[str, Any], set[str]]:
    """params.yaml ``label`` (unknown keys refused) and the names of SegmentConfig's keys."""
    section = load_section(args.params, "label")
    seg_names = {f.name for f in dataclasses.fields(SegmentConfig)}
    known = seg_names | {f.name for f in dataclasses.fields(LabelConfig)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ParamsError(f"unknown label parameter(s) {unknown}; known: {sorted(known)}")
    return section, seg_names


def label_config(args: argparse.Namespace) -> LabelConfig:
    """Defaults <- params.yaml ``label`` <- flags: what to label with what, and how to run."""
    section, seg_names = label_section(args)
    label_flags = flags(args, "model", "input", "output", "engine", "channels", "roles", "min_confidence",
                        "block_s", "batch_size", "chunk_files", "threads")
    return build_config(LabelConfig, {k: v for k, v in section.items() if k not in seg_names}, label_flags)


def segment_config(args: argparse.Namespace, model_defaults: Mapping[str, Any] | None = None) -> SegmentConfig:
    """Defaults <- ``model_defaults`` (the windows a windows-trained model saw,
    :func:`~ser_core.inference.engine.model_windows`) <- params.yaml ``label`` <- flags."""
    section, seg_names = label_section(args)
    values = {**(model_defaults or {}), **{k: v for k, v in section.items() if k in seg_names}}
    try:
        return build_config(SegmentConfig, values, flags(args, "segmentation", "window_s", "hop_s", "min_speech_s"))
    except ValueError as exc:
        raise ParamsError(str(exc)) from exc


# ---------------------------------------------------------------- typed pure helpers


def inference_errors(dead_letter: tuple) -> Iterator[tuple[str, dict]]:
    """A failed batch -> one error row per file it held."""
    batch, failure = dead_letter
    for path in sorted({key.path for key, _ in batch}):
        yield path, error_row({"path": path}, "inference", describe_failure(failure))


# ---------------------------------------------------------------- DoFns


class SegmentFileFn(beam.DoFn):
    """Audio path -> keyed windows (main output), then ``info`` (a good file) or one
    ``errors`` row (a failed file)."""

    def __init__(self, feature_config: Mapping[str, Any], segment_config: SegmentConfig,
                 channels: str, roles: Sequence[str], block_s: float, speaker_stats: bool,
                 threads: int | None = 1):
        self._feature_config = dict(feature_config)
        self._settings = (segment_config, channels, list(roles), block_s, speaker_stats)
        self._threads = threads

    def setup(self) -> None:
        self._blas_limits = limit_blas_threads(self._threads) if self._threads else None
        self._windower = Windower(FeatureConfig.from_dict(self._feature_config), *self._settings)
        self._files, self._failed = counter("label_files"), counter("label_failed")
        self._windows, self._audio_ms = counter("label_windows"), counter("label_audio_ms")

    def teardown(self) -> None:
        if self._blas_limits is not None:
            self._blas_limits.restore_original_limits()

    def process(self, path: str) -> Iterator[Any]:
        try:
            with self._windower.open(path) as windows:
                yield from windows
        except FileError as exc:  # every failure of one file becomes its error row
            self._failed.inc()
            LOGGER.warning("%s failed at %s: %s", path, exc.stage, exc.reason)
            yield beam.pvalue.TaggedOutput("errors", (path, error_row({"path": path}, exc.stage, exc.reason)))
            return
        info = windows.info
        self._files.inc()
        self._windows.inc(info.n_windows)
        self._audio_ms.inc(int(round(1000 * info.duration_s)))
        yield beam.pvalue.TaggedOutput("info", (path, info))


class FinishFileFn(beam.DoFn):
    """(path, {info, segments, errors}) -> files row (main), ``segments`` and ``timeline``
    rows, or one ``errors`` row."""

    def __init__(self, labels: Sequence[str], max_gap_s: float):
        self._labels = list(labels)
        self._max_gap_s = max_gap_s

    def process(self, element: tuple[str, Mapping[str, Iterable]]) -> Iterator[Any]:
        path, grouped = element
        rows, error = finish_file(path, list(grouped["info"]), list(grouped["segments"]),
                                  list(grouped["errors"]), self._labels, self._max_gap_s)
        if error is not None:
            yield beam.pvalue.TaggedOutput("errors", error)
            return
        for s in rows.segments:
            yield beam.pvalue.TaggedOutput("segments", s)
        for turn in rows.timeline:
            yield beam.pvalue.TaggedOutput("timeline", turn)
        yield rows.files_row


class LabelOutputs(NamedTuple):
    """What :class:`LabelFiles` gives: one PCollection of rows per output."""

    files: beam.PCollection
    segments: beam.PCollection
    errors: beam.PCollection
    timeline: beam.PCollection


class LabelFiles(beam.PTransform):
    """PCollection of audio paths -> :class:`LabelOutputs` (files, segment, error and
    timeline rows)."""

    def __init__(self, model: str, labels: Sequence[str], feature_config: Mapping[str, Any],
                 normalisation: str, seg: SegmentConfig, channels: str = "separate",
                 roles: Sequence[str] = (), block_s: float = 30.0, batch_size: int = 64,
                 threads: int | None = 1, engine: str | None = None, min_confidence: float = 0.0):
        super().__init__()
        self._labels = list(labels)
        self._min_confidence = float(min_confidence)
        self._max_gap_s = seg.hop_s
        self._segment_fn = SegmentFileFn(feature_config, seg, channels, roles, block_s,
                                         speaker_stats=normalisation == "speaker", threads=threads)
        self._handler = KeyedModelHandler(SERModelHandler(model, engine=engine, batch_size=batch_size,
                                                          threads=threads))

    def expand(self, paths: beam.PCollection) -> LabelOutputs:
        labels, min_confidence = self._labels, self._min_confidence
        parts = (paths
                 | "Redistribute" >> beam.Reshuffle()
                 | "DecodeSegmentFeatures" >> beam.ParDo(self._segment_fn).with_outputs(
                     "info", "errors", main="windows"))
        results, dlq = (parts.windows
                        | "Label" >> RunInference(self._handler).with_exception_handling())
        segments = results | "SegmentRows" >> beam.MapTuple(
            lambda key, result: (key.path, segment_row(key, result.inference, labels, min_confidence)))
        failed = dlq.failed_inferences | "InferenceErrors" >> beam.FlatMap(inference_errors)
        errors = (parts.errors, failed) | "AllErrors" >> beam.Flatten()
        out = ({"info": parts.info, "segments": segments, "errors": errors}
               | "GroupPerFile" >> beam.CoGroupByKey()
               | "Aggregate" >> beam.ParDo(FinishFileFn(labels, self._max_gap_s)).with_outputs(
                   "segments", "timeline", "errors", main="files"))
        return LabelOutputs(out.files, out.segments, out.errors, out.timeline)


def write_outputs(outputs: LabelOutputs, staging: str, tag: str, labels: Sequence[str],
                  metadata: Mapping[bytes, bytes]) -> None:
    """One shard per output and chunk, rows sorted by file and time: the bytes depend on
    the inputs alone (not on workers or bundles), so a DVC output of labels is reproducible."""
    def write(name: str, schema: pa.Schema, order: Sequence[str]) -> WriteSortedShards:
        return WriteSortedShards(staging, f"{name}-{tag}", schema, 1, key="path", order=order)

    _ = outputs.files | "WriteFiles" >> write(FILES_PREFIX, files_schema(labels, metadata), ["path"])
    _ = outputs.segments | "WriteSegments" >> write(SEGMENTS_PREFIX, segments_schema(labels, metadata),
                                                    ["path", "channel", "start_s"])
    _ = outputs.timeline | "WriteTimeline" >> write(TIMELINE_PREFIX, timeline_schema(metadata),
                                                    ["path", "channel", "turn"])
    _ = outputs.errors | "WriteErrors" >> write(ERRORS_PREFIX, ERRORS_SCHEMA, ["path"])


# ---------------------------------------------------------------- pipeline


def _defaults() -> dict[str, Any]:
    return {f.name: f.default for cls in (LabelConfig, SegmentConfig) for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING}


def parse_known_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Our options; everything else is left for Beam's PipelineOptions."""
    parser = pipeline_parser("ser label", "Beam pipeline: label audio archives with a trained checkpoint (resumable).")
    parser.add_argument("--model", help="checkpoint (ser train) or ONNX model (ser export), local or on a "
                                        "Beam filesystem")
    parser.add_argument("--input", action="append", help="audio glob; repeat for more (gs:// too)")
    parser.add_argument("--output", help="output folder; files already labelled there are skipped")
    parser.add_argument("--params", help="params.yaml to read the `label` section from")
    g = parser.add_argument_group("overrides of params.yaml `label` (defaults in brackets)")
    d = _defaults()
    g.add_argument("--engine", choices=ENGINES,
                   help="run the model in PyTorch (a checkpoint) or onnxruntime (an ONNX model from ser "
                        "export) [by the model file's extension: .onnx -> onnx]")
    g.add_argument("--channels", choices=audio.CHANNEL_MODES,
                   help=f"mix down to mono, or label each channel [{d['channels']}]")
    g.add_argument("--roles", help="comma-separated names of channels 0, 1, ... (used for files with "
                                   "exactly that many channels), e.g. agent,customer [ch0, ch1, ...]")
    g.add_argument("--segmentation", choices=CHANNEL_SEGMENTATIONS,
                   help=f"speech detector (energy, webrtc, silero), or fixed windows over "
                        f"the whole channel [{d['segmentation']}]")
    g.add_argument("--window-s", dest="window_s", type=float,
                   help=f"window length, s [the model's own if it was trained on windows, else {d['window_s']}]")
    g.add_argument("--hop-s", dest="hop_s", type=float,
                   help=f"step between windows, s [the model's own if it was trained on windows, else {d['hop_s']}]")
    g.add_argument("--min-speech-s", dest="min_speech_s", type=float,
                   help=f"shortest speech region labelled, s [{d['min_speech_s']}]")
    g.add_argument("--min-confidence", dest="min_confidence", type=float,
                   help=f"segments whose calibrated top probability is below this are labelled "
                        f"{UNCERTAIN!r} (kept) [{d['min_confidence']}: off]")
    g.add_argument("--block-s", dest="block_s", type=float, help=f"decoding block, s [{d['block_s']}]")
    g.add_argument("--batch-size", dest="batch_size", type=int,
                   help=f"windows per model call [{d['batch_size']}]")
    g.add_argument("--chunk-files", dest="chunk_files", type=int,
                   help=f"files per pipeline run: the unit of resumption [{d['chunk_files']}]")
    g.add_argument("--threads", type=int,
                   help=f"BLAS and torch threads per worker process; run one worker per core [{d['threads']}]")
    return parser.parse_known_args(argv)


@dataclass(frozen=True)
class Plan:
    """What a run will do, settled before any pipeline starts."""

    cfg: LabelConfig
    seg: SegmentConfig
    labels: list[str]
    feature_config: dict
    normalisation: str
    engine: str
    metadata: dict[bytes, bytes]
    inputs: list[str]
    todo: list[str]


def plan(args: argparse.Namespace) -> Plan:
    """Check settings, model and inputs, recover an interrupted run, find what is left;
    raises :class:`StageError` (naming what is wrong) before any work. Warns (and records
    in the metadata) where the model was trained on audio cut unlike the labelling windows."""
    try:
        cfg = label_config(args)
        engine = engine_for(cfg.model, cfg.engine)
        model = load_model(cfg.model, engine, threads=None)
        check_model(model, cfg.model)
        seg = segment_config(args, model_windows(model.segmentation))
        labels, mode = list(model.labels), model.normalisation["mode"]
        check_min_confidence(cfg.min_confidence, labels)
        inputs = match_inputs(cfg.input)
        if not inputs:
            raise FileNotFoundError(f"no input files match {cfg.input}")
        warnings = segmentation_warnings(model.segmentation, seg)
        for warning in warnings:
            LOGGER.warning("%s: %s", cfg.model, warning)
        metadata = label_metadata(cfg.model, sha256(cfg.model), labels, model.feature_config, mode, seg,
                                  cfg.channels, cfg.roles, engine=engine, min_confidence=cfg.min_confidence,
                                  model_segmentation=model.segmentation, warnings=warnings)
        prepare_output(cfg.output)
    except (ValueError, OSError) as exc:  # ParamsError included
        raise StageError(str(exc)) from exc
    check_same_settings(cfg.output, metadata)
    return Plan(cfg, seg, labels, model.feature_config, mode, engine, metadata, inputs,
                pending(inputs, cfg.output))


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
    job = plan(args)
    cfg, todo = job.cfg, job.todo
    size = len(todo) if test_pipeline is not None else cfg.chunk_files
    chunks = [todo[i:i + size] for i in range(0, len(todo), size)] if todo else []
    LOGGER.info("%d input files: %d already done, %d to label in %d chunk(s); model %s (%s engine, %s, %s "
                "normalisation)", len(job.inputs), len(job.inputs) - len(todo), len(todo), len(chunks),
                cfg.model, job.engine, job.labels, job.normalisation)
    # Named after what it labels (not the clock), so the same inputs give the same files.
    run_id = hashlib.sha256(json.dumps([sorted(todo), job.metadata[METADATA_KEY].decode()]).encode()).hexdigest()[:12]
    start, audio_s = time.perf_counter(), 0.0
    for n, chunk in enumerate(chunks):
        tag = f"{run_id}-{n:04d}"
        staging = staging_dir(cfg.output, tag)
        pipeline = test_pipeline or beam.Pipeline(options=options)
        outputs = (pipeline
                   | "Inputs" >> beam.Create(chunk)
                   | "LabelFiles" >> LabelFiles(cfg.model, job.labels, job.feature_config, job.normalisation, job.seg,
                                                cfg.channels, cfg.roles, cfg.block_s, cfg.batch_size,
                                                cfg.threads, job.engine, cfg.min_confidence))
        write_outputs(outputs, staging, tag, job.labels, job.metadata)
        result = pipeline.run()
        result.wait_until_finish()
        audio_s += (counter_value(result, "label_audio_ms") or 0) / 1000
        mark_done(staging)
        commit(staging, cfg.output)
        LOGGER.info("chunk %d/%d committed (%d files)", n + 1, len(chunks), len(chunk))

    summary = Summary(cfg.output, len(job.inputs), len(job.inputs) - len(todo), len(todo), len(chunks),
                      count_rows(cfg.output, FILES_PREFIX), count_rows(cfg.output, ERRORS_PREFIX),
                      audio_s, time.perf_counter() - start)
    print(summary.format())
    twice = sorted(path for path, n in completed_paths(cfg.output).items() if n > 1)
    if twice:
        raise RuntimeError(f"{len(twice)} file(s) have more than one row in {cfg.output}, e.g. {twice[0]}")
    return summary


if __name__ == "__main__":
    # Exactly ``ser label``: the command line imports this module by name (worker processes
    # must find its classes there, not in __main__) and turns errors into one line.
    from ser_core.cli import entry

    entry(["label", *sys.argv[1:]])
