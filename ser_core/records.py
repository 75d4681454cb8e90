"""The one utterance record every stage shares, and its Parquet form (the manifest)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

GENDERS = ("male", "female", "unknown")

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
        schema = schema.with_metadata({b"ser.manifest": json.dumps(dict(metadata)).encode()})
    table = pa.Table.from_pydict(columns, schema=schema)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(path))
    return len(rows)


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read a manifest written by :func:`write_manifest` (or any Parquet file with its columns)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    table = pq.read_table(str(path))
    missing = [c for c in MANIFEST_COLUMNS if c not in table.column_names and c != "custom"]
    if missing:
        raise ValueError(f"{path} is not a manifest: missing columns {missing}")
    return [Utterance.from_row(r) for r in table.to_pylist()]
