"""A source-filter speech-like synthesiser: the voice behind the embedded demo data.

Why: a fresh clone has no corpus, yet the pipeline must train and label something real.
The demo audio therefore carries emotion through the cues real speech uses (F0 level,
range and contour, speaking rate, energy, spectral tilt, jitter, shimmer, breathiness,
tremor, pauses) so a model can learn it, but not trivially, and less well across
speakers than within one (speakers differ in their own voice AND in how they act each
emotion).

Model: a Rosenberg glottal-flow-derivative pulse train (F0 contour, jitter, shimmer,
open quotient) plus pulsed aspiration noise, shaped by a cascade of five formant
resonances whose lower three glide between per-syllable vowel targets (scaled by the
speaker's vocal-tract length); consonants add closures, bursts, frication and murmur.
The time-varying filter is applied frame by frame in the STFT domain (Hann
analysis/synthesis, 75 % overlap-add), so one utterance costs a handful of vectorised
array operations.

Two steps: ``plan_*`` draws every random choice (timing, contours, per-utterance
variation) into a small :class:`Plan`; :func:`render` turns a plan into samples at any
rate with the same spectra below Nyquist. All randomness comes from numpy Generators
seeded from (seed, speaker, utterance fields), so any single file regenerates exactly.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, replace
from typing import NamedTuple, Sequence

import numpy as np

from ser_core.demo.telephone import band_response
from ser_core.labels import RAVDESS_LABELS

EMOTIONS: tuple[str, ...] = RAVDESS_LABELS
INTENSITIES: tuple[str, ...] = ("normal", "strong")
STRONG_GAIN = 1.7  # strong intensity exaggerates the deviation from neutral by this factor
DOMAINS = {"corpus": 0, "archive": 1}  # separate seed spaces: archive voices are new people
CONTROL_S = 0.005  # F0 contour grid
FRICATION_DB = -8.0  # consonant noise level relative to the mean vowel level
CLIP_PAD_TO_S = (2.9, 3.5)  # RAVDESS-like clips are padded to at least U(2.9, 3.5) s ...
CLIP_MAX_S = 4.8  # ... and at most 4.8 s where the speech allows
F0_CEILING_ST, F0_FLOOR_ST = 14.0, 7.0  # F0 saturates this far above/below the speaker's base
MAX_RATE_CHANGE = 0.45  # and the syllable rate within exp(+-0.45) of it


@dataclass(frozen=True)
class EmotionProfile:
    """How far one emotion moves speech away from the speaker's neutral voice."""

    pitch: float = 0.0    # F0 level, semitones
    range: float = 0.0    # pitch-accent size, log ratio
    rate: float = 0.0     # syllable rate, log ratio
    energy: float = 0.0   # loudness, dB (sets the peak level)
    tilt: float = 0.0     # spectral slope above 500 Hz, dB/octave (+ brighter)
    jitter: float = 0.0   # period-to-period F0 perturbation, fraction
    shimmer: float = 0.0  # period-to-period amplitude perturbation, fraction
    breath: float = 0.0   # aspiration noise, dB
    tremor: float = 0.0   # 5-7 Hz F0 modulation depth, semitones
    final: float = 0.0    # phrase-final F0 movement, semitones (+ rising)
    formant: float = 0.0  # formant scale, log ratio (spread lips, smiling +)
    pause: float = 0.0    # hesitation: pause probability and length, log ratio

    def as_array(self) -> np.ndarray:
        return np.array(astuple(self), dtype=float)

    @classmethod
    def from_array(cls, values: np.ndarray) -> "EmotionProfile":
        return cls(*(float(v) for v in values))


# Direction and rough size of each emotion's cues, after the vocal-affect literature
# (Scherer 1986; Juslin & Laukka 2003). Neutral is the origin.
EMOTION_PROFILES: dict[str, EmotionProfile] = {
    "neutral": EmotionProfile(),
    "calm": EmotionProfile(pitch=-1.0, range=-0.35, rate=-0.15, energy=-3.0, tilt=-1.5,
                           breath=4.0, final=-1.0, formant=-0.01, pause=0.2),
    "happy": EmotionProfile(pitch=3.0, range=0.35, rate=0.10, energy=3.0, tilt=1.5,
                            shimmer=-0.005, final=1.0, formant=0.04),
    "sad": EmotionProfile(pitch=-2.0, range=-0.45, rate=-0.30, energy=-5.0, tilt=-3.0,
                          jitter=0.004, shimmer=0.02, breath=6.0, tremor=0.25, final=-2.0,
                          formant=-0.03, pause=0.6),
    "angry": EmotionProfile(pitch=2.5, range=0.25, rate=0.15, energy=7.0, tilt=4.0,
                            jitter=0.004, shimmer=0.015, breath=-3.0, final=-3.0, formant=0.03),
    "fearful": EmotionProfile(pitch=5.0, range=-0.15, rate=0.22, energy=0.0, tilt=1.0,
                              jitter=0.010, shimmer=0.03, breath=4.0, tremor=0.8, final=1.5,
                              formant=0.01, pause=0.4),
    "disgust": EmotionProfile(pitch=-1.5, range=0.10, rate=-0.25, energy=1.0, tilt=-0.5,
                              jitter=0.012, shimmer=0.03, breath=2.0, final=-4.0,
                              formant=-0.02, pause=0.5),
    "surprised": EmotionProfile(pitch=4.0, range=0.45, rate=0.05, energy=3.0, tilt=1.5,
                                breath=2.0, final=4.5, formant=0.02),
}
# Typical size of each cue: the unit for speaker styles and per-utterance variation.
PROFILE_SCALE = EmotionProfile(pitch=3.0, range=0.4, rate=0.15, energy=4.0, tilt=2.0,
                               jitter=0.006, shimmer=0.02, breath=4.0, tremor=0.4, final=3.0,
                               formant=0.03, pause=0.3)
STYLE_SPREAD = 0.60      # per-speaker perturbation of each emotion, in PROFILE_SCALE units
UTTERANCE_SPREAD = 0.35  # per-utterance variation, in PROFILE_SCALE units


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: neutral voice settings and a personal way of acting emotions."""

    speaker_index: int
    gender: str
    f0_hz: float
    formant_scale: float
    rate_sps: float        # syllables per second, neutral
    accent_st: float       # pitch-accent size, neutral, semitones
    tilt_db: float
    open_quotient: float
    jitter: float
    shimmer: float
    breath_db: float
    expressiveness: float  # gain on the shared emotion profiles
    style: tuple[tuple[float, ...], ...]  # per-emotion personal deviation, rows follow EMOTIONS

    @classmethod
    def create(cls, seed: int, speaker_index: int, gender: str, domain: str = "corpus") -> "Voice":
        """The voice of speaker ``speaker_index``; the same arguments give the same voice."""
        if gender not in ("male", "female"):
            raise ValueError(f"gender must be male or female, got {gender!r}")
        rng = np.random.default_rng([seed, DOMAINS[domain], 0, speaker_index])
        male = gender == "male"
        f0 = np.exp(rng.uniform(np.log(85.0), np.log(150.0))) if male else \
            np.exp(rng.uniform(np.log(165.0), np.log(255.0)))
        scale = PROFILE_SCALE.as_array()
        style = rng.normal(0.0, STYLE_SPREAD, (len(EMOTIONS), len(scale))) * scale
        style[EMOTIONS.index("neutral")] = 0.0
        return cls(
            speaker_index=speaker_index,
            gender=gender,
            f0_hz=float(f0),
            formant_scale=float(rng.normal(1.0 if male else 1.15, 0.04)),
            rate_sps=float(rng.uniform(3.8, 5.4)),
            accent_st=float(rng.uniform(2.0, 5.0)),
            tilt_db=float(rng.normal(0.0, 1.2)),
            open_quotient=float(rng.uniform(0.5, 0.6) if male else rng.uniform(0.58, 0.7)),
            jitter=float(rng.uniform(0.003, 0.010)),
            shimmer=float(rng.uniform(0.02, 0.06)),
            breath_db=float(rng.uniform(-30.0, -22.0) if male else rng.uniform(-26.0, -18.0)),
            expressiveness=float(np.exp(rng.normal(0.0, 0.25))),
            style=tuple(tuple(float(v) for v in row) for row in style),
        )

    def deviation(self, emotion: str, intensity: str) -> np.ndarray:
        """This speaker's cue deviation from neutral for an emotion and intensity."""
        if emotion not in EMOTION_PROFILES:
            raise ValueError(f"unknown emotion {emotion!r}; known: {', '.join(EMOTIONS)}")
        if intensity not in INTENSITIES:
            raise ValueError(f"intensity must be one of {INTENSITIES}, got {intensity!r}")
        gain = STRONG_GAIN if intensity == "strong" else 1.0
        personal = np.array(self.style[EMOTIONS.index(emotion)])
        return gain * (self.expressiveness * EMOTION_PROFILES[emotion].as_array() + personal)


class Syllable(NamedTuple):
    onset: str   # consonant or ""
    vowels: str  # one vowel, or two separated by a space (a diphthong)
    coda: str = ""
    stressed: bool = False


class Consonant(NamedTuple):
    voicing: float  # murmur level relative to a vowel
    noise: float    # frication/burst level
    band: tuple[float, float]  # noise band, Hz
    closure: float = 0.0       # leading fraction that is a stop closure
    formants: tuple[float, float, float] | None = None  # nasal/liquid targets


# Adult-male vowel formants F1-F3, Hz (Peterson & Barney 1952; Hillenbrand et al. 1995).
VOWELS: dict[str, tuple[float, float, float]] = {
    "iy": (270, 2290, 3010), "ih": (390, 1990, 2550), "eh": (530, 1840, 2480),
    "ae": (660, 1720, 2410), "aa": (730, 1090, 2440), "ao": (570, 840, 2410),
    "uh": (440, 1020, 2240), "uw": (300, 870, 2240), "ah": (640, 1190, 2390),
    "er": (490, 1350, 1690), "ax": (500, 1500, 2500),
}
CONSONANTS: dict[str, Consonant] = {
    "p": Consonant(0.0, 0.5, (500, 2500), 0.65), "t": Consonant(0.0, 0.6, (2500, 7000), 0.65),
    "k": Consonant(0.0, 0.6, (1200, 3500), 0.65), "b": Consonant(0.15, 0.2, (400, 2000), 0.65),
    "d": Consonant(0.15, 0.25, (2500, 6000), 0.65), "g": Consonant(0.15, 0.25, (1000, 3000), 0.65),
    "s": Consonant(0.0, 0.45, (4000, 9000)), "z": Consonant(0.3, 0.3, (4000, 9000)),
    "sh": Consonant(0.0, 0.45, (2000, 6000)), "f": Consonant(0.0, 0.15, (1000, 8000)),
    "th": Consonant(0.0, 0.12, (1500, 8000)), "dh": Consonant(0.35, 0.12, (1500, 7000)),
    "v": Consonant(0.4, 0.12, (1000, 6000)), "h": Consonant(0.0, 0.2, (500, 4000)),
    "m": Consonant(0.4, 0.0, (0, 0), 0.0, (250, 1100, 2300)),
    "n": Consonant(0.4, 0.0, (0, 0), 0.0, (250, 1600, 2500)),
    "ng": Consonant(0.4, 0.0, (0, 0), 0.0, (250, 2000, 2600)),
    "l": Consonant(0.6, 0.0, (0, 0), 0.0, (360, 1000, 2500)),
    "r": Consonant(0.6, 0.0, (0, 0), 0.0, (420, 1200, 1600)),
    "w": Consonant(0.6, 0.0, (0, 0), 0.0, (300, 700, 2200)),
}
CODAS = ("t", "k", "d", "n", "m", "ng", "s", "z", "r", "l")

# RAVDESS statement 01 "Kids are talking by the door", 02 "Dogs are sitting by the door".
STATEMENTS: dict[int, tuple[Syllable, ...]] = {
    1: (Syllable("k", "ih", "z", True), Syllable("", "aa", "r"), Syllable("t", "ao", "k", True),
        Syllable("", "ih", "ng"), Syllable("b", "aa ih"), Syllable("dh", "ax"),
        Syllable("d", "ao er", "", True)),
    2: (Syllable("d", "ao", "z", True), Syllable("", "aa", "r"), Syllable("s", "ih", "t", True),
        Syllable("t", "ih", "ng"), Syllable("b", "aa ih"), Syllable("dh", "ax"),
        Syllable("d", "ao er", "", True)),
}


@dataclass(frozen=True, eq=False)
class Plan:
    """Everything random about one utterance, decided; :func:`render` makes the samples."""

    duration_s: float
    f0_hz: np.ndarray            # F0 on the CONTROL_S grid
    voicing: np.ndarray          # (2, K) breakpoints: time, level
    noise: np.ndarray            # (2, K) breakpoints: time, level
    formants: np.ndarray         # (4, K) breakpoints: time, F1, F2, F3 (unscaled)
    bands: np.ndarray            # (4, M) consonant noise intervals: start, end, low, high
    formant_scale: float
    open_quotient: float
    tilt_db: float
    jitter: float
    shimmer: float
    breath_db: float
    peak_db: float
    noise_floor_db: float | None
    noise_seed: int


def utterance_rng(seed: int, voice: Voice, emotion: str, intensity: str,
                  statement: int, repetition: int) -> np.random.Generator:
    """The Generator for one RAVDESS-style utterance, independent of every other one."""
    return np.random.default_rng([seed, DOMAINS["corpus"], 1, voice.speaker_index,
                                  EMOTIONS.index(emotion), INTENSITIES.index(intensity),
                                  statement, repetition])


def plan_utterance(voice: Voice, emotion: str, intensity: str, statement: int,
                   rng: np.random.Generator) -> Plan:
    """One RAVDESS-like clip: 0.4-0.9 s lead, the statement, a tail (at least 0.3 s) that
    brings the clip to about 3-4.8 s, and a low noise floor throughout."""
    if statement not in STATEMENTS:
        raise ValueError(f"statement must be 1 or 2, got {statement!r}")
    d = _utterance_deviation(voice, emotion, intensity, rng)
    hesitate = rng.random() < np.clip(0.12 * np.exp(2.0 * d.pause), 0.0, 0.8)
    phrases = [STATEMENTS[statement][:4], STATEMENTS[statement][4:]] if hesitate \
        else [STATEMENTS[statement]]
    return _plan(voice, d, phrases, rng, lead_s=rng.uniform(0.4, 0.9), tail_s=rng.uniform(0.5, 1.0),
                 noise_floor_db=float(rng.uniform(-68.0, -60.0)),
                 total_s=(rng.uniform(*CLIP_PAD_TO_S), CLIP_MAX_S))


def plan_turn(voice: Voice, emotion: str, intensity: str, max_duration_s: float,
              rng: np.random.Generator) -> Plan:
    """A conversational turn: phrases of random syllables filling at most ``max_duration_s``."""
    d = _utterance_deviation(voice, emotion, intensity, rng)
    budget = max_duration_s - 0.1
    phrases: list[list[Syllable]] = []
    used = 0.0
    vowels, onsets = list(VOWELS), list(CONSONANTS)
    while True:
        phrase = [Syllable(str(rng.choice(onsets)) if rng.random() < 0.8 else "",
                           str(rng.choice(vowels)),
                           str(rng.choice(CODAS)) if rng.random() < 0.35 else "",
                           bool(rng.random() < 0.35))
                  for _ in range(int(rng.integers(3, 10)))]
        cost = len(phrase) * 1.0 / (voice.rate_sps * np.exp(d.rate)) + 0.35
        if used + cost > budget and phrases:
            break
        keep = max(1, int(len(phrase) * min(1.0, (budget - used) / cost)))
        phrases.append(phrase[:keep])
        used += cost
        if keep < len(phrase):
            break
    while True:  # the estimate above is rough: drop syllables until the turn fits
        plan = _plan(voice, d, phrases, rng, lead_s=0.05, tail_s=0.05, noise_floor_db=None)
        if plan.duration_s <= max_duration_s or phrases == [phrases[0][:1]]:
            return plan
        phrases = [p for p in phrases[:-1] + [phrases[-1][:-1]] if p]


def synthesize(voice: Voice, emotion: str, intensity: str, statement: int,
               sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One RAVDESS-like clip, float32 mono in [-1, 1]."""
    return render(plan_utterance(voice, emotion, intensity, statement, rng), sample_rate)


def _utterance_deviation(voice: Voice, emotion: str, intensity: str,
                         rng: np.random.Generator) -> EmotionProfile:
    scale = PROFILE_SCALE.as_array()
    d = EmotionProfile.from_array(
        voice.deviation(emotion, intensity) + rng.normal(0.0, UTTERANCE_SPREAD, scale.shape) * scale)
    return replace(d, rate=MAX_RATE_CHANGE * float(np.tanh(d.rate / MAX_RATE_CHANGE)))


def _plan(voice: Voice, d: EmotionProfile, phrases: Sequence[Sequence[Syllable]],
          rng: np.random.Generator,
          lead_s: float, tail_s: float, noise_floor_db: float | None,
          total_s: tuple[float, float] | None = None) -> Plan:
    """Lay syllables out in time and draw the prosody: the common core of every plan."""
    beat = 1.0 / (voice.rate_sps * np.exp(d.rate))
    accent = voice.accent_st * np.exp(d.range)
    voicing, noise = [(0.0, 0.0), (lead_s, 0.0)], [(0.0, 0.0), (lead_s, 0.0)]
    formants: list[tuple[float, ...]] = []
    bands: list[tuple[float, ...]] = []
    accents: list[tuple[float, float, float]] = []   # centre, width, height (semitones)
    phrase_spans: list[tuple[float, float, float]] = []  # start, end, final-vowel start
    t = lead_s

    def segment(duration: float, level: float, noise_level: float, ramp: float) -> float:
        r = min(ramp, duration / 3)
        voicing.extend([(t + r, level), (t + duration - r, level)])
        noise.extend([(t + r, noise_level), (t + duration - r, noise_level)])
        return t + duration

    for p, phrase in enumerate(phrases):
        start, last_vowel = t, t
        for i, syl in enumerate(phrase):
            decline = 1.0 - 0.35 * i / max(1, len(phrase) - 1)
            stress = 1.4 if syl.stressed else 1.0
            for part, name in (("onset", syl.onset), ("nucleus", syl.vowels), ("coda", syl.coda)):
                if not name:
                    continue
                wiggle = np.exp(rng.normal(0.0, 0.15))
                if part == "nucleus":
                    final = 1.5 if i == len(phrase) - 1 else 1.0
                    dur = beat * (0.75 if syl.stressed else 0.5) * wiggle * final
                    targets = [np.array(VOWELS[v]) * np.exp(rng.normal(0.0, 0.04, 3))
                               for v in name.split()]
                    formants.append((t + 0.25 * dur, *targets[0]))
                    formants.append((t + 0.75 * dur, *targets[-1]))
                    accents.append((t + 0.5 * dur, 0.45 * dur + 0.03,
                                    accent * (1.0 if syl.stressed else 0.25) * np.exp(rng.normal(0, 0.2))))
                    last_vowel = t
                    t = segment(dur, stress * decline, 0.0, 0.012)
                    continue
                c = CONSONANTS[name]
                dur = beat * (0.36 if c.noise > c.voicing else 0.28) * wiggle
                if c.formants:
                    formants.append((t + 0.5 * dur, *c.formants))
                if c.closure:
                    t = segment(dur * c.closure, c.voicing * decline, 0.0, 0.005)
                    dur *= 1.0 - c.closure
                if c.noise:
                    bands.append((t, t + dur, *c.band))
                t = segment(dur, c.voicing * decline if not c.closure else 0.0,
                            c.noise * stress * decline, 0.003 if c.closure else 0.015)
        phrase_spans.append((start, t, last_vowel))
        if p < len(phrases) - 1:
            pause = beat * rng.uniform(0.8, 2.0) * np.exp(0.5 * d.pause)
            t = segment(float(np.clip(pause, 0.1, 0.7)), 0.0, 0.0, 0.01)
    duration = t + tail_s
    if total_s is not None:
        duration = max(t + 0.3, float(np.clip(duration, *total_s)))
    voicing.extend([(t, 0.0), (duration, 0.0)])
    noise.extend([(t, 0.0), (duration, 0.0)])

    grid = np.arange(0.0, duration + CONTROL_S, CONTROL_S)
    semitones = np.full_like(grid, d.pitch)
    for centre, width, height in accents:
        semitones += height * np.exp(-0.5 * ((grid - centre) / width) ** 2)
    for start, end, final_start in phrase_spans:
        inside = (grid >= start) & (grid < end)
        semitones[inside] -= 2.0 * (grid[inside] - start) / max(end - start, 1e-3)  # declination
        ramp = np.clip((grid - final_start) / max(end - final_start, 1e-3), 0.0, 1.0)
        semitones += (d.final - 1.5) * ramp * ramp * (3 - 2 * ramp) * (grid < end + 0.1)
    drift = np.convolve(rng.normal(0.0, 1.0, grid.size + 40), np.hanning(41), "valid")
    semitones += 0.4 * drift / (drift.std() + 1e-9)
    semitones += max(d.tremor, 0.0) * np.sin(2 * np.pi * rng.uniform(5.0, 7.0) * grid
                                             + rng.uniform(0, 2 * np.pi))
    limit = np.where(semitones > 0, F0_CEILING_ST, F0_FLOOR_ST)  # voices saturate softly
    f0 = np.clip(voice.f0_hz * 2.0 ** (limit * np.tanh(semitones / limit) / 12.0), 60.0, 600.0)

    return Plan(
        duration_s=float(duration),
        f0_hz=f0,
        voicing=np.array(voicing).T,
        noise=np.array(noise).T,
        formants=np.array(formants).T,
        bands=np.array(bands).T.reshape(4, -1),
        formant_scale=voice.formant_scale * float(np.exp(d.formant)),
        open_quotient=float(np.clip(voice.open_quotient - 0.02 * d.tilt + 0.01 * d.breath, 0.35, 0.85)),
        tilt_db=voice.tilt_db + d.tilt,
        jitter=max(0.0, voice.jitter + d.jitter),
        shimmer=max(0.0, voice.shimmer + d.shimmer),
        breath_db=voice.breath_db + d.breath,
        peak_db=float(np.clip(-7.0 + 0.45 * d.energy, -12.0, -3.0)),
        noise_floor_db=noise_floor_db,
        noise_seed=int(rng.integers(2**63)),
    )


def render(plan: Plan, sample_rate: int, band: tuple[float, float] | None = None) -> np.ndarray:
    """Samples for a plan: float32 mono, peak at ``plan.peak_db`` dBFS, never clipping.

    ``band`` (low, high) Hz applies a telephone-like band-pass before normalisation.
    """
    sr = int(sample_rate)
    n = int(round(plan.duration_s * sr))
    rng = np.random.default_rng(plan.noise_seed)
    t = np.arange(n) / sr

    # Source: a glottal pulse per period, with jitter (F0) and shimmer (amplitude) drawn per period.
    f0 = np.interp(t, np.arange(plan.f0_hz.size) * CONTROL_S, plan.f0_hz)
    steady = (np.cumsum(f0) / sr).astype(np.int64)
    jitter = 1.0 + plan.jitter * rng.standard_normal(steady[-1] + 1)
    phase = np.cumsum(f0 * jitter[steady]) / sr
    index = phase.astype(np.int64)
    flow = _rosenberg(phase - index, plan.open_quotient)
    shimmer = (1.0 + plan.shimmer * rng.standard_normal(index[-1] + 1)).astype(np.float32)
    voicing = np.interp(t, *plan.voicing).astype(np.float32)
    signals = np.empty((3, n), dtype=np.float32)
    signals[0, 0] = 0.0
    np.subtract(flow[1:], flow[:-1], out=signals[0, 1:])
    signals[0] *= np.float32(sr / 1000.0) * shimmer[index] * voicing
    # Noise is scaled by sqrt(rate) so its spectral density does not depend on the rate.
    signals[1:] = rng.standard_normal((2, n), dtype=np.float32) * np.float32(np.sqrt(sr / 16000.0))
    signals[1] *= (0.25 + flow) * voicing  # aspiration, pulsed by the glottal flow
    signals[2] *= np.interp(t, *plan.noise).astype(np.float32)  # frication and bursts

    n_fft = 1 << int(np.ceil(np.log2(0.02 * sr)))
    hop = n_fft // 4
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    spectra = _stft(signals, n_fft, hop, window)  # (3, F, B) complex64
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr).astype(np.float32)
    centres = (np.arange(spectra.shape[1]) * hop + n_fft // 2 - n_fft) / sr

    tilt = ((1.0 + (freqs / 500.0) ** 2) ** np.float32(plan.tilt_db / 12.04)).astype(np.float32)
    tract = _tract(plan, centres, freqs) * tilt  # (F, B)
    voiced = spectra[0] * tract
    highpass = (1.0 / (1.0 + (1000.0 / np.maximum(freqs, 1.0)) ** 2)).astype(np.float32)
    breath = spectra[1] * (tract * highpass)
    active = np.interp(centres, *plan.voicing) > 0.5
    ref = _mean_power(voiced, active)
    voiced += breath * np.float32(np.sqrt(ref * 10 ** (plan.breath_db / 10) / _mean_power(breath, active)))
    fric_active = np.interp(centres, *plan.noise) > 0.1
    if fric_active.any():  # consonant noise sits FRICATION_DB below the mean vowel level
        fric = spectra[2] * _bands(plan.bands, centres, freqs, sr)
        voiced += fric * np.float32(np.sqrt(ref * 10 ** (FRICATION_DB / 10) / _mean_power(fric, fric_active)))
    if band is not None:
        voiced *= band_response(freqs, band)
    x = _istft(voiced, n_fft, hop, window, n)

    x *= np.float32(10 ** (plan.peak_db / 20) / (np.max(np.abs(x)) + 1e-12))
    if plan.noise_floor_db is not None:
        x += np.float32(10 ** (plan.noise_floor_db / 20)) * rng.standard_normal(n, dtype=np.float32)
    return np.clip(np.nan_to_num(x), -1.0, 1.0).astype(np.float32)


_PULSE_GRID = np.linspace(0.0, 1.0, 2049)


def _rosenberg(frac: np.ndarray, open_quotient: float) -> np.ndarray:
    """Rosenberg (1971) glottal flow over one period (opening 65 %, closing 35 % of the
    open phase), looked up from a fine table: much cheaper than evaluating it per sample."""
    rise, fall = open_quotient * 0.65, open_quotient * 0.35
    g = _PULSE_GRID
    table = np.where(g < rise, 0.5 * (1.0 - np.cos(np.pi * g / rise)),
                     np.where(g < rise + fall, np.cos(0.5 * np.pi * (g - rise) / fall), 0.0))
    return np.interp(frac, g, table).astype(np.float32)


def _tract(plan: Plan, centres: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Cascade formant magnitude per frame, |H| = F^2 / |F^2 - f^2 + jBf|: F1-F3 move, F4-F5 fixed."""
    scale = plan.formant_scale
    f = freqs.astype(np.float32)
    f2 = f * f
    log_gain = np.zeros((centres.size, f.size), dtype=np.float32)
    for k, bandwidth in enumerate((70.0, 100.0, 140.0)):
        fk2 = ((np.interp(centres, plan.formants[0], plan.formants[k + 1]) * scale) ** 2)
        fk2 = fk2.astype(np.float32)[:, None]
        log_gain += np.log(fk2) - 0.5 * np.log((fk2 - f2) ** 2 + (np.float32(bandwidth) * f) ** 2)
    fixed = np.zeros_like(f)
    for fk, bandwidth in ((3500.0 * scale, 250.0), (4500.0 * scale, 300.0)):
        fixed += np.log(fk * fk) - 0.5 * np.log((fk * fk - f2) ** 2 + (bandwidth * f) ** 2)
    return np.exp(log_gain + fixed)


def _bands(bands: np.ndarray, centres: np.ndarray, freqs: np.ndarray, sr: int) -> np.ndarray:
    """Per-frame band-pass shape of the consonant noise active at that frame."""
    idx = np.maximum(np.searchsorted(bands[0], centres, side="right") - 1, 0)
    inside = (centres >= bands[0][idx]) & (centres < bands[1][idx] + 0.02)
    low = np.where(inside, bands[2][idx], 1000.0)
    high = np.minimum(np.where(inside, bands[3][idx], 4000.0), 0.45 * sr)[:, None]
    low = np.minimum(low, 0.5 * high[:, 0])[:, None]
    f = np.maximum(freqs, 1.0)[None, :]
    return (1.0 / ((1.0 + (low.astype(np.float32) / f) ** 4)
                   * (1.0 + (f / high.astype(np.float32)) ** 4))).astype(np.float32)


def _mean_power(spectrum: np.ndarray, frames: np.ndarray) -> float:
    chosen = spectrum[frames] if frames.any() else spectrum
    return float(np.mean(np.abs(chosen) ** 2)) + 1e-20


def _stft(x: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> np.ndarray:
    """(..., n) -> (..., frames, bins); padded by n_fft each side so OLA is exact inside."""
    n = x.shape[-1]
    frames = -(-(n + n_fft) // hop) + 1
    padded = np.zeros(x.shape[:-1] + ((frames - 1) * hop + n_fft,), dtype=x.dtype)
    padded[..., n_fft:n_fft + n] = x
    view = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop, :]
    return np.fft.rfft(view * window, axis=-1)


def _istft(spectrum: np.ndarray, n_fft: int, hop: int, window: np.ndarray, n: int) -> np.ndarray:
    """Overlap-add of Hann-windowed frames; with hop n_fft/4 the squared windows sum to 1.5."""
    frames = np.fft.irfft(spectrum, n=n_fft, axis=-1) * window
    count = frames.shape[0]
    out = np.zeros(3 * hop + (-(-count // 4)) * n_fft, dtype=frames.dtype)
    for r in range(4):
        group = frames[r::4].reshape(-1)
        out[r * hop:r * hop + group.size] += group
    return out[n_fft:n_fft + n] / 1.5
