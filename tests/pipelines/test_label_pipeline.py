"""``ser label``: exact labels from a hand-set model through the whole pipeline (blocks,
detector, features, keyed RunInference, per-file rows), every kind of bad input ends as a
row, and a run killed midway then re-run labels every file exactly once."""

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that

from pipelines import label, resume
from ser_core.errors import StageError
from ser_core.features import extract
from ser_core.inference.outputs import dominant
from ser_core.inference.segment import SegmentConfig, segment_channel
from ser_core.normalisation import RunningStats
from ser_core.storage import read_shards
from tests.inference import tiny_model
from tests.inference.tiny_model import bursts
from tests.synth_audio import write_audio

SR = 8000
ROOT = Path(__file__).resolve().parents[2]
LOUD = [(1.0, 4.5), (6.0, 11.0)]   # agent, channel 0: angry
QUIET = [(2.0, 5.5)]               # customer, channel 1: sad


def stereo_call(seed=0) -> np.ndarray:
    return np.stack([bursts(LOUD, 12.0, seed=seed), bursts(QUIET, 12.0, seed=seed + 1, amp=0.01)], axis=1)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {mode: str(tiny_model.make_checkpoint(root / f"{mode}.pt", mode)) for mode in ("global", "speaker")}


def expected_segments(path, data, seg, mode):
    """What the pipeline must produce, computed on the whole in-memory signal."""
    out = {}
    streams = [(-1, "mix", data.mean(axis=1))] if mode == "mix" else [
        (0, "agent", data[:, 0]), (1, "customer", data[:, 1])]
    for channel, role, samples in streams:
        windows, _ = segment_channel(samples, SR, seg)
        feats = [extract(tiny_model.FEATURES, w.samples) for w in windows]
        stats = RunningStats(1)
        for f in feats:
            stats.update(f)
        mean, std = stats.result()
        for w, f in zip(windows, feats):
            probs = (tiny_model.expected_proba(f, mean[0], std[0]) if mode == "speaker"
                     else tiny_model.expected_proba(f))
            out[(path, channel, role, w.start / SR, w.end / SR)] = probs
    return out


@pytest.mark.parametrize("normalisation,channels", [("global", "separate"), ("speaker", "separate"),
                                                    ("global", "mix")])
def test_labels_are_exact(models, tmp_path, normalisation, channels):
    data = stereo_call()
    path = str(write_audio(tmp_path / "call.wav", sample_rate=SR, data=data, subtype="FLOAT"))
    seg = SegmentConfig()
    expected = expected_segments(path, data, seg, "speaker" if normalisation == "speaker" else channels)
    if (normalisation, channels) == ("global", "separate"):  # loud agent, quiet customer
        assert {k[1]: p.argmax() for k, p in expected.items()} == {0: 0, 1: 1}
    # (speaker normalisation takes each channel's level away: what is left is the variation
    # inside the channel, so the quiet customer is not simply "sad" there)

    def check_segments(rows):
        got = {(r["path"], r["channel"], r["role"], r["start_s"], r["end_s"]): r for r in rows}
        assert sorted(got) == sorted(expected)
        for key, probs in expected.items():
            row = got[key]
            np.testing.assert_allclose([row["prob_angry"], row["prob_sad"]], probs, atol=1e-5)
            assert row["emotion"] == tiny_model.LABELS[int(probs.argmax())]
            assert row["confidence"] == pytest.approx(probs.max(), abs=1e-5)

    def check_files(rows):
        (row,) = rows
        emotions = Counter(tiny_model.LABELS[int(p.argmax())] for p in expected.values())
        assert row["path"] == path and row["duration_s"] == 12.0 and row["channels"] == 2
        assert row["n_segments"] == len(expected)
        assert row["share_angry"] == pytest.approx(emotions["angry"] / len(expected))
        assert row["dominant_emotion"] == emotions.most_common(1)[0][0]
        streams = [(0, "agent"), (1, "customer")] if channels == "separate" else [(-1, "mix")]
        assert [(c["channel"], c["role"]) for c in row["per_channel"]] == streams
        for c in row["per_channel"]:
            mine = Counter(tiny_model.LABELS[int(p.argmax())]
                           for k, p in expected.items() if k[1] == c["channel"])
            assert c["n_segments"] == sum(mine.values())
            assert c["dominant_emotion"] == dominant(list(mine.elements()), tiny_model.LABELS)

    with BeamTestPipeline() as p:
        files, segments, errors = (
            p | beam.Create([path])
            | label.LabelFiles(models[normalisation], tiny_model.LABELS, tiny_model.FEATURES.to_dict(),
                               normalisation, seg, channels, ["agent", "customer"], block_s=0.7))
        assert_that(segments, check_segments, label="segments")
        assert_that(files, check_files, label="files")
        assert_that(errors, lambda rows: rows == [] or pytest.fail(f"errors: {rows}"), label="errors")


def write_inputs(root: Path) -> dict[str, str]:
    """Every kind of input a recorder (or a broken disk) produces -> expected outcome."""
    clip = bursts([(0.5, 3.0)], 3.5)
    outcomes = {}
    for name, fmt, sub in [("ulaw.wav", "WAV", "ULAW"), ("alaw.wav", "WAV", "ALAW"),
                           ("clip.flac", "FLAC", "PCM_16"), ("clip.ogg", "OGG", "VORBIS"),
                           ("clip.opus", "OGG", "OPUS"), ("clip.mp3", "MP3", "MPEG_LAYER_III")]:
        write_audio(root / name, sample_rate=SR, data=clip, subtype=sub, format=fmt)
        outcomes[name] = "labelled"
    write_audio(root / "wideband.wav", sample_rate=16000, data=bursts([(0.5, 3.0)], 3.5, sample_rate=16000))
    outcomes["wideband.wav"] = "labelled"
    write_audio(root / "call.wav", sample_rate=SR, data=stereo_call())
    outcomes["call.wav"] = "labelled"
    write_audio(root / "six.wav", sample_rate=SR, data=np.stack([clip] * 6, axis=1))
    outcomes["six.wav"] = "labelled"
    write_audio(root / "tiny.wav", sample_rate=SR, data=clip[:800])  # 0.1 s
    outcomes["tiny.wav"] = "no speech"
    with sf.SoundFile(str(root / "hour.wav"), "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
        for minute in range(60):  # line noise, one loud turn in minute 30
            f.write(bursts([(10.0, 15.0)] if minute == 30 else [], 60.0, seed=minute))
    outcomes["hour.wav"] = "labelled"
    (root / "empty.wav").write_bytes(b"")
    (root / "notes.wav").write_text("call notes, not audio\n" * 50)
    good = (root / "ulaw.wav").read_bytes()
    (root / "corrupt.wav").write_bytes(good[:44] + os.urandom(2000))
    # a RIFF/WAVE header naming a codec libsndfile does not decode (0x2000, AC-3)
    fmt = (b"fmt " + (16).to_bytes(4, "little") + (0x2000).to_bytes(2, "little") + (1).to_bytes(2, "little")
           + SR.to_bytes(4, "little") + (SR * 2).to_bytes(4, "little") + (2).to_bytes(2, "little")
           + (16).to_bytes(2, "little"))
    body = b"WAVE" + fmt + b"data" + (1000).to_bytes(4, "little") + bytes(1000)
    (root / "unsupported.wav").write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    (root / "call.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00isomM4A " + bytes(4000))
    outcomes.update({"empty.wav": "empty file", "notes.wav": "not a readable audio file",
                     "corrupt.wav": "not a readable audio file", "unsupported.wav": "fmt",
                     "call.m4a": "not a readable audio file"})
    return outcomes


def test_every_input_ends_as_exactly_one_row(models, tmp_path):
    inputs, out = tmp_path / "archive", tmp_path / "labels"
    inputs.mkdir()
    outcomes = write_inputs(inputs)
    summary = label.run(["--model", models["global"], "--input", str(inputs / "*.wav"),
                         "--input", str(inputs / "clip.*"), "--input", str(inputs / "*.m4a"),
                         "--output", str(out),
                         "--roles", "agent,customer", "--block-s", "5"])
    assert summary.matched == len(outcomes) and summary.labelled == len(outcomes)
    files = {Path(r["path"]).name: r for r in read_shards(str(out), "files").to_pylist()}
    errors = {Path(r["path"]).name: r for r in read_shards(str(out), "errors").to_pylist()}
    assert len(files) + len(errors) == len(outcomes) and not set(files) & set(errors)
    for name, outcome in outcomes.items():
        if outcome == "labelled":
            assert name in files and files[name]["n_segments"] >= 1, errors.get(name)
            assert files[name]["dominant_emotion"] == "angry", name
        elif outcome == "no speech":
            assert files[name]["n_segments"] == 0 and files[name]["dominant_emotion"] is None
        else:  # an error row giving the reason
            assert errors[name]["stage"] == "decode" and outcome in errors[name]["error"], errors[name]
    assert files["hour.wav"]["duration_s"] == 3600.0
    assert files["hour.wav"]["speech_s"] == pytest.approx(5.2, abs=0.05)
    assert [c["role"] for c in files["six.wav"]["per_channel"]] == [f"ch{i}" for i in range(6)]
    assert [c["role"] for c in files["call.wav"]["per_channel"]] == ["agent", "customer"]
    assert files["tiny.wav"]["duration_s"] == pytest.approx(0.1)
    segments = read_shards(str(out), "segments").to_pylist()
    per_file = Counter(Path(s["path"]).name for s in segments)
    assert per_file == {name: r["n_segments"] for name, r in files.items() if r["n_segments"]}
    metadata = pq.read_schema(next(out.glob("segments-*.parquet"))).metadata
    assert b"ser.label" in metadata
    with pytest.raises(StageError, match="other segment_config"):  # no mixing of settings
        label.run(["--model", models["global"], "--input", str(inputs / "*.wav"), "--output", str(out),
                   "--roles", "agent,customer", "--window-s", "2"])


def test_killed_run_resumes_and_labels_every_file_once(models, tmp_path):
    inputs, out = tmp_path / "archive", tmp_path / "labels"
    names = [f"call_{i:02d}.wav" for i in range(8)]
    for i, name in enumerate(names):
        write_audio(inputs / name, sample_rate=SR, data=stereo_call(seed=i))
    (inputs / "broken.wav").write_bytes(b"RIFF....not really")
    names.append("broken.wav")
    argv = ["--model", models["speaker"], "--input", str(inputs / "*.wav"), "--output", str(out),
            "--chunk-files", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.label", *argv], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not list(out.glob("files-*.parquet")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    first = resume.completed_paths(str(out))  # committed before the kill
    assert 0 < len(first) < len(names) and set(first.values()) == {1}

    summary = label.run(argv)
    assert summary.skipped == len(first) and summary.labelled == len(names) - len(first)
    files = read_shards(str(out), "files").to_pylist()
    errors = read_shards(str(out), "errors").to_pylist()
    assert sorted(Path(r["path"]).name for r in files + errors) == sorted(names)
    assert [Path(r["path"]).name for r in errors] == ["broken.wav"]
    segments = read_shards(str(out), "segments").to_pylist()
    keys = [(s["path"], s["channel"], s["start_s"]) for s in segments]
    assert len(keys) == len(set(keys))  # no segment written twice
    assert Counter(s["path"] for s in segments) == {r["path"]: r["n_segments"] for r in files}
    assert not (out / resume.STAGING).exists()

    again = label.run(argv)  # nothing left to do
    assert again.labelled == 0 and again.skipped == len(names)


def test_inference_failures_become_error_rows_and_drop_the_files_segments(models, tmp_path):
    calls = [str(write_audio(tmp_path / f"call{i}.wav", sample_rate=SR, data=stereo_call(i))) for i in range(2)]
    silent = str(write_audio(tmp_path / "silent.wav", sample_rate=SR, data=np.zeros(SR, np.float32)))
    two_dims = dataclasses.replace(tiny_model.FEATURES, n_mels=2)  # the model takes 1 dim
    with BeamTestPipeline() as p:
        files, segments, errors = (
            p | beam.Create(calls + [silent])
            | label.LabelFiles(models["global"], tiny_model.LABELS, two_dims.to_dict(), "global",
                               SegmentConfig(), "separate", [], batch_size=4))
        assert_that(segments, lambda rows: rows == [] or pytest.fail(f"{len(rows)} segments"), label="segments")
        # the silent file never reaches the model: it is labelled (no speech) all the same
        assert_that(files | beam.Map(lambda r: (r["path"], r["n_segments"])),
                    lambda rows: rows == [(silent, 0)] or pytest.fail(rows), label="files")
        assert_that(errors | beam.Map(lambda r: (r["path"], r["stage"], "shape" in r["error"])),
                    lambda rows: sorted(rows) == [(c, "inference", True) for c in calls] or pytest.fail(rows),
                    label="errors")


def test_params_section_and_flags(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("label:\n  model: m.pt\n  input: [a/*.wav]\n  output: out\n  roles: [agent, customer]\n"
                      "  window_s: 4.0\n  margin_db: 9.0\n  chunk_files: 7\n")
    args, beam_args = label.parse_known_args(["--params", str(params), "--window-s", "2", "--hop-s", "1",
                                              "--channels", "mix", "--direct_num_workers", "2"])
    cfg, seg = label.resolve_configs(args)
    assert (cfg.model, cfg.input, cfg.roles, cfg.channels, cfg.chunk_files) == (
        "m.pt", ["a/*.wav"], ["agent", "customer"], "mix", 7)
    assert (seg.window_s, seg.hop_s, seg.margin_db) == (2.0, 1.0, 9.0)
    assert beam_args == ["--direct_num_workers", "2"]
    params.write_text("label:\n  model: m.pt\n  input: a.wav\n  output: out\n  windw_s: 3\n")
    with pytest.raises(ValueError, match="windw_s"):
        label.resolve_configs(label.parse_known_args(["--params", str(params)])[0])


@pytest.mark.parametrize("case, message", [
    ("no input", "no input files match"),
    ("no model", "checkpoint not found"),
    ("not a model", "is not a ser-checkpoint/1 checkpoint"),
    ("bad params", "unknown label parameter(s) ['windw_s']"),
])
def test_bad_inputs_raise_a_typed_error_before_any_work(models, tmp_path, case, message):
    write_audio(tmp_path / "calls" / "a.wav", sample_rate=SR, data=bursts([(0.5, 3.0)], 3.5))
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    (tmp_path / "params.yaml").write_text("label:\n  windw_s: 3\n")
    model = {"no model": str(tmp_path / "missing.pt"), "not a model": str(tmp_path / "notes.pt")}.get(
        case, models["global"])
    inputs = str(tmp_path / ("none" if case == "no input" else "calls") / "*.wav")
    argv = ["--model", model, "--input", inputs, "--output", str(tmp_path / "out")]
    with pytest.raises(StageError, match=re.escape(message)):
        label.run(argv + (["--params", str(tmp_path / "params.yaml")] if case == "bad params" else []))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["-m", "pipelines.label"], ["-m", "ser_core.cli", "label"]])
def test_the_command_line_prints_one_line_and_exits_2(models, tmp_path, command):
    missing = str(tmp_path / "none" / "*.wav")
    proc = subprocess.run([sys.executable, *command, "--model", models["global"], "--input", missing,
                           "--output", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    said = [line for line in proc.stderr.splitlines() if line.startswith("ser label")]
    assert said == [f"ser label: error: no input files match [{missing!r}]"]
    assert proc.stderr.rstrip().splitlines()[-1] == said[0]
