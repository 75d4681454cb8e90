"""Your own recordings listed in a CSV (corpus name ``csv``).

ROOT is the CSV file, or a folder holding exactly one ``.csv`` at its top level (more
than one is an error: which to use would be a guess). The CSV is UTF-8 with a header
row naming at least ``path,speaker,emotion``, optionally ``gender`` and ``id``, in any
order and case::

    path,speaker,emotion,gender
    clips/0001.wav,anna,happy,female
    /data/calls/0002.flac,ben,Anger,M

- path: an audio file; a relative path is resolved against the CSV's own folder, so
  the CSV and its clips can move together.
- speaker: any id; it is namespaced as ``csv:<speaker>`` (or ``<name>:<speaker>`` with the
  reader option ``name``, e.g. ``manifest.options: {csv: {name: nemo}}``, so that the corpus
  keeps its own name among others: ``ser transfer`` tells corpora apart by it).
- emotion: through :func:`ser_core.labels.normalise_label` (``Anger`` -> ``angry``;
  labels with no canonical equivalent are kept as their own, lower-cased).
- gender: male, female, unknown, M or F (any case); blank or no column is unknown.
- id: the utterance's id (``csv:<id>``); blank or no column: taken from the path (below).
- Any other column is kept in ``custom`` under its lower-cased name, next to
  ``raw_label`` (the emotion as written).

A row with a missing field, an unusable emotion or gender, more cells than the header,
or a file that does not exist is rejected as ``<csv>:<line>`` with the reason. Without
an ``id``, the utterance id is ``csv:<path relative to the CSV's folder, without
extension>``; files that differ only by extension (``a.wav``, ``a.flac``: both are
wanted, as they are listed) keep their extension in the id (``csv:a.wav``). Listing the
same file twice is a duplicate-id error. In a manifest, paths under the CSV's folder are
stored relative to it; others keep their absolute path. Licence and source: yours.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

from ser_core.corpora.base import (
    CorpusError, CorpusListing, CsvRow, Rejected, finish, make_utterance, normalise_gender,
    read_csv_rows,
)
from ser_core.labels import normalise_label
from ser_core.records import Utterance

CORPUS = "csv"
REQUIRED_COLUMNS = ("path", "speaker", "emotion")
OPTIONAL_COLUMNS = ("gender", "id")


def find_csv(root: str | Path) -> Path:
    """The CSV that ``root`` names (a file, or a folder with exactly one ``.csv``), resolved."""
    path = Path(root).expanduser()
    if not path.exists():
        raise CorpusError(f"{CORPUS}: CSV file or folder does not exist: {path}")
    if path.is_dir():
        found = sorted(p for p in path.glob("*.csv") if p.is_file())
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise CorpusError(
                f"{CORPUS}: folder {path} must hold exactly one .csv file (found {names}); "
                f"give the CSV file itself"
            )
        path = found[0]
    return path.resolve()


def parse_row(row: CsvRow, csv_dir: Path, name: str = CORPUS) -> Utterance:
    """One CSV row as an Utterance; ValueError says what is wrong with the row."""
    if row.problem:
        raise ValueError(row.problem)
    missing = [c for c in REQUIRED_COLUMNS if not row.fields[c]]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    raw_label = row.fields["emotion"]
    emotion = normalise_label(raw_label)
    gender = normalise_gender(row.fields.get("gender", ""))
    audio = Path(row.fields["path"]).expanduser()
    audio = Path(os.path.normpath(audio if audio.is_absolute() else csv_dir / audio))
    if not audio.is_file():
        raise ValueError(f"file not found: {audio}")
    local_id = row.fields.get("id") or Path(os.path.relpath(audio, csv_dir)).with_suffix("").as_posix()
    extras = {k: v for k, v in row.fields.items() if k and k not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
    return make_utterance(
        name, local_id, audio,
        speaker=row.fields["speaker"],
        gender=gender,
        emotion=emotion,
        custom={**extras, "raw_label": raw_label},
    )


def keep_extensions(utterances: list[Utterance], csv_dir: Path, explicit: set[str],
                    name: str = CORPUS) -> list[Utterance]:
    """Path-derived ids shared by different files (``a.wav``, ``a.flac``) -> ids with the
    extension; the same file listed twice keeps its id, for the duplicate check to report."""
    paths: dict[str, set[str]] = {}
    for u in utterances:
        if u.utterance_id not in explicit:
            paths.setdefault(u.utterance_id, set()).add(u.path)
    shared = {uid for uid, found in paths.items() if len(found) > 1}
    return [replace(u, utterance_id=f"{name}:{Path(os.path.relpath(u.path, csv_dir)).as_posix()}")
            if u.utterance_id in shared else u for u in utterances]


def prepare_csv(root: str | Path, *, strict: bool = False, name: str = CORPUS) -> CorpusListing:
    """List the utterances of a user CSV (``root`` is the CSV or its folder); ``name``
    namespaces its ids and speakers (and is its ``corpus`` column)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", str(name)):
        raise CorpusError(f"{CORPUS}: option name must be a plain lower-case word ([a-z][a-z0-9_]*), got {name!r}")
    csv_path = find_csv(root)
    rows = read_csv_rows(csv_path, REQUIRED_COLUMNS, CORPUS)
    listing = CorpusListing(CORPUS, str(csv_path), name=name)
    explicit: set[str] = set()
    for row in rows:
        try:
            listing.utterances.append(parse_row(row, csv_path.parent, name))
        except ValueError as exc:
            listing.rejected.append(Rejected(f"{csv_path}:{row.line}", str(exc)))
            continue
        if row.fields.get("id"):
            explicit.add(listing.utterances[-1].utterance_id)
    listing.utterances = keep_extensions(listing.utterances, csv_path.parent, explicit, name)
    return finish(listing, strict)
