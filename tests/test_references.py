"""Every document the code, params and docs point a reader to is in the repository (the
paper's protocol once lived outside it: nine places pointed at a PAPER.md nobody had)."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# README.md, docs/PAPER.md, `RESULTS.md` ...: a document named in capitals, with or without its folder
DOCUMENT = re.compile(r"(?<![\w/.-])((?:docs/)?[A-Z][A-Z0-9_]*\.md)\b")


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    names = listed.stdout.split() if listed.returncode == 0 else [
        str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if ".venv" not in p.parts]
    return [ROOT / n for n in names if n.endswith((".py", ".md", ".yaml", ".toml")) or n == "Makefile"]


def test_every_named_document_exists():
    missing = {}
    for path in tracked_text_files():
        if not path.is_file():
            continue
        for name in DOCUMENT.findall(path.read_text(encoding="utf-8")):
            candidates = [ROOT / name] + ([] if "/" in name else [ROOT / "docs" / name])
            if not any(c.is_file() for c in candidates):
                missing.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert missing == {}


def test_the_papers_protocol_is_in_the_repository():
    text = (ROOT / "docs" / "PAPER.md").read_text()
    for needle in ("| fold | test actors | validation actors |", "46,772", "0.6232"):
        assert needle in text


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_markdown_link_to_a_file_resolves():
    """Links between the README, the docs pages and the CHANGELOG point at files that exist
    (relative to the page, as a reader's browser resolves them)."""
    broken = {}
    for path in tracked_text_files():
        if path.suffix != ".md" or not path.is_file():
            continue
        for target in LINK.findall(path.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            if not (path.parent / target.split("#", 1)[0]).exists():
                broken.setdefault(str(path.relative_to(ROOT)), []).append(target)
    assert broken == {}
