"""What every corpus reader shares: the listing it returns, its errors, file walking,
the listing loop, metadata CSVs and gender values."""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from ser_core.records import GENDERS, Utterance

# Every format the decoder (libsndfile) reads, in order of preference: when one clip is
# found in several formats (CREMA-D ships AudioWAV and AudioMP3 copies), the first kept is
# the most faithful one, and the others are rejected as copies.
AUDIO_EXTENSIONS = (".wav", ".flac", ".aiff", ".aif", ".ogg", ".opus", ".mp3")


class CorpusError(ValueError):
    """A corpus cannot be listed: missing root, nothing found, duplicate ids, strict rejects."""


@dataclass(frozen=True)
class Rejected:
    """A file found under a corpus root that does not fit the corpus's naming convention."""

    path: str
    reason: str


@dataclass
class CorpusListing:
    """What a reader found: utterances to use and files it rejected (with reasons)."""

    corpus: str
    root: str
    utterances: list[Utterance] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    copies: list[Rejected] = field(default_factory=list)  # same clip in another format, not listed
    name: str | None = None  # the namespace of its ids and speakers, when not the reader's (csv's option)

    @property
    def base(self) -> Path:
        """The folder a manifest records this listing's paths relative to: the root, or
        the folder of a root that is a file (a user CSV)."""
        root = Path(self.root)
        return root.parent if root.is_file() else root

    def summary(self) -> dict:
        return {
            "corpus": self.corpus,
            **({"name": self.name} if self.name and self.name != self.corpus else {}),
            "root": self.root,
            "utterances": len(self.utterances),
            "speakers": len({u.speaker for u in self.utterances}),
            "genders": dict(sorted(Counter(u.gender for u in self.utterances).items())),
            "emotions": dict(sorted(Counter(u.emotion for u in self.utterances).items())),
            "rejected": len(self.rejected),
            "format_copies": len(self.copies),
        }


def require_root(root: str | os.PathLike, corpus: str) -> Path:
    """The corpus root as a Path, or a CorpusError naming it, before any work starts."""
    path = Path(root).expanduser()
    if not path.exists():
        raise CorpusError(f"{corpus}: corpus root does not exist: {path}")
    if not path.is_dir():
        raise CorpusError(f"{corpus}: corpus root is not a directory: {path}")
    return path.resolve()


def walk_files(root: Path, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> Iterator[Path]:
    """Audio files under root in a stable (sorted) order; hidden files and folders skipped."""
    exts = tuple(e.lower() for e in extensions)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(exts):
                yield Path(dirpath) / name


def normalise_gender(raw: str) -> str:
    """``male|female|unknown`` from a table cell or option (case-insensitive; M/F; blank is unknown).

    Raises ValueError for anything else, so a typo is reported rather than read as unknown.
    """
    value = raw.strip().lower()
    value = {"": "unknown", "m": "male", "f": "female"}.get(value, value)
    if value not in GENDERS:
        raise ValueError(f"gender {raw!r} is not male, female or unknown")
    return value


@dataclass(frozen=True)
class CsvRow:
    """One data row of a CSV: its line number, cells by column, and a structural problem if any."""

    line: int
    fields: dict[str, str]
    problem: str | None = None


def read_csv_rows(path: Path, required: Sequence[str], corpus: str) -> list[CsvRow]:
    """The rows of a metadata CSV, after checking its header names the ``required`` columns.

    Column names are matched case-insensitively (stored lower-cased) and cells are
    stripped; blank lines are skipped. A row with more cells than the header carries a
    ``problem`` so the caller can reject it with its line number instead of guessing
    which cell is wrong. The whole file is read up front so a bad header fails before
    any work.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [name.strip().lower() for name in next(reader, [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise CorpusError(
                    f"{corpus}: {path} must have a header row with columns {', '.join(required)}; "
                    f"missing {', '.join(missing)} (found {header or 'nothing'})"
                )
            rows = []
            for cells in reader:
                if not any(cell.strip() for cell in cells):
                    continue
                problem = None
                if len(cells) > len(header):
                    problem = f"{len(cells)} fields but the header has {len(header)}"
                values = [cell.strip() for cell in cells] + [""] * (len(header) - len(cells))
                rows.append(CsvRow(reader.line_num, dict(zip(header, values)), problem))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CorpusError(f"{corpus}: cannot read {path}: {exc}") from exc
    return rows


def check_unique(utterances: Iterable[Utterance], where: str) -> None:
    """CorpusError naming both paths if two utterances share an id."""
    seen: dict[str, str] = {}
    for u in utterances:
        if u.utterance_id in seen:
            raise CorpusError(
                f"{where}: duplicate utterance id {u.utterance_id!r}: {seen[u.utterance_id]} and {u.path}"
            )
        seen[u.utterance_id] = u.path


def finish(listing: CorpusListing, strict: bool = False) -> CorpusListing:
    """Validate a listing before anything is written: no duplicates, not empty, strict rejects."""
    check_unique(listing.utterances, listing.corpus)
    if strict and listing.rejected:
        shown = "\n".join(f"  {r.path}: {r.reason}" for r in listing.rejected[:20])
        raise CorpusError(
            f"{listing.corpus}: {len(listing.rejected)} file(s) do not fit the naming "
            f"convention (strict mode):\n{shown}"
        )
    if not listing.utterances:
        detail = f" ({len(listing.rejected)} file(s) rejected)" if listing.rejected else ""
        raise CorpusError(f"{listing.corpus}: no utterances found under {listing.root}{detail}")
    listing.utterances.sort(key=lambda u: u.utterance_id)
    return listing


def make_utterance(
    corpus: str, local_id: str, path: str | os.PathLike, *, speaker: str, gender: str, emotion: str,
    custom: dict[str, str],
) -> Utterance:
    """An Utterance of ``corpus`` with its id and speaker namespaced as ``corpus:...``."""
    return Utterance(
        utterance_id=f"{corpus}:{local_id}",
        corpus=corpus,
        path=str(path),
        speaker=f"{corpus}:{speaker}",
        gender=gender,
        emotion=emotion,
        custom=custom,
    )


def list_corpus(
    corpus: str,
    root: Path,
    describe: Callable[[Path], Utterance | None],
    *,
    strict: bool,
    extensions: Iterable[str] = AUDIO_EXTENSIONS,
) -> CorpusListing:
    """Walk ``root`` (as :func:`require_root` returned it) and describe each file, then finish.

    ``describe(path)`` returns the file's Utterance, None for a file that fits the corpus
    but was not asked for, or raises ValueError for one that does not fit: the file is
    then rejected with the error's message as the reason. Any format libsndfile reads is
    listed (a corpus re-encoded to FLAC is still the corpus); the same clip in several
    formats is kept once, in the first format of :data:`AUDIO_EXTENSIONS`.
    """
    listing = CorpusListing(corpus, str(root))
    for path in walk_files(root, extensions):
        try:
            utterance = describe(path)
        except ValueError as exc:
            listing.rejected.append(Rejected(str(path), str(exc)))
            continue
        if utterance is not None:
            listing.utterances.append(utterance)
    drop_format_copies(listing)
    return finish(listing, strict)


def _format_rank(path: str) -> int:
    suffix = Path(path).suffix.lower()
    return AUDIO_EXTENSIONS.index(suffix) if suffix in AUDIO_EXTENSIONS else len(AUDIO_EXTENSIONS)


def drop_format_copies(listing: CorpusListing) -> None:
    """Keep one file per utterance id when the others differ from it only in format
    (extension); each copy dropped goes to ``listing.copies`` naming the file kept. Two files
    with one id and the same format stay, for :func:`check_unique` to report."""
    by_id: dict[str, list[Utterance]] = {}
    for u in listing.utterances:
        by_id.setdefault(u.utterance_id, []).append(u)
    keep: list[Utterance] = []
    for group in by_id.values():
        suffixes = [Path(u.path).suffix.lower() for u in group]
        if len(group) == 1 or len(set(suffixes)) < len(group):
            keep.extend(group)
            continue
        group = sorted(group, key=lambda u: _format_rank(u.path))
        keep.append(group[0])
        listing.copies.extend(
            Rejected(u.path, f"another format of {group[0].path} (kept)") for u in group[1:])
    listing.utterances = keep
