"""``ser manifest``: list one or more corpora into a single Parquet manifest.

Two ways to build one:

- ``ser manifest CORPUS=ROOT [...] --output FILE`` lists each corpus and writes them together;
- ``ser manifest --listings DIR --output FILE`` combines one-corpus manifests
  ``DIR/<corpus>.parquet`` written earlier (one per source in params.yaml). This is how the
  DVC chain runs: one ``listing@<corpus>`` stage per entry of ``manifest.sources``, each
  depending on its own corpus folder, then one ``manifest`` stage combining them (DVC can
  template a stage per dict entry, but not a list of deps of varying length).

Paths are written relative to each corpus's folder, and the folder relative to the
manifest's (see :mod:`ser_core.records`), so the manifest is the same in every clone.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow.parquet as pq

from ser_core import corpora
from ser_core.corpora.base import CorpusError, CorpusListing, Rejected, check_unique
from ser_core.params import load_section
from ser_core.records import (Utterance, folder_of, is_absolute, join_path, manifest_metadata, read_manifest,
                              write_manifest)


def parse_sources(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``CORPUS=ROOT`` strings -> (corpus, root) pairs, with corpus names checked.

    A corpus may be listed once: the manifest records one folder per corpus.
    """
    sources: list[tuple[str, str]] = []
    for spec in specs:
        name, sep, root = spec.partition("=")
        if not sep or not name or not root:
            raise CorpusError(f"expected CORPUS=ROOT, got {spec!r}")
        if name not in corpora.CORPORA:
            raise CorpusError(f"unknown corpus {name!r} in {spec!r}; known: {', '.join(corpora.CORPORA)}")
        earlier = dict(sources).get(name)
        if earlier is not None:
            raise CorpusError(f"corpus {name!r} is listed twice ({earlier} and {root}): a manifest holds "
                              f"one folder per corpus; put both under one root")
        sources.append((name, root))
    return sources


def sources_from_params(section: Mapping[str, Any]) -> list[str]:
    """``manifest.sources`` (corpus -> root) as ``CORPUS=ROOT`` specs, checked."""
    sources = section.get("sources") or {}
    if not isinstance(sources, dict):
        raise CorpusError(f"manifest.sources must map corpus names to folders, got {sources!r}")
    specs = []
    for name, root in sources.items():
        if not isinstance(root, str) or not root:
            raise CorpusError(f"manifest.sources.{name} must be a folder (reader options go in "
                              f"manifest.options.{name}), got {root!r}")
        specs.append(f"{name}={root}")
    return specs


def build_manifest(
    sources: Sequence[tuple[str, str]], *, strict: bool = False, options: dict | None = None
) -> list[CorpusListing]:
    """List every source; ids must be unique across them all."""
    options = options or {}
    listings = [corpora.prepare(name, root, strict=strict, **options.get(name, {})) for name, root in sources]
    check_unique((u for listing in listings for u in listing.utterances), "across sources")
    return listings


# ---------------------------------------------------------------- paths that travel


def portable_folder(folder: str, manifest_folder: str) -> str:
    """How a manifest records a corpus folder: relative to the manifest's folder when it
    was given relative (identical in every clone), as given when absolute or a URL."""
    folder = os.path.expanduser(folder)
    if is_absolute(folder):
        return folder
    return Path(os.path.relpath(os.path.abspath(folder), manifest_folder)).as_posix()


def relative_path(path: str, base: Path) -> str:
    """``path`` relative to ``base`` (POSIX separators) when it lies under it, else as it is."""
    try:
        return Path(path).relative_to(base).as_posix()
    except ValueError:
        return path


def relocate(listing: CorpusListing, root: str, output: str) -> tuple[list[Utterance], dict[str, Any]]:
    """A listing as a manifest stores it: paths relative to the corpus folder, and the
    source's summary with ``root`` and ``base`` (that folder) as :func:`portable_folder`
    records them for a manifest written to ``output``."""
    out_folder = folder_of(output)
    given_base = root if Path(root).expanduser().is_dir() else (os.path.dirname(root) or ".")
    base = listing.base
    utterances = [replace(u, path=relative_path(u.path, base)) for u in listing.utterances]
    entry = {**listing.summary(), "root": portable_folder(root, out_folder),
             "base": portable_folder(given_base, out_folder)}
    return utterances, entry


def read_listing(folder: str, corpus: str, output: str) -> tuple[list[Utterance], dict[str, Any]]:
    """The one-corpus manifest ``folder/<corpus>.parquet``, its folders re-based from its own
    folder to that of ``output``."""
    path = Path(folder) / f"{corpus}.parquet"
    if not path.is_file():
        raise CorpusError(f"{corpus}: no listing {path}; write it with "
                          f"`ser manifest {corpus}=ROOT --output {path}` (DVC stage listing@{corpus})")
    entries = manifest_metadata(pq.read_schema(path).metadata).get("sources") or []
    if len(entries) != 1 or not isinstance(entries[0], dict) or entries[0].get("corpus") != corpus:
        raise CorpusError(f"{path} is not a listing of corpus {corpus!r} alone (sources: {entries})")
    utterances = read_manifest(path, resolve=False)
    wrong = sorted({u.corpus for u in utterances} - {entries[0].get("name") or corpus})
    if wrong:
        raise CorpusError(f"{path} holds utterances of {wrong}, not only of {corpus!r}")
    here, there = folder_of(str(path)), folder_of(output)

    def rebase(value: str) -> str:
        return value if is_absolute(value) else Path(os.path.relpath(join_path(here, value), there)).as_posix()

    entry = dict(entries[0])
    entry.update(root=rebase(entry["root"]), base=rebase(entry["base"]))
    return utterances, entry


# ---------------------------------------------------------------- command line


def format_summary(sources: Sequence[Mapping[str, Any]], output: str,
                   rejected: Mapping[str, Sequence[Rejected]] | None = None) -> str:
    """One block per source (counts, genders, emotions, the first rejected files), then the total."""
    lines = []
    total = 0
    for s in sources:
        total += s["utterances"]
        lines.append(
            f"{s['corpus']:<8} {s['utterances']:>6} utterances  {s['speakers']:>4} speakers  "
            f"rejected {s['rejected']}  ({s['root']})"
            + (f"  [{s['format_copies']} copies in another format not listed]" if s["format_copies"] else "")
        )
        lines.append("         gender:  " + ", ".join(f"{k} {v}" for k, v in s["genders"].items()))
        lines.append("         emotion: " + ", ".join(f"{k} {v}" for k, v in s["emotions"].items()))
        shown = (rejected or {}).get(s["corpus"], ())
        for r in shown[:10]:
            lines.append(f"         rejected {r.path}: {r.reason}")
        if len(shown) > 10:
            lines.append(f"         ... and {len(shown) - 10} more rejected")
    lines.append(f"wrote {total} utterances to {output}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="*", metavar="CORPUS=ROOT",
                        help="corpus name and root folder; repeat to mix corpora "
                             "(default: params.yaml manifest.sources)")
    parser.add_argument("--output", "-o", required=True, help="manifest Parquet file to write")
    parser.add_argument("--listings", metavar="DIR", default=None,
                        help="combine the one-corpus manifests DIR/<corpus>.parquet of these sources "
                             "instead of listing the corpora again")
    parser.add_argument("--strict", action="store_true", default=None,
                        help="fail if any file does not fit its corpus's naming convention")
    parser.add_argument("--params", default=None, help="params.yaml to read the 'manifest' section from")


def main(args: argparse.Namespace) -> int:
    section = load_section(args.params, "manifest")
    specs = list(args.sources) or sources_from_params(section)
    if not specs:
        raise CorpusError("no sources: give CORPUS=ROOT arguments or manifest.sources in params.yaml")
    sources = parse_sources(specs)
    rejected: dict[str, list[Rejected]] = {}
    if args.listings:
        parts = [read_listing(args.listings, name, args.output) for name, _ in sources]
        shown = [entry for _, entry in parts]
    else:
        strict = args.strict if args.strict is not None else bool(section.get("strict", False))
        options = section.get("options") or {}
        if not isinstance(options, dict):
            raise CorpusError(f"manifest.options must map corpus names to reader options, got {options!r}")
        listings = build_manifest(sources, strict=strict, options=options)
        parts = [relocate(listing, root, args.output) for listing, (_, root) in zip(listings, sources)]
        shown = [listing.summary() for listing in listings]
        rejected = {listing.corpus: listing.rejected for listing in listings}
    check_unique((u for utterances, _ in parts for u in utterances), "across sources")
    utterances = [u for part, _ in parts for u in part]
    entries = [entry for _, entry in parts]
    write_manifest(
        utterances,
        args.output,
        metadata={
            "sources": entries,
            "rejected": sum(entry["rejected"] for entry in entries),
            "emotions": dict(Counter(u.emotion for u in utterances)),
        },
    )
    print(format_summary(shown, str(Path(args.output)), rejected))
    return 0


def corpora_main(args: argparse.Namespace) -> int:
    for name, text in corpora.describe().items():
        print(f"{name:<8} {text}")
    return 0
