"""``ser manifest``: list one or more corpora into a single Parquet manifest."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Sequence

from ser_core import corpora
from ser_core.corpora.base import CorpusError, CorpusListing, check_unique
from ser_core.params import load_section
from ser_core.records import write_manifest


def parse_sources(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``CORPUS=ROOT`` strings -> (corpus, root) pairs, with corpus names checked."""
    sources = []
    for spec in specs:
        name, sep, root = spec.partition("=")
        if not sep or not name or not root:
            raise CorpusError(f"expected CORPUS=ROOT, got {spec!r}")
        if name not in corpora.CORPORA:
            raise CorpusError(f"unknown corpus {name!r} in {spec!r}; known: {', '.join(corpora.CORPORA)}")
        sources.append((name, root))
    return sources


def build_manifest(
    sources: Sequence[tuple[str, str]], *, strict: bool = False, options: dict | None = None
) -> list[CorpusListing]:
    """List every source; ids must be unique across them all."""
    options = options or {}
    listings = [corpora.prepare(name, root, strict=strict, **options.get(name, {})) for name, root in sources]
    check_unique((u for listing in listings for u in listing.utterances), "across sources")
    return listings


def format_summary(listings: Sequence[CorpusListing], output: str) -> str:
    lines = []
    total = 0
    for listing in listings:
        s = listing.summary()
        total += s["utterances"]
        lines.append(
            f"{s['corpus']:<8} {s['utterances']:>6} utterances  {s['speakers']:>4} speakers  "
            f"rejected {s['rejected']}  ({s['root']})"
            + (f"  [{s['format_copies']} copies in another format not listed]" if s["format_copies"] else "")
        )
        lines.append("         gender:  " + ", ".join(f"{k} {v}" for k, v in s["genders"].items()))
        lines.append("         emotion: " + ", ".join(f"{k} {v}" for k, v in s["emotions"].items()))
        for r in listing.rejected[:10]:
            lines.append(f"         rejected {r.path}: {r.reason}")
        if len(listing.rejected) > 10:
            lines.append(f"         ... and {len(listing.rejected) - 10} more rejected")
    lines.append(f"wrote {total} utterances to {output}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="*", metavar="CORPUS=ROOT",
                        help="corpus name and root folder; repeat to mix corpora "
                             "(default: params.yaml manifest.sources)")
    parser.add_argument("--output", "-o", required=True, help="manifest Parquet file to write")
    parser.add_argument("--strict", action="store_true", default=None,
                        help="fail if any file does not fit its corpus's naming convention")
    parser.add_argument("--params", default=None, help="params.yaml to read the 'manifest' section from")


def main(args: argparse.Namespace) -> int:
    section = load_section(args.params, "manifest")
    specs = list(args.sources) or [f"{k}={v}" for k, v in (section.get("sources") or {}).items()]
    if not specs:
        raise CorpusError("no sources: give CORPUS=ROOT arguments or manifest.sources in params.yaml")
    strict = args.strict if args.strict is not None else bool(section.get("strict", False))
    listings = build_manifest(parse_sources(specs), strict=strict, options=section.get("options"))
    utterances = [u for listing in listings for u in listing.utterances]
    rejected = sum(len(listing.rejected) for listing in listings)
    write_manifest(
        utterances,
        args.output,
        metadata={
            "sources": [listing.summary() for listing in listings],
            "rejected": rejected,
            "emotions": dict(Counter(u.emotion for u in utterances)),
        },
    )
    print(format_summary(listings, str(Path(args.output))))
    return 0


def corpora_main(args: argparse.Namespace) -> int:
    for name, text in corpora.describe().items():
        print(f"{name:<8} {text}")
    return 0

