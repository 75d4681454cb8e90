"""``ser label``: exact labels from a hand-set model through the whole pipeline (blocks,
detector, features, keyed RunInference, per-file rows), every kind of bad input ends as a
row, and a run killed midway then re-run labels every file exactly once."""

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that

from pipelines import label
from ser_core.errors import StageError
from ser_core.inference.engine import load_model
from ser_core.inference.plan import LabelPlan, LabelSettings, resolve
from ser_core.features import extract
from ser_core.segmentation import SegmentConfig, segment_channel
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
    out = {mode: str(tiny_model.make_checkpoint(root / f"{mode}.pt", mode)) for mode in ("global", "speaker")}
    out.update({f"{mode}.onnx": str(tiny_model.make_onnx(out[mode], root / f"{mode}.onnx"))
                for mode in ("global", "speaker")})
    return out


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


def seconds_on_a_grid(windows, step=0.001):
    """{channel: {emotion: seconds}} by brute force: every ``step`` of a channel that some
    window (channel, start, end, emotion) covers goes to the covering window whose centre
    is nearest (ties: the earlier one), the rule docs/CONTRACTS.md states."""
    out = {}
    for channel in {w[0] for w in windows}:
        mine = sorted((s, e, emotion) for c, s, e, emotion in windows if c == channel)
        seconds = out.setdefault(channel, Counter())
        t_end = max(e for _, e, _ in mine)
        for t in np.arange(step / 2, t_end, step):
            covering = [(abs(t - (s + e) / 2), s, emotion) for s, e, emotion in mine if s <= t < e]
            if covering:
                seconds[min(covering)[2]] += step
    return out


def over_channels(seconds: dict[int, Counter]) -> Counter:
    """{emotion: s} of every channel together."""
    total = Counter()
    for by_emotion in seconds.values():
        total.update(by_emotion)
    return total


@pytest.mark.parametrize("normalisation,channels,engine", [
    ("global", "separate", "torch"), ("speaker", "separate", "torch"), ("global", "mix", "torch"),
    ("speaker", "separate", "onnx")])
def test_labels_are_exact(models, tmp_path, normalisation, channels, engine):
    data = stereo_call()
    path = str(write_audio(tmp_path / "call.wav", sample_rate=SR, data=data, subtype="FLOAT"))
    seg = SegmentConfig()
    expected = expected_segments(path, data, seg, "speaker" if normalisation == "speaker" else channels)
    if (normalisation, channels) == ("global", "separate"):  # loud agent, quiet customer
        assert {k[1]: p.argmax() for k, p in expected.items()} == {0: 0, 1: 1}
    # (speaker normalisation takes each channel's level away: what is left is the variation
    # inside the channel, so the quiet customer is not simply "sad" there)
    labelled = [(k[1], k[3], k[4], tiny_model.LABELS[int(p.argmax())]) for k, p in expected.items()]
    seconds = seconds_on_a_grid(labelled)  # {channel: {emotion: s}}, independent of summary.py

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
        total = over_channels(seconds)
        speech = sum(total.values())
        assert row["path"] == path and row["duration_s"] == 12.0 and row["channels"] == 2
        assert row["n_segments"] == len(expected)
        assert row["speech_s"] == pytest.approx(speech, abs=0.01)
        # shares are seconds, not window counts
        assert row["share_angry"] == pytest.approx(total["angry"] / speech, abs=0.002)
        assert row["share_sad"] == pytest.approx(total["sad"] / speech, abs=0.002)
        assert row["share_uncertain"] == 0.0
        assert row["dominant_emotion"] == max(tiny_model.LABELS, key=lambda e: total[e])
        streams = [(0, "agent"), (1, "customer")] if channels == "separate" else [(-1, "mix")]
        assert [(c["channel"], c["role"]) for c in row["per_channel"]] == streams
        for c in row["per_channel"]:
            mine = seconds[c["channel"]]
            assert c["n_segments"] == sum(1 for k in expected if k[1] == c["channel"])
            assert c["speech_s"] == pytest.approx(sum(mine.values()), abs=0.01)
            assert c["detected_s"] >= c["speech_s"] - 1e-9
            assert c["share_angry"] == pytest.approx(mine["angry"] / sum(mine.values()), abs=0.002)
            assert c["dominant_emotion"] == max(tiny_model.LABELS, key=lambda e: mine[e])
            thirds = [c[f"speech_s_third_{i}"] for i in (1, 2, 3)]
            assert sum(thirds) == pytest.approx(c["speech_s"])
            assert thirds[2] == 0.0 if channels == "separate" and c["channel"] == 1 else True  # 2-5.5 s

    def check_timeline(rows):
        by_channel = {}
        for t in rows:
            assert t["path"] == path
            by_channel.setdefault(t["channel"], []).append(t)
        assert sorted(by_channel) == sorted(seconds)
        for channel, turns in by_channel.items():
            turns.sort(key=lambda t: t["turn"])
            assert [t["turn"] for t in turns] == list(range(len(turns)))
            assert all(a["end_s"] <= b["start_s"] for a, b in zip(turns, turns[1:]))  # never overlap
            got = Counter()
            for t in turns:
                got[t["emotion"]] += t["speech_s"]
            assert dict(got) == pytest.approx(dict(seconds[channel]), abs=0.01)
            assert sum(t["n_segments"] for t in turns) == sum(1 for k in expected if k[1] == channel)

    model = models[f"{normalisation}.onnx" if engine == "onnx" else normalisation]
    with BeamTestPipeline() as p:
        files, segments, errors, timeline = (
            p | beam.Create([path])
            | label.LabelFiles(label_plan(model, seg, channels=channels, roles=["agent", "customer"],
                                          block_s=0.7)))
        assert_that(segments, check_segments, label="segments")
        assert_that(files, check_files, label="files")
        assert_that(timeline, check_timeline, label="timeline")
        assert_that(errors, lambda rows: rows == [] or pytest.fail(f"errors: {rows}"), label="errors")


def test_min_confidence_marks_segments_uncertain_and_keeps_them(models, tmp_path):
    data = stereo_call()
    path = str(write_audio(tmp_path / "call.wav", sample_rate=SR, data=data, subtype="FLOAT"))
    seg = SegmentConfig()
    expected = expected_segments(path, data, seg, "speaker")
    confidences = sorted(p.max() for p in expected.values())
    # about half the windows fall below: halfway between two confidences far enough apart
    # that float32 rounding cannot move a window across
    gaps = [(b - a, (a + b) / 2) for a, b in zip(confidences, confidences[1:]) if b - a > 1e-3]
    threshold = float(min(gaps, key=lambda g: abs(g[1] - np.median(confidences)))[1])
    low = {k for k, p in expected.items() if p.max() < threshold}
    assert 0 < len(low) < len(expected)
    labelled = [(k[1], k[3], k[4], "uncertain" if k in low else tiny_model.LABELS[int(p.argmax())])
                for k, p in expected.items()]
    seconds = seconds_on_a_grid(labelled)

    def check_segments(rows):
        assert len(rows) == len(expected)  # kept, never dropped
        for r in rows:
            key = (r["path"], r["channel"], r["role"], r["start_s"], r["end_s"])
            probs = expected[key]
            np.testing.assert_allclose([r["prob_angry"], r["prob_sad"]], probs, atol=1e-5)  # unchanged
            assert r["confidence"] == pytest.approx(probs.max(), abs=1e-5)
            assert r["emotion"] == ("uncertain" if key in low else tiny_model.LABELS[int(probs.argmax())])

    def check_files(rows):
        (row,) = rows
        total = over_channels(seconds)
        speech = sum(total.values())
        assert row["share_uncertain"] == pytest.approx(total["uncertain"] / speech, abs=0.002) and total["uncertain"]
        assert row["share_angry"] + row["share_sad"] + row["share_uncertain"] == pytest.approx(1.0)
        assert row["dominant_emotion"] in tiny_model.LABELS  # uncertain is never dominant
        for c in row["per_channel"]:
            mine = seconds[c["channel"]]
            assert c["share_uncertain"] == pytest.approx(mine["uncertain"] / sum(mine.values()), abs=0.002)

    with BeamTestPipeline() as p:
        outputs = (p | beam.Create([path])
                   | label.LabelFiles(label_plan(models["speaker"], seg, roles=["agent", "customer"],
                                                 min_confidence=threshold)))
        assert_that(outputs.segments, check_segments, label="segments")
        assert_that(outputs.files, check_files, label="files")


def label_plan(model_path: str, seg: SegmentConfig, **settings) -> LabelPlan:
    """The plan ``ser label`` makes for a model, labelling with ``seg``."""
    return resolve(model_path, load_model(model_path), LabelSettings(**settings), seg.to_dict())


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


def test_the_onnx_engine_labels_as_the_torch_engine(models, tmp_path):
    """``--engine onnx`` (and an .onnx model by default) through the whole run: the same
    windows, the same labels, probabilities within 1e-5; the engine is recorded."""
    inputs = tmp_path / "archive"
    for i in range(3):
        write_audio(inputs / f"call_{i}.wav", sample_rate=SR, data=stereo_call(seed=i))
    outputs = {}
    for name, model, extra in [("torch", models["speaker"], []), ("onnx", models["speaker.onnx"], ["--engine", "onnx"]),
                               ("onnx-by-extension", models["speaker.onnx"], [])]:
        label.run(["--model", model, "--input", str(inputs / "*.wav"), "--output", str(tmp_path / name),
                   "--roles", "agent,customer", *extra])
        table = read_shards(str(tmp_path / name), "segments").sort_by([("path", "ascending"), ("channel", "ascending"),
                                                                      ("start_s", "ascending")])
        outputs[name] = table.to_pylist()
        meta = json.loads(pq.read_schema(next((tmp_path / name).glob("files-*.parquet"))).metadata[b"ser.label"])
        assert meta["engine"] == ("torch" if name == "torch" else "onnx")
    torch_rows = outputs["torch"]
    assert len(torch_rows) > 10
    for name in ("onnx", "onnx-by-extension"):
        rows = outputs[name]
        assert [(r["path"], r["channel"], r["start_s"], r["end_s"]) for r in rows] == \
            [(r["path"], r["channel"], r["start_s"], r["end_s"]) for r in torch_rows]
        assert [r["emotion"] for r in rows] == [r["emotion"] for r in torch_rows]
        np.testing.assert_allclose([r["prob_angry"] for r in rows], [r["prob_angry"] for r in torch_rows], atol=1e-5)
    with pytest.raises(StageError, match=r"--engine torch runs a checkpoint \(\.pt\), not an ONNX model"):
        label.run(["--model", models["speaker.onnx"], "--input", str(inputs / "*.wav"),
                   "--output", str(tmp_path / "bad"), "--engine", "torch"])
    with pytest.raises(StageError, match="export the checkpoint first: ser export"):
        label.run(["--model", models["speaker"], "--input", str(inputs / "*.wav"),
                   "--output", str(tmp_path / "bad"), "--engine", "onnx"])


def test_the_models_segmentation_sets_the_windows_and_mismatches_are_warned(tmp_path, caplog):
    """A windows-trained model labels windows of its own length and hop unless told
    otherwise; a whole-clip model, or other windows, are warned about and recorded."""
    inputs = tmp_path / "archive"
    write_audio(inputs / "call.wav", sample_rate=SR, data=stereo_call())
    trained = SegmentConfig(window_s=2.0, hop_s=1.0).to_dict()
    windows_model = str(tiny_model.make_checkpoint(tmp_path / "windows.pt", "speaker",
                                                   segmentation={"mode": "windows", "segment_config": trained}))
    whole_model = str(tiny_model.make_checkpoint(tmp_path / "whole.pt", "speaker"))

    def run(model, out, *extra):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pipelines.label"):
            label.run(["--model", model, "--input", str(inputs / "*.wav"), "--output", str(tmp_path / out), *extra])
        meta = json.loads(pq.read_schema(next((tmp_path / out).glob("segments-*.parquet"))).metadata[b"ser.label"])
        segments = read_shards(str(tmp_path / out), "segments").to_pylist()
        return meta, segments, [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    meta, segments, warned = run(windows_model, "own")
    assert (meta["segment_config"]["window_s"], meta["segment_config"]["hop_s"]) == (2.0, 1.0)
    assert max(s["end_s"] - s["start_s"] for s in segments) == pytest.approx(2.0)
    assert meta["model_segmentation"]["mode"] == "windows" and meta["warnings"] == [] and warned == []

    meta, segments, warned = run(windows_model, "other", "--window-s", "3", "--hop-s", "1.5")
    assert max(s["end_s"] - s["start_s"] for s in segments) == pytest.approx(3.0)
    assert meta["warnings"] == ["the model was trained on windows with window_s 2, labelling uses 3",
                                "the model was trained on windows with hop_s 1, labelling uses 1.5"]
    assert [w.split(": ", 1)[1] for w in warned] == meta["warnings"]

    meta, _, warned = run(whole_model, "whole")
    assert meta["segment_config"]["window_s"] == SegmentConfig().window_s  # nothing to take from the model
    assert len(meta["warnings"]) == 1 and "trained on whole clips" in meta["warnings"][0]
    assert len(warned) == 1 and "whole clips" in warned[0]


def test_inference_failures_become_error_rows_and_drop_the_files_segments(models, tmp_path):
    calls = [str(write_audio(tmp_path / f"call{i}.wav", sample_rate=SR, data=stereo_call(i))) for i in range(2)]
    silent = str(write_audio(tmp_path / "silent.wav", sample_rate=SR, data=np.zeros(SR, np.float32)))
    two_dims = dataclasses.replace(tiny_model.FEATURES, n_mels=2)  # the model takes 1 dim
    with BeamTestPipeline() as p:
        files, segments, errors, _ = (
            p | beam.Create(calls + [silent])
            | label.LabelFiles(dataclasses.replace(label_plan(models["global"], SegmentConfig(), batch_size=4),
                                                   feature_config=two_dims.to_dict())))
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
    job, settings, seg = label.read_settings(args)
    assert (job.model, job.input, job.chunk_files, settings.roles, settings.channels) == (
        "m.pt", ["a/*.wav"], 7, ["agent", "customer"], "mix")
    assert seg == {"window_s": 2.0, "hop_s": 1.0, "margin_db": 9.0}  # applied over the model's own windows
    assert beam_args == ["--direct_num_workers", "2"]
    params.write_text("label:\n  model: m.pt\n  input: a.wav\n  output: out\n  windw_s: 3\n")
    with pytest.raises(ValueError, match="windw_s"):
        label.read_settings(label.parse_known_args(["--params", str(params)])[0])


def test_every_label_setting_is_a_flag_declared_by_its_field():
    """``ser label``'s flags come from LabelSettings' and SegmentConfig's fields (plus the
    job's model, input, output, chunk files and params)."""
    parser_args, _ = label.parse_known_args(["--model", "m.pt"])
    expected = set(label.JOB_KEYS) | set(label.SETTING_KEYS) | set(label.SEGMENT_KEYS) | {"params"}
    assert set(vars(parser_args)) == expected
    args, _ = label.parse_known_args(["--model", "m.pt", "--input", "a.wav", "--output", "o", "--margin-db", "6",
                                      "--segmentation", "webrtc", "--frame-s", "0.01", "--engine", "onnx",
                                      "--threads", "0"])
    job, settings, seg = label.read_settings(args)
    assert seg == {"margin_db": 6.0, "segmentation": "webrtc", "frame_s": 0.01}
    assert (settings.engine, settings.threads, settings.engine_threads) == ("onnx", 0, None)
    with pytest.raises(SystemExit):
        label.parse_known_args(["--segmentation", "vad"])


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


def test_the_same_inputs_give_the_same_bytes(models, tmp_path):
    """Shard names come from what is labelled (not the clock) and rows are sorted by file and
    time, so labelling twice, in memory or on two worker processes, writes identical files:
    a DVC output of labels hashes the same on every run."""
    inputs = tmp_path / "archive"
    for i in range(3):
        write_audio(inputs / f"call{i}.wav", sample_rate=SR, data=stereo_call(seed=i), subtype="FLOAT")
    outs = []
    for name, extra in (("one", []), ("two", ["--direct_running_mode", "multi_processing",
                                               "--direct_num_workers", "2"])):
        out = tmp_path / name
        label.run(["--model", models["global"], "--input", str(inputs / "*.wav"), "--output", str(out),
                   "--roles", "agent,customer", *extra])
        outs.append({p.name: p.read_bytes() for p in sorted(out.glob("*.parquet"))})
    assert outs[0].keys() == outs[1].keys() and any(k.startswith("segments-") for k in outs[0])
    assert outs[0] == outs[1]
