"""``ser report``: a label output folder becomes one self-contained HTML page whose every
image decodes, whose tables hold the summaries' numbers and whose errors are grouped."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ser_core import cli
from ser_core.inference.summary import TIMELINE_SCHEMA
from ser_core.inference.report import DPI, FIG_WIDTH_IN, error_counts, error_reason, read_labels, write_report

LABELS = ["neutral", "angry", "sad"]
META = {b"ser.label": json.dumps({"model": "m.pt", "labels": LABELS, "segment_config": {"hop_s": 1.5}}).encode()}
CHANNEL = pa.struct([("channel", pa.int32()), ("role", pa.string()), ("speech_s", pa.float64()),
                     ("n_segments", pa.int32()), ("dominant_emotion", pa.string())])


def write_labels(root, n_calls: int = 3):
    """Calls c0..: agent angry then neutral, customer sad; one file without speech; three errors."""
    root.mkdir(parents=True, exist_ok=True)
    segs = []
    for c in range(n_calls):
        path = f"/archive/c{c}.wav"
        segs += [(path, 0, "agent", 0.0, 3.0, "angry"), (path, 0, "agent", 1.5, 4.5, "angry"),
                 (path, 0, "agent", 3.0, 6.0, "neutral"), (path, 1, "customer", 8.0, 11.0, "sad")]
    cols = list(zip(*segs))
    table = {"path": cols[0], "channel": pa.array(cols[1], pa.int32()), "role": cols[2], "start_s": cols[3],
             "end_s": cols[4], "emotion": cols[5], "confidence": pa.array([0.8] * len(segs), pa.float32())}
    for label in LABELS:
        table[f"prob_{label}"] = pa.array([0.1] * len(segs), pa.float32())
    half = len(segs) // 2  # two shards, as a Beam run writes them
    full = pa.table(table).replace_schema_metadata(META)
    pq.write_table(full.slice(0, half), root / "segments-r1-00000-of-00002.parquet")
    pq.write_table(full.slice(half), root / "segments-r1-00001-of-00002.parquet")
    per_channel = [{"channel": 0, "role": "agent", "speech_s": 6.0, "n_segments": 3, "dominant_emotion": "angry"},
                   {"channel": 1, "role": "customer", "speech_s": 3.0, "n_segments": 1, "dominant_emotion": "sad"}]
    files = [{"path": f"/archive/c{c}.wav", "duration_s": 30.0, "per_channel": per_channel} for c in range(n_calls)]
    files.append({"path": "/archive/quiet.wav", "duration_s": 12.0,
                  "per_channel": [{**ch, "speech_s": 0.0, "n_segments": 0, "dominant_emotion": None} for ch in per_channel]})
    schema = pa.schema([("path", pa.string()), ("duration_s", pa.float64()), ("per_channel", pa.list_(CHANNEL))],
                       metadata=META)
    pq.write_table(pa.Table.from_pylist(files, schema=schema), root / "files-r1-00000-of-00001.parquet")
    errors = [{"utterance_id": "", "path": "/archive/x.wav", "stage": "decode",
               "error": "not a readable audio file (Format not recognised): /archive/x.wav"},
              {"utterance_id": "", "path": "/archive/y.wav", "stage": "decode",
               "error": "not a readable audio file (Format not recognised): /archive/y.wav (and 1 more error(s))"},
              {"utterance_id": "", "path": "/archive/z.wav", "stage": "inference", "error": "RuntimeError('boom')"}]
    pq.write_table(pa.Table.from_pylist(errors), root / "errors-r1-00000-of-00001.parquet")
    return root


class Page(HTMLParser):
    """Collects what the checks need: section ids, images, table rows, external references."""

    def __init__(self):
        super().__init__()
        self.tags, self.sections, self.images, self.tables = [], [], [], []
        self._cell, self._row = None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.sections.append(a.get("id"))
        elif tag == "img":
            self.images.append((self.sections[-1], a["src"], a.get("alt")))
        elif tag == "table":
            self.tables.append((self.sections[-1], []))
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self.tables[-1][1].append(self._row)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = write_labels(tmp_path_factory.mktemp("labels") / "labels")
    out = root.parent / "report" / "report.html"
    write_report(root, out, n_calls=2)
    text = out.read_text(encoding="utf-8")
    parser = Page()
    parser.feed(text)
    parser.close()
    return text, parser


def test_page_has_every_section_and_nothing_external(page):
    text, p = page
    assert text.startswith("<!DOCTYPE html>")
    assert p.sections == ["overview", "distribution", "timelines", "errors", "calls"]
    assert "script" not in p.tags and "link" not in p.tags
    assert "http://" not in text and "https://" not in text


def test_every_image_is_a_decodable_png_of_the_plot_width(page):
    _, p = page
    assert [s for s, _, _ in p.images] == ["distribution", "timelines", "timelines", "errors"]
    assert [alt for s, _, alt in p.images if s == "timelines"] == ["timeline of /archive/c0.wav",
                                                                   "timeline of /archive/c1.wav"]
    for _, src, _ in p.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        image = Image.open(io.BytesIO(base64.b64decode(src[len(prefix):], validate=True)))
        image.load()
        assert image.format == "PNG"
        assert image.size[0] == int(FIG_WIDTH_IN * DPI) and 100 <= image.size[1] <= 1000


def test_tables_hold_the_summaries(page):
    _, p = page
    tables = dict((section, rows) for section, rows in p.tables)
    assert tables["overview"][1] == ["4", "3", "0.03", "0.01"]  # 3 x 30 s + 12 s; 3 x 9 s of speech
    dist = {row[0]: row[1:] for row in tables["distribution"][1:]}
    # angry windows own 0-3.75 s in each of 3 calls: 11.25 s; neutral 3.75-6: 6.75 s; sad 3 x 3 s
    assert dist == {"agent": ["6.8 (38%)", "11.2 (62%)", "0.0 (0%)"], "customer": ["0.0 (0%)", "0.0 (0%)", "9.0 (100%)"]}
    calls = tables["calls"]
    assert calls[0][:7] == ["call", "role", "duration (s)", "speech (s)", "segments", "dominant", "main emotions"]
    assert len(calls) == 1 + 2 * 4
    assert calls[1] == ["c0.wav", "agent", "30.0", "6.0", "3", "angry", "angry 62%, neutral 38%", "angry", "-", "-"]
    assert calls[2] == ["c0.wav", "customer", "30.0", "3.0", "1", "sad", "sad 100%", "sad", "sad", "-"]
    assert calls[-1] == ["quiet.wav", "customer", "12.0", "0.0", "0", "-", "", "-", "-", "-"]
    assert tables["errors"][1:] == [
        ["decode", "not a readable audio file (Format not recognised)", "2", "/archive/x.wav"],
        ["inference", "RuntimeError('boom')", "1", "/archive/z.wav"]]


def test_errors_group_by_stage_and_reason_without_the_path():
    assert error_reason("too short: 0.1 s < 1.0 s: /a/b.wav (and 2 more error(s))", "/a/b.wav") == "too short: 0.1 s < 1.0 s"
    assert error_reason("failed to open /a/b.wav for reading", "/a/b.wav") == "failed to open <file> for reading"
    assert error_reason("", None) == "(no message)"
    rows = [{"path": "/p1", "stage": "decode", "error": "bad: /p1"}, {"path": "/p2", "stage": "decode", "error": "bad: /p2"},
            {"path": "/p3", "stage": "features", "error": "bad: /p3"}]
    assert error_counts(rows) == [("decode", "bad", 2, "/p1"), ("features", "bad", 1, "/p3")]


def test_read_labels_takes_labels_and_hop_from_the_metadata(tmp_path):
    out = read_labels(write_labels(tmp_path / "labels", n_calls=1), n_calls=5)
    assert out.labels == LABELS and out.n_files == 2
    assert list(out.timelines) == ["/archive/c0.wav", "/archive/quiet.wav"]
    assert [(t["channel"], t["start_s"], t["end_s"], t["emotion"]) for t in out.timelines["/archive/c0.wav"]] == \
        [(0, 0.0, 3.75, "angry"), (0, 3.75, 6.0, "neutral"), (1, 8.0, 11.0, "sad")]


def test_cli_and_a_folder_without_labels(tmp_path, capsys):
    root = write_labels(tmp_path / "labels", n_calls=1)
    assert cli.main(["report", str(root), "--output", str(tmp_path / "r.html"), "--calls", "0"]) == 0
    assert "0 timelines" in capsys.readouterr().out
    assert 'id="timelines"' in (tmp_path / "r.html").read_text()
    (tmp_path / "empty").mkdir()
    assert cli.main(["report", str(tmp_path / "empty"), "--output", str(tmp_path / "e.html")]) == 1
    assert "no segments-, files- or errors-*.parquet" in capsys.readouterr().err
    assert not (tmp_path / "e.html").exists()


def test_the_pipelines_timeline_is_read_when_present_and_uncertain_is_its_own_category(tmp_path):
    root = write_labels(tmp_path / "labels", n_calls=1)
    shard = next(root.glob("segments-*00001-of-*.parquet"))  # c0's last two windows
    table = pq.read_table(shard)
    emotions = table.column("emotion").to_pylist()
    emotions[0] = "uncertain"  # c0's agent window 3-6 s, neutral before
    pq.write_table(table.set_column(table.schema.get_field_index("emotion"), "emotion", pa.array(emotions)), shard)
    stored = [{"path": "/archive/c0.wav", "channel": 0, "role": "agent", "turn": 0, "start_s": 0.0, "end_s": 6.0,
               "speech_s": 6.0, "emotion": "angry", "confidence": 0.5, "n_segments": 3}]
    pq.write_table(pa.Table.from_pylist(stored, schema=TIMELINE_SCHEMA), root / "timeline-r1-00000-of-00001.parquet")
    out = read_labels(root, n_calls=5)
    assert out.timelines == {"/archive/c0.wav": stored, "/archive/quiet.wav": []}  # as stored, not recomputed
    agent = next(r for r in out.role_rows if r["path"] == "/archive/c0.wav" and r["role"] == "agent")
    assert agent["share_uncertain"] == pytest.approx(2.25 / 6.0) and agent["dominant_emotion"] == "angry"
    assert agent["detected_s"] is None  # files rows of the old layout carry no detected_s
    write_report(root, tmp_path / "r.html")
    parser = Page()
    parser.feed((tmp_path / "r.html").read_text(encoding="utf-8"))
    tables = dict(parser.tables)
    assert tables["distribution"][0] == ["role", *LABELS, "uncertain"]
    assert dict((row[0], row[-1]) for row in tables["distribution"][1:]) == {"agent": "2.2 (38%)",
                                                                            "customer": "0.0 (0%)"}
