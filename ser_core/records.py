"""The one utterance record every stage shares, and its Parquet form (the manifest).

A manifest's ``path`` is relative to its corpus's folder, and that folder is recorded in
the schema metadata (``ser.manifest`` -> ``sources`` -> ``base``) relative to the
manifest's own folder, unless the corpus was given by an absolute path or URL. So a
manifest does not depend on where a clone lives, and it still finds its audio when it is
moved together with its corpora (or copied to ``gs://`` beside them). Readers turn paths
back into files with :func:`manifest_locator` / :func:`read_manifest`; absolute paths and
URLs in the ``path`` column are used as they are.
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

GENDERS = ("male", "female", "unknown")
METADATA_KEY = b"ser.manifest"

MANIFEST_COLUMNS = ("utterance_id", "corpus", "path", "speaker", "gender", "emotion", "custom")

# Columns of the manifest, in order. ``custom`` holds corpus extras (intensity,
# statement, level, raw label, ...) as a JSON object so any reader can open it.
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("utterance_id", pa.string(), nullable=False),
        pa.field("corpus", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("speaker", pa.string(), nullable=False),
        pa.field("gender", pa.string(), nullable=False),
        pa.field("emotion", pa.string(), nullable=False),
        pa.field("custom", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class Utterance:
    """One labelled utterance, as listed by a corpus reader (no audio is opened).

    ``speaker`` is namespaced by corpus (``ravdess:01``) so corpora can be mixed;
    ``emotion`` is a canonical label (see :mod:`ser_core.labels`); anything a
    corpus adds beyond these fields goes in ``custom``.
    """

    utterance_id: str
    corpus: str
    path: str
    speaker: str
    gender: str
    emotion: str
    custom: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("utterance_id", "corpus", "path", "speaker", "emotion"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"Utterance.{name} must be a non-empty string, got {value!r}")
        if self.gender not in GENDERS:
            raise ValueError(f"Utterance.gender must be one of {GENDERS}, got {self.gender!r}")
        if not self.speaker.startswith(self.corpus + ":"):
            raise ValueError(
                f"Utterance.speaker must be namespaced by its corpus ({self.corpus}:...), "
                f"got {self.speaker!r}"
            )

    def to_row(self) -> dict[str, str]:
        """The manifest row: plain strings, ``custom`` as sorted JSON."""
        return {
            "utterance_id": self.utterance_id,
            "corpus": self.corpus,
            "path": self.path,
            "speaker": self.speaker,
            "gender": self.gender,
            "emotion": self.emotion,
            "custom": json.dumps(dict(self.custom), sort_keys=True),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Utterance":
        custom = row.get("custom") or "{}"
        return cls(
            utterance_id=row["utterance_id"],
            corpus=row["corpus"],
            path=row["path"],
            speaker=row["speaker"],
            gender=row["gender"],
            emotion=row["emotion"],
            custom=json.loads(custom) if isinstance(custom, str) else dict(custom),
        )


def write_manifest(
    utterances: Iterable[Utterance], path: str | Path, metadata: Mapping[str, Any] | None = None
) -> int:
    """Write utterances to one Parquet file; ``metadata`` goes in the schema as JSON."""
    rows = [u.to_row() for u in utterances]
    columns = {name: [r[name] for r in rows] for name in MANIFEST_SCHEMA.names}
    schema = MANIFEST_SCHEMA
    if metadata:
        schema = schema.with_metadata({METADATA_KEY: json.dumps(dict(metadata)).encode()})
    table = pa.Table.from_pydict(columns, schema=schema)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(path))
    return len(rows)


def read_manifest(path: str | Path, *, resolve: bool = True) -> list[Utterance]:
    """Read a manifest written by :func:`write_manifest` (or any Parquet file with its columns).

    With ``resolve`` (the default) each ``path`` is the file to open (see
    :func:`manifest_locator`); without, it is the manifest's own, possibly relative, value.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    table = pq.read_table(str(path))
    missing = [c for c in MANIFEST_COLUMNS if c not in table.column_names and c != "custom"]
    if missing:
        raise ValueError(f"{path} is not a manifest: missing columns {missing}")
    utterances = [Utterance.from_row(r) for r in table.to_pylist()]
    if not resolve:
        return utterances
    locate = manifest_locator(str(path), table.schema.metadata)
    return [replace(u, path=locate(u.corpus, u.path)) for u in utterances]


def manifest_metadata(schema_metadata: Mapping[bytes, bytes] | None) -> dict[str, Any]:
    """The ``ser.manifest`` JSON of a manifest's schema metadata ({} when there is none)."""
    raw = (schema_metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def is_absolute(path: str) -> bool:
    """True for a URL (``gs://...``) or an absolute local path: used as written, never joined."""
    return "://" in path or os.path.isabs(path)


def join_path(folder: str, relative: str) -> str:
    """``folder/relative`` normalised, for local folders and URLs alike (``..`` never
    leaves a URL's bucket)."""
    if "://" in folder:
        scheme, rest = folder.split("://", 1)
        bucket, _, key = rest.partition("/")
        return f"{scheme}://{bucket}{posixpath.normpath(posixpath.join('/' + key, relative))}"
    return os.path.normpath(os.path.join(folder, relative))


def folder_of(manifest: str) -> str:
    """The folder a manifest file is in, absolute (a URL stays a URL)."""
    if "://" in manifest:
        return manifest.rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(manifest))


class ManifestLocator:
    """Turns a manifest row's (corpus, path) into the file to open.

    A relative path is joined to its corpus's ``base`` from the metadata, itself joined
    to the manifest's folder when relative; a corpus without a recorded base (a manifest
    written by hand) has its relative paths read from the manifest's folder. Picklable,
    so a Beam DoFn can carry it to workers.
    """

    def __init__(self, folder: str, bases: Mapping[str, str]):
        self.folder = folder
        self.bases = {corpus: base if is_absolute(base) else join_path(folder, base)
                      for corpus, base in bases.items()}

    def __call__(self, corpus: str, path: str) -> str:
        if is_absolute(path):
            return path
        return join_path(self.bases.get(corpus, self.folder), path)


def manifest_locator(manifest: str, schema_metadata: Mapping[bytes, bytes] | None) -> ManifestLocator:
    """The :class:`ManifestLocator` of the manifest at ``manifest`` with this schema metadata."""
    sources = manifest_metadata(schema_metadata).get("sources") or []
    # keyed by the utterances' corpus: the reader's name, or the namespace a source was given
    bases = {s.get("name") or s["corpus"]: s["base"] for s in sources if isinstance(s, dict) and s.get("base")}
    return ManifestLocator(folder_of(manifest), bases)
