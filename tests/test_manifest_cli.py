import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ser_core import cli
from ser_core.corpora import CORPORA
from ser_core.records import MANIFEST_COLUMNS, read_manifest
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


RAVDESS_FILES = ["Actor_01/03-01-05-02-01-01-01.wav", "Actor_02/03-01-01-01-02-02-02.wav"]
EMODB_FILES = ["wav/03a01Fa.wav", "wav/08b10Lc.wav"]


def small_project(root):
    """A project folder with two corpora under corpora/ and a params.yaml naming them."""
    tree(root / "corpora" / "ravdess", RAVDESS_FILES)
    tree(root / "corpora" / "emodb", EMODB_FILES)
    (root / "params.yaml").write_text(
        "manifest:\n  sources:\n    ravdess: corpora/ravdess\n    emodb: corpora/emodb\n  strict: true\n")
    return root


def test_paths_travel_with_the_project(tmp_path, monkeypatch):
    """Relative to the corpus folder, the folder relative to the manifest's: the same bytes
    in a copy of the project anywhere, and each copy reads its own files."""
    first, second = small_project(tmp_path / "a" / "project"), tmp_path / "b" / "deeper" / "copy"
    shutil.copytree(first, second)
    for project in (first, second):
        monkeypatch.chdir(project)
        assert cli.main(["manifest", "--params", "params.yaml", "--output", "data/manifest.parquet"]) == 0

    data = [(p / "data" / "manifest.parquet").read_bytes() for p in (first, second)]
    assert data[0] == data[1]
    table = pq.read_table(first / "data" / "manifest.parquet")
    assert table.column("path").to_pylist() == sorted(RAVDESS_FILES, key=lambda p: p.split("/")[1]) + EMODB_FILES
    sources = json.loads(table.schema.metadata[b"ser.manifest"])["sources"]
    assert [(s["corpus"], s["root"], s["base"]) for s in sources] == [
        ("ravdess", "../corpora/ravdess", "../corpora/ravdess"), ("emodb", "../corpora/emodb", "../corpora/emodb")]
    for project in (first, second):
        paths = [Path(u.path) for u in read_manifest(project / "data" / "manifest.parquet")]
        assert all(p.is_file() and p.is_relative_to(project / "corpora") for p in paths)
    shutil.rmtree(first / "corpora")  # a copy of the manifest alone no longer finds files
    assert not any(Path(u.path).exists() for u in read_manifest(first / "data" / "manifest.parquet"))


def test_absolute_roots_stay_absolute_and_csv_paths_follow_the_csv(tmp_path, monkeypatch):
    corpus = tree(tmp_path / "elsewhere" / "emodb", EMODB_FILES)
    clips = tree(tmp_path / "project" / "mine", ["clips/a.wav"])
    outside = tree(tmp_path / "far", ["b.wav"]) / "b.wav"
    (clips / "list.csv").write_text(f"path,speaker,emotion\nclips/a.wav,anna,happy\n{outside},ben,sad\n")
    monkeypatch.chdir(tmp_path / "project")

    assert cli.main(["manifest", f"emodb={corpus}", "csv=mine/list.csv", "--output", "m.parquet"]) == 0

    table = pq.read_table(tmp_path / "project" / "m.parquet")
    rows = {r["utterance_id"]: r["path"] for r in table.to_pylist()}
    assert rows == {"emodb:03a01Fa": "wav/03a01Fa.wav", "emodb:08b10Lc": "wav/08b10Lc.wav",
                    "csv:clips/a": "clips/a.wav", "csv:../../far/b": str(outside)}
    sources = json.loads(table.schema.metadata[b"ser.manifest"])["sources"]
    assert [(s["root"], s["base"]) for s in sources] == [(str(corpus), str(corpus)), ("mine/list.csv", "mine")]
    resolved = {u.utterance_id: u.path for u in read_manifest(tmp_path / "project" / "m.parquet")}
    assert resolved == {"emodb:03a01Fa": str(corpus / "wav/03a01Fa.wav"), "emodb:08b10Lc": str(corpus / "wav/08b10Lc.wav"),
                        "csv:clips/a": str(clips / "clips/a.wav"), "csv:../../far/b": str(outside)}


def test_combining_listings_equals_listing_all_at_once(tmp_path, monkeypatch):
    """The DVC chain's way (one listing per source, then --listings) writes the same bytes."""
    project = small_project(tmp_path / "p")
    monkeypatch.chdir(project)
    for name in ("ravdess", "emodb"):
        assert cli.main(["manifest", f"{name}=corpora/{name}", "--params", "params.yaml",
                         "--output", f"data/listings/{name}.parquet"]) == 0
    assert cli.main(["manifest", "--listings", "data/listings", "--params", "params.yaml",
                     "--output", "data/manifest.parquet"]) == 0
    assert cli.main(["manifest", "--params", "params.yaml", "--output", "data/direct.parquet"]) == 0

    assert (project / "data/manifest.parquet").read_bytes() == (project / "data/direct.parquet").read_bytes()
    listing = json.loads(pq.read_schema(project / "data/listings/emodb.parquet").metadata[b"ser.manifest"])
    assert listing["sources"][0]["base"] == "../../corpora/emodb"  # rebased when combined


def test_listing_and_source_errors_name_what_is_wrong(tmp_path, monkeypatch, capsys):
    project = small_project(tmp_path / "p")
    monkeypatch.chdir(project)
    assert cli.main(["manifest", "ravdess=corpora/ravdess", "--output", "data/listings/emodb.parquet"]) == 0
    capsys.readouterr()
    cases = [
        (["--listings", "data/listings", "ravdess=corpora/ravdess"],
         "ravdess: no listing data/listings/ravdess.parquet; write it with `ser manifest ravdess=ROOT"),
        (["--listings", "data/listings", "emodb=corpora/emodb"],
         "data/listings/emodb.parquet is not a listing of corpus 'emodb' alone"),
        (["ravdess=corpora/ravdess", "ravdess=elsewhere"],
         "corpus 'ravdess' is listed twice (corpora/ravdess and elsewhere)"),
    ]
    for argv, message in cases:
        assert cli.main(["manifest", *argv, "--output", "m.parquet"]) == 1
        assert message in capsys.readouterr().err
    (project / "params.yaml").write_text("manifest:\n  sources:\n    ravdess: {root: corpora/ravdess}\n")
    assert cli.main(["manifest", "--params", "params.yaml", "--output", "m.parquet"]) == 1
    assert "manifest.sources.ravdess must be a folder (reader options go in manifest.options.ravdess)" in (
        capsys.readouterr().err)
    assert not (project / "m.parquet").exists()


def test_a_named_csv_corpus_is_found_again_by_its_name(tmp_path, monkeypatch):
    """``manifest.options: {csv: {name: nemo}}``: the rows are ``nemo``'s, the source records
    both the reader and the name, and the paths resolve, listed directly or combined from the
    DVC chain's listings."""
    clips = tree(tmp_path / "project" / "nemo", ["samples/a.wav", "samples/b.wav"])
    (clips / "nemo.csv").write_text("path,speaker,emotion\nsamples/a.wav,EB0,happy\nsamples/b.wav,KS0,sad\n")
    (tmp_path / "project" / "params.yaml").write_text(
        "manifest:\n  sources: {csv: nemo/nemo.csv}\n  options: {csv: {name: nemo}}\n")
    monkeypatch.chdir(tmp_path / "project")
    assert cli.main(["manifest", "--params", "params.yaml", "--output", "data/direct.parquet"]) == 0
    assert cli.main(["manifest", "csv=nemo/nemo.csv", "--params", "params.yaml",
                     "--output", "data/listings/csv.parquet"]) == 0
    assert cli.main(["manifest", "--listings", "data/listings", "--params", "params.yaml",
                     "--output", "data/manifest.parquet"]) == 0
    for name in ("direct", "manifest"):
        utterances = read_manifest(tmp_path / "project" / "data" / f"{name}.parquet")
        assert {(u.corpus, u.speaker, u.path) for u in utterances} == {
            ("nemo", "nemo:EB0", str(clips / "samples/a.wav")), ("nemo", "nemo:KS0", str(clips / "samples/b.wav"))}
    source = json.loads(pq.read_schema("data/manifest.parquet").metadata[b"ser.manifest"])["sources"][0]
    assert (source["corpus"], source["name"]) == ("csv", "nemo")
