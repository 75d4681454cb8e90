import numpy as np
import pytest

from ser_core import augmentation
from tests.synth_audio import signal


def test_names_are_checked():
    assert augmentation.check_names(["speed0.9", "noise20", "telephone"]) == ["speed0.9", "noise20", "telephone"]
    for bad, words in [("speed3", "0.5-2.0"), ("reverb2", "unknown augmentation"), ("noise", "unknown")]:
        with pytest.raises(ValueError, match=words):
            augmentation.check_names([bad])
    with pytest.raises(ValueError, match="twice"):
        augmentation.check_names(["telephone", "telephone"])


def test_speed_changes_duration_and_pitch():
    sr = 16000
    t = np.arange(sr) / sr
    y = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    fast = augmentation.transform("speed1.1")(y, sr, "u")
    assert len(fast) == pytest.approx(sr / 1.1, abs=2)
    peak = np.argmax(np.abs(np.fft.rfft(fast))) * sr / len(fast)
    assert peak == pytest.approx(440 * 1.1, rel=0.01)


def test_noise_has_the_asked_snr_and_is_seeded_by_utterance():
    y = signal(1.0, 16000)
    noisy = augmentation.transform("noise10")(y, 16000, "a")
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean((noisy - y).astype(np.float64) ** 2))
    assert snr == pytest.approx(10, abs=0.3)
    assert np.array_equal(noisy, augmentation.transform("noise10")(y, 16000, "a"))
    assert not np.array_equal(noisy, augmentation.transform("noise10")(y, 16000, "b"))
    assert np.array_equal(augmentation.add_noise(np.zeros(10, np.float32), 10, 0), np.zeros(10))


def test_telephone_removes_what_a_line_does_not_pass():
    sr = 16000
    t = np.arange(sr) / sr
    y = (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    line = augmentation.transform("telephone")(y, sr, "u")
    spectrum = np.abs(np.fft.rfft(line))
    assert len(line) == len(y)
    assert spectrum[6000] < 0.01 * spectrum[1000]  # 6 kHz is above the 3.4 kHz band edge
    assert augmentation.variant_id("x", "") == "x" and augmentation.variant_id("x", "telephone") == "x@telephone"


def test_hiss_is_at_an_absolute_line_level_whatever_the_clip_level():
    quiet = signal(2.0, 8000) * 0.01
    loud = signal(2.0, 8000)
    for y in (quiet, loud):
        noisy = augmentation.transform("hiss")(y, 8000, "same-id")
        level = 10 * np.log10(np.mean((noisy - y).astype(np.float64) ** 2))
        assert -65.5 < level < -44.5
    a = augmentation.transform("hiss")(quiet, 8000, "same-id") - quiet
    b = augmentation.transform("hiss")(loud, 8000, "same-id") - loud
    np.testing.assert_allclose(a, b, atol=1e-6)  # the line's noise depends on the id, not the speech


@pytest.mark.parametrize("name, level", [("hiss-55", -55.0), ("hiss-62.5", -62.5)])
def test_hiss_at_a_fixed_level(name, level):
    y = signal(2.0, 8000) * 0.1
    for uid in ("a", "b", "c"):
        noise = augmentation.transform(name)(y, 8000, uid) - y
        assert abs(10 * np.log10(np.mean(noise.astype(np.float64) ** 2)) - level) < 0.2
    with pytest.raises(ValueError, match="hissL"):
        augmentation.check_names(["hiss55"])


def test_gsm_is_the_full_rate_codec_at_any_rate():
    for sr in (8000, 16000):
        y = signal(1.0, sr) * 0.5
        coded = augmentation.transform("gsm")(y, sr, "u")
        assert coded.shape == y.shape and coded.dtype == np.float32 and np.isfinite(coded).all()
        err = np.mean((coded - y).astype(np.float64) ** 2) / np.mean(y.astype(np.float64) ** 2)
        assert 1e-4 < err < 0.5  # lossy, yet the same signal, aligned (no codec delay)
    assert np.array_equal(coded, augmentation.transform("gsm")(y, sr, "other id"))  # a codec: no draw


def test_reverb_spreads_a_click_over_its_room_and_keeps_the_level():
    sr = 8000
    click = np.zeros(sr, np.float32)
    click[100] = 0.5
    wet = augmentation.transform("reverb")(click, sr, "a")
    assert wet.shape == click.shape and np.isfinite(wet).all()
    energy = np.cumsum(wet.astype(np.float64) ** 2)
    late = 1 - energy[100 + int(0.2 * sr) - 1] / energy[-1]  # the tail after 200 ms
    assert 0.0 < late < 0.5 and np.all(np.abs(wet[:100]) < 1e-9)  # causal, decaying
    y = signal(1.0, sr) * 0.2
    out = augmentation.transform("reverb")(y, sr, "a")
    assert np.sqrt(np.mean(out.astype(np.float64) ** 2)) == pytest.approx(np.sqrt(np.mean(y.astype(np.float64) ** 2)), rel=0.01)
    assert np.array_equal(out, augmentation.transform("reverb")(y, sr, "a"))
    assert not np.array_equal(out, augmentation.transform("reverb")(y, sr, "b"))
    response = augmentation.room_response(sr, 0.5, 6.0, np.random.default_rng(0))
    assert 10 * np.log10(1 / np.sum(response[1:] ** 2)) == pytest.approx(6.0)
    tail = response[1:]
    e = np.cumsum(tail[::-1] ** 2)[::-1]  # Schroeder decay: -60 dB near the end
    assert 10 * np.log10(e[int(0.25 * sr)] / e[0]) == pytest.approx(-30, abs=4)


def vowel(sample_rate=16000, f0=120.0, formants=(700.0, 1220.0, 2600.0), seconds=1.0):
    """An impulse train at ``f0`` through a resonator per formant: a vowel of known pitch and formants."""
    from scipy.signal import lfilter

    n = int(sample_rate * seconds)
    y = np.zeros(n)
    y[(np.arange(0, seconds, 1 / f0) * sample_rate).astype(int)] = 1.0
    for f in formants:
        r = np.exp(-np.pi * 80.0 / sample_rate)  # 80 Hz bandwidth
        y = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * f / sample_rate), r * r], y)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def pitch_hz(y, sample_rate):
    """The autocorrelation peak between 80 and 400 Hz."""
    x = y[len(y) // 4: 3 * len(y) // 4].astype(np.float64)
    ac = np.correlate(x, x, "full")[len(x) - 1:]
    lo, hi = sample_rate // 400, sample_rate // 80
    return sample_rate / (lo + np.argmax(ac[lo:hi]))


def formants_hz(y, sample_rate, order=16):
    """The clip's resonances: roots of its linear-prediction polynomial narrower than 400 Hz."""
    import librosa

    roots = np.roots(librosa.lpc(y.astype(np.float64) * np.hanning(len(y)), order=order))
    roots = roots[np.imag(roots) > 0]
    bandwidth = -sample_rate / np.pi * np.log(np.abs(roots))
    return np.sort(np.angle(roots[bandwidth < 400]) * sample_rate / (2 * np.pi))


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_vtlp_moves_the_formants_and_keeps_the_pitch(factor):
    sr = 16000
    y = vowel(sr)
    out = augmentation.transform(f"vtlp{factor}")(y, sr, "clip")
    assert out.dtype == np.float32 and out.shape == y.shape and np.isfinite(out).all()
    assert np.sqrt(np.mean(out.astype(np.float64) ** 2)) == pytest.approx(np.sqrt(np.mean(y.astype(np.float64) ** 2)), rel=1e-3)
    assert pitch_hz(out, sr) == pytest.approx(120.0, abs=2.0)  # the voice's pitch stays
    before, after = formants_hz(y, sr), formants_hz(out, sr)
    assert before == pytest.approx([700, 1220, 2600], abs=20)
    moved = augmentation.vtlp_warp(np.array([700.0, 1220.0, 2600.0]), factor, sr / 2)
    assert moved == pytest.approx(np.array([700, 1220, 2600]) * factor)  # below the knee: a plain stretch
    assert after == pytest.approx(moved, abs=40)
    # speed perturbation moves both
    assert pitch_hz(augmentation.transform(f"speed{factor}")(y, sr, "clip"), sr) == pytest.approx(120 * factor, abs=3)


def test_vtlp_draws_its_factor_per_clip_and_keeps_silence():
    sr = 8000
    y = vowel(sr)
    vt = augmentation.transform("vtlp")
    a, b = vt(y, sr, "clip-a"), vt(y, sr, "clip-b")
    assert np.array_equal(a, vt(y, sr, "clip-a")) and not np.array_equal(a, b)
    factors = [np.random.default_rng(augmentation.seed_of(f"c{i}", "vtlp")).uniform(*augmentation.VTLP_FACTORS)
               for i in range(200)]
    assert 0.9 <= min(factors) < 0.92 and 1.08 < max(factors) <= 1.1
    assert np.max(np.abs(augmentation.transform("vtlp1.0")(y, sr, "x") - y)) < 1e-4  # factor 1: resynthesised as it was
    silent = np.zeros(4000, np.float32)
    assert np.array_equal(vt(silent, sr, "s"), silent)
    assert np.array_equal(vt(y[:100], sr, "short"), y[:100])  # shorter than a frame: as it was
    with pytest.raises(ValueError, match="0.8-1.2"):
        augmentation.check_names(["vtlp1.5"])


def test_loudness_scales_the_clip_by_a_seeded_gain_and_never_clips():
    y = signal(1.0, 16000) * 0.1  # peak well below full scale: room for +6 dB

    def gain_db(out, ref):
        return 20 * np.log10(np.max(np.abs(out)) / np.max(np.abs(ref)))
    gains = [gain_db(augmentation.transform("loudness")(y, 16000, f"u{i}"), y) for i in range(40)]
    assert all(-12.0 - 1e-6 <= g <= 6.0 + 1e-6 for g in gains) and max(gains) - min(gains) > 10
    again = augmentation.transform("loudness")(y, 16000, "u0")
    assert np.array_equal(again, augmentation.transform("loudness")(y, 16000, "u0"))  # seeded by the id
    scaled = augmentation.transform("loudness")(y, 16000, "u0")
    np.testing.assert_allclose(scaled, y * 10 ** (gains[0] / 20), rtol=1e-5, atol=1e-7)  # a gain, nothing else
    # a fixed gain, and a gain that would clip cut to the clip's headroom
    assert gain_db(augmentation.transform("gain-20")(y, 16000, "u"), y) == pytest.approx(-20.0, abs=1e-4)
    loud = y / np.max(np.abs(y)) * 0.9
    up = augmentation.transform("gain12")(loud, 16000, "u")
    assert np.max(np.abs(up)) == pytest.approx(1.0, abs=1e-6)
    assert np.array_equal(augmentation.transform("gain6")(np.zeros(8, np.float32), 16000, "u"), np.zeros(8))
    for bad in ("gain30", "gain-70", "loudness2"):
        with pytest.raises(ValueError):
            augmentation.check_names([bad])
