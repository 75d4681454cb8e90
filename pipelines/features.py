"""Beam pipeline: manifest -> decoded audio -> frame features -> Parquet shards.

    ser features --manifest manifest.parquet --output features/ [--params params.yaml]
                 [--kind ... --sample-rate ... (override params.yaml)] [Beam options]

Writes ``OUTPUT/features-*.parquet``: one row per utterance with the manifest columns
(``path`` as the manifest has it, relative to its corpus folder: the file opened is
resolved through the manifest's metadata, see :mod:`ser_core.records`),
``source_id`` and ``variant`` (below), ``start_s``/``end_s`` (the span of the clip the
row covers), ``n_frames``, ``sample_rate`` and ``features`` (frames x dims, float32); the
FeatureConfig (plus n_fft, hop_length, n_dims) is in the schema metadata under
``ser.features``, the row settings (augmentations) under ``ser.rows``, provenance under
``ser.provenance``. Every utterance that fails goes to ``OUTPUT/errors-*.parquet``
(``utterance_id, path, stage, error``; stage ``decode`` or ``features``), once: without
augmentations, features rows + error rows = manifest rows.

Augmentation (``features.augment`` in params.yaml, ``--augment``; :mod:`ser_core.augmentation`):
each clip also gives one row per augmentation (``speed0.9``, ``noise20``, ``telephone`` ...)
with ``utterance_id`` ``<id>@<name>``, ``variant`` the name and ``source_id`` the clip's id
(an original row has variant ``""`` and ``source_id`` = its id). A clip's rows are made
together: either all of them are written or its one error row is, so the utterances with
rows + the error rows = manifest rows. Training uses augmented rows of its training
speakers only. Decode errors include
missing, empty, unreadable and truncated files, NaN/inf samples and clips shorter than
one analysis window; silent clips give finite features. Shards left in OUTPUT by
an earlier run (``features-*``, ``errors-*``) are deleted before this run starts;
other files there are kept. Each row goes to the shard its utterance id hashes to, sorted
by id within it (``--num-shards``, by default one per 1000 manifest rows), so the output is
the same bytes whatever the runner, the number of workers or the folder it runs in.

Beam options pass through, e.g. ``--direct_running_mode multi_processing
--direct_num_workers 4``, ``--runner PortableRunner --job_endpoint embed
--environment_type LOOPBACK``, or ``--runner DataflowRunner --setup_file ./setup.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.common import (CountElements, DeadLetterToErrorRow, ThreadLimits, WriteSortedShards, clear_outputs,
                              counter, counter_value, pipeline_options, pipeline_parser)
from ser_core import __version__, audio, augmentation
from ser_core.errors import ERRORS_PREFIX, ERRORS_SCHEMA, StageError
from ser_core.feature_shards import FEATURES_PREFIX, ROW_KEYS, RowConfig, features_schema
from ser_core.features import FeatureConfig, FeatureError, make_extractor, warm_up
from ser_core.segmentation import CLIP_SEGMENTATIONS, SEGMENT_KEYS, SegmentConfig, cut_clip
from ser_core.params import add_flags, build_config, flags, load_section
from ser_core.records import MANIFEST_COLUMNS, ManifestLocator, manifest_locator
from ser_core.storage import count_rows, exists, open_audio, parquet_source, read_schema, read_shards

LOGGER = logging.getLogger(__name__)
ROWS_PER_SHARD = 1000  # features shards by default: one per this many manifest rows
REQUIRED_COLUMNS = tuple(c for c in MANIFEST_COLUMNS if c != "custom")




# ---------------------------------------------------------------- typed pure helpers


def manifest_summary(path: str) -> tuple[int, list[str]]:
    """(rows, columns) of a manifest from its footer; errors before any work starts."""
    if not exists(path):
        raise FileNotFoundError(f"manifest not found: {path}")
    with parquet_source(path) as src:
        try:
            meta = pq.ParquetFile(src).metadata
        except pa.ArrowException as exc:
            raise ValueError(f"{path} is not a Parquet manifest ({exc})") from exc
        columns = list(meta.schema.names)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"{path} is not a manifest: missing columns {missing}")
    return meta.num_rows, [c for c in MANIFEST_COLUMNS if c in columns]


def read_locator(path: str) -> ManifestLocator:
    """Where the manifest's relative paths point: its corpus folders, from its metadata."""
    return manifest_locator(path, read_schema(path).metadata)


def default_shards(manifest_rows: int) -> int:
    """Features shards when ``--num-shards`` is 0: a function of the manifest alone."""
    return max(1, -(-manifest_rows // ROWS_PER_SHARD))


def provenance(manifest: str, manifest_rows: int) -> dict[str, Any]:
    """Where the shards came from and which library versions built them."""
    import soundfile

    versions = {name: _version(name) for name in ("librosa", "numpy", "scipy", "soundfile", "soxr", "apache-beam")}
    return {"manifest": manifest, "manifest_rows": manifest_rows, "ser_pipelines": __version__,
            "libsndfile": soundfile.__libsndfile_version__, **versions}


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def check_row(row: Mapping[str, Any]) -> None:
    """A manifest row must carry every required column as a non-empty string."""
    bad = [c for c in REQUIRED_COLUMNS if not isinstance(row.get(c), str) or not row.get(c)]
    if bad:
        raise ValueError(f"manifest row lacks {bad}: {dict(row)!r}")


def feature_row(row: Mapping[str, Any], features: np.ndarray, sample_rate: int, variant: str = "",
                span: tuple[float, float] = (0.0, 0.0), window: int | None = None) -> dict[str, Any]:
    """One output row: the manifest row's columns (utterance id made the variant's, and the
    window's, ``<id>[@<variant>][#w<k>]``), then the rest."""
    out = {c: row.get(c) if c != "custom" else (row.get("custom") or "{}") for c in MANIFEST_COLUMNS}
    uid = augmentation.variant_id(row["utterance_id"], variant)
    out.update(utterance_id=uid if window is None else f"{uid}#w{window:03d}",
               source_id=row["utterance_id"], variant=variant, start_s=float(span[0]), end_s=float(span[1]),
               n_frames=int(features.shape[0]), sample_rate=int(sample_rate), features=features)
    return out


class Decoded(NamedTuple):
    """A manifest row with its audio, mono float32 at ``sample_rate``."""

    row: Mapping[str, Any]
    audio: np.ndarray
    sample_rate: int


def manifest_row_of(element: Any) -> Mapping[str, Any]:
    """The manifest row inside a dead letter of either stage."""
    return element.row if isinstance(element, Decoded) else element


# ---------------------------------------------------------------- DoFns


class DecodeFn(beam.DoFn):
    """Manifest row -> Decoded (mono, resampled). Raises AudioError on bad files.

    ``locate`` turns the row's (corpus, path) into the file to open; without one the
    path is opened as it is.
    """

    def __init__(self, config: FeatureConfig, locate: ManifestLocator | None = None):
        self._config = config
        self._locate = locate

    def setup(self) -> None:
        self._decoded = counter("decoded")
        self._audio_ms = counter("audio_ms")

    def process(self, row: Mapping[str, Any]) -> Iterator[Decoded]:
        check_row(row)
        path = self._locate(row["corpus"], row["path"]) if self._locate else row["path"]
        with open_audio(path) as source:
            y, sr = audio.load(source, self._config.sample_rate, quality=self._config.resample_quality,
                               min_duration_s=self._config.window_s)
        self._decoded.inc()
        self._audio_ms.inc(int(round(1000 * len(y) / sr)))
        yield Decoded(row, y, sr)


class ExtractFn(beam.DoFn):
    """Decoded -> its features rows (the clip, then each augmentation of it). Filterbanks
    are built (and code paths warmed) in setup(). The rows of one clip are computed before
    any is emitted, so a failure sends the clip to the dead letters whole."""

    def __init__(self, config: FeatureConfig, rows: RowConfig = RowConfig()):
        self._config = config
        self._rows = rows

    def setup(self) -> None:
        warm_up(self._config)
        self._extract = make_extractor(self._config)
        self._limits = ThreadLimits(1)
        self._transforms = {name: augmentation.transform(name) for name in self._rows.augment}
        self._no_speech_copies = counter("augmented_copies_without_speech")

    def teardown(self) -> None:
        self._limits.restore()

    def process(self, decoded: Decoded) -> Iterator[dict[str, Any]]:
        rows, sr, uid = [], decoded.sample_rate, decoded.row["utterance_id"]
        windows = self._rows.segmentation == "windows"
        for variant in self._rows.variants:
            y = decoded.audio if variant == augmentation.ORIGINAL else self._transforms[variant](decoded.audio, sr, uid)
            try:
                spans = cut_clip(y, sr, self._rows.segmentation, self._rows.segment_config,
                                 self._config.band_hz)
            except FeatureError:
                if variant == augmentation.ORIGINAL:
                    raise  # the clip itself: its error row
                # an augmented copy in which no speech is left (a quiet clip under line hiss):
                # the clip keeps its other rows; counted, as training simply has one copy less
                self._no_speech_copies.inc()
                continue
            for k, (start, end) in enumerate(spans):
                rows.append(feature_row(decoded.row, self._extract(y[start:end]), sr, variant,
                                        (start / sr, end / sr), k if windows else None))
        yield from rows


# ---------------------------------------------------------------- pipeline


def parse_known_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Our options; everything else is left for Beam's PipelineOptions."""
    parser = pipeline_parser("ser features", "Beam pipeline: manifest -> audio features -> Parquet shards.")
    parser.add_argument("--manifest", required=True, help="manifest Parquet file (ser manifest)")
    parser.add_argument("--output", required=True,
                        help="output folder; its old features-*/errors-* shards are deleted first")
    parser.add_argument("--params", help="params.yaml: its `features` section sets the FeatureConfig")
    parser.add_argument("--augment", default=None,
                        help="comma-separated augmentations, each an extra row per clip: speedF, noiseN, "
                             "hiss, hissL, telephone, gsm, reverb, loudness, gainD, vtlp, vtlpA (e.g. speed0.9,speed1.1); 'none' for none [params features.augment]")
    parser.add_argument("--segmentation", choices=CLIP_SEGMENTATIONS, default=None,
                        help="none: whole clips (the paper); speech: trimmed to detected speech; windows: "
                             "the labelling windows, one row each (cut as params `label` says) "
                             "[params features.segmentation]")
    parser.add_argument("--like", metavar="CHECKPOINT",
                        help="make the features a trained model hears: its front-end and its cut (windows, "
                             "detector) from the checkpoint, e.g. to score it on another labelled corpus "
                             "with ser evaluate --model; instead of --params, --segmentation and the "
                             "feature settings")
    parser.add_argument("--num-shards", type=int, default=0,
                        help=f"features shards (default 0: one per {ROWS_PER_SHARD} manifest rows)")
    add_flags(parser.add_argument_group("feature settings (override params.yaml)"), FeatureConfig)
    return parser.parse_known_args(argv)


def resolve_config(args: argparse.Namespace) -> tuple[FeatureConfig, RowConfig]:
    """FeatureConfig and RowConfig defaults <- params.yaml `features` (and the segmentation
    keys of `label`: training clips are cut as labelling cuts calls) <- flags; with
    ``--like``, the checkpoint's own (:func:`heard_by`)."""
    if args.like:
        return heard_by(args)
    section = load_section(args.params, "features")
    config = build_config(FeatureConfig, {k: v for k, v in section.items() if k not in ROW_KEYS},
                          flags(args, *(f.name for f in dataclasses.fields(FeatureConfig))))
    augment = augment_flag(args)
    cut = {k: v for k, v in load_section(args.params, "label").items() if k in SEGMENT_KEYS}
    rows = build_config(RowConfig, {k: v for k, v in section.items() if k in ROW_KEYS},
                        {"augment": augment, "segmentation": args.segmentation,
                         "segment_config": SegmentConfig.from_dict(cut)})
    return config, rows


def heard_by(args: argparse.Namespace) -> tuple[FeatureConfig, RowConfig]:
    """The front-end and the cut of the checkpoint ``--like`` names (and ``--augment``'s
    copies, none by default): what its model was trained on, hence what it must be scored on."""
    from ser_core.checkpoint import load_checkpoint  # torch: only for --like

    given = sorted(flags(args, "params", "segmentation", *(f.name for f in dataclasses.fields(FeatureConfig))))
    if given:
        raise ValueError(f"--like {args.like} sets the front-end and the cut; drop "
                         + ", ".join("--" + name.replace("_", "-") for name in given))
    checkpoint = load_checkpoint(args.like)
    cut = checkpoint.segmentation
    return (FeatureConfig.from_dict(checkpoint.feature_config),
            RowConfig(augment=augment_flag(args) or "", segmentation=cut["mode"],
                      segment_config=cut.get("segment_config") or {}))


def augment_flag(args: argparse.Namespace) -> str | None:
    """``--augment`` as RowConfig takes it: None when not given, "" for 'none'."""
    if args.augment is None:
        return None
    return "" if args.augment.strip().lower() == "none" else args.augment


def build(pipeline: beam.Pipeline, manifest: str, columns: Sequence[str], output: str,
          config: FeatureConfig, schema: pa.Schema, num_shards: int = 1,
          locate: ManifestLocator | None = None, rows_config: RowConfig = RowConfig()) -> None:
    """The pipeline graph: read -> redistribute -> decode -> features -> shards (+ errors)."""
    rows = (
        pipeline
        | "ReadManifest" >> beam.io.ReadFromParquet(manifest, columns=list(columns))
        | "CountRead" >> beam.ParDo(CountElements("read"))
        | "Redistribute" >> beam.Reshuffle()
    )
    decoded, decode_failed = rows | "Decode" >> beam.ParDo(DecodeFn(config, locate)).with_exception_handling()
    features, feature_failed = (
        decoded | "Features" >> beam.ParDo(ExtractFn(config, rows_config)).with_exception_handling())
    _ = features | "WriteFeatures" >> WriteSortedShards(output, FEATURES_PREFIX, schema, num_shards,
                                                         written="written")
    _ = (
        (decode_failed | "DecodeErrors" >> beam.ParDo(DeadLetterToErrorRow("decode", manifest_row_of)),
         feature_failed | "FeatureErrors" >> beam.ParDo(DeadLetterToErrorRow("features", manifest_row_of)))
        | "AllErrors" >> beam.Flatten()
        | "WriteErrors" >> WriteSortedShards(output, ERRORS_PREFIX, ERRORS_SCHEMA, 1)
    )


@dataclass(frozen=True)
class Summary:
    """What a run produced: utterances with rows + error rows == manifest_rows always; each
    utterance with rows has one per variant (and, with windows, one per window of each)."""

    output: str
    manifest_rows: int
    rows: int
    errors: int
    audio_s: float | None
    wall_s: float
    variants: int = 1
    utterances: int | None = None  # distinct source_id among the rows (None: rows / variants)

    def __post_init__(self) -> None:
        if self.utterances is None:
            object.__setattr__(self, "utterances", self.rows // self.variants)

    def format(self) -> str:
        done = (f"{self.rows} rows" if self.rows == self.utterances else
                f"{self.utterances} utterances ({self.rows} rows: {self.variants} variant(s) each)")
        lines = [f"ser features: {done} + {self.errors} errors = "
                 f"{self.utterances + self.errors} of {self.manifest_rows} manifest rows -> {self.output}"]
        speed = f"{self.rows / self.wall_s:.1f} clips/s" if self.wall_s > 0 else ""
        if self.audio_s is not None and self.wall_s > 0:
            speed = (f"{self.audio_s:.1f} s of audio in {self.wall_s:.1f} s wall: "
                     f"{self.audio_s / self.wall_s:.0f}x real time, ") + speed
        lines.append("  " + speed)
        return "\n".join(lines)


def run(argv: Sequence[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> Summary:
    """Parse options, check inputs, clear old shards, run the pipeline, print a summary.
    Bad settings or inputs raise :class:`StageError` before any work."""
    args, pipeline_args = parse_known_args(argv)
    options = pipeline_options(pipeline_args)
    try:
        config, rows_config = resolve_config(args)
        make_extractor(config)  # the front-end can run here (its weights, its extra), or stop now
        manifest_rows, columns = manifest_summary(args.manifest)
        locate = read_locator(args.manifest)
        if args.num_shards < 0:
            raise ValueError(f"--num-shards must be 0 (automatic) or more, got {args.num_shards}")
    except (ValueError, OSError) as exc:  # ParamsError included: nothing has been done yet
        raise StageError(str(exc)) from exc
    schema = features_schema(config, provenance(args.manifest, manifest_rows), rows_config)
    clear_outputs(args.output, (FEATURES_PREFIX, ERRORS_PREFIX))

    pipeline = test_pipeline or beam.Pipeline(options=options)
    build(pipeline, args.manifest, columns, args.output, config, schema,
          args.num_shards or default_shards(manifest_rows), locate, rows_config)
    start = time.perf_counter()
    result = pipeline.run()
    result.wait_until_finish()
    wall = time.perf_counter() - start
    clear_outputs(args.output, (FEATURES_PREFIX, ERRORS_PREFIX), shards=False)

    audio_ms = counter_value(result, "audio_ms")
    rows = count_rows(args.output, FEATURES_PREFIX)
    sources = (len(set(read_shards(args.output, FEATURES_PREFIX, ["source_id"]).column("source_id").to_pylist()))
               if rows else 0)
    summary = Summary(args.output, manifest_rows, rows, count_rows(args.output, ERRORS_PREFIX),
                      None if audio_ms is None else audio_ms / 1000, wall, len(rows_config.variants), sources)
    print(summary.format())
    whole = rows_config.segmentation == "none"  # else a copy may be left without speech, or cut in windows
    dropped = counter_value(result, "augmented_copies_without_speech")
    if dropped:
        print(f"  {dropped} augmented copies had no speech left to cut (their clips keep their other rows)")
    if summary.utterances + summary.errors != manifest_rows or (whole and rows != sources * summary.variants):
        raise RuntimeError(f"row accounting broken: {rows} rows from {sources} utterances ({summary.variants} "
                           f"variant(s) each) + {summary.errors} errors != {manifest_rows} manifest rows "
                           f"under {args.output}")
    return summary


if __name__ == "__main__":
    # Exactly ``ser features``: the command line imports this module by name (DoFns pickled
    # from ``__main__`` would not unpickle in worker processes) and turns errors into one line.
    from ser_core.cli import entry

    entry(["features", *sys.argv[1:]])
