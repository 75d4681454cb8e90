import re

import pytest

from ser_core.corpora import CorpusError, prepare
from ser_core.corpora.user_csv import prepare_csv
from ser_core.records import Utterance


@pytest.fixture
def clips(make_tree):
    """Root with clips under ``clips/`` and one outside the CSV's folder, ``elsewhere/``."""
    return make_tree(["data/clips/a.wav", "data/clips/b.flac", "data/c.wav", "elsewhere/d.wav"])


def write_csv(folder, text, name="list.csv"):
    path = folder / name
    path.write_text(text)
    return path


def test_lists_good_rows_and_rejects_bad_ones_by_line(clips):
    data = clips / "data"
    outside = clips / "elsewhere" / "d.wav"
    csv_path = write_csv(data, (
        "Path,Speaker,Emotion,Gender,Session\n"  # any case; extra columns go to custom
        "clips/a.wav,anna,happy,female,s1\n"
        "clips/b.flac,ben,Anger,M,s1\n"
        f"{outside},cara,pleasant surprise,,s2\n"  # absolute path, blank gender
        "\n"  # blank lines are skipped
        "c.wav,dan,,male,s2\n"
        "clips/missing.wav,ben,sad,male,s2\n"
        "c.wav,dan,sad,robot,s2\n"
        "c.wav,dan,bad!label,male,s2\n"
        "c.wav,dan,sad,male,s2,extra\n"
        ",dan,sad,male,s2\n"
    ))

    listing = prepare_csv(csv_path)

    assert listing.root == str(csv_path)
    assert listing.utterances == [
        Utterance("csv:../elsewhere/d", "csv", str(outside), "csv:cara", "unknown", "surprised",
                  {"session": "s2", "raw_label": "pleasant surprise"}),
        Utterance("csv:clips/a", "csv", str(data / "clips/a.wav"), "csv:anna", "female", "happy",
                  {"session": "s1", "raw_label": "happy"}),
        Utterance("csv:clips/b", "csv", str(data / "clips/b.flac"), "csv:ben", "male", "angry",
                  {"session": "s1", "raw_label": "Anger"}),
    ]
    assert [(r.path, r.reason) for r in listing.rejected] == [
        (f"{csv_path}:6", "missing emotion"),
        (f"{csv_path}:7", f"file not found: {data / 'clips/missing.wav'}"),
        (f"{csv_path}:8", "gender 'robot' is not male, female or unknown"),
        (f"{csv_path}:9", "not a usable emotion label: 'bad!label'"),
        (f"{csv_path}:10", "6 fields but the header has 5"),
        (f"{csv_path}:11", "missing path"),
    ]


def test_root_may_be_a_folder_with_exactly_one_csv(clips):
    data = clips / "data"
    write_csv(data, "path,speaker,emotion\nc.wav,dan,sad\n")
    listing = prepare("csv", str(data))
    assert [(u.utterance_id, u.gender) for u in listing.utterances] == [("csv:c", "unknown")]

    write_csv(data, "path,speaker,emotion\n", name="other.csv")
    with pytest.raises(CorpusError, match="must hold exactly one .csv file \\(found list.csv, other.csv\\)"):
        prepare_csv(data)
    with pytest.raises(CorpusError, match="found none"):
        prepare_csv(clips / "elsewhere")


def test_bad_header_strict_missing_empty_and_duplicates(clips):
    data = clips / "data"
    with pytest.raises(CorpusError, match="missing speaker, emotion"):
        prepare_csv(write_csv(data, "path,label\nc.wav,sad\n", name="h.csv"))
    with pytest.raises(CorpusError, match=re.escape(f"{data / 's.csv'}:3: missing speaker")):
        prepare_csv(write_csv(data, "path,speaker,emotion\nc.wav,dan,sad\nc.wav,,sad\n", name="s.csv"),
                    strict=True)
    with pytest.raises(CorpusError, match=re.escape(str(data / "nowhere.csv"))):
        prepare_csv(data / "nowhere.csv")
    with pytest.raises(CorpusError, match="no utterances found"):
        prepare_csv(write_csv(data, "path,speaker,emotion\n", name="e.csv"))
    dup = write_csv(data, "path,speaker,emotion\nc.wav,dan,sad\n./c.wav,dan,happy\n", name="d.csv")
    with pytest.raises(CorpusError, match="duplicate utterance id 'csv:c'") as err:
        prepare_csv(dup)
    assert str(data / "c.wav") in str(err.value)


def test_files_differing_only_by_extension_are_both_listed(clips):
    data = clips / "data"
    (data / "clips" / "a.flac").write_bytes((data / "clips" / "b.flac").read_bytes())
    csv_path = write_csv(data, "path,speaker,emotion\nclips/a.wav,anna,happy\nclips/a.flac,anna,sad\n"
                               "c.wav,dan,sad\n")

    listing = prepare_csv(csv_path)

    assert [(u.utterance_id, u.path, u.emotion) for u in listing.utterances] == [
        ("csv:c", str(data / "c.wav"), "sad"),
        ("csv:clips/a.flac", str(data / "clips/a.flac"), "sad"),
        ("csv:clips/a.wav", str(data / "clips/a.wav"), "happy"),
    ]
    assert listing.copies == []  # a CSV's list is taken as it is: no format copies dropped


def test_an_id_column_names_the_utterances(clips):
    data = clips / "data"
    csv_path = write_csv(data, "ID,path,speaker,emotion\nfirst,clips/a.wav,anna,happy\n"
                               ",c.wav,dan,sad\n")
    listing = prepare_csv(csv_path)
    assert [(u.utterance_id, u.custom) for u in listing.utterances] == [
        ("csv:c", {"raw_label": "sad"}), ("csv:first", {"raw_label": "happy"})]

    clash = write_csv(data, "id,path,speaker,emotion\nc,clips/a.wav,anna,happy\n,c.wav,dan,sad\n",
                      name="clash.csv")
    with pytest.raises(CorpusError, match="duplicate utterance id 'csv:c'"):
        prepare_csv(clash)


def test_a_csv_corpus_can_keep_its_own_name(clips):
    """``manifest.options: {csv: {name: nemo}}``: ids, speakers and the corpus column carry the
    corpus's own name, so several corpora stay apart (ser transfer groups by it)."""
    data = clips / "data"
    csv_path = write_csv(data, "path,speaker,emotion\nclips/a.wav,EB0,happy\nclips/b.flac,KS0,sad\n")
    listing = prepare("csv", str(csv_path), name="nemo")
    assert {(u.utterance_id, u.speaker, u.corpus) for u in listing.utterances} == {
        ("nemo:clips/a", "nemo:EB0", "nemo"), ("nemo:clips/b", "nemo:KS0", "nemo")}
    assert listing.corpus == "csv"  # the reader that listed it
    with pytest.raises(CorpusError, match="plain lower-case word"):
        prepare_csv(csv_path, name="Ne Mo")
