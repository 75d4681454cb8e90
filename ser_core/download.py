"""``ser download CORPUS DIR``: fetch a corpus from its official source, verify it, extract it.

Only RAVDESS can be fetched: it is the one corpus published openly (CC BY-NC-SA 4.0) on
a stable record, Zenodo 1188976; the others need a licence form or an account. The
speech archive ``Audio_Speech_Actors_01-24.zip`` (208,468,073 bytes, MD5 published by
Zenodo) unpacks to ``Actor_01`` ... ``Actor_24``, which ``ser manifest ravdess=DIR``
reads.

Steps, each of which can fail on its own with a one-line reason:

1. Skip when DIR already holds the corpus (``Actor_NN`` folders) unless ``--force``.
2. Stream to ``DIR/<archive>.part`` with a progress bar; an interrupted download keeps
   the ``.part`` and the next run resumes it with an HTTP Range request (or starts over
   when the server ignores Range).
3. Check the size and MD5; a file that does not match is deleted, never extracted.
4. Check every member before writing anything: absolute paths, ``..`` components,
   links and special files, and anything resolving outside DIR refuse the whole archive.
5. Extract into a hidden temporary folder inside DIR, then move the top-level entries
   into place, so an interrupted extraction never leaves a half corpus where the
   reader would list it.

The URL can point at a mirror (``--url`` or ``SER_RAVDESS_URL``); the checksum stays
the official one, so a mirror must serve the identical file. Only the standard library
fetches (urllib), so nothing beyond the package's dependencies is needed.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT_S = 60
USER_AGENT = "ser-pipelines (https://zenodo.org/records/1188976 fetcher; python urllib)"


class DownloadError(OSError):
    """A download, its verification or its extraction failed; the message says which and why."""


@dataclass(frozen=True)
class Archive:
    """One downloadable corpus archive and how to recognise it once extracted."""

    corpus: str
    filename: str
    url: str
    md5: str
    size: int | None  # bytes; None when the publisher gives no size
    present: str  # glob of top-level entries in DIR that mean "already extracted"

    @property
    def url_env(self) -> str:
        """Environment variable that overrides :attr:`url` (e.g. a local mirror)."""
        return f"SER_{self.corpus.upper()}_URL"


ARCHIVES: dict[str, Archive] = {
    "ravdess": Archive(
        corpus="ravdess",
        filename="Audio_Speech_Actors_01-24.zip",
        url="https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1",
        md5="bc696df654c87fed845eb13823edef8a",
        size=208_468_073,
        present="Actor_[0-9][0-9]",
    ),
}


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(path: Path, archive: Archive) -> str | None:
    """What is wrong with a downloaded file (size, then MD5), or None when it matches."""
    size = path.stat().st_size
    if archive.size is not None and size != archive.size:
        return f"size is {size} bytes, expected {archive.size}"
    md5 = file_md5(path)
    if md5 != archive.md5:
        return f"MD5 is {md5}, expected {archive.md5}"
    return None


def fetch(url: str, part: Path, *, size: int | None = None, progress: bool = True) -> None:
    """Stream ``url`` into ``part``, resuming from what ``part`` already holds.

    A transfer cut short (fewer bytes than the server announced, or a network error)
    keeps ``part`` and says so, so the next call resumes it. A transfer that completes
    is left for :func:`check_file` to judge, whatever its size.
    """
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return  # complete already; the checksum decides whether it is right
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=TIMEOUT_S)
    except HTTPError as exc:
        if exc.code == 416 and offset:
            return  # the server says there is nothing past offset: the file is complete
        raise DownloadError(f"HTTP {exc.code} {exc.reason} for {url}") from exc
    except (URLError, OSError) as exc:
        raise DownloadError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from exc
    with response:
        content_range = response.headers.get("Content-Range", "")
        if offset and not (getattr(response, "status", None) == 206
                           and content_range.startswith(f"bytes {offset}-")):
            log.info("server ignored the resume request; downloading %s from the start", url)
            offset = 0
        length = response.headers.get("Content-Length")
        announced = int(length) if length and length.isdigit() else None
        total = size if size is not None else (offset + announced if announced is not None else None)
        received = 0
        try:
            with open(part, "ab" if offset else "wb") as fh, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name.removesuffix(".part"), disable=not progress,
            ) as bar:
                while chunk := response.read(CHUNK):
                    fh.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except (OSError, HTTPException) as exc:
            problem = str(exc) or type(exc).__name__
        else:
            short = announced is not None and received < announced
            problem = f"the server announced {announced} bytes and sent {received}" if short else None
    if problem:
        raise DownloadError(
            f"download of {url} interrupted after {offset + received} bytes ({problem}); "
            f"run the command again to resume"
        )


def unsafe_member(info: zipfile.ZipInfo, dest: Path) -> str | None:
    """Why extracting this member could write outside ``dest`` or create a link, or None."""
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in parts:
        return "'..' in its path"
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver recorded no Unix type
    if kind == stat.S_IFLNK:
        return "symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "not a regular file or folder"
    if not (dest / name).resolve().is_relative_to(dest.resolve()):
        return "resolves outside the destination"
    return None


def extract(zip_path: Path, dest: Path, *, force: bool = False) -> list[Path]:
    """Safely extract ``zip_path`` into ``dest``; returns the top-level entries created.

    Every member is checked before anything is written, and the archive is unpacked
    into a temporary folder inside ``dest`` (same file system, so the final moves are
    renames). Existing entries of the same name are replaced only with ``force``.
    """
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = zf.infolist()
            bad = [(m.filename, why) for m in members if (why := unsafe_member(m, dest))]
            if bad:
                shown = "; ".join(f"{name!r}: {why}" for name, why in bad[:5])
                raise DownloadError(f"refusing to extract {zip_path.name}: unsafe member(s) {shown}")
            tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
            try:
                for info in members:
                    target = tmp / info.filename
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
                entries = sorted(tmp.iterdir())
                clashes = [dest / e.name for e in entries if os.path.lexists(dest / e.name)]
                if clashes and not force:
                    raise DownloadError(f"{clashes[0]} already exists; use --force to replace it")
                for old in clashes:
                    if old.is_dir() and not old.is_symlink():
                        shutil.rmtree(old)
                    else:
                        old.unlink()
                for entry in entries:
                    os.replace(entry, dest / entry.name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{zip_path} is not a valid zip archive: {exc}") from exc
    return [dest / e.name for e in entries]


def download(
    archive: Archive,
    dest: str | Path,
    *,
    url: str | None = None,
    force: bool = False,
    keep_archive: bool = False,
    progress: bool = True,
) -> list[Path] | None:
    """Fetch, verify and extract ``archive`` into ``dest``; None when it was already there.

    ``url`` (else the archive's environment variable, else its official URL) is where
    to fetch from; the checksum is always ``archive.md5`` (tests pass their own
    :class:`Archive`). A verified archive left in ``dest`` is reused, not fetched again.
    """
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    if not force and any(dest.glob(archive.present)):
        return None
    url = url or os.environ.get(archive.url_env) or archive.url
    zip_path = dest / archive.filename
    part = dest / (archive.filename + ".part")
    if zip_path.exists() and check_file(zip_path, archive) is None:
        log.info("reusing the verified archive %s", zip_path)
    else:
        zip_path.unlink(missing_ok=True)
        fetch(url, part, size=archive.size, progress=progress)
        problem = check_file(part, archive)
        if problem:
            part.unlink()
            raise DownloadError(f"{archive.filename} from {url}: {problem}; the download was removed")
        os.replace(part, zip_path)
    extracted = extract(zip_path, dest, force=force)
    if not keep_archive:
        zip_path.unlink()
    return extracted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("corpus", choices=sorted(ARCHIVES), help="corpus to fetch")
    parser.add_argument("dest", metavar="DIR", help="folder to extract into (created if missing)")
    parser.add_argument("--url", default=None,
                        help="fetch from this URL instead (a mirror serving the identical file; "
                             "default: $SER_<CORPUS>_URL, else the official record)")
    parser.add_argument("--force", action="store_true",
                        help="download and extract again even if DIR already holds the corpus")
    parser.add_argument("--keep-archive", action="store_true",
                        help="keep the verified zip in DIR after extracting it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    archive = ARCHIVES[args.corpus]
    extracted = download(archive, args.dest, url=args.url, force=args.force,
                         keep_archive=args.keep_archive, progress=not args.no_progress)
    if extracted is None:
        print(f"{archive.corpus} is already in {args.dest}; use --force to download it again")
        return 0
    names = [p.name for p in extracted]
    shown = ", ".join(names[:3]) + (f" ... {names[-1]}" if len(names) > 3 else "")
    print(f"extracted {archive.filename} into {args.dest}: {shown}\n"
          f"list it with: ser manifest {archive.corpus}={args.dest} --output manifest.parquet")
    return 0
