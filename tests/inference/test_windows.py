"""The Beam-free per-file window generator: the windows, features and statistics of a
file cut block by block are those of the whole signal, and a failure names its stage."""

import dataclasses

import numpy as np
import pytest

from ser_core.errors import FileError
from ser_core.features import extract
from ser_core.segmentation import SegmentConfig, segment_channel
from ser_core.inference.windows import SegmentKey, Windower, channel_roles
from ser_core.normalisation import frame_stats
from tests.inference import tiny_model
from tests.inference.tiny_model import bursts
from tests.synth_audio import line_noise, speech, write_audio

SR = 8000


def test_channel_roles_name_channels_only_when_the_count_fits():
    assert channel_roles(2, "separate", ["agent", "customer"]) == [(0, "agent"), (1, "customer")]
    assert channel_roles(3, "separate", ["agent", "customer"]) == [(0, "ch0"), (1, "ch1"), (2, "ch2")]
    assert channel_roles(2, "mix", ["agent", "customer"]) == [(-1, "mix")]


def test_blocks_give_the_windows_of_the_whole_signal(tmp_path):
    data = np.stack([bursts([(1.0, 4.5), (6.0, 11.0)], 12.0), bursts([(2.0, 5.5)], 12.0, seed=1, amp=0.01)],
                    axis=1)
    path = str(write_audio(tmp_path / "call.wav", sample_rate=SR, data=data, subtype="FLOAT"))
    seg = SegmentConfig()
    windower = Windower(tiny_model.FEATURES, seg, "separate", ["agent", "customer"], block_s=0.7)
    with windower.open(path) as windows:
        info = windows.info
        got = sorted(windows, key=lambda item: (item[0].channel, item[0].start_s))  # emitted as found
    expected = []
    for channel, role in ((0, "agent"), (1, "customer")):
        cut, speech = segment_channel(data[:, channel], SR, seg)
        feats = [extract(tiny_model.FEATURES, w.samples) for w in cut]
        stats = frame_stats(feats)
        expected += [(SegmentKey(path, channel, role, w.start / SR, w.end / SR), x, stats)
                     for w, x in zip(cut, feats)]
        assert info.per_channel[channel] == {"channel": channel, "role": role, "speech_s": speech / SR}
    assert (info.path, info.duration_s, info.sample_rate, info.channels, info.n_windows) == (
        path, 12.0, SR, 2, len(expected))
    assert [key for key, _ in got] == [key for key, _, _ in expected]
    for (_, example), (_, x, (mean, std)) in zip(got, expected):
        np.testing.assert_allclose(example.features, x, atol=1e-5)
        np.testing.assert_allclose(example.stats[0], mean, rtol=1e-6)
        np.testing.assert_allclose(example.stats[1], std, rtol=1e-6)


def test_the_detector_hears_the_models_band(tmp_path):
    """Labelling cuts a call as the features stage cut the model's training clips: its
    detector listens within the model's band (a 120 Hz hum is no speech to a 300-3400 Hz
    model; the same file is all speech to a full-band one)."""
    t = np.arange(4 * SR) / SR
    path = str(write_audio(tmp_path / "hum.wav", sample_rate=SR,
                           data=(0.3 * np.sin(2 * np.pi * 120 * t)).astype(np.float32)))
    seg = SegmentConfig(min_db=-70)
    band = dataclasses.replace(tiny_model.FEATURES, band_hz=(300.0, 3400.0))
    for features, expected in ((tiny_model.FEATURES, True), (band, False)):
        with Windower(features, seg).open(path) as windows:
            assert bool(list(windows)) is expected


def test_global_normalisation_attaches_no_statistics(tmp_path):
    path = str(write_audio(tmp_path / "a.wav", sample_rate=SR, data=bursts([(0.5, 3.0)], 3.5)))
    with Windower(tiny_model.FEATURES, SegmentConfig(), speaker_stats=False).open(path) as windows:
        examples = [example for _, example in windows]
    assert examples and all(e.stats is None for e in examples)


def test_a_bad_file_raises_with_its_path_and_stage(tmp_path):
    (tmp_path / "notes.wav").write_text("call notes, not audio\n" * 50)
    windower = Windower(tiny_model.FEATURES, SegmentConfig())
    with pytest.raises(FileError) as caught:
        windower.open(str(tmp_path / "notes.wav"))
    assert caught.value.path == str(tmp_path / "notes.wav") and caught.value.stage == "decode"
    assert "not a readable audio file" in caught.value.reason


@pytest.mark.parametrize("detector, decodes", [("energy", 2), ("webrtc", 1), ("silero", 1), ("fixed", 1)])
def test_a_file_is_opened_and_decoded_at_most_twice(tmp_path, monkeypatch, detector, decodes):
    """The energy detector reads the file twice (its floor, then the windows), in two
    openings; the others decode it once. Counted at the decoder and at the opener."""
    from ser_core import audio
    from ser_core.inference import windows as windows_module

    calls = {"decode": 0, "open": 0}
    real_blocks, real_open = audio.iter_blocks, windows_module.open_audio

    def counting_blocks(*args, **kwargs):
        calls["decode"] += 1
        return real_blocks(*args, **kwargs)

    def counting_open(path):
        calls["open"] += 1
        return real_open(path)

    monkeypatch.setattr(audio, "iter_blocks", counting_blocks)
    monkeypatch.setattr(windows_module, "open_audio", counting_open)
    data = np.stack([speech(6.0, SR, seed=0), speech(6.0, SR, seed=1)], axis=1)
    path = str(write_audio(tmp_path / "call.wav", sample_rate=SR, data=data))
    with Windower(tiny_model.FEATURES, SegmentConfig(segmentation=detector), block_s=0.5).open(path) as windows:
        assert len(list(windows)) > 0
    assert calls == {"decode": decodes, "open": 2}


@pytest.mark.parametrize("detector", ["webrtc", "silero"])
def test_one_pass_detectors_give_the_windows_of_the_whole_signal(tmp_path, detector):
    data = np.stack([speech(9.0, SR, seed=0), speech(9.0, SR, seed=1, gender="male")], axis=1)
    data[: 2 * SR] = 0.0  # the call opens silent
    path = str(write_audio(tmp_path / "call.wav", sample_rate=SR, data=data, subtype="FLOAT"))
    seg = SegmentConfig(segmentation=detector)
    with Windower(tiny_model.FEATURES, seg, block_s=0.7).open(path) as windows:
        got = [(key.channel, key.start_s, key.end_s) for key, _ in windows]
        info = windows.info
    expected = []
    for channel in range(2):
        cut, speech_samples = segment_channel(data[:, channel], SR, seg)
        expected += [(channel, w.start / SR, w.end / SR) for w in cut]
        assert info.per_channel[channel]["speech_s"] == speech_samples / SR
    assert sorted(got) == sorted(expected) and expected


def test_the_energy_detectors_first_pass_stops_once_the_floor_is_known(tmp_path, monkeypatch):
    """A minute of call that opens with 5 s of line: pass 1 reads the first 4 s (the floor
    starts from floor_track_s of line), pass 2 the whole minute; the windows are unchanged."""
    from ser_core import audio

    blocks_read: list[int] = []
    real_blocks = audio.iter_blocks

    def counting_blocks(*args, **kwargs):
        blocks_read.append(0)
        for block in real_blocks(*args, **kwargs):
            blocks_read[-1] += 1
            yield block

    x = np.concatenate([line_noise(5.0, SR, seed=1), speech(55.0, SR, seed=2) + line_noise(55.0, SR, seed=3)])
    path = str(write_audio(tmp_path / "call.wav", sample_rate=SR, data=x, subtype="FLOAT"))
    seg = SegmentConfig(segmentation="energy")
    monkeypatch.setattr(audio, "iter_blocks", counting_blocks)
    with Windower(tiny_model.FEATURES, seg, block_s=1.0).open(path) as windows:
        got = [(key.start_s, key.end_s) for key, _ in windows]
    assert blocks_read == [int(seg.floor_track_s), 60]
    assert got == [(w.start / SR, w.end / SR) for w in segment_channel(x, SR, seg)[0]] and got
