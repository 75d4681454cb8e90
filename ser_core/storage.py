"""The files stages hand each other, local or remote: listing shards, comparing paths,
opening files, reading Parquet footers, one implementation of each.

Local paths go through the standard library and pyarrow. A URL (``scheme://...``: gs://,
s3://, ...) goes through Apache Beam's ``FileSystems``, imported only when a URL is met,
so code that works on local files (training, evaluation, a plain-Python labelling API)
never imports Beam; remote schemes need Beam's extra for them where the code runs
(``pip install '.[dataflow]'`` for gs://).

Shards are the files ``ROOT/<prefix>-*.parquet`` that a pipeline writes (``features``,
``segments``, ``files``, ``errors``; docs/CONTRACTS.md).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq


def is_url(path: str) -> bool:
    return "://" in str(path)


def _filesystems() -> Any:
    """Beam's ``FileSystems``, imported on first use (only URLs need it)."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def path_key(path: str, base: str | None = None) -> str:
    """The comparable form of a path: a URL as it is, a local path absolute and normalised
    (relative ones taken from ``base`` when given, else from the working directory), so a
    file is recognised however a glob or a sidecar spelled it."""
    if is_url(path):
        return path
    if base is not None and not os.path.isabs(path):
        path = os.path.join(base, path)
    return os.path.normpath(os.path.abspath(path))


def join(root: str, *names: str) -> str:
    return _filesystems().join(root, *names) if is_url(root) else os.path.join(root, *names)


def exists(path: str) -> bool:
    return _filesystems().exists(path) if is_url(path) else os.path.exists(path)


@contextlib.contextmanager
def open_binary(path: str) -> Iterator[BinaryIO]:
    """A seekable binary reader of a local file or a URL, closed when the block ends."""
    if not is_url(path):
        with open(path, "rb") as fh:
            yield fh
        return
    from apache_beam.io.filesystem import CompressionTypes

    with _filesystems().open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        yield fh


@contextlib.contextmanager
def open_audio(path: str) -> Iterator[str | BinaryIO]:
    """What soundfile reads: a local path as is (its errors then name the path), a URL
    as a seekable file handle."""
    if not is_url(path):
        yield path
        return
    with open_binary(path) as fh:
        yield fh


def shard_pattern(root: str, prefix: str) -> str:
    return join(root, f"{prefix}-*.parquet")


def shard_paths(root: str | Path, prefix: str) -> list[str]:
    """The ``<prefix>-*.parquet`` shards under ``root``, sorted ([] when there are none or
    ``root`` does not exist)."""
    root = str(root)
    if is_url(root):
        found = _filesystems().match([shard_pattern(root, prefix)])[0].metadata_list
        return sorted(m.path for m in found)
    return sorted(glob.glob(os.path.join(glob.escape(root), f"{prefix}-*.parquet")))


@contextlib.contextmanager
def parquet_source(path: str) -> Iterator[str | BinaryIO]:
    """What pyarrow reads a Parquet file from: a local path as is (Arrow's own reader), a URL
    as a Beam file handle.

    A local file is never handed to pyarrow as a Python file object: Arrow's reader threads
    then call back into Python, and under load about one process in ten aborted at exit
    ("terminate called without an active exception"). Handles (URLs only) are read with
    :data:`HANDLE_READ`, which keeps every read on the calling thread.
    """
    if not is_url(path):
        yield path
        return
    with open_binary(path) as fh:
        yield fh


# pq.read_table options for a Python file handle: no reader threads, no pre-buffering
# (see parquet_source)
HANDLE_READ = {"use_threads": False, "pre_buffer": False}


def read_schema(path: str) -> pa.Schema:
    """A Parquet file's schema (with its metadata), from the footer only."""
    with parquet_source(path) as src:
        return pq.read_schema(src)


def num_rows(path: str) -> int:
    """Rows of one Parquet file, from its footer."""
    with parquet_source(path) as src:
        return pq.ParquetFile(src).metadata.num_rows


def count_rows(root: str, prefix: str) -> int:
    """Rows in ``root/<prefix>-*.parquet``, from the Parquet footers only."""
    return sum(num_rows(path) for path in shard_paths(root, prefix))


def read_shards(root: str | Path, prefix: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Every ``<prefix>`` shard under ``root`` as one table (schemas unified: shards of
    different runs may differ in metadata or in null-only columns)."""
    tables = []
    for path in shard_paths(root, prefix):
        with parquet_source(path) as src:
            options = {} if isinstance(src, str) else HANDLE_READ
            tables.append(pq.read_table(src, columns=None if columns is None else list(columns), **options))
    if not tables:
        raise FileNotFoundError(f"no {prefix}-*.parquet shards under {root}")
    return pa.concat_tables(tables, promote_options="default")


def sha256(path: str) -> str:
    """SHA-256 of a file's content (which model made a label, wherever the file lives)."""
    digest = hashlib.sha256()
    with open_binary(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> None:
    """Rows as a local CSV with a header of ``fields`` (other keys of a row are left out)."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_atomic(path: str | Path, text: str) -> None:
    """``text`` into the local file ``path`` through a temporary file and a rename: a reader
    (another process) sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
