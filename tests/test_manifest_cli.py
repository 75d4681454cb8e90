import json

import pyarrow.parquet as pq
import pytest

from ser_core import cli
from ser_core.corpora import CORPORA
from ser_core.records import MANIFEST_COLUMNS
from tests.synth_audio import touch_tree


def tree(root, relative_paths):
    touch_tree(root, relative_paths, duration_s=0.01, sample_rate=8000)
    return root


def test_manifest_mixes_corpora_and_prints_a_summary(tmp_path, capsys):
    ravdess = tree(tmp_path / "ravdess", ["Actor_01/03-01-05-02-01-01-01.wav",
                                          "Actor_02/03-01-01-01-02-02-02.wav",
                                          "Actor_02/not-a-ravdess-name.wav"])
    emodb = tree(tmp_path / "emodb", ["wav/03a01Fa.wav", "wav/08b10Lc.wav"])
    out = tmp_path / "out" / "manifest.parquet"

    code = cli.main(["manifest", f"ravdess={ravdess}", f"emodb={emodb}", "--output", str(out)])

    assert code == 0
    printed = capsys.readouterr().out
    assert "ravdess       2 utterances     2 speakers  rejected 1" in printed
    assert "emodb         2 utterances     2 speakers  rejected 0" in printed
    assert "emotion: boredom 1, happy 1" in printed
    assert f"wrote 4 utterances to {out}" in printed
    table = pq.read_table(out)
    assert tuple(table.column_names) == MANIFEST_COLUMNS
    rows = table.to_pylist()
    assert [(r["utterance_id"], r["speaker"], r["gender"], r["emotion"]) for r in rows] == [
        ("ravdess:03-01-01-01-02-02-02", "ravdess:02", "female", "neutral"),
        ("ravdess:03-01-05-02-01-01-01", "ravdess:01", "male", "angry"),
        ("emodb:03a01Fa", "emodb:03", "male", "happy"),
        ("emodb:08b10Lc", "emodb:08", "female", "boredom"),
    ]
    assert json.loads(rows[3]["custom"]) == {"raw_label": "L", "text": "b10", "version": "c"}
    meta = json.loads(table.schema.metadata[b"ser.manifest"])
    assert [s["corpus"] for s in meta["sources"]] == ["ravdess", "emodb"]
    assert meta["rejected"] == 1


def test_strict_flag_turns_rejects_into_an_error(tmp_path, capsys):
    ravdess = tree(tmp_path / "ravdess", ["Actor_01/03-01-05-02-01-01-01.wav", "Actor_01/bad.wav"])
    out = tmp_path / "m.parquet"
    assert cli.main(["manifest", f"ravdess={ravdess}", "--strict", "--output", str(out)]) == 1
    assert "do not fit the naming convention (strict mode)" in capsys.readouterr().err
    assert not out.exists()


def test_corpora_lists_every_reader(capsys):
    assert cli.main(["corpora"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == list(CORPORA)
    assert list(CORPORA) == ["ravdess", "crema_d", "tess", "savee", "emodb", "folders", "csv"]


@pytest.mark.parametrize("source, message", [
    ("nosuch={root}", "unknown corpus 'nosuch'"),
    ("ravdess", "expected CORPUS=ROOT, got 'ravdess'"),
    ("ravdess=", "expected CORPUS=ROOT"),
    ("ravdess={root}/missing", "ravdess: corpus root does not exist"),
])
def test_bad_sources_exit_1_with_one_line(tmp_path, capsys, source, message):
    out = tmp_path / "m.parquet"
    assert cli.main(["manifest", source.format(root=tmp_path), "--output", str(out)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("ser manifest: error: ") and message in err
    assert len(err.splitlines()) == 1 and captured.out == ""
    assert not out.exists()


def test_unknown_reader_option_is_a_clear_error(tmp_path):
    from ser_core import corpora
    from ser_core.corpora.base import CorpusError

    with pytest.raises(CorpusError, match="unknown reader option"):
        corpora.prepare("ravdess", str(tmp_path), speaker_regex="x")
