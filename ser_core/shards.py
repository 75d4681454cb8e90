"""Local Parquet outputs written as shards, ``DIR/<prefix>-*.parquet``, read back whole.

For readers outside Beam (``ser report``); the pipelines themselves go through Beam's
filesystems (``pipelines.common``) so they also reach gs:// and s3://.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def shard_paths(folder: str | Path, prefix: str) -> list[Path]:
    """``folder/<prefix>-*.parquet``, sorted; FileNotFoundError when the folder is missing."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    return sorted(p for p in root.glob(f"{prefix}-*.parquet") if p.is_file())


def read_shards(folder: str | Path, prefix: str) -> pa.Table | None:
    """Every ``<prefix>`` shard as one table (schemas unified; the first shard's metadata
    kept), or None when there is none."""
    paths = shard_paths(folder, prefix)
    if not paths:
        return None
    tables = [pq.read_table(str(p)) for p in paths]
    table = pa.concat_tables(tables, promote_options="default")
    return table.replace_schema_metadata(tables[0].schema.metadata)
