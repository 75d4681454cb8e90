"""The demo call archive: stereo telephone audio, a consistent ground-truth sidecar,
determinism, and memory that does not grow with call length."""

from __future__ import annotations

import csv
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import yaml

from ser_core import cli
from ser_core.demo import archive
from ser_core.demo.archive import (ROLE_EMOTIONS, ROLES, SIDECAR, SIDECAR_COLUMNS,
                                   DemoArchiveConfig, generate_demo_archive, plan_call)
from ser_core.labels import RAVDESS_LABELS

RATE = 8000


@pytest.fixture(scope="module")
def calls(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_archive")
    summary = generate_demo_archive(root, calls=2, minutes=1.0, seed=0, progress=False)
    return root, summary


def read_sidecar(root) -> list[dict]:
    with open(root / SIDECAR, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == SIDECAR_COLUMNS
        return list(reader)


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-20))


def test_emotion_shares_are_distributions_over_canonical_labels():
    for role in ROLES:
        shares = ROLE_EMOTIONS[role]
        assert set(shares) <= set(RAVDESS_LABELS)
        assert sum(shares.values()) == pytest.approx(1.0)
    agent, customer = ROLE_EMOTIONS["agent"], ROLE_EMOTIONS["customer"]
    assert agent["neutral"] + agent["calm"] + agent["happy"] > 0.9
    assert customer["angry"] > agent["angry"] and customer["sad"] > agent["sad"]


def test_calls_are_stereo_telephone_wavs_of_the_asked_length(calls):
    root, summary = calls
    files = sorted(root.glob("call_*.wav"))
    assert [f.name for f in files] == ["call_0001.wav", "call_0002.wav"]
    for f in files:
        info = sf.info(str(f))
        assert (info.samplerate, info.channels, info.subtype) == (RATE, 2, "PCM_16")
        assert info.frames == 60 * RATE
    assert summary["audio_seconds"] == 120.0
    assert not list(root.glob(".*.tmp"))


def test_sidecar_rows_fit_their_files_and_never_overlap_on_a_channel(calls):
    root, summary = calls
    rows = read_sidecar(root)
    assert len(rows) == summary["turns"] > 10
    for path in ("call_0001.wav", "call_0002.wav"):
        mine = [r for r in rows if r["path"] == path]
        assert {r["role"] for r in mine} == set(ROLES)
        duration = sf.info(str(root / path)).duration
        for channel in (0, 1):
            spans = sorted((float(r["start_s"]), float(r["end_s"]))
                           for r in mine if int(r["channel"]) == channel)
            assert spans
            for (start, end), (next_start, _) in zip(spans, spans[1:] + [(duration, None)]):
                assert 0 <= start < end <= next_start <= duration
    for r in rows:
        assert r["role"] == ROLES[int(r["channel"])]
        assert r["emotion"] in RAVDESS_LABELS
        assert r["intensity"] in ("normal", "strong")
        assert not (r["emotion"] == "neutral" and r["intensity"] == "strong")


def test_turns_are_louder_than_pauses_and_stay_on_their_channel(calls):
    root, _ = calls
    rows = [r for r in read_sidecar(root) if r["path"] == "call_0001.wav"]
    audio, sr = sf.read(root / "call_0001.wav", dtype="float32")
    speaking = np.zeros(audio.shape, dtype=bool)
    for r in rows:
        speaking[int(float(r["start_s"]) * sr):int(float(r["end_s"]) * sr), int(r["channel"])] = True
    silence = ~speaking.any(axis=1)
    assert silence.sum() > sr  # there are pauses between turns
    for channel in (0, 1):
        talk = rms_db(audio[speaking[:, channel], channel])
        assert talk > rms_db(audio[silence, channel]) + 20
        other_talks = speaking[:, 1 - channel] & ~speaking[:, channel]
        assert talk > rms_db(audio[other_talks, channel]) + 20  # no cross-talk
        assert rms_db(audio[silence, channel]) == pytest.approx(-55.0, abs=1.5)  # line hiss


def test_speech_is_band_limited_like_a_phone_line(calls):
    root, _ = calls
    audio, sr = sf.read(root / "call_0001.wav", dtype="float32")
    spectrum = np.abs(np.fft.rfft(audio[:, 0])) ** 2
    freqs = np.fft.rfftfreq(audio.shape[0], 1 / sr)
    in_band = spectrum[(freqs > 300) & (freqs < 3400)].mean()
    assert spectrum[freqs < 120].mean() < in_band / 100
    assert spectrum[freqs > 3800].mean() < in_band / 100


def test_same_seed_same_bytes_other_seed_other_call(calls, tmp_path):
    root, _ = calls
    generate_demo_archive(tmp_path / "again", calls=1, minutes=1.0, seed=0, progress=False)
    generate_demo_archive(tmp_path / "other", calls=1, minutes=1.0, seed=1, progress=False)
    original = (root / "call_0001.wav").read_bytes()
    assert (tmp_path / "again" / "call_0001.wav").read_bytes() == original
    assert read_sidecar(tmp_path / "again") == [r for r in read_sidecar(root) if r["path"] == "call_0001.wav"]
    assert (tmp_path / "other" / "call_0001.wav").read_bytes() != original


def test_memory_stays_flat_for_a_long_call(tmp_path, monkeypatch):
    """The writer holds one block and the turns under way, never the whole call."""
    monkeypatch.setattr(archive.Turn, "audio",  # skip synthesis: measure the writer alone
                        lambda self, sr: np.full(self.length, 0.1, dtype=np.float32))
    config = DemoArchiveConfig(calls=1, minutes=20.0)
    n = int(config.minutes * 60 * RATE)
    turns = plan_call(0, 0, config.minutes * 60, RATE)
    tracemalloc.start()
    archive.write_call(tmp_path / "long.wav", turns, n, config, 0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    whole_call = n * 2 * 4  # the call as float32 stereo: 77 MB
    assert peak < whole_call / 20
    assert sf.info(str(tmp_path / "long.wav")).frames == n


def test_mulaw_and_hum_options(tmp_path):
    generate_demo_archive(tmp_path, calls=1, minutes=0.25, encoding="ulaw", hum_db=-40.0, progress=False)
    info = sf.info(str(tmp_path / "call_0001.wav"))
    assert (info.subtype, info.channels, info.frames) == ("ULAW", 2, 15 * RATE)
    audio, sr = sf.read(tmp_path / "call_0001.wav")
    spectrum = np.abs(np.fft.rfft(audio[: 15 * sr, 1])) ** 2
    freqs = np.fft.rfftfreq(15 * sr, 1 / sr)
    assert spectrum[np.argmin(np.abs(freqs - 50.0))] > 100 * np.median(spectrum)


def test_cli_flags_override_params(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"demo_archive": {"calls": 3, "minutes": 0.2, "seed": 5}}))
    assert cli.main(["demo-archive", str(tmp_path / "out"), "--params", str(params),
                     "--calls", "1", "--no-progress"]) == 0
    assert [p.name for p in sorted((tmp_path / "out").glob("*.wav"))] == ["call_0001.wav"]
    assert sf.info(str(tmp_path / "out" / "call_0001.wav")).frames == 12 * RATE


def test_bad_settings_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="encoding"):
        generate_demo_archive(tmp_path / "x", encoding="mp3")
    with pytest.raises(ValueError, match="calls"):
        DemoArchiveConfig(calls=0)
    assert not (tmp_path / "x").exists()
