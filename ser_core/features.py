"""Frame-level features: typed configuration, extractors registered by name.

The paper's front-end (``mfcc_chroma``) is numerically librosa's::

    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=34, n_fft=4096, hop_length=2048)
    chroma = librosa.feature.chroma_stft(y=y, sr=sr, n_fft=4096, hop_length=2048)
    X = np.vstack([mfcc, chroma]).T            # (frames, 46)

computed faster: the centred STFT is computed once, and the mel spectrum (-> MFCC) and the
chroma both come from that one power spectrum (librosa computes it twice), with the DSP of
:mod:`ser_core.spectral` (librosa's formulas restated, filterbanks built once, no librosa
import). MFCCs agree with librosa's to float32 rounding; ``benchmarks/features.py`` checks
the agreement on a whole corpus. The log-mel front-ends, the prosodic contours
(:mod:`ser_core.prosody`), openSMILE's eGeMAPS descriptors and our own voice descriptors of
the same kinds (:mod:`ser_core.voice`) and the frames of a pretrained speaker encoder
(:mod:`ser_core.encoder`) are registered beside it.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ser_core import encoder, prosody, voice
from ser_core.params import setting
from ser_core.spectral import (chroma_basis, dct_matrix, estimate_tuning, hann_window, mel_basis, n_frames,
                               power_spectrogram, power_to_db)

# Front-ends by name (FeatureConfig.kind), filled by @register below.
EXTRACTORS: dict[str, "_Registered"] = {}
# At 48 kHz these are exactly the paper's n_fft 4096 and hop 2048.
PAPER_WINDOW_S = 4096 / 48000
PAPER_HOP_S = 2048 / 48000
RESAMPLE_QUALITIES = ("VHQ", "HQ", "MQ", "LQ", "QQ")


class FeatureError(ValueError):
    """Features cannot be computed for this audio (or they came out non-finite)."""


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes a (frames, dims) matrix; written into every output that holds features.

    ``window_s``/``hop_s`` are in seconds so the analysis covers the same time span at
    any sample rate; ``n_fft = round(window_s * sample_rate)``. ``fmin``/``fmax`` bound
    the mel filterbank (``fmax`` None = Nyquist). ``resample_quality`` is the soxr
    quality used when a file's rate differs from ``sample_rate``.
    """

    kind: str = setting("mfcc_chroma", choices=EXTRACTORS,
                        help="the front-end: mfcc_chroma (the paper), logmel, logmel_deltas, logmel_prosody, "
                             "egemaps, voice, logmel_voice, speaker_encoder")
    sample_rate: int = setting(48000, help="Hz; every file is resampled to it")
    window_s: float = setting(PAPER_WINDOW_S, help="analysis window, s (4096/48000: n_fft 4096 at 48 kHz)")
    hop_s: float = setting(PAPER_HOP_S, help="hop, s (2048/48000)")
    n_mfcc: int = setting(34, help="MFCC coefficients (mfcc_chroma)")
    n_chroma: int = setting(12, help="chroma bins (mfcc_chroma)")
    n_mels: int = setting(128, help="mel bands")
    fmin: float = setting(0.0, help="lowest mel filter edge, Hz")
    fmax: float | None = setting(None, help="highest mel filter edge, Hz, or none (Nyquist)")
    resample_quality: str = setting("HQ", choices=RESAMPLE_QUALITIES, help="soxr resampling quality")
    band_hz: tuple[float, float] | None = setting(
        None, help="LOW,HIGH: band-limit the audio before analysis, e.g. 300,3400 so that a model trained "
                   "on wideband corpora hears what a telephone line passes; none: full band")

    def __post_init__(self) -> None:
        object.__setattr__(self, "band_hz", parse_band(self.band_hz))
        if self.kind not in EXTRACTORS:
            raise ValueError(f"unknown feature kind {self.kind!r}; known: {sorted(EXTRACTORS)}")
        if not isinstance(self.sample_rate, int) or isinstance(self.sample_rate, bool) or self.sample_rate < 1000:
            raise ValueError(f"sample_rate must be an integer >= 1000 Hz, got {self.sample_rate!r}")
        if self.n_fft < 16 or self.hop_length < 1 or self.hop_length > self.n_fft:
            raise ValueError(
                f"window_s={self.window_s} / hop_s={self.hop_s} give n_fft={self.n_fft}, "
                f"hop={self.hop_length} at {self.sample_rate} Hz; need n_fft >= 16 and 1 <= hop <= n_fft")
        for name in ("n_mfcc", "n_chroma", "n_mels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.kind == "speaker_encoder" and self.sample_rate != encoder.SAMPLE_RATE:
            raise ValueError(f"features.kind speaker_encoder needs sample_rate {encoder.SAMPLE_RATE} "
                             f"(the encoder's own), got {self.sample_rate}")
        if self.kind == "mfcc_chroma" and self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) cannot exceed n_mels ({self.n_mels})")
        nyquist = self.sample_rate / 2
        fmax = nyquist if self.fmax is None else self.fmax
        if not 0 <= self.fmin < fmax <= nyquist:
            raise ValueError(f"need 0 <= fmin < fmax <= {nyquist} Hz, got fmin={self.fmin}, fmax={self.fmax}")
        if self.band_hz is not None and not 0 <= self.band_hz[0] < self.band_hz[1] <= nyquist:
            raise ValueError(f"band_hz must be LOW,HIGH with 0 <= LOW < HIGH <= {nyquist} Hz, got {self.band_hz}")
        if self.resample_quality not in RESAMPLE_QUALITIES:
            raise ValueError(f"resample_quality must be one of {RESAMPLE_QUALITIES}, got {self.resample_quality!r}")

    @property
    def n_fft(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @property
    def hop_length(self) -> int:
        return int(round(self.hop_s * self.sample_rate))

    @property
    def n_dims(self) -> int:
        return EXTRACTORS[self.kind].n_dims(self)

    def n_frames(self, n_samples: int) -> int:
        """Frames for a clip of ``n_samples`` (centred frames, as librosa's STFT gives them)."""
        return n_frames(n_samples, self.n_fft, self.hop_length)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: the fields plus the derived n_fft, hop_length, n_dims."""
        return {**dataclasses.asdict(self), "n_fft": self.n_fft, "hop_length": self.hop_length,
                "n_dims": self.n_dims}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureConfig":
        """Inverse of :meth:`to_dict`; derived keys, when present, must agree."""
        derived = {k: data[k] for k in ("n_fft", "hop_length", "n_dims") if k in data}
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields - set(derived))
        if unknown:
            raise ValueError(f"unknown FeatureConfig key(s) {unknown}; known: {sorted(fields)}")
        config = cls(**{k: v for k, v in data.items() if k in fields})
        for key, value in derived.items():
            if getattr(config, key) != value:
                raise ValueError(f"FeatureConfig {key}={value} does not match the settings "
                                 f"(which give {getattr(config, key)})")
        return config


def describe(feature_config: Mapping[str, Any]) -> str:
    """A front-end in a few words, from a ``FeatureConfig.to_dict()`` (what features and
    checkpoints carry), e.g. 'logmel_deltas, 46 dims, 8000 Hz, band 300-3400 Hz, 85/43 ms frames'."""
    c = feature_config
    band = c.get("band_hz")
    frames = (f", {1000 * c['window_s']:.0f}/{1000 * c['hop_s']:.0f} ms frames"
              if c.get("window_s") and c.get("hop_s") else "")
    return (f"{c.get('kind')}, {c.get('n_dims')} dims, {c.get('sample_rate')} Hz"
            + (f", band {band[0]:g}-{band[1]:g} Hz" if band else "") + frames)


def parse_band(value: Any) -> tuple[float, float] | None:
    """``band_hz`` from params or a flag: None/"none"/"" -> None; "300,3400" or [300, 3400] -> tuple."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        low, high = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"band_hz must be two numbers LOW,HIGH in Hz (or none), got {value!r}") from None
    return (low, high)


def band_limit(audio: np.ndarray, sample_rate: int, band_hz: tuple[float, float]) -> np.ndarray:
    """Zero every frequency outside ``band_hz`` (an ideal band-pass over the whole clip)."""
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(audio.shape[0], 1.0 / sample_rate)
    spectrum[(freqs < band_hz[0]) | (freqs > band_hz[1])] = 0
    return np.fft.irfft(spectrum, audio.shape[0]).astype(np.float32)


# ---------------------------------------------------------------- extractors

Extractor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Registered:
    build: Callable[[FeatureConfig], Extractor]
    n_dims: Callable[[FeatureConfig], int]
    reads: tuple[str, ...]  # the FeatureConfig fields it reads beyond COMMON_FIELDS


# What every front-end reads besides its kind: the audio it is given and the frames it returns.
COMMON_FIELDS = ("sample_rate", "resample_quality", "band_hz", "window_s", "hop_s")
MEL_FIELDS = ("n_mels", "fmin", "fmax")


def register(name: str, n_dims: Callable[[FeatureConfig], int], reads: tuple[str, ...] = ()):
    """Register ``build(config) -> extractor`` under ``name`` (a FeatureConfig ``kind``);
    ``reads``: the fields it uses beyond :data:`COMMON_FIELDS` (the others do not change
    its output, so :func:`frontend_differences` does not hold them against features)."""
    def decorate(build: Callable[[FeatureConfig], Extractor]) -> Callable[[FeatureConfig], Extractor]:
        EXTRACTORS[name] = _Registered(build, n_dims, tuple(reads))
        return build
    return decorate


def frontend_differences(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """How the front-end ``actual`` differs from ``expected`` (both ``FeatureConfig.to_dict()``,
    as features and checkpoints carry them), in the settings ``expected``'s kind reads:
    e.g. ``["band_hz: none, expected 300-3400"]``; empty when the two give the same features."""
    try:
        want, got = FeatureConfig.from_dict(expected), FeatureConfig.from_dict(actual)
    except (TypeError, ValueError):  # not this project's front-ends (written by other code): equal or not
        return [] if dict(expected) == dict(actual) else [f"front-end {dict(actual)}, expected {dict(expected)}"]
    if want.kind != got.kind:
        return [f"kind: {got.kind}, expected {want.kind}"]

    def show(name: str, value: Any) -> str:
        if value is None:
            return "none"
        return f"{value[0]:g}-{value[1]:g}" if name == "band_hz" else f"{value:g}" if isinstance(value, float) else str(value)
    return [f"{name}: {show(name, getattr(got, name))}, expected {show(name, getattr(want, name))}"
            for name in COMMON_FIELDS + EXTRACTORS[want.kind].reads if getattr(got, name) != getattr(want, name)]


def _spectrum(config: FeatureConfig) -> Callable[[np.ndarray], np.ndarray]:
    window, n_fft, hop = hann_window(config.n_fft), config.n_fft, config.hop_length
    return lambda y: power_spectrogram(y, n_fft, hop, window)


@register("mfcc_chroma", n_dims=lambda c: c.n_mfcc + c.n_chroma, reads=("n_mfcc", "n_chroma") + MEL_FIELDS)
def mfcc_chroma(config: FeatureConfig) -> Extractor:
    """The paper's front-end: n_mfcc MFCC then n_chroma STFT chroma per frame."""
    spectrum = _spectrum(config)
    mel = mel_basis(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    dct = dct_matrix(config.n_mels, config.n_mfcc)
    sr, n_fft, n_chroma = config.sample_rate, config.n_fft, config.n_chroma
    tiny = np.finfo(np.float32).tiny

    def extract(y: np.ndarray) -> np.ndarray:
        power = spectrum(y)  # (T, F)
        out = np.empty((power.shape[0], dct.shape[1] + n_chroma), dtype=np.float32)
        np.matmul(power_to_db(power @ mel), dct, out=out[:, :dct.shape[1]])  # (T, n_mfcc)
        tuning = estimate_tuning(power, sr, n_chroma)
        chroma = power @ chroma_basis(sr, n_fft, n_chroma, tuning)  # (T, n_chroma)
        peak = chroma.max(axis=1, keepdims=True)
        peak[peak < tiny] = 1.0  # silent frames stay 0 instead of 0/0
        np.divide(chroma, peak, out=out[:, dct.shape[1]:])
        return out
    return extract


@register("logmel", n_dims=lambda c: c.n_mels, reads=MEL_FIELDS)
def logmel(config: FeatureConfig) -> Extractor:
    """Log-mel power (dB, 80 dB range per clip), n_mels bands per frame."""
    spectrum = _spectrum(config)
    mel = mel_basis(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    return lambda y: power_to_db(spectrum(y) @ mel)


def deltas(x: np.ndarray, width: int = 2) -> np.ndarray:
    """Regression deltas along time (the HTK formula over +-``width`` frames, edges repeated):
    the slope of the least-squares line through each frame's neighbourhood, which is what
    ``librosa.feature.delta(width=2 * width + 1, mode='nearest')`` computes."""
    padded = np.pad(x, ((width, width), (0, 0)), mode="edge")
    t = len(x)
    out = np.zeros_like(x, dtype=np.float32)
    for n in range(1, width + 1):
        out += n * (padded[width + n:width + n + t] - padded[width - n:width - n + t])
    return out / (2 * sum(n * n for n in range(1, width + 1)))


@register("logmel_deltas", n_dims=lambda c: 2 * c.n_mels, reads=MEL_FIELDS)
def logmel_deltas(config: FeatureConfig) -> Extractor:
    """Log-mel (as ``logmel``) and its deltas: n_mels + n_mels dims per frame (23 bands give
    the paper's 46 dims, so the model keeps its size)."""
    base = logmel(config)

    def extract(y: np.ndarray) -> np.ndarray:
        mel = base(y)
        return np.concatenate([mel, deltas(mel)], axis=1)
    return extract


@register("logmel_prosody", n_dims=lambda c: 2 * c.n_mels + prosody.N_PROSODY, reads=MEL_FIELDS)
def logmel_prosody(config: FeatureConfig) -> Extractor:
    """``logmel_deltas`` and four prosodic contours (:mod:`ser_core.prosody`): F0 in
    semitones, its slope, voicing strength, energy in dB. 21 bands give 46 dims."""
    base = logmel_deltas(config)
    sr, n_fft, hop = config.sample_rate, config.n_fft, config.hop_length

    def extract(y: np.ndarray) -> np.ndarray:
        f0, voicing = prosody.pitch(y, sr, n_fft, hop)
        contour = prosody.semitone_contour(f0)[:, None]
        extra = np.concatenate([contour, deltas(contour), voicing[:, None],
                                prosody.energy_db(y, n_fft, hop)[:, None]], axis=1)
        return np.concatenate([base(y), extra], axis=1).astype(np.float32)
    return extract


EGEMAPS_LLDS = 25  # eGeMAPS v02 low-level descriptors per 10 ms frame
EGEMAPS_STEP_S = 0.01


def pool_to_frames(values: np.ndarray, centres_s: np.ndarray, n_frames: int, hop_s: float) -> np.ndarray:
    """Rows of ``values`` (one per time ``centres_s``) averaged into the ``n_frames`` centred
    frames of ``hop_s`` (frame t covers t * hop_s +- hop_s / 2); a frame no row falls in
    takes the nearest frame's value."""
    index = np.clip(np.round(centres_s / hop_s).astype(np.int64), 0, n_frames - 1)
    sums = np.zeros((n_frames, values.shape[1]), dtype=np.float64)
    np.add.at(sums, index, values)
    counts = np.bincount(index, minlength=n_frames)
    filled = np.flatnonzero(counts)
    out = sums[filled] / counts[filled, None]
    nearest = filled[np.clip(np.searchsorted(filled, np.arange(n_frames)), 0, len(filled) - 1)]
    before = filled[np.clip(np.searchsorted(filled, np.arange(n_frames)) - 1, 0, len(filled) - 1)]
    pick = np.where(np.abs(before - np.arange(n_frames)) <= np.abs(nearest - np.arange(n_frames)), before, nearest)
    return out[np.searchsorted(filled, pick)].astype(np.float32)


@register("egemaps", n_dims=lambda c: EGEMAPS_LLDS)
def egemaps(config: FeatureConfig) -> Extractor:
    """The 25 low-level descriptors of eGeMAPS v02 (Eyben et al. 2016: loudness, spectral
    slopes and balance, MFCC 1-4, F0 in semitones, jitter, shimmer, HNR, harmonic
    differences, F1-F3 frequency, bandwidth and level) computed by openSMILE every 10 ms and
    averaged into this config's frames (``hop_s``), so sequences are as long as the other
    front-ends'. Needs the ``opensmile`` package (``pip install 'ser-pipelines[opensmile]'``;
    openSMILE's licence is free for research and education, commercial use needs
    audEERING's licence)."""
    try:
        import opensmile
    except ImportError as exc:
        raise FeatureError("features.kind egemaps needs the opensmile package: "
                           "pip install 'ser-pipelines[opensmile]'") from exc
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    sr = config.sample_rate

    def extract(y: np.ndarray) -> np.ndarray:
        if len(y) < int(0.1 * sr):
            raise FeatureError(f"egemaps needs at least 0.1 s of audio, got {len(y) / sr:.3f} s")
        lld = smile.process_signal(y, sr).to_numpy(dtype=np.float64)
        centres = np.arange(len(lld)) * EGEMAPS_STEP_S + EGEMAPS_STEP_S
        return pool_to_frames(lld, centres, config.n_frames(len(y)), config.hop_s)
    return extract


@register("voice", n_dims=lambda c: voice.N_DESCRIPTORS, reads=("fmin", "fmax"))
def voice_descriptors(config: FeatureConfig) -> Extractor:
    """The 25 voice descriptors of :mod:`ser_core.voice` (GeMAPS-style: loudness, spectral
    balance and slopes, MFCC 1-4, F0, jitter, shimmer, HNR, harmonic differences, F1-F3
    frequency, bandwidth and level), computed every 10 ms within the mel band
    (``fmin``..``fmax``) and averaged into this config's frames. numpy only: what
    ``egemaps`` measures, under this project's licence."""
    sr = config.sample_rate
    band = (config.fmin, sr / 2 if config.fmax is None else config.fmax)

    def extract(y: np.ndarray) -> np.ndarray:
        steps = voice.descriptors(y, sr, band)
        return pool_to_frames(steps, np.arange(len(steps)) * voice.STEP_S, config.n_frames(len(y)), config.hop_s)
    return extract


@register("logmel_voice", n_dims=lambda c: c.n_mels + voice.N_DESCRIPTORS, reads=MEL_FIELDS)
def logmel_voice(config: FeatureConfig) -> Extractor:
    """Log-mel (as ``logmel``) beside the 25 voice descriptors (as ``voice``): 21 bands give
    46 dims, so the model keeps its size."""
    spectrum, descriptors = logmel(config), voice_descriptors(config)
    return lambda y: np.concatenate([spectrum(y), descriptors(y)], axis=1).astype(np.float32)


@register("speaker_encoder", n_dims=lambda c: encoder.N_DIMS)
def speaker_encoder(config: FeatureConfig) -> Extractor:
    """256 numbers per frame from a speaker encoder pretrained on thousands of voices
    (:mod:`ser_core.encoder`: the last LSTM layer of Resemblyzer's GE2E encoder over its own
    40-band mel analysis every 10 ms), averaged into this config's frames (``hop_s``) as
    ``egemaps`` is. Needs ``sample_rate: 16000`` (``n_mels``, ``fmin`` and ``fmax`` do not
    apply: the encoder's analysis is fixed) and the ``resemblyzer`` package for the weights
    (:data:`ser_core.encoder.INSTALL`)."""
    try:
        encoder.load_lstm()
    except encoder.EncoderUnavailable as exc:
        raise FeatureError(f"features.kind speaker_encoder: {exc}") from exc

    def extract(y: np.ndarray) -> np.ndarray:
        steps = encoder.frames(y)
        centres = np.arange(len(steps)) * (encoder.HOP / encoder.SAMPLE_RATE)
        return pool_to_frames(steps, centres, config.n_frames(len(y)), config.hop_s)
    return extract


# ---------------------------------------------------------------- entry points


@functools.lru_cache(maxsize=8)
def make_extractor(config: FeatureConfig) -> Extractor:
    """A checked extractor for ``config``: mono float audio at config.sample_rate ->
    (frames, n_dims) float32, finite, or FeatureError. Cached per config."""
    raw = EXTRACTORS[config.kind].build(config)

    def extract(audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio)
        if audio.ndim != 1 or audio.size == 0:
            raise FeatureError(f"expected non-empty mono audio (samples,), got shape {audio.shape}")
        if audio.dtype != np.float32:
            audio = audio.astype(np.float32)
        if config.band_hz is not None:
            audio = band_limit(audio, config.sample_rate, config.band_hz)
        features = raw(audio)
        if not np.isfinite(features).all():
            raise FeatureError(f"{config.kind} features are not finite "
                               f"({int((~np.isfinite(features)).sum())} bad values)")
        return features
    return extract


def extract(config: FeatureConfig, audio: np.ndarray) -> np.ndarray:
    """Features of mono ``audio`` sampled at ``config.sample_rate``: (frames, n_dims) float32."""
    return make_extractor(config)(audio)


def warm_up(config: FeatureConfig) -> None:
    """Build filterbanks and exercise every code path once (call in DoFn.setup)."""
    rng = np.random.default_rng(0)
    make_extractor(config)(rng.standard_normal(config.n_fft * 2).astype(np.float32) * 0.1)
