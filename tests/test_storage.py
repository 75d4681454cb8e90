"""Shared file access: shards listed, counted and read the same way for every stage, local
or behind a URL (the route ``ser score`` takes to read what ``ser label`` wrote on gs://)."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ser_core import storage
from ser_core.inference.score import read_segments


def write_shards(root, prefix, n_rows):
    root.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(n_rows):
        pq.write_table(pa.table({"path": [f"{prefix}{i}-{k}.wav" for k in range(n)]}),
                       root / f"{prefix}-{i:05d}-of-{len(n_rows):05d}.parquet")


def test_shards_are_listed_by_prefix_and_counted_from_footers(tmp_path):
    root = tmp_path / "odd [name]*"  # glob characters in the folder are taken literally
    write_shards(root, "files", [2, 0, 3])
    write_shards(root, "errors", [1])
    (root / "files-notes.txt").write_text("not a shard")
    assert [os.path.basename(p) for p in storage.shard_paths(root, "files")] == [
        f"files-{i:05d}-of-00003.parquet" for i in range(3)]
    assert storage.count_rows(str(root), "files") == 5 and storage.count_rows(str(root), "errors") == 1
    assert storage.read_shards(root, "files", ["path"]).column("path").to_pylist() == [
        "files0-0.wav", "files0-1.wav", "files2-0.wav", "files2-1.wav", "files2-2.wav"]
    assert storage.shard_paths(tmp_path / "missing", "files") == []
    with pytest.raises(FileNotFoundError, match="no segments-\\*.parquet shards under"):
        storage.read_shards(root, "segments")


def test_path_keys_compare_spellings_of_one_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    absolute = str(tmp_path / "calls" / "a.wav")
    assert storage.path_key("calls/./a.wav") == storage.path_key("calls/../calls/a.wav") == absolute
    assert storage.path_key("a.wav", base=str(tmp_path / "calls")) == absolute
    assert storage.path_key("/elsewhere/a.wav", base=str(tmp_path)) == "/elsewhere/a.wav"
    assert storage.path_key("gs://bucket/calls/a.wav", base=str(tmp_path)) == "gs://bucket/calls/a.wav"


class FolderAsBucket:
    """Stands in for Beam's FileSystems: ``mem://`` URLs served from a local folder."""

    class _Match:
        def __init__(self, paths):
            self.metadata_list = [type("Metadata", (), {"path": p})() for p in paths]

    def __init__(self, root):
        self.root = root

    def _local(self, url):
        assert url.startswith("mem://"), url
        return os.path.join(self.root, url[len("mem://"):])

    def join(self, base, *names):
        return "/".join([base.rstrip("/"), *names])

    def match(self, patterns):
        import glob

        return [self._Match(sorted("mem://" + os.path.relpath(p, self.root) for p in glob.glob(self._local(pat))))
                for pat in patterns]

    def open(self, url, compression_type=None):
        return open(self._local(url), "rb")

    def exists(self, url):
        return os.path.exists(self._local(url))


def test_urls_go_through_beam_filesystems_and_score_reads_them(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "_filesystems", lambda: FolderAsBucket(str(tmp_path)))
    labels = tmp_path / "labels"
    labels.mkdir()
    table = pa.table({"path": ["a.wav"], "channel": pa.array([0], pa.int32()), "emotion": ["sad"],
                      "prob_angry": pa.array([0.2], pa.float32()), "prob_sad": pa.array([0.8], pa.float32())})
    pq.write_table(table, labels / "segments-r-00000-of-00001.parquet")
    assert storage.shard_paths("mem://labels", "segments") == ["mem://labels/segments-r-00000-of-00001.parquet"]
    assert storage.count_rows("mem://labels", "segments") == 1 and storage.exists("mem://labels")
    got, model_labels = read_segments("mem://labels")
    assert got.to_pylist() == table.to_pylist() and model_labels == ["angry", "sad"]


def test_local_parquet_is_read_by_path_never_through_a_python_file_object(tmp_path, monkeypatch):
    """pyarrow's reader threads calling back into a Python file object aborted ~1 process in
    10 at exit (tests/test_exit.py): a local file is handed to pyarrow as its path, and a
    URL's handle is read on the calling thread only."""
    write_shards(tmp_path / "local", "files", [2])
    seen = []
    real_read_table, real_parquet_file = pq.read_table, pq.ParquetFile

    def read_table(source, *args, **kwargs):
        seen.append((type(source).__name__, kwargs.get("use_threads"), kwargs.get("pre_buffer")))
        return real_read_table(source, *args, **kwargs)

    def parquet_file(source, *args, **kwargs):
        seen.append((type(source).__name__, None, None))
        return real_parquet_file(source, *args, **kwargs)

    monkeypatch.setattr(pq, "read_table", read_table)
    monkeypatch.setattr(pq, "ParquetFile", parquet_file)
    storage.read_shards(tmp_path / "local", "files")
    storage.count_rows(str(tmp_path / "local"), "files")
    assert seen and {kind for kind, _, _ in seen} == {"str"}
    seen.clear()
    monkeypatch.setattr(storage, "_filesystems", lambda: FolderAsBucket(str(tmp_path)))
    storage.read_shards("mem://local", "files")
    assert seen and all(kind != "str" and threads is False and buffer is False
                        for kind, threads, buffer in seen)
