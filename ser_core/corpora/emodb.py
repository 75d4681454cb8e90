"""EmoDB: the Berlin Database of Emotional Speech.

Layout: ``wav/SSTTTEV.wav``, e.g. ``wav/03a01Fa.wav`` (the release also holds ``silb``,
``lablaut`` ... annotation folders, which hold no audio).

- SS speaker: 03 08 09 10 11 12 13 14 15 16; 03 10 11 12 15 are male, the others female.
- TTT text: a01 a02 a04 a05 a07 (short sentences), b01 b02 b03 b09 b10 (longer ones).
- E emotion (German initial): W Wut (anger), L Langeweile (boredom), E Ekel (disgust),
  A Angst (fear), F Freude (happiness), T Trauer (sadness), N neutral
  (:data:`ser_core.labels.EMODB_EMOTIONS`). Boredom has no RAVDESS equivalent and stays
  its own label.
- V version: a, b, c ... when a speaker recorded the same text and emotion more than once.

535 clips, 16 kHz mono. Free for research use. Burkhardt et al. (2005), Interspeech;
http://emodb.bilderbar.info/
"""

from __future__ import annotations

import re
from pathlib import Path

from ser_core.corpora.base import CorpusListing, list_corpus, make_utterance, require_root
from ser_core.labels import EMODB_EMOTIONS
from ser_core.records import Utterance

CORPUS = "emodb"
SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
MALE_SPEAKERS = ("03", "10", "11", "12", "15")
TEXTS = ("a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10")

_NAME_RE = re.compile(r"^(\d{2})([a-z]\d{2})([A-Z])([a-z])$")


def parse_name(stem: str) -> dict[str, str]:
    """Parse and validate an EmoDB file stem; ValueError says which field is wrong."""
    m = _NAME_RE.match(stem)
    if not m:
        raise ValueError("name is not SPEAKER(2 digits) TEXT(a01) EMOTION(letter) VERSION(letter)")
    speaker, text, emotion, version = m.groups()
    if speaker not in SPEAKERS:
        raise ValueError(f"speaker {speaker} is not one of {' '.join(SPEAKERS)}")
    if text not in TEXTS:
        raise ValueError(f"text code {text} is not one of {' '.join(TEXTS)}")
    if emotion not in EMODB_EMOTIONS:
        raise ValueError(f"emotion letter {emotion} is not one of {' '.join(EMODB_EMOTIONS)}")
    return {"speaker": speaker, "text": text, "emotion_code": emotion, "version": version}


def prepare_emodb(root: str | Path, *, strict: bool = False) -> CorpusListing:
    """List EmoDB clips under ``root``."""
    root_path = require_root(root, CORPUS)

    def describe(path: Path) -> Utterance:
        fields = parse_name(path.stem)
        speaker = fields["speaker"]
        return make_utterance(
            CORPUS, path.stem, path,
            speaker=speaker,
            gender="male" if speaker in MALE_SPEAKERS else "female",
            emotion=EMODB_EMOTIONS[fields["emotion_code"]],
            custom={
                "text": fields["text"],
                "version": fields["version"],
                "raw_label": fields["emotion_code"],
            },
        )

    return list_corpus(CORPUS, root_path, describe, strict=strict)
