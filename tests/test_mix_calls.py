"""``ser mix-calls``: calls built from labelled clips keep the clips' levels, put each speaker
on their own channel, mark every turn where its speech is, and fail precisely on bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from ser_core import audio, cli
from ser_core.corpora.ravdess import prepare_ravdess
from ser_core.demo.calls import (PEAK_CEILING, SOURCES, SUMMARY, MixCallsConfig, SpeakerError,
                                 mix_calls, resolve_speakers)
from ser_core.demo.telephone import ROLES, SIDECAR, SIDECAR_COLUMNS, band_pass, band_response
from ser_core.inference.score import read_ground_truth
from ser_core.records import Utterance, read_manifest, write_manifest
from tests.synth_audio import write_audio

RATE = 8000
SOURCE_RATE = 16000
LEAD_S = 0.3  # silence before (and after) each test clip's tone
EMOTIONS = ("angry", "sad", "neutral")


def tone_clip(duration_s: float, amplitude: float, freq: float = 1000.0) -> np.ndarray:
    """Silence, a tone with 10 ms ramps, silence: its speech is exactly the tone."""
    n = int(duration_s * SOURCE_RATE)
    t = np.arange(n) / SOURCE_RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    tone = amplitude * ramp * np.sin(2 * np.pi * freq * t)
    silence = np.zeros(int(LEAD_S * SOURCE_RATE))
    return np.concatenate([silence, tone, silence]).astype(np.float32)


# speaker -> [(tone seconds, amplitude)], one clip each, emotions in EMOTIONS order
CLIPS = {"test:01": [(0.8, 0.05), (1.0, 0.2), (0.6, 0.4)],
         "test:02": [(0.9, 0.1), (0.7, 0.02), (1.1, 0.3)],
         "test:03": [(0.6, 0.1), (0.6, 0.1), (0.6, 0.1)]}


def write_corpus(root, clips=CLIPS, extra: list[Utterance] = ()) -> str:
    utterances = list(extra)
    for speaker, specs in clips.items():
        for i, (seconds, amplitude) in enumerate(specs):
            sid = speaker.split(":")[1]
            path = write_audio(root / sid / f"{sid}_{i}.wav", sample_rate=SOURCE_RATE, subtype="FLOAT",
                               data=tone_clip(seconds, amplitude))
            utterances.append(Utterance(f"test:{sid}_{i}", "test", str(path), speaker, "unknown",
                                        EMOTIONS[i], {"intensity": "strong" if i else "normal"}))
    manifest = root / "manifest.parquet"
    write_manifest(utterances, manifest)
    return str(manifest)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("clips"))


def quiet(**kw) -> MixCallsConfig:
    """Settings with no line noise and no crosstalk, so every sample is a clip's."""
    return MixCallsConfig(**{"speakers": "01,02", "calls": 1, "turns": 6, "line_noise_db": "off", **kw})


def read_csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def quiet_call(manifest, tmp_path_factory):
    root = tmp_path_factory.mktemp("quiet")
    summary = mix_calls(manifest, root, quiet(), progress=False)
    audio_, sr = sf.read(root / "call_0001.wav", dtype="float32")
    return root, summary, audio_, read_csv(root / SIDECAR), read_csv(root / SOURCES)


def spans_mask(rows, n, channel, pad_s=0.0):
    mask = np.zeros(n, dtype=bool)
    for r in rows:
        if int(r["channel"]) == channel:
            mask[max(0, int((float(r["start_s"]) - pad_s) * RATE)):int((float(r["end_s"]) + pad_s) * RATE) + 1] = True
    return mask


def test_sidecar_marks_the_speech_and_score_reads_it(quiet_call):
    root, summary, x, rows, sources = quiet_call
    with open(root / SIDECAR, newline="") as fh:
        assert tuple(csv.DictReader(fh).fieldnames) == SIDECAR_COLUMNS
    assert len(rows) == summary["turns"] == 6
    assert [int(r["channel"]) for r in rows] == [0, 1, 0, 1, 0, 1]  # alternating, agent first
    truth = read_ground_truth(root / SIDECAR)
    assert [t.emotion for t in truth] == [r["emotion"] for r in rows]
    for r, s in zip(rows, sources):
        assert r["role"] == ROLES[int(r["channel"])]
        # the speech span found in the clip is its tone, to a trimming frame (20 ms)
        tone_s = CLIPS[s["speaker"]][int(s["utterance_id"][-1])][0]
        assert float(s["clip_start_s"]) == pytest.approx(LEAD_S, abs=0.021)
        assert float(s["clip_end_s"]) == pytest.approx(LEAD_S + tone_s, abs=0.021)
        assert float(r["end_s"]) - float(r["start_s"]) == pytest.approx(tone_s, abs=0.041)
    starts, ends = [float(r["start_s"]) for r in rows], [float(r["end_s"]) for r in rows]
    pauses = np.array(starts[1:]) - np.array(ends[:-1])
    assert np.all((pauses >= 0.3 - 1e-3) & (pauses <= 1.5 + 1e-3))
    for channel in (0, 1):
        energy = x[:, channel].astype(np.float64) ** 2
        inside = spans_mask(rows, len(x), channel)
        assert energy[inside].sum() > 0.995 * energy.sum()  # the clip's energy is where its row is
        for r in (r for r in rows if int(r["channel"]) == channel):  # ... and fills its row
            seg = x[int(float(r["start_s"]) * RATE) + 80:int(float(r["end_s"]) * RATE) - 80, channel]
            frames = seg[:len(seg) // 80 * 80].reshape(-1, 80).astype(np.float64)
            frame_rms = np.sqrt(np.mean(frames ** 2, axis=1))  # 10 ms frames
            assert frame_rms.min() > 0.5 * frame_rms.max()


def test_each_channel_holds_only_its_speaker(quiet_call):
    _, _, x, rows, sources = quiet_call
    for channel in (0, 1):
        own = spans_mask(rows, len(x), channel, pad_s=0.1 + 1e-3)
        assert not np.any(x[~own, channel])  # exactly zero outside its own turns (+ pads)
        assert {s["speaker"] for s in sources if int(s["channel"]) == channel} == {["test:01", "test:02"][channel]}


def test_levels_are_the_clips_own(quiet_call, manifest):
    """Output RMS ratios equal the sources' (band-passed at 8 kHz) and the tones' amplitude ratios."""
    root, summary, x, rows, sources = quiet_call
    assert summary["gain_db"] == 0.0
    utts = {u.utterance_id: u for u in read_manifest(manifest)}
    out_rms, src_rms, amplitude = [], [], []
    for r, s in zip(rows, sources):
        a, b = int(round(float(r["start_s"]) * RATE)), int(round(float(r["end_s"]) * RATE))
        out_rms.append(np.sqrt(np.mean(x[a:b, int(r["channel"])].astype(np.float64) ** 2)))
        clip = band_pass(audio.load(utts[s["utterance_id"]].path, RATE)[0], RATE)
        c = int(round(float(s["clip_start_s"]) * RATE))
        src_rms.append(np.sqrt(np.mean(clip[c:c + b - a].astype(np.float64) ** 2)))
        amplitude.append(CLIPS[s["speaker"]][int(s["utterance_id"][-1])][1])
    out_db = 20 * np.log10(np.array(out_rms) / out_rms[0])
    assert out_db == pytest.approx(20 * np.log10(np.array(src_rms) / src_rms[0]), abs=0.05)
    assert out_db == pytest.approx(20 * np.log10(np.array(amplitude) / amplitude[0]), abs=0.2)
    assert max(amplitude) / min(amplitude) >= 8  # the clips really differ in level


def test_one_global_gain_keeps_a_loud_archive_below_full_scale(tmp_path):
    manifest = write_corpus(tmp_path, {"test:01": [(0.8, 0.999), (0.8, 0.1)], "test:02": [(0.8, 0.5), (0.8, 0.05)]})
    summary = mix_calls(manifest, tmp_path / "out", MixCallsConfig(speakers="01,02", calls=1, turns=4,
                                                                  line_noise_db=-30.0), progress=False)
    x, _ = sf.read(tmp_path / "out" / "call_0001.wav", dtype="float32")
    assert np.abs(x).max() <= PEAK_CEILING + 1e-4
    assert summary["gain_db"] < 0
    assert 10 ** (summary["gain_db"] / 20) * summary["loudest_clip_peak"] < PEAK_CEILING


def test_crosstalk_is_the_other_channel_attenuated(manifest, tmp_path):
    mix_calls(manifest, tmp_path, quiet(bleed_db=-20.0), progress=False)
    x, _ = sf.read(tmp_path / "call_0001.wav", dtype="float64")
    rows = read_csv(tmp_path / SIDECAR)
    for channel in (0, 1):
        talk = spans_mask(rows, len(x), channel)
        ratio = np.sqrt(np.mean(x[talk, 1 - channel] ** 2) / np.mean(x[talk, channel] ** 2))
        assert 20 * np.log10(ratio) == pytest.approx(-20.0, abs=0.1)


def test_same_seed_same_bytes_other_seed_other_calls(manifest, tmp_path):
    config = MixCallsConfig(speakers="test:01,test:02", calls=2, turns=4, bleed_db=-30.0)
    for name in ("a", "b"):
        mix_calls(manifest, tmp_path / name, config, progress=False)
    mix_calls(manifest, tmp_path / "c", MixCallsConfig(**{**config.__dict__, "seed": 1}), progress=False)
    for f in ("call_0001.wav", "call_0002.wav", SIDECAR, SOURCES):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a" / "call_0001.wav").read_bytes() != (tmp_path / "c" / "call_0001.wav").read_bytes()
    assert not list(tmp_path.glob("*/.*.tmp"))


def test_clips_are_used_once_before_any_is_reused(manifest, tmp_path):
    s = mix_calls(manifest, tmp_path / "once", quiet(), progress=False)
    used = [r["utterance_id"] for r in read_csv(tmp_path / "once" / SOURCES)]
    assert sorted(used) == sorted(f"test:{sid}_{i}" for sid in ("01", "02") for i in range(3))
    assert (s["clips_used"], s["clips_reused"]) == (6, 0)
    s = mix_calls(manifest, tmp_path / "twice", quiet(calls=2, turns=8), progress=False)
    counts = np.unique([r["utterance_id"] for r in read_csv(tmp_path / "twice" / SOURCES)], return_counts=True)[1]
    assert (len(counts), s["clips_reused"]) == (6, 10) and set(counts) <= {2, 3}


def test_calls_cycle_through_every_ordered_pair(manifest, tmp_path):
    mix_calls(manifest, tmp_path, quiet(speakers="01,02,03", calls=6, turns=2), progress=False)
    sources = read_csv(tmp_path / SOURCES)
    pairs = [(a["speaker"], b["speaker"]) for a, b in zip(sources[0::2], sources[1::2])]
    assert sorted(pairs) == sorted((a, b) for a in CLIPS for b in CLIPS if a != b)


@pytest.mark.parametrize("seed", range(4))
def test_minutes_fix_the_length_and_ulaw_encodes(manifest, tmp_path, seed):
    s = mix_calls(manifest, tmp_path, quiet(turns=None, minutes=0.2, encoding="ulaw", seed=seed), progress=False)
    info = sf.info(str(tmp_path / "call_0001.wav"))
    assert (info.subtype, info.channels, info.samplerate, info.frames) == ("ULAW", 2, RATE, 12 * RATE)
    rows = read_csv(tmp_path / SIDECAR)
    assert s["turns"] == len(rows) >= 4 and max(float(r["end_s"]) for r in rows) <= 12 - 0.5
    assert json.loads((tmp_path / SUMMARY).read_text())["config"]["minutes"] == 0.2


def test_speakers_resolve_by_full_or_bare_name():
    utts = [Utterance(f"u{i}", c, f"/x{i}.wav", f"{c}:{s}", "male", "angry")
            for i, (c, s) in enumerate([("ravdess", "03"), ("ravdess", "06"), ("crema_d", "03"), ("crema_d", "1001")])]
    assert resolve_speakers(["06", "1001"], utts) == ["ravdess:06", "crema_d:1001"]
    assert resolve_speakers(["ravdess:03", "ravdess:06", "06"], utts) == ["ravdess:03", "ravdess:06"]
    with pytest.raises(SpeakerError, match="ambiguous.*crema_d:03.*ravdess:03"):
        resolve_speakers(["03", "06"], utts)
    with pytest.raises(SpeakerError, match=r"\['07', 'ravdess:99'\] not in"):
        resolve_speakers(["07", "ravdess:06", "ravdess:99"], utts)
    with pytest.raises(SpeakerError, match="at least 2 different"):
        resolve_speakers(["06", "ravdess:06"], utts)


@pytest.mark.parametrize("settings, message", [
    ({"speakers": "01"}, "at least 2 speakers"),
    ({"speakers": "01,01"}, "at least 2 speakers"),
    ({"turns": 1}, "turns must be an integer >= 2"),
    ({"minutes": 1.0}, "not both"),
    ({"encoding": "mp3"}, "encoding"),
    ({"sample_rate": 4000}, "sample_rate"),
    ({"bleed_db": 3.0}, "bleed_db must be below 0"),
    ({"line_noise_db": "loud"}, "line_noise_db must be a level"),
    ({"trim_db": "deep"}, "trim_db must be a range in dB or 'off'"),
    ({"trim_db": 0.0}, "trim_db must be > 0"),
    ({"pad_s": 0.5}, "pad_s"),
    ({"calls": 0}, "calls must be at least 1"),
])
def test_bad_settings_fail_before_any_work(settings, message):
    with pytest.raises(ValueError, match=message):
        MixCallsConfig(**{"speakers": "01,02", "turns": 4, **settings})


def test_unknown_speakers_fail_before_any_output(manifest, tmp_path):
    with pytest.raises(SpeakerError, match=r"\['09'\] not in manifest .*manifest.parquet"):
        mix_calls(manifest, tmp_path / "out", quiet(speakers="01,09"), progress=False)
    assert not (tmp_path / "out").exists()


def test_cli(manifest, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["mix-calls", manifest, str(out), "--speakers", "test:01,02", "--turns", "4",
                     "--calls", "1", "--noise-db", "off", "--bleed-db", "-40", "--trim-db", "45",
                     "--no-progress"]) == 0
    summary = json.loads((out / SUMMARY).read_text())
    assert (summary["turns"], summary["config"]["line_noise_db"], summary["config"]["bleed_db"],
            summary["config"]["trim_db"]) == (4, None, -40.0, 45.0)
    assert cli.main(["mix-calls", manifest, str(tmp_path / "whole"), "--speakers", "test:01,02", "--turns", "4",
                     "--calls", "1", "--trim-db", "off", "--no-progress"]) == 0
    assert json.loads((tmp_path / "whole" / SUMMARY).read_text())["config"]["trim_db"] is None  # whole clips
    assert "wrote 1 call of test:01, test:02" in capsys.readouterr().out
    assert cli.main(["mix-calls", manifest, str(tmp_path / "bad"), "--speakers", "01,77", "--no-progress"]) == 1
    assert "'77'" in capsys.readouterr().err
    params = tmp_path / "params.yaml"  # params.yaml's mix_calls section, overridden by flags
    params.write_text("mix_calls:\n  speakers: [test:01, test:02]\n  calls: 3\n  turns: 2\n  bleed_db: off\n")
    assert cli.main(["mix-calls", manifest, str(tmp_path / "p"), "--params", str(params), "--calls", "1",
                     "--no-progress"]) == 0
    config = json.loads((tmp_path / "p" / SUMMARY).read_text())["config"]
    assert (config["speakers"], config["calls"], config["turns"], config["bleed_db"]) == (["test:01", "test:02"], 1, 2, None)


def test_telephone_band_pass_is_zero_phase_and_in_band():
    assert band_response(np.array([1000.0, 2000.0]), (300.0, 3400.0)) == pytest.approx([0.99, 0.99], abs=0.01)
    assert band_response(np.array([50.0, 3900.0]), (300.0, 3400.0)).max() < 0.35
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4001).astype(np.float32)
    y = band_pass(x, RATE)
    assert y.shape == x.shape and y.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(y)) / np.maximum(np.abs(np.fft.rfft(x)), 1e-9)
    freqs = np.fft.rfftfreq(x.size, 1 / RATE)
    assert np.median(spectrum[(freqs > 800) & (freqs < 2500)]) == pytest.approx(1.0, abs=0.05)
    assert np.median(spectrum[freqs < 100]) < 0.02
    impulse = np.zeros(801, np.float32)
    impulse[400] = 1
    h = band_pass(impulse, RATE)
    assert h[400 - 50:400] == pytest.approx(h[401:451][::-1], abs=1e-5)  # symmetric: zero phase


def test_real_clips_make_a_call(real_ravdess, tmp_path):
    """Four real clips of two actors: labels, speech spans and levels come through."""
    utts = [u for u in prepare_ravdess(real_ravdess).utterances if u.speaker in ("ravdess:01", "ravdess:02")]
    chosen = [u for s in ("ravdess:01", "ravdess:02") for u in sorted(
        (u for u in utts if u.speaker == s), key=lambda u: u.utterance_id)[:2]]
    write_manifest(chosen, tmp_path / "m.parquet")
    summary = mix_calls(tmp_path / "m.parquet", tmp_path / "out",
                        MixCallsConfig(speakers="01,02", calls=1, turns=4, line_noise_db="off"), progress=False)
    rows, sources = read_csv(tmp_path / "out" / SIDECAR), read_csv(tmp_path / "out" / SOURCES)
    by_id = {u.utterance_id: u for u in chosen}
    assert sorted(s["utterance_id"] for s in sources) == sorted(by_id)
    x, _ = sf.read(tmp_path / "out" / "call_0001.wav", dtype="float64")
    rms = []
    for r, s in zip(rows, sources):
        u = by_id[s["utterance_id"]]
        assert (r["emotion"], r["intensity"]) == (u.emotion, u.custom["intensity"])
        duration = sf.info(u.path).duration
        assert 0 <= float(s["clip_start_s"]) < float(s["clip_end_s"]) <= duration
        assert float(s["clip_end_s"]) - float(s["clip_start_s"]) < duration - 0.5  # silence trimmed
        clip = band_pass(audio.load(u.path, RATE)[0], RATE).astype(np.float64)
        a, b = int(round(float(r["start_s"]) * RATE)), int(round(float(r["end_s"]) * RATE))
        c = int(round(float(s["clip_start_s"]) * RATE))
        rms.append((np.sqrt(np.mean(x[a:b, int(r["channel"])] ** 2)), np.sqrt(np.mean(clip[c:c + b - a] ** 2))))
    out, src = np.array(rms).T
    assert summary["gain_db"] == 0.0
    assert 20 * np.log10(out / out[0]) == pytest.approx(20 * np.log10(src / src[0]), abs=0.1)
