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
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from pipelines.common import (ThreadLimits, WriteSortedShards, counter, counter_value, describe_failure,
                              pipeline_options, pipeline_parser)
from pipelines.resume import (check_same_settings, commit, completed_paths, mark_done, match_inputs, pending,
                              prepare_output, staging_dir)
from ser_core.errors import ERRORS_PREFIX, ERRORS_SCHEMA, FileError, ParamsError, StageError, error_row
from ser_core.features import FeatureConfig, make_extractor
from ser_core.inference.engine import load_model
from ser_core.inference.handler import SERModelHandler
from ser_core.inference.outputs import (FILES_PREFIX, METADATA_KEY, SEGMENTS_PREFIX, TIMELINE_PREFIX, files_schema,
                                        finish_file, segment_row, segments_schema, timeline_schema)
from ser_core.inference.plan import SETTING_KEYS, LabelPlan, LabelSettings, resolve
from ser_core.params import add_flags, build_config, flags, load_section
from ser_core.segmentation import SEGMENT_KEYS, SegmentConfig
from ser_core.storage import count_rows, sha256

LOGGER = logging.getLogger(__name__)


# ---------------------------------------------------------------- configuration


@dataclass
class LabelJob:
    """What to label with what, and where (params.yaml ``label``: these keys, beside the
    :class:`~ser_core.inference.plan.LabelSettings` and segmentation keys); flags override."""

    model: str | None = None
    input: list[str] | str | None = None
    output: str | None = None
    chunk_files: int = 1000          # files per pipeline run (the unit of resumption)

    def __post_init__(self) -> None:
        if isinstance(self.input, str):
            self.input = [self.input]
        if not self.chunk_files > 0:
            raise ParamsError(f"chunk_files must be > 0, got {self.chunk_files!r}")
        for name in ("model", "input", "output"):
            if not getattr(self, name):
                raise ParamsError(f"--{name} is required (or params.yaml label.{name})")


JOB_KEYS = frozenset(f.name for f in dataclasses.fields(LabelJob))


def read_settings(args: argparse.Namespace) -> tuple[LabelJob, LabelSettings, dict[str, Any]]:
    """params.yaml ``label`` (read once; unknown keys refused) under the flags, split into the
    job, the labelling settings and the segmentation settings (applied over the model's own
    windows by :func:`ser_core.inference.plan.resolve`)."""
    section = load_section(args.params, "label")
    known = JOB_KEYS | SETTING_KEYS | SEGMENT_KEYS
    unknown = sorted(set(section) - known)
    if unknown:
        raise ParamsError(f"unknown label parameter(s) {unknown}; known: {sorted(known)}")
    given = {**section, **flags(args, *known)}
    try:
        job = build_config(LabelJob, {k: v for k, v in given.items() if k in JOB_KEYS})
        settings = build_config(LabelSettings, {k: v for k, v in given.items() if k in SETTING_KEYS})
    except ValueError as exc:
        raise ParamsError(str(exc)) from exc
    return job, settings, {k: v for k, v in given.items() if k in SEGMENT_KEYS and v is not None}


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

    def __init__(self, plan: LabelPlan):
        self._plan = plan

    def setup(self) -> None:
        self._windower = self._plan.windower()
        threads = self._plan.settings.engine_threads
        self._limits = ThreadLimits(threads) if threads else None
        self._files, self._failed = counter("label_files"), counter("label_failed")
        self._windows, self._audio_ms = counter("label_windows"), counter("label_audio_ms")

    def teardown(self) -> None:
        if self._limits is not None:
            self._limits.restore()

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
    timeline rows), labelled as ``plan`` says."""

    def __init__(self, plan: LabelPlan):
        super().__init__()
        settings = plan.settings
        self._labels = list(plan.labels)
        self._min_confidence = float(settings.min_confidence)
        self._max_gap_s = plan.segment.hop_s
        self._segment_fn = SegmentFileFn(plan)
        self._handler = KeyedModelHandler(SERModelHandler(plan.model_path, engine=plan.engine,
                                                          batch_size=settings.batch_size,
                                                          threads=settings.engine_threads,
                                                          columns=plan.columns))

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


def parse_known_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Our options; everything else is left for Beam's PipelineOptions."""
    parser = pipeline_parser("ser label", "Beam pipeline: label audio archives with a trained checkpoint (resumable).")
    parser.add_argument("--model", help="checkpoint (ser train) or ONNX model (ser export), local or on a "
                                        "Beam filesystem")
    parser.add_argument("--input", action="append", help="audio glob; repeat for more (gs:// too)")
    parser.add_argument("--output", help="output folder; files already labelled there are skipped")
    parser.add_argument("--params", help="params.yaml to read the `label` section from")
    parser.add_argument("--chunk-files", dest="chunk_files", type=int,
                        help=f"files per pipeline run: the unit of resumption [{LabelJob.chunk_files}]")
    add_flags(parser.add_argument_group("how to label: overrides of params.yaml `label`"), LabelSettings)
    add_flags(parser.add_argument_group("where to label: overrides of params.yaml `label` (default: the "
                                        "model's own windows if it was trained on windows)"), SegmentConfig)
    return parser.parse_known_args(argv)


@dataclass(frozen=True)
class Run:
    """What a run will do, settled before any pipeline starts."""

    job: LabelJob
    plan: LabelPlan
    metadata: dict[bytes, bytes]
    inputs: list[str]
    todo: list[str]


def prepare(args: argparse.Namespace) -> Run:
    """Check settings, model and inputs, recover an interrupted run, find what is left;
    raises :class:`StageError` (naming what is wrong) before any work. Warns (and records
    in the metadata) where the model was trained on audio cut unlike the labelling windows."""
    try:
        job, settings, segmentation = read_settings(args)
        model = load_model(job.model, settings.engine_choice, threads=None)
        plan = resolve(job.model, model, settings, segmentation)
        make_extractor(FeatureConfig.from_dict(plan.feature_config))  # its front-end can run here (weights, extras)
        inputs = match_inputs(job.input)
        if not inputs:
            raise FileNotFoundError(f"no input files match {job.input}")
        metadata = plan.metadata(sha256(job.model))
        prepare_output(job.output)
    except (ValueError, OSError) as exc:  # ParamsError included
        raise StageError(str(exc)) from exc
    check_same_settings(job.output, metadata)
    return Run(job, plan, metadata, inputs, pending(inputs, job.output))


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
    ready = prepare(args)
    job, plan, todo = ready.job, ready.plan, ready.todo
    size = len(todo) if test_pipeline is not None else job.chunk_files
    chunks = [todo[i:i + size] for i in range(0, len(todo), size)] if todo else []
    LOGGER.info("%d input files: %d already done, %d to label in %d chunk(s); model %s (%s engine, %s, %s "
                "normalisation)", len(ready.inputs), len(ready.inputs) - len(todo), len(todo), len(chunks),
                job.model, plan.engine, plan.labels, plan.normalisation)
    # Named after what it labels (not the clock), so the same inputs give the same files.
    run_id = hashlib.sha256(json.dumps([sorted(todo), ready.metadata[METADATA_KEY].decode()]).encode()).hexdigest()[:12]
    start, audio_s = time.perf_counter(), 0.0
    for n, chunk in enumerate(chunks):
        tag = f"{run_id}-{n:04d}"
        staging = staging_dir(job.output, tag)
        pipeline = test_pipeline or beam.Pipeline(options=options)
        outputs = (pipeline
                   | "Inputs" >> beam.Create(chunk)
                   | "LabelFiles" >> LabelFiles(plan))
        write_outputs(outputs, staging, tag, plan.labels, ready.metadata)
        result = pipeline.run()
        result.wait_until_finish()
        audio_s += (counter_value(result, "label_audio_ms") or 0) / 1000
        mark_done(staging)
        commit(staging, job.output)
        LOGGER.info("chunk %d/%d committed (%d files)", n + 1, len(chunks), len(chunk))

    summary = Summary(job.output, len(ready.inputs), len(ready.inputs) - len(todo), len(todo), len(chunks),
                      count_rows(job.output, FILES_PREFIX), count_rows(job.output, ERRORS_PREFIX),
                      audio_s, time.perf_counter() - start)
    print(summary.format())
    twice = sorted(path for path, n in completed_paths(job.output).items() if n > 1)
    if twice:
        raise RuntimeError(f"{len(twice)} file(s) have more than one row in {job.output}, e.g. {twice[0]}")
    return summary


if __name__ == "__main__":
    # Exactly ``ser label``: the command line imports this module by name (worker processes
    # must find its classes there, not in __main__) and turns errors into one line.
    from ser_core.cli import entry

    entry(["label", *sys.argv[1:]])
