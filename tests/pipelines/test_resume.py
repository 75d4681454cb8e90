"""Resumption bookkeeping: interrupted chunks rolled forward or back, finished inputs
recognised however their path is spelled, outputs made with other settings refused."""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import resume
from ser_core.errors import StageError
from ser_core.inference.outputs import METADATA_KEY


def test_recover_rolls_finished_chunks_forward_and_unfinished_back(tmp_path):
    out = tmp_path / "labels"
    done, partial = out / resume.STAGING / "r-0000", out / resume.STAGING / "r-0001"
    one_row, no_rows = pa.table({"path": ["a.wav"]}), pa.table({"path": pa.array([], pa.string())})
    for d in (done, partial):
        (d / "beam-temp-x").mkdir(parents=True)
        (d / "beam-temp-x" / "part").write_bytes(b"x")
        for prefix in ("files", "segments"):
            pq.write_table(one_row, d / f"{prefix}-{d.name}-00000-of-00001.parquet")
        pq.write_table(no_rows, d / f"errors-{d.name}-00000-of-00001.parquet")
    (done / resume.SUCCESS).write_bytes(b"")
    resume.recover(str(out))
    assert sorted(p.name for p in out.iterdir()) == [  # empty shards are not kept
        "files-r-0000-00000-of-00001.parquet", "segments-r-0000-00000-of-00001.parquet"]


def test_done_inputs_are_recognised_however_spelled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "calls").mkdir()
    for name in ("a.wav", "b.wav", "c.wav"):
        (tmp_path / "calls" / name).write_bytes(b"")
    out = tmp_path / "labels"
    out.mkdir()
    pq.write_table(pa.table({"path": [str(tmp_path / "calls" / "a.wav")]}), out / "files-x-00000-of-00001.parquet")
    pq.write_table(pa.table({"path": ["calls/../calls/b.wav"]}), out / "errors-x-00000-of-00001.parquet")
    inputs = resume.match_inputs(["calls/*.wav", os.path.join(str(tmp_path), "calls", "a.wav")])
    assert [os.path.basename(p) for p in inputs] == ["a.wav", "b.wav", "c.wav"]  # each file once
    assert [os.path.basename(p) for p in resume.pending(inputs, str(out))] == ["c.wav"]


def test_an_output_made_with_other_settings_is_refused(tmp_path):
    def metadata(**info):
        return {METADATA_KEY: json.dumps({"model": "m.pt", "labels": ["a", "b"], **info}).encode()}

    resume.check_same_settings(str(tmp_path), metadata(channels="mix"))  # an empty output takes anything
    table = pa.table({"path": ["x.wav"]}).replace_schema_metadata(metadata(channels="mix"))
    pq.write_table(table, tmp_path / "files-x-00000-of-00001.parquet")
    resume.check_same_settings(str(tmp_path), {METADATA_KEY: json.dumps(
        {"model": "elsewhere/m.pt", "labels": ["a", "b"], "channels": "mix"}).encode()})  # moved model: fine
    with pytest.raises(StageError, match=r"other channels .*label into a new --output"):
        resume.check_same_settings(str(tmp_path), metadata(channels="separate"))
