"""Resumable labelling: which inputs are left, and chunks committed all or nothing.

The inputs are matched once, at launch, with Beam's ``FileSystems.match`` (the globbing
``fileio.MatchFiles`` does, but the list must be known before any pipeline runs to skip
finished files and cut chunks). Files already present in the output's files or errors
shards are skipped (paths compared by :func:`ser_core.storage.path_key`), and the rest is
labelled in chunks, one Beam pipeline per chunk.

A chunk writes its shards (segments, timeline, files, errors) into
``OUTPUT/_staging/<run>-<chunk>/``, marks it ``_SUCCESS`` when its pipeline has finished
(:func:`mark_done`), then :func:`commit` moves its shards into OUTPUT, files shards last.
At start, :func:`recover` moves in a staging folder with the mark (the move was
interrupted) and deletes one without (the chunk was interrupted). A run killed at any
moment therefore loses at most its unfinished chunk, and a re-run labels every file
exactly once: files rows + error rows = inputs, and a file's segments and timeline rows
are committed with its files row (timeline rows are extra rows, not counted against the
inputs). (To retry files that failed, delete the errors shard that lists them.) Do not
run two jobs on one output. :func:`check_same_settings` refuses to add labels made
by another model or with other settings to an output.

Works on local folders and on any Beam filesystem (gs://, s3://, ...).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from typing import Mapping, Sequence

from apache_beam.io.filesystems import FileSystems

from ser_core.errors import ERRORS_PREFIX, StageError
from ser_core.inference.outputs import FILES_PREFIX, METADATA_KEY, SEGMENTS_PREFIX, TIMELINE_PREFIX
from ser_core.storage import is_url, num_rows, path_key, read_schema, read_shards, shard_paths

LOGGER = logging.getLogger(__name__)
STAGING, SUCCESS = "_staging", "_SUCCESS"


def match_inputs(patterns: Sequence[str]) -> list[str]:
    """Every file the globs match (sorted, each once); a glob matching nothing is logged."""
    found: dict[str, str] = {}
    for pattern, result in zip(patterns, FileSystems.match(list(patterns))):
        if not result.metadata_list:
            LOGGER.warning("input %r matched no files", pattern)
        for m in result.metadata_list:
            found.setdefault(path_key(m.path), m.path)
    return sorted(found.values())


def completed_paths(output: str) -> Counter:
    """How many files/errors rows each input path (by :func:`path_key`) has in ``output``."""
    done: Counter = Counter()
    for prefix in (FILES_PREFIX, ERRORS_PREFIX):
        if shard_paths(output, prefix):
            paths = read_shards(output, prefix, columns=["path"]).column("path").to_pylist()
            done.update(path_key(p) for p in paths)
    return done


def pending(inputs: Sequence[str], output: str) -> list[str]:
    """The inputs that have no row in ``output`` yet."""
    done = completed_paths(output)
    return [p for p in inputs if path_key(p) not in done]


def check_same_settings(output: str, metadata: Mapping[bytes, bytes]) -> None:
    """Refuse to resume into an output labelled by another model or with other settings
    (the checkpoint's path may change; its content may not)."""
    shards = shard_paths(output, FILES_PREFIX) or shard_paths(output, SEGMENTS_PREFIX)
    if not shards:
        return
    before = json.loads((read_schema(shards[0]).metadata or {}).get(METADATA_KEY, b"{}"))
    now = json.loads(metadata[METADATA_KEY])
    differ = sorted(k for k in set(before) | set(now) if k != "model" and before.get(k) != now.get(k))
    if differ:
        raise StageError(f"{output} already holds labels made with other {', '.join(differ)} "
                         f"(see {shards[0]}); label into a new --output")


def staging_dir(output: str, tag: str) -> str:
    return FileSystems.join(output, STAGING, tag)


def mark_done(staging: str) -> None:
    """The chunk's pipeline has finished: its shards are complete and may be committed."""
    FileSystems.create(FileSystems.join(staging, SUCCESS)).close()


def _staging_dirs(output: str) -> list[str]:
    """The chunk folders under OUTPUT/_staging (local: listed; object stores: by prefix)."""
    root = FileSystems.join(output, STAGING)
    if not is_url(root):
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


def _remove_empty_staging(output: str) -> None:
    root = FileSystems.join(output, STAGING)  # (object stores have no folders to remove)
    if not is_url(root) and os.path.isdir(root) and not os.listdir(root):
        os.rmdir(root)


def commit(staging: str, output: str) -> int:
    """Move a finished chunk's non-empty shards into ``output`` (idempotent: a shard already
    moved is no longer in ``staging``), then delete ``staging``; returns how many moved."""
    moved = 0
    for prefix in (SEGMENTS_PREFIX, TIMELINE_PREFIX, ERRORS_PREFIX, FILES_PREFIX):
        for src in shard_paths(staging, prefix):
            if num_rows(src):
                FileSystems.rename([src], [FileSystems.join(output, FileSystems.split(src)[1])])
                moved += 1
    _delete_tree(staging)
    _remove_empty_staging(output)
    return moved


def prepare_output(output: str) -> None:
    """Create ``output`` if need be, and settle what an interrupted run left in it."""
    if not FileSystems.exists(output):
        FileSystems.mkdirs(output)
    recover(output)


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
