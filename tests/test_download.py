"""``ser download`` against a local HTTP server on 127.0.0.1 serving zips built here."""

import dataclasses
import hashlib
import io
import stat
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ser_core import cli
from ser_core.corpora.ravdess import prepare_ravdess
from ser_core.download import ARCHIVES, Archive, DownloadError, download
from tests.synth_audio import write_audio

CLIPS = ["Actor_01/03-01-05-02-01-01-01.wav", "Actor_02/03-01-01-01-02-02-02.wav"]


class Server:
    """Serves ``files`` (URL path -> bytes); honours Range only when ``ranges`` is set, and
    with ``cut_at`` set announces the full length but hangs up after that many bytes."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.ranges = False
        self.cut_at: int | None = None
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                range_header = self.headers.get("Range")
                if server.ranges and range_header:
                    start = int(range_header.removeprefix("bytes=").rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:server.cut_at])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def make_zip(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A zip of ``members`` (name -> bytes) plus symbolic-link members (name -> target)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buffer.getvalue()


@pytest.fixture
def ravdess_zip(tmp_path):
    """A small zip laid out like the real speech archive, with real (tiny) WAV clips."""
    clips = {rel: write_audio(tmp_path / "src" / rel, duration_s=0.01, seed=i).read_bytes()
             for i, rel in enumerate(CLIPS)}
    return make_zip(clips)


def archive_for(server, body: bytes, **changes) -> Archive:
    """The real RAVDESS archive spec, pointed at the local server with this body's checksum."""
    server.files["/speech.zip"] = body
    fields = {"url": server.url + "/speech.zip", "md5": hashlib.md5(body).hexdigest(), "size": len(body)}
    fields.update(changes)
    return dataclasses.replace(ARCHIVES["ravdess"], **fields)


def test_official_archive_is_pinned():
    archive = ARCHIVES["ravdess"]
    assert archive.url == "https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1"
    assert (archive.filename, archive.md5, archive.size) == (
        "Audio_Speech_Actors_01-24.zip", "bc696df654c87fed845eb13823edef8a", 208_468_073)


def test_good_zip_is_verified_extracted_and_readable(server, ravdess_zip, tmp_path):
    dest = tmp_path / "ravdess"
    archive = archive_for(server, ravdess_zip)

    extracted = download(archive, dest, progress=False)

    assert extracted == [dest / "Actor_01", dest / "Actor_02"]
    assert sorted(p.name for p in dest.iterdir()) == ["Actor_01", "Actor_02"]  # no zip, part, temp dir
    assert [u.utterance_id for u in prepare_ravdess(dest, strict=True).utterances] == [
        "ravdess:03-01-01-01-02-02-02", "ravdess:03-01-05-02-01-01-01"]
    # Already present: nothing is fetched again unless forced.
    assert download(archive, dest, progress=False) is None
    assert len(server.requests) == 1
    (dest / "Actor_01" / "stale.txt").write_text("replaced by --force")
    assert download(archive, dest, force=True, progress=False) == extracted
    assert not (dest / "Actor_01" / "stale.txt").exists() and len(server.requests) == 2


def test_checksum_mismatch_fails_and_leaves_nothing(server, ravdess_zip, tmp_path):
    dest = tmp_path / "ravdess"
    archive = archive_for(server, ravdess_zip, md5="0" * 32)
    with pytest.raises(DownloadError, match=f"MD5 is {hashlib.md5(ravdess_zip).hexdigest()}, "
                                            f"expected {'0' * 32}; the download was removed"):
        download(archive, dest, progress=False)
    assert list(dest.iterdir()) == []


def test_unsafe_members_are_refused_and_nothing_escapes(server, tmp_path):
    dest = tmp_path / "deep" / "ravdess"
    for members, links, why in [
        ({"Actor_01/ok.wav": b"x", "../evil.wav": b"evil"}, None, "'../evil.wav': '..' in its path"),
        ({"Actor_01/ok.wav": b"x", "Actor_01/../../evil.wav": b"evil"}, None, "'..' in its path"),
        ({"Actor_01/ok.wav": b"x", str(tmp_path / "abs.wav"): b"evil"}, None, "absolute path"),
        ({"Actor_01/ok.wav": b"x"}, {"Actor_01/link.wav": "/etc/passwd"}, "symbolic link"),
    ]:
        body = make_zip(members, links)
        with pytest.raises(DownloadError, match=f"refusing to extract .*{why}"):
            download(archive_for(server, body), dest, progress=False)
        assert [p.name for p in dest.iterdir()] == ["Audio_Speech_Actors_01-24.zip"]  # verified, kept
        (dest / "Audio_Speech_Actors_01-24.zip").unlink()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "ravdess"]


def test_interrupted_download_resumes_with_a_range_request(server, ravdess_zip, tmp_path):
    dest = tmp_path / "ravdess"
    half = len(ravdess_zip) // 2
    archive = archive_for(server, ravdess_zip)
    server.cut_at = half
    with pytest.raises(DownloadError, match=f"interrupted after {half} bytes .*run the command again"):
        download(archive, dest, progress=False)
    assert (dest / "Audio_Speech_Actors_01-24.zip.part").read_bytes() == ravdess_zip[:half]

    server.cut_at, server.ranges = None, True
    download(archive, dest, progress=False)

    assert server.requests == [("/speech.zip", None), ("/speech.zip", f"bytes={half}-")]
    assert sorted(p.name for p in dest.iterdir()) == ["Actor_01", "Actor_02"]


def test_server_ignoring_range_restarts_from_scratch(server, ravdess_zip, tmp_path):
    dest = tmp_path / "ravdess"
    dest.mkdir()
    (dest / "Audio_Speech_Actors_01-24.zip.part").write_bytes(b"garbage")
    download(archive_for(server, ravdess_zip), dest, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == ["Actor_01", "Actor_02"]


def test_cli_reports_http_errors_and_uses_the_url_override(server, ravdess_zip, tmp_path, capsys,
                                                            monkeypatch):
    dest = tmp_path / "ravdess"
    code = cli.main(["download", "ravdess", str(dest), "--url", server.url + "/nope.zip", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err == f"ser download: error: HTTP 404 Not Found for {server.url}/nope.zip"
    # The environment variable is used when no --url is given; the official checksum still
    # applies, so the small test zip is refused (and removed) rather than extracted.
    server.files["/mirror.zip"] = ravdess_zip
    monkeypatch.setenv("SER_RAVDESS_URL", server.url + "/mirror.zip")
    assert cli.main(["download", "ravdess", str(dest), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"ser download: error: Audio_Speech_Actors_01-24.zip from {server.url}/mirror.zip: "
                   f"size is {len(ravdess_zip)} bytes, expected 208468073; the download was removed")
    assert list(dest.iterdir()) == []


def test_cli_extracts_then_skips_when_present(server, ravdess_zip, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(ARCHIVES, "ravdess", archive_for(server, ravdess_zip))
    dest = tmp_path / "ravdess"

    assert cli.main(["download", "ravdess", str(dest), "--no-progress", "--keep-archive"]) == 0
    assert capsys.readouterr().out == (
        f"extracted Audio_Speech_Actors_01-24.zip into {dest}: Actor_01, Actor_02\n"
        f"list it with: ser manifest ravdess={dest} --output manifest.parquet\n")
    assert (dest / "Audio_Speech_Actors_01-24.zip").read_bytes() == ravdess_zip

    assert cli.main(["download", "ravdess", str(dest), "--no-progress"]) == 0
    assert capsys.readouterr().out == f"ravdess is already in {dest}; use --force to download it again\n"
    assert len(server.requests) == 1
