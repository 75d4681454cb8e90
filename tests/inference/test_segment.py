"""Windowing: exact regions on hand-built signals (energy detector), block invariance for
every detector, bounded buffering, settings."""

import numpy as np
import pytest
import soxr

from ser_core.features import FeatureError
from ser_core.segmentation import SegmentConfig, Segmenter, cut_clip, segment_channel
from ser_core.segmentation.energy import EnergyDetector, FloorStart
from ser_core.segmentation.frames import BandFilter
from tests.inference.tiny_model import bursts
from tests.synth_audio import line_noise, speech

SR = 8000


def spans(windows):
    return [(w.start, w.end) for w in windows]


def at(*pairs):
    """(start_s, end_s) pairs -> sample offsets."""
    return [(round(a * SR), round(b * SR)) for a, b in pairs]


SIGNAL = bursts([(1.0, 2.5), (2.7, 4.0), (6.0, 6.1), (8.0, 12.0)], 14.0)


def test_regions_merge_short_pauses_drop_blips_and_pad():
    windows, speech = segment_channel(SIGNAL, SR, SegmentConfig())
    # [1.0, 4.0) (0.2 s pause merged) and [8.0, 12.0), padded by 0.1 s; the 0.1 s blip dropped.
    # Each region longer than 3 s: one regular window, then one aligned to the region's end.
    assert spans(windows) == at((0.9, 3.9), (1.1, 4.1), (7.9, 10.9), (9.1, 12.1))
    assert speech / SR == pytest.approx(3.2 + 4.2)
    for w in windows:
        np.testing.assert_array_equal(w.samples, SIGNAL[w.start:w.end])


@pytest.mark.parametrize("block_len", [7, 997, 4567, 3 * SR])
def test_windows_do_not_depend_on_block_size(block_len):
    whole, speech = segment_channel(SIGNAL, SR, SegmentConfig())
    blocked, speech_b = segment_channel(SIGNAL, SR, SegmentConfig(), block_len=block_len)
    assert spans(blocked) == spans(whole)
    assert speech_b == speech
    for a, b in zip(whole, blocked):
        np.testing.assert_array_equal(a.samples, b.samples)


def test_short_region_is_one_shorter_window_and_too_short_is_none():
    x = bursts([(1.0, 2.5), (5.0, 5.5)], 7.0)
    windows, speech = segment_channel(x, SR, SegmentConfig())
    assert spans(windows) == at((0.9, 2.6))  # 0.7 s region < min_speech_s
    assert speech / SR == pytest.approx(1.7 + 0.7)


def test_fixed_windows_cover_the_channel():
    x = bursts([], 10.0)
    cfg = SegmentConfig(segmentation="fixed")
    windows, speech = segment_channel(x, SR, cfg, block_len=777)
    assert spans(windows) == at((0, 3), (1.5, 4.5), (3, 6), (4.5, 7.5), (6, 9), (7, 10))
    assert speech == len(x)


@pytest.mark.parametrize("n", [0, 1, 800])  # empty, one sample, 0.1 s
def test_tiny_inputs_give_no_windows(n):
    for mode in ("energy", "webrtc", "silero", "fixed"):
        windows, _ = segment_channel(bursts([(0, 1)], 1.0)[:n], SR, SegmentConfig(segmentation=mode))
        assert windows == []


def test_threshold_is_noise_floor_plus_margin_and_silence_is_not_speech():
    cfg = SegmentConfig(min_db=-80.0)
    hist = FloorStart(cfg, SR)
    hist.update(bursts([], 5.0))  # noise only, std 0.001 -> -60 dBFS
    assert hist.floor_db() == pytest.approx(-60.0, abs=0.5)  # the steady chunks' level
    assert hist.threshold_db() == pytest.approx(hist.floor_db() + cfg.margin_db)
    assert FloorStart(SegmentConfig(), SR).threshold_db() == SegmentConfig().min_db  # no floor yet
    windows, speech = segment_channel(np.zeros(5 * SR, np.float32), SR, SegmentConfig())
    assert windows == [] and speech == 0


def test_buffer_stays_bounded_on_long_continuous_speech():
    cfg = SegmentConfig()
    block = bursts([(0, 1.0)], 1.0, seed=1)
    seg = Segmenter(cfg, SR, EnergyDetector(cfg, SR, threshold_db=-40.0))
    n_windows, peak = 0, 0
    for _ in range(600):  # ten minutes without a pause
        n_windows += len(seg.feed(block))
        peak = max(peak, seg.buffered_samples)
    n_windows += len(seg.flush())
    assert n_windows == 399  # starts every 1.5 s up to 597 s, then the tail window
    assert peak <= (cfg.window_s + cfg.hop_s + 1.0) * SR


# A channel of real-looking traffic: speech, pauses of line noise, a quiet stretch.
CALL = np.concatenate([line_noise(1.3, SR, seed=1), speech(6.0, SR, seed=2), line_noise(0.9, SR, seed=3),
                       speech(4.0, SR, seed=4, emotion="sad", gain_db=-12), line_noise(1.7, SR, seed=5)])


@pytest.mark.parametrize("rate", [SR, 22050, 48000])
@pytest.mark.parametrize("detector", ["energy", "webrtc", "silero"])
@pytest.mark.parametrize("block_len", [317, 4567])
def test_every_detector_is_block_size_independent(detector, rate, block_len):
    """Same windows (and samples) whatever the blocks, also where the detector resamples."""
    x = CALL if rate == SR else soxr.resample(CALL, SR, rate)
    cfg = SegmentConfig(segmentation=detector)
    whole, speech_whole = segment_channel(x, rate, cfg)
    blocked, speech_blocked = segment_channel(x, rate, cfg, block_len=block_len * rate // SR)
    assert whole, "the call's speech must be found"
    assert spans(blocked) == spans(whole) and speech_blocked == speech_whole
    for a, b in zip(whole, blocked):
        np.testing.assert_array_equal(a.samples, b.samples)


def hum(seconds: float, freq: float = 120.0, amp: float = 0.3, rate: int = SR) -> np.ndarray:
    """A held low tone: a voice's fundamental with nothing a telephone line passes."""
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def regions(x, cfg, **kw):
    found = []
    segment_channel(x, SR, cfg, on_region=lambda a, b: found.append((a / SR, b / SR)), **kw)
    return found


def test_the_energy_detector_listening_within_the_band_hears_what_a_line_passes():
    """Training clips are cut as calls are: the detector hears the model's band, so sound
    below it (a 120 Hz tone between two speech turns: a voice's fundamental that a phone
    line removes) is not speech to it; the windows keep the samples as they are."""
    x = np.concatenate([speech(3.0, SR, seed=2), hum(4.0), speech(3.0, SR, seed=4)])
    cfg = SegmentConfig(min_db=-70)
    band = (300.0, 3400.0)
    assert regions(x, cfg) == [(0.0, 10.0)]  # full band: the tone is speech
    heard = regions(x, cfg, band_hz=band)
    assert len(heard) == 2 and heard[0][1] < 3.5 and heard[1][0] > 6.5
    windows, _ = segment_channel(x, SR, cfg, band_hz=band)
    for w in windows:
        np.testing.assert_array_equal(w.samples, x[w.start:w.end])  # unfiltered samples
    with pytest.raises(FeatureError, match="no speech"):
        cut_clip(hum(3.0), SR, "windows", cfg, band)
    assert cut_clip(hum(3.0), SR, "windows", cfg)  # the same clip, heard full band


@pytest.mark.parametrize("detector", ["energy", "webrtc"])
def test_listening_within_a_band_does_not_depend_on_blocks(detector):
    cfg = SegmentConfig(segmentation=detector, min_db=-70)
    whole, _ = segment_channel(CALL, SR, cfg, band_hz=(300.0, 3400.0))
    blocked, _ = segment_channel(CALL, SR, cfg, block_len=333, band_hz=(300.0, 3400.0))
    assert whole and spans(blocked) == spans(whole)


def test_band_filter_output_does_not_depend_on_blocks():
    x = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
    whole = BandFilter(SR, (300.0, 3400.0))(x)
    f = BandFilter(SR, (300.0, 3400.0))
    parts = np.concatenate([f(x[a:a + 777]) for a in range(0, len(x), 777)])
    np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-6)
    top = BandFilter(SR, (300.0, 4000.0))  # band up to Nyquist: a high-pass
    assert top.sos is not None and np.abs(top(hum(1.0))[SR // 2:]).max() < 0.01  # 120 Hz: -32 dB


def test_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="segmentation must be one of"):
        SegmentConfig(segmentation="vad")  # the energy detector's old name is gone
    with pytest.raises(ValueError, match=r"unknown segmentation setting\(s\) \['windows_s'\]"):
        SegmentConfig.from_dict({"windows_s": 2.0})
    cfg = SegmentConfig(segmentation="webrtc", frame_s=0.01, window_s=2.0, hop_s=1.0)
    assert SegmentConfig.from_dict(cfg.to_dict()) == cfg


def test_regions_are_reported_as_they_close():
    regions = []
    _, speech = segment_channel(SIGNAL, SR, SegmentConfig(), on_region=lambda a, b: regions.append((a, b)))
    assert regions == at((0.9, 4.1), (7.9, 12.1))
    assert sum(b - a for a, b in regions) == speech


@pytest.mark.parametrize("kwargs", [dict(hop_s=4.0), dict(pad_s=0.5), dict(segmentation="x"),
                                    dict(window_s=0), dict(min_speech_s=5.0),
                                    dict(segmentation="webrtc", frame_s=0.025), dict(webrtc_mode=4),
                                    dict(silero_threshold=1.0), dict(floor_chunk_s=0.03),
                                    dict(stationary_db=0), dict(floor_track_s=-1)])
def test_bad_configs_are_refused(kwargs):
    with pytest.raises(ValueError):
        SegmentConfig(**kwargs)
