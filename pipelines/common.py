"""What the Beam pipelines share: dead-letter rows, Parquet shards, counters, clean-up.

- Failures leave a DoFn through Beam's ``with_exception_handling`` as
  ``(element, (exception type, repr, traceback lines))``; :class:`DeadLetterToErrorRow`
  turns them into rows of ``ser_core.errors.ERRORS_SCHEMA`` (``utterance_id, path,
  stage, error``).
- :class:`WriteSortedShards` writes dict rows to ``DIR/<prefix>-SSSSS-of-NNNNN.parquet``:
  rows are gathered per bundle into Arrow tables (numpy array values become nested lists
  in one vectorised step: a row of (frames, dims) features costs microseconds instead of
  a Python list per frame), each row goes to the shard its key names and rows are sorted
  by key, so the files depend on the rows alone.
- :func:`clear_outputs` and :func:`counter_value` work on local paths and on any Beam
  filesystem (gs://, s3://, ...). Listing, counting and reading shards, and opening
  audio, are Beam-free and shared with the library: :mod:`ser_core.storage`.
"""

from __future__ import annotations

import argparse
import glob
import logging
import sys
import uuid
import zlib
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from ser_core.errors import error_row
from ser_core.storage import HANDLE_READ, shard_pattern

LOGGER = logging.getLogger(__name__)
NAMESPACE = "ser"
# Array bytes gathered per Arrow table (= Parquet row group): small enough that worker
# memory stays flat however many rows it writes (with Beam's default of 64 MB, worker
# RSS grew by ~70 KB per feature row written, heap fragmentation included).
ROW_GROUP_BYTES = 8 * 1024 * 1024


def pipeline_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser of a pipeline's own options; the rest of argv is left for Beam."""
    return argparse.ArgumentParser(
        prog=prog, allow_abbrev=False, description=description,
        epilog="Other options go to Beam, e.g. --direct_running_mode multi_processing "
               "--direct_num_workers 4, or --runner DataflowRunner ... (see README).")


def pipeline_options(pipeline_args: Sequence[str]) -> PipelineOptions:
    """Beam options from the leftover argv; local runs keep worker logs to warnings.

    Beam's local workers relay every INFO line of their SDK harness otherwise, which
    buries the pipeline's own summary; ``--default_sdk_harness_log_level`` still wins.
    """
    args = list(pipeline_args)
    options = PipelineOptions(args)
    if options.view_as(StandardOptions).runner in (None, "DirectRunner", "direct"):
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
        if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
            options = PipelineOptions(args + ["--default_sdk_harness_log_level=WARNING"])
    return options


class ThreadLimits:
    """This process's BLAS thread pools and, when a front-end or model has loaded torch, torch's
    intra-op pool, capped at ``threads``; :meth:`restore` (from DoFn.teardown) undoes both.

    Parallelism comes from Beam's workers, one per core; a pool per worker on top of that
    makes the small matrix products of the front-ends thrash on a busy machine (10-20x
    slower), and the speaker encoder's LSTM (torch) would otherwise start a pool as wide as
    the machine in every worker. Create it after the front-end is built, so that torch, if
    the front-end needs it, is already loaded (torch is never imported here).
    """

    def __init__(self, threads: int = 1):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with librosa's scikit-learn
            LOGGER.warning("threadpoolctl not installed: BLAS thread pools left as they are")
            self._blas = None
        else:
            self._blas = threadpool_limits(limits=threads, user_api="blas")
        self._torch = sys.modules.get("torch")
        self._torch_threads = None
        if self._torch is not None:
            self._torch_threads = self._torch.get_num_threads()
            self._torch.set_num_threads(threads)

    def restore(self) -> None:
        if self._blas is not None:
            self._blas.restore_original_limits()
        if self._torch_threads is not None:
            self._torch.set_num_threads(self._torch_threads)


def counter(name: str) -> Any:
    """A Beam counter in the project's namespace (read back with :func:`counter_value`)."""
    return Metrics.counter(NAMESPACE, name)


def counter_value(result: beam.runners.runner.PipelineResult, name: str) -> int | None:
    """Committed (or attempted) value of a counter after the run; None if the runner has none."""
    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE).with_name(name))["counters"]
    except Exception:  # some runners do not report metrics
        return None
    if not counters:
        return None
    values = [c.committed if c.committed is not None else c.attempted for c in counters]
    return int(sum(v for v in values if v is not None))


class CountElements(beam.DoFn):
    """Passes elements through, counting them in counter ``name``."""

    def __init__(self, name: str):
        self._name = name

    def setup(self) -> None:
        self._counter = counter(self._name)

    def process(self, element: Any) -> Iterator[Any]:
        self._counter.inc()
        yield element


# ---------------------------------------------------------------- errors


def describe_failure(failure: tuple) -> str:
    """``Type: message`` from a dead letter's (type, repr, traceback lines)."""
    exc_type, exc_repr, lines = failure
    if lines:
        return str(lines[-1]).strip()
    return f"{getattr(exc_type, '__name__', exc_type)}: {exc_repr}"


class DeadLetterToErrorRow(beam.DoFn):
    """Dead letters of one stage -> error rows; counts them as ``failed``.

    ``key_of`` maps the failed element to the mapping that holds utterance_id and
    path (it must be a module-level function so the DoFn pickles).
    """

    def __init__(self, stage: str, key_of: Callable[[Any], Mapping[str, Any]]):
        self._stage = stage
        self._key_of = key_of
        self._failed = counter("failed")

    def process(self, dead_letter: tuple) -> Iterator[dict[str, str]]:
        element, failure = dead_letter
        self._failed.inc()
        try:
            key = self._key_of(element)
        except Exception:  # a malformed element still yields an error row
            key = {}
        yield error_row(key, self._stage, describe_failure(failure))


# ---------------------------------------------------------------- Parquet shards


def arrow_column(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    """An Arrow column from row values; numpy arrays become (nested) lists without Python loops."""
    if values and all(isinstance(v, np.ndarray) for v in values) and pa.types.is_list(type_):
        return _nested_list(values, type_)
    return pa.array(values, type=type_)


def _nested_list(arrays: Sequence[np.ndarray], type_: pa.DataType) -> pa.Array:
    depth, leaf = 0, type_
    while pa.types.is_list(leaf):
        depth, leaf = depth + 1, leaf.value_type
    if any(a.ndim != depth for a in arrays):
        raise ValueError(f"column of type {type_} needs {depth}-D arrays, got shapes "
                         f"{sorted({a.shape for a in arrays})[:3]}")
    flat = pa.array(np.concatenate([a.reshape(-1) for a in arrays]), type=leaf)
    # Offsets level by level, innermost first: each array of shape (n0, n1, ...) holds
    # n0 lists of n1 lists ... of scalars.
    result = flat
    for level in range(depth - 1, -1, -1):
        lengths = np.concatenate([np.full(int(np.prod(a.shape[:level])), a.shape[level], dtype=np.int32)
                                  for a in arrays])
        offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        result = pa.ListArray.from_arrays(pa.array(offsets), result)
    return result.cast(type_)


def rows_to_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Dict rows -> an Arrow table of ``schema`` (metadata kept)."""
    columns = [arrow_column([r[f.name] for r in rows], f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


class _RowsToTables(beam.DoFn):
    """Gathers a bundle's rows into Arrow tables of up to ``max_bytes`` of array data."""

    def __init__(self, schema: pa.Schema, max_bytes: int, written: str | None):
        self._schema = schema
        self._max_bytes = max_bytes
        self._written_name = written

    def setup(self) -> None:
        self._written = counter(self._written_name) if self._written_name else None

    def start_bundle(self) -> None:
        self._rows: list[Mapping[str, Any]] = []
        self._bytes = 0

    def process(self, row: Mapping[str, Any]) -> Iterator[pa.Table]:
        self._rows.append(row)
        self._bytes += sum(v.nbytes for v in row.values() if isinstance(v, np.ndarray)) + 256
        if self._bytes >= self._max_bytes:
            yield self._flush()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        if self._rows:
            yield WindowedValue(self._flush(), GlobalWindow().max_timestamp(), [GlobalWindow()])

    def _flush(self) -> pa.Table:
        table = rows_to_table(self._rows, self._schema)
        if self._written is not None:
            self._written.inc(len(self._rows))
        self._rows, self._bytes = [], 0
        return table


def shard_of(key: str, num_shards: int) -> int:
    """The shard a key belongs to: the same in every process and run (Python's hash() is not)."""
    return zlib.crc32(key.encode("utf-8")) % num_shards


def split_by_shard(table: pa.Table, key: str, num_shards: int) -> Iterator[tuple[int, pa.Table]]:
    """(shard, the table's rows in that shard) for every shard the table has rows in."""
    shards = np.array([shard_of(k, num_shards) for k in table.column(key).to_pylist()], dtype=np.int64)
    for shard in np.unique(shards):
        yield int(shard), table.filter(pa.array(shards == shard))


class _WriteShardParts(beam.DoFn):
    """An Arrow table -> one temporary file per shard it has rows in; yields (shard, file)."""

    def __init__(self, temp_dir: str, key: str, num_shards: int):
        self._temp_dir = temp_dir
        self._key = key
        self._num_shards = num_shards

    def process(self, table: pa.Table) -> Iterator[tuple[int, str]]:
        for shard, part in split_by_shard(table, self._key, self._num_shards):
            path = FileSystems.join(self._temp_dir, f"{shard:05d}-{uuid.uuid4().hex}.parquet")
            with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                pq.write_table(part, handle, compression="none", use_compliant_nested_type=False)
            yield shard, path


class _MergeShard(beam.DoFn):
    """(shard number, its temporary files) -> one Parquet file of their rows sorted by key
    (then the temporary files are deleted); yields its path."""

    def __init__(self, path_prefix: str, schema: pa.Schema, num_shards: int, key: str, max_bytes: int,
                 order: Sequence[str] = ()):
        self._path_prefix = path_prefix
        self._schema = schema
        self._num_shards = num_shards
        self._key = key
        self._max_bytes = max_bytes
        self._order = [(name, "ascending") for name in (order or (key,))]

    def process(self, element: tuple[int, Iterable[str | None]]) -> Iterator[str]:
        index, found = element
        parts = sorted(p for p in found if p is not None)
        tables = []
        for part in parts:
            with FileSystems.open(part, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                tables.append(pq.read_table(handle, schema=self._schema, **HANDLE_READ))
        table = pa.concat_tables(tables) if tables else self._schema.empty_table()
        # One chunk, so that row groups depend on the rows, not on how bundles split them.
        table = table.sort_by(self._order).combine_chunks()
        row_bytes = max(1, table.nbytes // max(1, table.num_rows))
        path = f"{self._path_prefix}-{index:05d}-of-{self._num_shards:05d}.parquet"
        # Written in place (no temp file): a retried bundle writes the same bytes again.
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            # WriteToParquetBatched's settings: the files read like Beam's own Parquet shards.
            with pq.ParquetWriter(handle, self._schema, compression="none",
                                  use_compliant_nested_type=False) as writer:
                writer.write_table(table, row_group_size=max(1, self._max_bytes // row_bytes))
        if parts:
            FileSystems.delete(parts)
        yield path


class WriteSortedShards(beam.PTransform):
    """Dict rows -> ``OUTPUT/<prefix>-SSSSS-of-NNNNN.parquet``: row ``r`` in shard
    ``shard_of(r[key], num_shards)``, rows sorted by ``key`` within a shard, every shard
    written (empty ones too).

    Beam's ``WriteToParquetBatched`` numbers its shards by bundle, so the same rows land in
    files that differ with the number of workers and the order they finish in; these files
    depend on the rows alone, so a DVC output hashes the same on every machine. Each bundle writes
    its rows of each shard to a temporary file under ``OUTPUT/beam-temp-<prefix>-*``
    (removed by :func:`clear_outputs`); only file names are shuffled, and one worker per
    shard merges and sorts that shard's files. Memory: a bundle's table, or one shard.
    """

    def __init__(self, output: str, prefix: str, schema: pa.Schema, num_shards: int, key: str = "utterance_id",
                 written: str | None = None, max_bytes: int = ROW_GROUP_BYTES, order: Sequence[str] = ()):
        super().__init__()
        if num_shards < 1:
            raise ValueError(f"num_shards must be at least 1, got {num_shards}")
        self._path_prefix = FileSystems.join(output, prefix)
        self._temp_dir = FileSystems.join(output, f"beam-temp-{prefix}-{uuid.uuid4().hex}")
        self._schema = schema
        self._num_shards = num_shards
        self._key = key
        self._written = written
        self._max_bytes = max_bytes
        self._order = tuple(order)  # sort columns within a shard (default: the key alone)

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        n = self._num_shards
        parts = (rows
                 | "ToArrowTables" >> beam.ParDo(_RowsToTables(self._schema, self._max_bytes, self._written))
                 | "WriteParts" >> beam.ParDo(_WriteShardParts(self._temp_dir, self._key, n)))
        # One placeholder per shard, so that every shard is written even if no row falls in it.
        every = rows.pipeline | "EveryShard" >> beam.Create([(i, None) for i in range(n)])
        return (
            (parts, every)
            | "WithEveryShard" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "MergeShards" >> beam.ParDo(_MergeShard(self._path_prefix, self._schema, n, self._key,
                                                      self._max_bytes, self._order)))


def clear_outputs(output: str, prefixes: Iterable[str], shards: bool = True) -> list[str]:
    """Delete earlier shards ``<prefix>-*.parquet`` and Beam temp folders under ``output``.

    Called before a run, so that a re-run never mixes its shards with a previous run's
    (whose shard count may differ), and after it with ``shards=False`` to remove the
    empty ``beam-temp-<prefix>-*`` folders Beam leaves behind. Other files are kept.
    Returns the paths deleted.
    """
    local = FileSystems.get_scheme(output) is None
    found, patterns = [], []
    for prefix in prefixes:
        temp = FileSystems.join(output, f"beam-temp-{prefix}-*")
        if local:  # Beam's local filesystem does not match folders
            found += sorted(glob.glob(temp))
        else:
            patterns.append(temp + "/*")
        if shards:
            patterns.append(shard_pattern(output, prefix))
    found += [m.path for r in FileSystems.match(patterns) for m in r.metadata_list]
    if found:
        FileSystems.delete(found)
        LOGGER.info("deleted %d old output path(s) under %s", len(found), output)
    return found
