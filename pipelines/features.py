"""Beam pipeline: manifest -> decoded audio -> frame features -> Parquet shards.

    ser features --manifest manifest.parquet --output features/ [--params params.yaml]
                 [--kind ... --sample-rate ... (override params.yaml)] [Beam options]

Writes ``OUTPUT/features-*.parquet``: one row per utterance with the manifest columns
(``path`` as the manifest has it, relative to its corpus folder: the file opened is
resolved through the manifest's metadata, see :mod:`ser_core.records`),
``n_frames``, ``sample_rate`` and ``features`` (frames x dims, float32); the
FeatureConfig (plus n_fft, hop_length, n_dims) is in the schema metadata under
``ser.features``, provenance under ``ser.provenance``. Every utterance that fails goes
to ``OUTPUT/errors-*.parquet`` (``utterance_id, path, stage, error``; stage ``decode``
or ``features``): features rows + error rows = manifest rows. Decode errors include
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
import importlib.metadata
import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.common import (ERRORS_PREFIX, ERRORS_SCHEMA, CountElements, DeadLetterToErrorRow,
                              WriteSortedShards, clear_outputs, count_rows, counter, counter_value,
                              limit_blas_threads, open_audio, pipeline_options, pipeline_parser)
from ser_core import __version__, audio
from ser_core.features import (EXTRACTORS, METADATA_KEY, RESAMPLE_QUALITIES, FeatureConfig, config_from_metadata,
                               make_extractor, warm_up)
from ser_core.params import ParamsError, build_config, flags, load_section
from ser_core.records import MANIFEST_COLUMNS, MANIFEST_SCHEMA, ManifestLocator, manifest_locator

LOGGER = logging.getLogger(__name__)
FEATURES_PREFIX = "features"
ROWS_PER_SHARD = 1000  # features shards by default: one per this many manifest rows
REQUIRED_COLUMNS = tuple(c for c in MANIFEST_COLUMNS if c != "custom")
# FeatureConfig field -> (type, help) of its flag --field-name
CONFIG_FLAGS = {
    "kind": (str, "mfcc_chroma (the paper: MFCC + STFT chroma) or logmel"),
    "sample_rate": (int, "Hz; every file is resampled to it (default 48000)"),
    "window_s": (float, "analysis window in seconds (default 4096/48000: n_fft 4096 at 48 kHz)"),
    "hop_s": (float, "hop in seconds (default 2048/48000)"),
    "n_mfcc": (int, "MFCC coefficients (default 34)"),
    "n_chroma": (int, "chroma bins (default 12)"),
    "n_mels": (int, "mel bands (default 128)"),
    "fmin": (float, "lowest mel filter edge in Hz (default 0)"),
    "fmax": (float, "highest mel filter edge in Hz (default: Nyquist)"),
    "resample_quality": (str, "soxr resampling quality (default HQ)"),
    "band_hz": (str, "LOW,HIGH: band-limit audio before analysis, e.g. 300,3400 to match "
                     "telephone audio (default none)"),
}


# ---------------------------------------------------------------- typed pure helpers


def features_schema(config: FeatureConfig, provenance: Mapping[str, Any]) -> pa.Schema:
    """Manifest columns, then n_frames, sample_rate, features; config and provenance as metadata."""
    fields = list(MANIFEST_SCHEMA) + [
        pa.field("n_frames", pa.int32(), nullable=False),
        pa.field("sample_rate", pa.int32(), nullable=False),
        pa.field("features", pa.list_(pa.list_(pa.float32())), nullable=False),
    ]
    return pa.schema(fields).with_metadata({
        METADATA_KEY: json.dumps(config.to_dict(), sort_keys=True).encode(),
        b"ser.provenance": json.dumps(dict(provenance), sort_keys=True).encode(),
    })


def read_feature_config(path: str) -> FeatureConfig:
    """The FeatureConfig a features shard was written with."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        return config_from_metadata(pq.read_schema(fh).metadata)


def manifest_summary(path: str) -> tuple[int, list[str]]:
    """(rows, columns) of a manifest from its footer; errors before any work starts."""
    if not FileSystems.exists(path):
        raise FileNotFoundError(f"manifest not found: {path}")
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        try:
            meta = pq.ParquetFile(fh).metadata
        except pa.ArrowException as exc:
            raise ValueError(f"{path} is not a Parquet manifest ({exc})") from exc
        columns = list(meta.schema.names)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"{path} is not a manifest: missing columns {missing}")
    return meta.num_rows, [c for c in MANIFEST_COLUMNS if c in columns]


def read_locator(path: str) -> ManifestLocator:
    """Where the manifest's relative paths point: its corpus folders, from its metadata."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        return manifest_locator(path, pq.read_schema(fh).metadata)


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


def feature_row(row: Mapping[str, Any], features: np.ndarray, sample_rate: int) -> dict[str, Any]:
    out = {c: row.get(c) if c != "custom" else (row.get("custom") or "{}") for c in MANIFEST_COLUMNS}
    out.update(n_frames=int(features.shape[0]), sample_rate=int(sample_rate), features=features)
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
    """Decoded -> features row. Filterbanks are built (and code paths warmed) in setup()."""

    def __init__(self, config: FeatureConfig):
        self._config = config

    def setup(self) -> None:
        self._blas_limits = limit_blas_threads(1)
        warm_up(self._config)
        self._extract = make_extractor(self._config)

    def teardown(self) -> None:
        if self._blas_limits is not None:
            self._blas_limits.restore_original_limits()

    def process(self, decoded: Decoded) -> Iterator[dict[str, Any]]:
        yield feature_row(decoded.row, self._extract(decoded.audio), decoded.sample_rate)


# ---------------------------------------------------------------- pipeline


def parse_known_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Our options; everything else is left for Beam's PipelineOptions."""
    parser = pipeline_parser("ser features", "Beam pipeline: manifest -> audio features -> Parquet shards.")
    parser.add_argument("--manifest", required=True, help="manifest Parquet file (ser manifest)")
    parser.add_argument("--output", required=True,
                        help="output folder; its old features-*/errors-* shards are deleted first")
    parser.add_argument("--params", help="params.yaml: its `features` section sets the FeatureConfig")
    parser.add_argument("--num-shards", type=int, default=0,
                        help=f"features shards (default 0: one per {ROWS_PER_SHARD} manifest rows)")
    group = parser.add_argument_group("feature settings (override params.yaml)")
    choices = {"kind": sorted(EXTRACTORS), "resample_quality": RESAMPLE_QUALITIES}
    for name, (type_, help_text) in CONFIG_FLAGS.items():
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=type_, default=None,
                           choices=choices.get(name), help=help_text)
    return parser.parse_known_args(argv)


def resolve_config(args: argparse.Namespace) -> FeatureConfig:
    """FeatureConfig defaults <- params.yaml `features` <- flags."""
    return build_config(FeatureConfig, load_section(args.params, "features"), flags(args, *CONFIG_FLAGS))


def build(pipeline: beam.Pipeline, manifest: str, columns: Sequence[str], output: str,
          config: FeatureConfig, schema: pa.Schema, num_shards: int = 1,
          locate: ManifestLocator | None = None) -> None:
    """The pipeline graph: read -> redistribute -> decode -> features -> shards (+ errors)."""
    rows = (
        pipeline
        | "ReadManifest" >> beam.io.ReadFromParquet(manifest, columns=list(columns))
        | "CountRead" >> beam.ParDo(CountElements("read"))
        | "Redistribute" >> beam.Reshuffle()
    )
    decoded, decode_failed = rows | "Decode" >> beam.ParDo(DecodeFn(config, locate)).with_exception_handling()
    features, feature_failed = (
        decoded | "Features" >> beam.ParDo(ExtractFn(config)).with_exception_handling())
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
    """What a run produced; rows + errors == manifest_rows always."""

    output: str
    manifest_rows: int
    rows: int
    errors: int
    audio_s: float | None
    wall_s: float

    def format(self) -> str:
        lines = [f"ser features: {self.rows} rows + {self.errors} errors = "
                 f"{self.rows + self.errors} of {self.manifest_rows} manifest rows -> {self.output}"]
        speed = f"{self.rows / self.wall_s:.1f} clips/s" if self.wall_s > 0 else ""
        if self.audio_s is not None and self.wall_s > 0:
            speed = (f"{self.audio_s:.1f} s of audio in {self.wall_s:.1f} s wall: "
                     f"{self.audio_s / self.wall_s:.0f}x real time, ") + speed
        lines.append("  " + speed)
        return "\n".join(lines)


def run(argv: Sequence[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> Summary:
    """Parse options, check inputs, clear old shards, run the pipeline, print a summary."""
    args, pipeline_args = parse_known_args(argv)
    options = pipeline_options(pipeline_args)
    try:
        config = resolve_config(args)
        manifest_rows, columns = manifest_summary(args.manifest)
        locate = read_locator(args.manifest)
        if args.num_shards < 0:
            raise ValueError(f"--num-shards must be 0 (automatic) or more, got {args.num_shards}")
    except (ParamsError, ValueError, OSError) as exc:
        sys.exit(f"ser features: error: {exc}")
    schema = features_schema(config, provenance(args.manifest, manifest_rows))
    clear_outputs(args.output, (FEATURES_PREFIX, ERRORS_PREFIX))

    pipeline = test_pipeline or beam.Pipeline(options=options)
    build(pipeline, args.manifest, columns, args.output, config, schema,
          args.num_shards or default_shards(manifest_rows), locate)
    start = time.perf_counter()
    result = pipeline.run()
    result.wait_until_finish()
    wall = time.perf_counter() - start
    clear_outputs(args.output, (FEATURES_PREFIX, ERRORS_PREFIX), shards=False)

    audio_ms = counter_value(result, "audio_ms")
    summary = Summary(args.output, manifest_rows, count_rows(args.output, FEATURES_PREFIX),
                      count_rows(args.output, ERRORS_PREFIX), None if audio_ms is None else audio_ms / 1000,
                      wall)
    print(summary.format())
    if summary.rows + summary.errors != manifest_rows:
        raise RuntimeError(f"row accounting broken: {summary.rows} rows + {summary.errors} errors "
                           f"!= {manifest_rows} manifest rows under {args.output}")
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Import by name: DoFns pickled from ``__main__`` would not unpickle in worker processes.
    from ser_core.cli import exit_without_teardown
    from pipelines.features import run as run_pipeline

    run_pipeline()
    exit_without_teardown(0)
