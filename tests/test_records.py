import json
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ser_core.records import MANIFEST_COLUMNS, Utterance, manifest_locator, read_manifest, write_manifest


def utt(**overrides):
    fields = dict(utterance_id="ravdess:03-01-05-02-01-01-01", corpus="ravdess",
                  path="/data/Actor_01/03-01-05-02-01-01-01.wav", speaker="ravdess:01",
                  gender="male", emotion="angry", custom={"intensity": "strong", "raw_label": "05"})
    fields.update(overrides)
    return Utterance(**fields)


@pytest.mark.parametrize("overrides, message", [
    ({"utterance_id": ""}, "utterance_id must be a non-empty string"),
    ({"corpus": None}, "corpus must be a non-empty string"),
    ({"path": ""}, "path must be a non-empty string"),
    ({"emotion": ""}, "emotion must be a non-empty string"),
    ({"gender": "M"}, "gender must be one of"),
    ({"speaker": "01"}, r"speaker must be namespaced by its corpus \(ravdess:...\), got '01'"),
    ({"speaker": "tess:OAF"}, "speaker must be namespaced"),
])
def test_invalid_utterances_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        utt(**overrides)


def test_manifest_round_trip_keeps_custom_and_metadata(tmp_path):
    utterances = [
        utt(),
        utt(utterance_id="emodb:03a01Fa", corpus="emodb", path="/d/wav/03a01Fa.wav",
            speaker="emodb:03", emotion="happy", custom={}),
        utt(utterance_id="csv:x", corpus="csv", path="/d/x.wav", speaker="csv:anna", gender="unknown",
            emotion="contempt", custom={"session": "s1", "nested": {"k": [1, 2]}}),
    ]
    out = tmp_path / "sub" / "manifest.parquet"

    assert write_manifest(utterances, out, metadata={"sources": ["ravdess"]}) == 3

    assert read_manifest(out) == utterances
    table = pq.read_table(out)
    assert tuple(table.column_names) == MANIFEST_COLUMNS
    assert json.loads(table.schema.metadata[b"ser.manifest"]) == {"sources": ["ravdess"]}
    assert table.column("custom")[0].as_py() == '{"intensity": "strong", "raw_label": "05"}'


def test_read_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "none.parquet")
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"utterance_id": ["a"]}), bad)
    with pytest.raises(ValueError, match="is not a manifest: missing columns"):
        read_manifest(bad)


def test_locator_joins_relative_paths_to_their_corpus_folder():
    metadata = {b"ser.manifest": json.dumps({"sources": [
        {"corpus": "ravdess", "base": "corpora/ravdess"},
        {"corpus": "emodb", "base": "../../shared/emodb"},
        {"corpus": "tess", "base": "/mnt/tess"},
    ]}).encode()}
    local = manifest_locator("/w/project/data/manifest.parquet", metadata)
    assert local("ravdess", "Actor_01/a.wav") == "/w/project/data/corpora/ravdess/Actor_01/a.wav"
    assert local("emodb", "wav/b.wav") == "/w/shared/emodb/wav/b.wav"
    assert local("tess", "OAF_angry/c.wav") == "/mnt/tess/OAF_angry/c.wav"
    assert local("csv", "clips/d.wav") == "/w/project/data/clips/d.wav"  # no recorded folder: the manifest's
    assert local("csv", "/abs/e.wav") == "/abs/e.wav" and local("csv", "gs://b/f.wav") == "gs://b/f.wav"

    remote = manifest_locator("gs://bucket/ser/manifest.parquet", metadata)
    assert remote("ravdess", "Actor_01/a.wav") == "gs://bucket/ser/corpora/ravdess/Actor_01/a.wav"
    assert remote("emodb", "wav/b.wav") == "gs://bucket/shared/emodb/wav/b.wav"
    assert pickle.loads(pickle.dumps(local))("ravdess", "x.wav") == local("ravdess", "x.wav")


def test_read_manifest_resolves_relative_paths_unless_asked_not_to(tmp_path):
    out = tmp_path / "data" / "manifest.parquet"
    write_manifest([utt(path="Actor_01/03-01-05-02-01-01-01.wav")], out,
                   metadata={"sources": [{"corpus": "ravdess", "base": "../corpora/ravdess"}]})
    (resolved,) = read_manifest(out)
    assert resolved.path == str(tmp_path / "corpora/ravdess/Actor_01/03-01-05-02-01-01-01.wav")
    assert read_manifest(out, resolve=False)[0].path == "Actor_01/03-01-05-02-01-01-01.wav"
