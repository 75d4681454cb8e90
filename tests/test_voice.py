"""The voice descriptors (ser_core.voice) measure what they name, on signals whose answer is known."""

import numpy as np
import pytest
import scipy.signal

from ser_core import voice
from ser_core.features import PAPER_HOP_S, PAPER_WINDOW_S, FeatureConfig, band_limit, extract

SR = 8000
BAND = (300.0, 3400.0)
COL = {name: i for i, name in enumerate(voice.DESCRIPTORS)}


def pulses(f0_per_step: np.ndarray, amplitude_per_step: np.ndarray | None = None,
           formants=((500, 80), (1500, 100), (2500, 120))) -> np.ndarray:
    """A glottal pulse train, F0 and amplitude set per 10 ms step, through an all-pole
    vocal tract with the given (frequency, bandwidth) resonances."""
    step = int(voice.STEP_S * SR)
    n = len(f0_per_step) * step
    amplitude = np.ones(len(f0_per_step)) if amplitude_per_step is None else amplitude_per_step
    excitation = np.zeros(n)
    t = 0.0
    while t < n:
        k = int(t) // step
        excitation[int(t)] = amplitude[k]
        t += SR / f0_per_step[k]
    a = np.array([1.0])
    for freq, bw in formants:
        r = np.exp(-np.pi * bw / SR)
        a = np.convolve(a, [1.0, -2 * r * np.cos(2 * np.pi * freq / SR), r * r])
    y = scipy.signal.lfilter([1.0], a, excitation)
    y = scipy.signal.lfilter([1.0], [1.0, -0.9], y)  # the glottal spectrum's tilt
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def middle(column: str, d: np.ndarray, stat=np.median) -> float:
    """The median (or ``stat``) over the middle half of the steps (clear of the edges)."""
    x = d[:, COL[column]]
    return float(stat(x[len(x) // 4: 3 * len(x) // 4]))


def test_one_finite_row_of_every_descriptor_per_step_whatever_the_audio():
    rng = np.random.default_rng(0)
    for y in (np.zeros(SR, np.float32), rng.standard_normal(SR).astype(np.float32) * 0.1,
              rng.standard_normal(37).astype(np.float32), pulses(np.full(100, 150.0))):
        d = voice.descriptors(y, SR, BAND)
        assert d.shape == (1 + len(y) // int(voice.STEP_S * SR), voice.N_DESCRIPTORS)
        assert np.isfinite(d).all()


def test_f0_and_formants_of_a_synthetic_vowel():
    d = voice.descriptors(pulses(np.full(150, 200.0)), SR, BAND)
    assert middle("f0_semitones", d) == pytest.approx(12.0, abs=0.3)  # 200 Hz is an octave above 100 Hz
    for k, (freq, _) in enumerate(((500, 80), (1500, 100), (2500, 120)), start=1):
        assert middle(f"f{k}_hz", d) == pytest.approx(freq, rel=0.08)
        assert middle(f"f{k}_bw", d) < 400
    assert middle("f1_db", d) > middle("f3_db", d)  # the tilt: F1 stronger than F3


def test_jitter_and_shimmer_grow_with_perturbed_periods_and_amplitudes():
    steady = voice.descriptors(pulses(np.full(150, 150.0)), SR, BAND)
    alternate = np.where(np.arange(150) % 2 == 0, 140.0, 160.0)
    jittered = voice.descriptors(pulses(alternate), SR, BAND)
    assert middle("jitter", steady) < 0.01
    assert middle("jitter", jittered) > 3 * max(middle("jitter", steady), 0.005)
    wobble = np.where(np.arange(150) // 2 % 2 == 0, 1.0, 0.5)  # 6 dB up or down every 20 ms
    shimmered = voice.descriptors(pulses(np.full(150, 150.0), wobble), SR, BAND)
    assert middle("shimmer_db", steady, np.mean) < 0.5
    assert middle("shimmer_db", shimmered, np.mean) > 2.0  # 6 dB at two steps in three, 0.5 at the third


def test_hnr_separates_a_periodic_voice_from_noise():
    voiced = voice.descriptors(pulses(np.full(150, 150.0)), SR, BAND)
    noise = np.random.default_rng(1).standard_normal(int(1.5 * SR)).astype(np.float32) * 0.1
    noisy = voice.descriptors(noise, SR, BAND)
    assert middle("hnr_db", voiced) > 10
    assert middle("hnr_db", noisy) < 3
    assert middle("jitter", noisy) == 0.0  # nothing voiced: no period to perturb


def test_spectral_balance_follows_where_the_energy_is():
    rng = np.random.default_rng(2)
    noise = rng.standard_normal(2 * SR)
    low = scipy.signal.sosfilt(scipy.signal.butter(6, 900, "lowpass", fs=SR, output="sos"), noise)
    high = scipy.signal.sosfilt(scipy.signal.butter(6, 1200, "highpass", fs=SR, output="sos"), noise)
    d_low, d_high = (voice.descriptors(x.astype(np.float32), SR, BAND) for x in (low, high))
    assert middle("alpha_ratio", d_low) > 10 > -10 > middle("alpha_ratio", d_high)
    assert middle("hammarberg", d_low) > middle("hammarberg", d_high)
    assert middle("slope_500_1500", d_low) < 0 < middle("slope_500_1500", d_high)
    louder = voice.descriptors((4 * low).astype(np.float32), SR, BAND)
    assert middle("loudness", louder) > middle("loudness", d_low)


def test_voice_front_end_gives_the_descriptors_in_the_configs_frames():
    config = FeatureConfig(kind="voice", sample_rate=SR, window_s=PAPER_WINDOW_S, hop_s=PAPER_HOP_S,
                           band_hz=BAND, fmin=BAND[0], fmax=BAND[1])
    y = pulses(np.full(300, 180.0))
    feats = extract(config, y)
    assert config.n_dims == voice.N_DESCRIPTORS == 25
    assert feats.shape == (config.n_frames(len(y)), 25) and feats.dtype == np.float32
    steps = voice.descriptors(band_limit(y, SR, BAND), SR, BAND)
    # a frame in the middle is the mean of the 10 ms steps whose centres fall in it
    t = config.n_frames(len(y)) // 2
    centres = np.arange(len(steps)) * voice.STEP_S
    inside = np.abs(centres - t * config.hop_s) <= config.hop_s / 2
    np.testing.assert_allclose(feats[t], steps[inside].mean(axis=0), rtol=1e-5, atol=1e-5)


def test_logmel_voice_is_logmel_beside_the_voice_descriptors():
    common = dict(sample_rate=SR, window_s=PAPER_WINDOW_S, hop_s=PAPER_HOP_S, band_hz=BAND, fmin=BAND[0],
                  fmax=BAND[1], n_mels=21)
    y = pulses(np.full(200, 160.0))
    both = extract(FeatureConfig(kind="logmel_voice", **common), y)
    assert both.shape[1] == FeatureConfig(kind="logmel_voice", **common).n_dims == 46
    np.testing.assert_array_equal(both[:, :21], extract(FeatureConfig(kind="logmel", **common), y))
    np.testing.assert_array_equal(both[:, 21:], extract(FeatureConfig(kind="voice", **common), y))


@pytest.mark.parametrize("kind", ["voice", "logmel_voice", "logmel", "logmel_deltas", "mfcc_chroma"])
def test_every_front_end_gives_as_many_frames_as_the_config_says(kind):
    """With an odd n_fft (683 at 8 kHz) a clip whose length is a multiple of the hop has one
    frame fewer than 1 + n // hop: descriptors pooled into frames must count as the STFT does
    (logmel_voice concatenates both)."""
    config = FeatureConfig(kind=kind, sample_rate=SR, window_s=PAPER_WINDOW_S, hop_s=PAPER_HOP_S,
                           band_hz=BAND, fmin=BAND[0], fmax=BAND[1], n_mels=40 if kind == "mfcc_chroma" else 21)
    assert config.n_fft % 2 == 1
    rng = np.random.default_rng(3)
    for n in (6 * config.hop_length, 6 * config.hop_length + 1, 109 * config.hop_length, 5000):
        y = rng.standard_normal(n).astype(np.float32) * 0.1
        assert extract(config, y).shape[0] == config.n_frames(n)


def test_formants_do_not_depend_on_level_and_quiet_speech_stays_finite(real_ravdess, recwarn):
    """Linear prediction is scale-free, so the formants of a real clip 80 dB down must be the
    clip's own: before the recursion worked on each frame's relative autocorrelation, frames
    this quiet (a real RAVDESS actor's breath at 16 kHz is) met its absolute floors, overflowed
    and moved the formants by kHz, or stopped the clip with a LinAlgError."""
    from ser_core import audio, prosody

    path = sorted(real_ravdess.glob("Actor_*/*.wav"))[0]
    y, _ = audio.load(path, 16000)
    y = band_limit(y, 16000, BAND).astype(np.float64)
    a = voice._analysis(16000, BAND)
    frames = prosody.frames_of(y, a["size"], int(voice.STEP_S * 16000))
    loud_f, loud_bw = voice._formants(frames, 16000, a["order"])
    quiet_f, quiet_bw = voice._formants(frames * 1e-4, 16000, a["order"])
    np.testing.assert_array_equal(np.isnan(quiet_f), np.isnan(loud_f))
    np.testing.assert_allclose(quiet_f, loud_f, atol=0.01)
    np.testing.assert_allclose(quiet_bw, loud_bw, atol=0.01)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
