"""RAVDESS: the Ryerson Audio-Visual Database of Emotional Speech and Song.

Layout: ``Actor_NN/MM-VV-EE-II-SS-RR-AA.wav`` (the speech and song zips each unpack to
``Actor_01`` ... ``Actor_24``; they may sit side by side under one root).

- MM modality: 01 audio-video, 02 video-only, 03 audio-only. Only 03 has a .wav, so
  any other modality is rejected.
- VV vocal channel: 01 speech, 02 song.
- EE emotion: 01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful,
  07 disgust, 08 surprised. Song has no disgust or surprised.
- II intensity: 01 normal, 02 strong; neutral has no strong intensity.
- SS statement: 01 "Kids are talking by the door", 02 "Dogs are sitting by the door".
- RR repetition: 01 or 02.
- AA actor: 01-24; odd actors are male, even actors female. Actor 18 has no song.

Speech: 1440 files (24 actors x 60), 48 kHz, 16-bit; a few files are stereo and real
files carry extra RIFF chunks (LIST, bext, ...), which is the decoder's concern.
Licence CC BY-NC-SA 4.0. Livingstone & Russo (2018), PLoS ONE 13(5): e0196391;
Zenodo record 1188976 (``ser download ravdess DIR`` fetches the speech archive).
"""

from __future__ import annotations

import re
from pathlib import Path

from ser_core.corpora.base import CorpusListing, list_corpus, make_utterance, require_root
from ser_core.labels import RAVDESS_EMOTIONS
from ser_core.records import Utterance

CORPUS = "ravdess"
CHANNELS = {"01": "speech", "02": "song"}
INTENSITIES = {"01": "normal", "02": "strong"}
SONG_EMOTIONS = ("01", "02", "03", "04", "05", "06")

_NAME_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_ACTOR_DIR_RE = re.compile(r"^Actor_(\d{2})$")


def parse_name(stem: str) -> dict[str, str]:
    """Parse and validate a RAVDESS file stem; ValueError says which field is wrong."""
    m = _NAME_RE.match(stem)
    if not m:
        raise ValueError("name is not seven two-digit fields MM-VV-EE-II-SS-RR-AA")
    modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
    if modality != "03":
        raise ValueError(f"modality {modality} is not 03 (audio-only)")
    if channel not in CHANNELS:
        raise ValueError(f"vocal channel {channel} is not 01 (speech) or 02 (song)")
    if emotion not in RAVDESS_EMOTIONS:
        raise ValueError(f"emotion code {emotion} is not 01-08")
    if channel == "02" and emotion not in SONG_EMOTIONS:
        raise ValueError(f"emotion {RAVDESS_EMOTIONS[emotion]} does not exist in song")
    if intensity not in INTENSITIES:
        raise ValueError(f"intensity {intensity} is not 01 or 02")
    if emotion == "01" and intensity == "02":
        raise ValueError("neutral has no strong intensity")
    if statement not in ("01", "02"):
        raise ValueError(f"statement {statement} is not 01 or 02")
    if repetition not in ("01", "02"):
        raise ValueError(f"repetition {repetition} is not 01 or 02")
    if not 1 <= int(actor) <= 24:
        raise ValueError(f"actor {actor} is not 01-24")
    if channel == "02" and actor == "18":
        raise ValueError("actor 18 recorded no song")
    return {
        "channel": CHANNELS[channel],
        "emotion_code": emotion,
        "intensity": INTENSITIES[intensity],
        "statement": statement,
        "repetition": repetition,
        "actor": actor,
    }


def prepare_ravdess(
    root: str | Path, *, strict: bool = False, channels: tuple[str, ...] = ("speech", "song"),
    intensities: tuple[str, ...] = ("normal", "strong"),
) -> CorpusListing:
    """List RAVDESS audio-only files under ``root``; ``channels`` picks speech and/or song,
    ``intensities`` normal and/or strong (the strong takes are exaggerated; a model meant
    for ordinary speech may learn from the normal ones only). Files not asked for are
    left out of the listing, not rejected."""
    root_path = require_root(root, CORPUS)
    for option, given, known in (("channels", channels, CHANNELS), ("intensities", intensities, INTENSITIES)):
        unknown = set(given) - set(known.values())
        if unknown or not given:
            raise ValueError(f"ravdess: unknown {option} {sorted(unknown)}; use "
                             f"{' and/or '.join(known.values())}")

    def describe(path: Path) -> Utterance | None:
        fields = parse_name(path.stem)
        actor = fields["actor"]
        folder = _ACTOR_DIR_RE.match(path.parent.name)
        if folder and folder.group(1) != actor:
            raise ValueError(f"actor {actor} in the name but folder {path.parent.name}")
        if fields["channel"] not in channels or fields["intensity"] not in intensities:
            return None  # deliberately not asked for; not a naming problem
        return make_utterance(
            CORPUS, path.stem, path,
            speaker=actor,
            gender="male" if int(actor) % 2 else "female",
            emotion=RAVDESS_EMOTIONS[fields["emotion_code"]],
            custom={
                "vocal_channel": fields["channel"],
                "intensity": fields["intensity"],
                "statement": fields["statement"],
                "repetition": fields["repetition"],
                "raw_label": fields["emotion_code"],
            },
        )

    return list_corpus(CORPUS, root_path, describe, strict=strict)
