"""CREMA-D: the Crowd-sourced Emotional Multimodal Actors Dataset.

Layout: ``AudioWAV/AAAA_SSS_EEE_LL.wav`` with ``VideoDemographics.csv`` beside
``AudioWAV`` at the top of the release (the GitHub repository's layout). The repository
also holds ``AudioMP3`` copies of the same clips: each clip is listed once, from its WAV
(a copy in another format is counted in the listing's ``format_copies``, never listed).

- AAAA actor: 1001-1091 (91 actors: 48 male, 43 female).
- SSS sentence: IEO "It's eleven o'clock", TIE "That is exactly what happened",
  IOM "I'm on my way to the meeting", IWW "I wonder what this is about",
  TAI "The airplane is almost full", MTI "Maybe tomorrow it will be cold",
  IWL "I would like a new alarm clock", ITH "I think I have a doctor's appointment",
  DFA "Don't forget a jacket", ITS "I think I've seen this before",
  TSI "The surface is slick", WSI "We'll stop in a couple of minutes".
- EEE emotion: ANG, DIS, FEA, HAP, NEU, SAD (:data:`ser_core.labels.CREMA_D_EMOTIONS`).
- LL level: LO (low), MD (medium), HI (high), or XX (unspecified); only IEO was
  recorded at graded levels.

``VideoDemographics.csv`` has columns ActorID, Age, Sex (Male/Female), Race,
Ethnicity. When it is found (option ``demographics``, else ``ROOT/VideoDemographics.csv``)
gender comes from Sex; without it every speaker is ``unknown``, since actor numbers do
not encode gender. 7,442 clips, 16 kHz mono. One clip (1076_MTI_SAD_XX) is known to be
silent, which is the decoder's concern, not the listing's.

Licence: Open Database License (ODbL) for the database, Database Contents License for
the contents. Cao et al. (2014), IEEE Trans. Affective Computing 5(4):377-390;
https://github.com/CheyneyComputerScience/CREMA-D
"""

from __future__ import annotations

import re
from pathlib import Path

from ser_core.corpora.base import (
    CorpusError, CorpusListing, list_corpus, make_utterance, normalise_gender, read_csv_rows,
    require_root,
)
from ser_core.labels import CREMA_D_EMOTIONS
from ser_core.records import Utterance

CORPUS = "crema_d"
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
LEVELS = ("LO", "MD", "HI", "XX")  # low, medium, high, unspecified
ACTORS = range(1001, 1092)
DEMOGRAPHICS_FILE = "VideoDemographics.csv"

_NAME_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def parse_name(stem: str) -> dict[str, str]:
    """Parse and validate a CREMA-D file stem; ValueError says which field is wrong."""
    m = _NAME_RE.match(stem)
    if not m:
        raise ValueError("name is not ACTOR_SENTENCE_EMOTION_LEVEL (e.g. 1001_DFA_ANG_XX)")
    actor, sentence, emotion, level = m.groups()
    if int(actor) not in ACTORS:
        raise ValueError(f"actor {actor} is not 1001-1091")
    if sentence not in SENTENCES:
        raise ValueError(f"sentence code {sentence} is not one of {', '.join(SENTENCES)}")
    if emotion not in CREMA_D_EMOTIONS:
        raise ValueError(f"emotion code {emotion} is not one of {', '.join(CREMA_D_EMOTIONS)}")
    if level not in LEVELS:
        raise ValueError(f"level {level} is not one of {', '.join(LEVELS)}")
    return {"actor": actor, "sentence": sentence, "emotion_code": emotion, "level": level}


def read_demographics(path: Path) -> dict[str, str]:
    """Actor id -> gender from ``VideoDemographics.csv``; a bad row is an error naming its line.

    Unlike a bad clip name, a bad demographics row would silently mislabel every clip of
    that actor, so it stops the listing instead of being skipped.
    """
    genders: dict[str, str] = {}
    for row in read_csv_rows(path, ("actorid", "sex"), CORPUS):
        actor = row.fields["actorid"]
        try:
            if row.problem:
                raise ValueError(row.problem)
            if not actor.isdigit() or int(actor) not in ACTORS:
                raise ValueError(f"ActorID {actor!r} is not 1001-1091")
            genders[actor] = normalise_gender(row.fields["sex"])
        except ValueError as exc:
            raise CorpusError(f"{CORPUS}: {path} line {row.line}: {exc}") from exc
    return genders


def prepare_crema_d(
    root: str | Path, *, strict: bool = False, demographics: str | Path | None = None
) -> CorpusListing:
    """List CREMA-D clips under ``root``; ``demographics`` overrides where VideoDemographics.csv is."""
    root_path = require_root(root, CORPUS)
    if demographics is not None:
        csv_path = Path(demographics).expanduser()
        if not csv_path.is_file():
            raise CorpusError(f"{CORPUS}: demographics file not found: {csv_path}")
    else:
        csv_path = root_path / DEMOGRAPHICS_FILE
    genders = read_demographics(csv_path) if csv_path.is_file() else {}

    def describe(path: Path) -> Utterance:
        fields = parse_name(path.stem)
        actor = fields["actor"]
        return make_utterance(
            CORPUS, path.stem, path,
            speaker=actor,
            gender=genders.get(actor, "unknown"),
            emotion=CREMA_D_EMOTIONS[fields["emotion_code"]],
            custom={
                "sentence": fields["sentence"],
                "level": fields["level"],
                "raw_label": fields["emotion_code"],
            },
        )

    return list_corpus(CORPUS, root_path, describe, strict=strict)
