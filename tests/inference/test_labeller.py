"""The Python API: ``Labeller`` gives the pipeline's rows for a file (same code, both
engines), scores a clip as its model was trained, normalises a call channel exactly as
training normalised a speaker's window rows, and the documented example runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipelines import label
from ser_core.checkpoint import load_checkpoint
from ser_core.errors import FileError
from ser_core.features import extract
from ser_core.inference.labeller import Labeller
from ser_core.segmentation import SegmentConfig, segment_channel
from ser_core.normalisation import Normaliser, frame_stats
from ser_core.storage import read_shards
from tests import onnx_checkpoints
from tests.inference import tiny_model
from tests.inference.tiny_model import bursts
from tests.synth_audio import REAL_RAVDESS, write_audio

ROOT = Path(__file__).resolve().parents[2]
SR = 8000


def stereo_call(seed=0) -> np.ndarray:
    return np.stack([bursts([(1.0, 4.5), (6.0, 11.0)], 12.0, seed=seed),
                     bursts([(2.0, 5.5)], 12.0, seed=seed + 1, amp=0.01)], axis=1)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    ckpt = str(tiny_model.make_checkpoint(root / "speaker.pt", "speaker", temperature=1.5))
    return {"torch": ckpt, "onnx": str(tiny_model.make_onnx(ckpt, root / "speaker.onnx"))}


def _key(row):
    return row["path"], row["channel"], row["start_s"]


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_label_file_gives_the_pipelines_rows(models, tmp_path, engine):
    paths = [str(write_audio(tmp_path / "calls" / f"call_{i}.wav", sample_rate=SR, data=stereo_call(i)))
             for i in range(2)]
    out = tmp_path / "labels"
    label.run(["--model", models[engine], "--input", str(tmp_path / "calls" / "*.wav"), "--output", str(out),
               "--roles", "agent,customer", "--min-confidence", "0.63"])
    segments = sorted(read_shards(str(out), "segments").to_pylist(), key=_key)
    files = {r["path"]: r for r in read_shards(str(out), "files").to_pylist()}
    turns = sorted(read_shards(str(out), "timeline").to_pylist(), key=lambda t: (t["path"], t["channel"], t["turn"]))
    assert any(s["emotion"] == "uncertain" for s in segments) and any(s["emotion"] != "uncertain" for s in segments)

    labeller = Labeller.load(models[engine], roles=["agent", "customer"], min_confidence=0.63)
    got_segments, got_turns = [], []
    for path in paths:
        result = labeller.label_file(path)
        got_segments += result.segments.to_pylist()
        got_turns += result.timeline.to_pylist()
        row, want = result.file, files[path]
        assert row.keys() == want.keys()
        for name, value in want.items():
            if name == "per_channel":
                for mine, theirs in zip(row[name], value):
                    assert mine == pytest.approx(theirs), name
            else:
                assert row[name] == pytest.approx(value), name
        roles = result.roles.to_pylist()
        assert [(r["channel"], r["role"]) for r in roles] == [(0, "agent"), (1, "customer")]
        assert [r["speech_s"] for r in roles] == pytest.approx([c["speech_s"] for c in want["per_channel"]])
    got_segments.sort(key=_key)
    assert [(_key(r), r["end_s"], r["emotion"]) for r in got_segments] == \
        [(_key(r), r["end_s"], r["emotion"]) for r in segments]
    np.testing.assert_allclose([r["prob_angry"] for r in got_segments], [r["prob_angry"] for r in segments],
                               atol=1e-6)
    assert [(t["path"], t["channel"], t["turn"], t["emotion"]) for t in got_turns] == \
        [(t["path"], t["channel"], t["turn"], t["emotion"]) for t in turns]


def test_options_are_the_pipelines_settings_by_name(models):
    """Labeller.load takes ser label's settings by field name, checked where the pipeline's
    are (LabelSettings, SegmentConfig); a misspelt or impossible one is refused."""
    labeller = Labeller.load(models["torch"], roles="agent,customer", window_s=2.0, hop_s=1.0, threads=0)
    assert labeller.settings.roles == ["agent", "customer"] and labeller.settings.engine_threads is None
    assert (labeller.segment_config.window_s, labeller.segment_config.hop_s) == (2.0, 1.0)
    with pytest.raises(TypeError, match=r"unknown labelling option\(s\) \['window_secs'\]"):
        Labeller.load(models["torch"], window_secs=2.0)
    with pytest.raises(ValueError, match="channels must be one of"):
        Labeller.load(models["torch"], channels="left")
    with pytest.raises(ValueError, match="min_confidence must be in"):
        Labeller.load(models["torch"], min_confidence=2.0)


def test_restrict_to_chooses_among_the_labels_given(models, tmp_path):
    """``restrict_to``: a model's probabilities renormalised over the labels kept. A three-
    class model whose third class has a constant logit, kept to angry and sad, labels (in
    the pipeline and through the Labeller) exactly as the two-class model does; unrestricted
    it writes its third class, which the restriction never does."""
    three = str(tiny_model.make_checkpoint(tmp_path / "three.pt", "speaker", temperature=1.5,
                                           extra_label="neutral", extra_logit=1.0))
    paths = [str(write_audio(tmp_path / "calls" / f"call_{i}.wav", sample_rate=SR, data=stereo_call(i)))
             for i in range(2)]
    runs = {}
    for name, model, extra in (("two", models["torch"], []), ("kept", three, ["--restrict-to", "angry,sad"]),
                               ("all", three, [])):
        out = tmp_path / name
        label.run(["--model", model, "--input", str(tmp_path / "calls" / "*.wav"), "--output", str(out)] + extra)
        runs[name] = (sorted(read_shards(str(out), "segments").to_pylist(), key=_key),
                      read_shards(str(out), "segments").schema)
    two, kept, every = (runs[n][0] for n in ("two", "kept", "all"))
    assert "prob_neutral" not in runs["kept"][1].names and "prob_neutral" in runs["all"][1].names
    meta = json.loads(runs["kept"][1].metadata[b"ser.label"])
    assert meta["labels"] == ["angry", "sad"] and meta["model_labels"] == ["angry", "sad", "neutral"]
    assert [(_key(r), r["emotion"]) for r in kept] == [(_key(r), r["emotion"]) for r in two]
    np.testing.assert_allclose([r["prob_angry"] for r in kept], [r["prob_angry"] for r in two], atol=1e-6)
    assert any(r["emotion"] == "neutral" for r in every)  # unrestricted, the third class is written
    labeller = Labeller.load(three, restrict_to="angry,sad")
    mine = sorted(labeller.label_file(paths[0]).segments.to_pylist(), key=_key)
    ours = [r for r in kept if r["path"] == paths[0]]
    np.testing.assert_allclose([r["prob_sad"] for r in mine], [r["prob_sad"] for r in ours], atol=1e-6)
    clip = labeller.predict_clip(paths[0])
    assert list(clip) == ["angry", "sad"] and sum(clip.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\['happy'\] not among the model's labels"):
        Labeller.load(three, restrict_to="angry,happy")
    with pytest.raises(ValueError, match="at least two"):
        Labeller.load(three, restrict_to=["sad"])
    with pytest.raises(ValueError, match="names a label twice"):
        Labeller.load(three, restrict_to="sad,sad")


def test_a_bad_file_raises_a_file_error_naming_it(models, tmp_path):
    (tmp_path / "notes.wav").write_text("not audio\n" * 50)
    labeller = Labeller.load(models["torch"])
    for call in (labeller.label_file, labeller.predict_clip):
        with pytest.raises(FileError) as caught:
            call(str(tmp_path / "notes.wav"))
        assert caught.value.path == str(tmp_path / "notes.wav") and caught.value.stage == "decode"


def test_predict_clip_cuts_the_clip_as_the_model_was_trained(tmp_path):
    """Whole-clip model: the whole clip. Windows-trained model: the mean over the clip's
    windows (cut with the model's own segment_config). Speaker mode: the clip's own
    frames, or the statistics given. Exact, from the hand-set model's closed form."""
    clip = bursts([(0.5, 2.0), (2.4, 6.0)], 6.5)
    path = str(write_audio(tmp_path / "clip.wav", sample_rate=SR, data=clip, subtype="FLOAT"))
    fc = tiny_model.FEATURES
    whole = Labeller.load(str(tiny_model.make_checkpoint(tmp_path / "whole.pt", "speaker")))
    x = extract(fc, clip)
    mean, std = frame_stats([x])
    probs = whole.predict_clip(path)
    assert list(probs) == list(tiny_model.LABELS)
    np.testing.assert_allclose(list(probs.values()), tiny_model.expected_proba(x, mean[0], std[0]), atol=1e-5)
    given = (np.array([-30.0]), np.array([4.0]))
    np.testing.assert_allclose(list(whole.predict_clip(path, stats=given).values()),
                               tiny_model.expected_proba(x, -30.0, 4.0), atol=1e-5)

    cut = SegmentConfig(window_s=2.0, hop_s=1.0)
    windowed = Labeller.load(str(tiny_model.make_checkpoint(
        tmp_path / "windows.pt", "speaker", segmentation={"mode": "windows", "segment_config": cut.to_dict()})))
    windows, _ = segment_channel(clip, SR, cut)
    feats = [extract(fc, w.samples) for w in windows]
    assert len(feats) >= 4
    mean, std = frame_stats(feats)
    expected = np.mean([tiny_model.expected_proba(f, mean[0], std[0]) for f in feats], axis=0)
    np.testing.assert_allclose(list(windowed.predict_clip(path).values()), expected, atol=1e-5)
    assert windowed.segment_config.window_s == 2.0 and windowed.warnings == []  # the model's windows by default
    assert Labeller.load(str(tmp_path / "windows.pt"), window_s=3.0).warnings == [
        "the model was trained on windows with window_s 2, labelling uses 3"]


def test_a_channel_is_normalised_as_training_normalised_a_speakers_window_rows(tmp_path):
    """A stereo call built from real clips (one actor per channel, pauses between turns),
    labelled with a speaker-normalised model: the statistics every window of a channel is
    normalised with are frame_stats over that channel's window features (overlaps counted
    as they are), which is what training's per-speaker normalisation computes over a
    speaker's window rows; and the labels are the model's on windows so normalised."""
    clips = {actor: sorted(REAL_RAVDESS.glob(f"Actor_{actor}/03-01-*.wav"))[:3] for actor in ("01", "02")}
    if not all(clips.values()):
        pytest.skip(f"real RAVDESS clips not found under {REAL_RAVDESS}")
    fc = onnx_checkpoints.PAPER  # the checkpoint's front-end (48 kHz, as the clips are)
    sr = fc.sample_rate
    pause = np.zeros(int(0.8 * sr), np.float32)
    channels = []
    for actor in ("01", "02"):
        parts = []
        for clip in clips[actor]:
            y, clip_sr = sf.read(str(clip), dtype="float32")
            assert clip_sr == sr
            parts += [y if y.ndim == 1 else y.mean(axis=1), pause]
        channels.append(np.concatenate(parts))
    n = max(len(c) for c in channels)
    data = np.stack([np.pad(c, (0, n - len(c))) for c in channels], axis=1)
    path = str(write_audio(tmp_path / "call.wav", sample_rate=sr, data=data, subtype="FLOAT"))
    trained = {"mode": "windows", "segment_config": SegmentConfig(window_s=1.0, hop_s=0.5).to_dict()}
    ckpt_path = onnx_checkpoints.make_checkpoint(tmp_path / "speaker.pt", hidden=8, mode="speaker",
                                                 segmentation=trained)
    labeller = Labeller.load(str(ckpt_path), roles=["agent", "customer"])
    assert labeller.segment_config.window_s == 1.0 and labeller.warnings == []

    with labeller.windower.open(path) as windows:
        items = list(windows)
        used = dict(zip([c for c, _ in windows.streams], windows.stats))
    by_channel = {}
    for key, example in items:
        by_channel.setdefault(key.channel, []).append((key, example))
    assert sorted(by_channel) == [0, 1]
    checkpoint = load_checkpoint(ckpt_path)
    seg = labeller.segment_config
    for channel, rows in by_channel.items():
        cut, _ = segment_channel(data[:, channel], sr, seg)
        feats = [extract(fc, w.samples) for w in cut]
        assert [(k.start_s, k.end_s) for k, _ in rows] == [(w.start / sr, w.end / sr) for w in cut]
        assert any(a.end > b.start for a, b in zip(cut, cut[1:]))  # the windows overlap
        mean, std = frame_stats(feats)
        np.testing.assert_allclose(used[channel][0], mean, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(used[channel][1], std, rtol=1e-6)
        for _, example in rows:  # every window carries its channel's statistics
            assert example.stats[0] is used[channel][0]

        class SpeakerRows:  # the channel's windows as one speaker's training rows
            features, speakers, variants = feats, ["spk"] * len(feats), [""] * len(feats)

            def indices(self, speakers, variants=("",)):
                return np.arange(len(feats))

        as_training = Normaliser.fit("speaker", SpeakerRows(), np.arange(len(feats))).apply(SpeakerRows())
        for mine, theirs in zip(checkpoint.normalise(feats, used[channel]), as_training):
            np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)

        result = labeller.label_file(path).segments.to_pylist()
        probs = np.array([[r[f"prob_{lab}"] for lab in checkpoint.labels] for r in result if r["channel"] == channel])
        np.testing.assert_allclose(probs, checkpoint.predict_proba(feats, (mean, std)), atol=1e-5)


def documented_python_example() -> str:
    """The Python API example: the python block under '## Python API' in docs/labelling.md."""
    text = (ROOT / "docs" / "labelling.md").read_text()
    section = text.split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "docs/labelling.md: no python block under '## Python API'"
    return match.group(1)


def test_the_documented_python_example_runs(tmp_path):
    """Run in a fresh interpreter, in a folder holding what the example names: a tiny
    checkpoint as final.pt, its export as model.onnx, a call and a clip."""
    code = documented_python_example()
    for name in re.findall(r'"([\w.]+\.(?:pt|onnx|wav))"', code):
        if name.endswith(".pt"):
            tiny_model.make_checkpoint(tmp_path / name, "speaker")
        elif name.endswith(".onnx"):
            tiny_model.make_onnx(tiny_model.make_checkpoint(tmp_path / "for-onnx.pt", "speaker"), tmp_path / name)
        elif "call" in name:
            write_audio(tmp_path / name, sample_rate=SR, data=stereo_call())
        else:
            write_audio(tmp_path / name, sample_rate=SR, data=bursts([(0.3, 2.5)], 3.0))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "agent" in proc.stdout and "angry" in proc.stdout, proc.stdout
