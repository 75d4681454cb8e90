"""SAVEE: the Surrey Audio-Visual Expressed Emotion database (audio only).

Layout: the official release has one folder per speaker, ``AudioData/DC/a01.wav``;
redistributions (Kaggle) flatten it to ``DC_a01.wav``. Both are read, and both give the
same utterance id (``savee:DC_a01``), so a root holding both copies stops with a
duplicate-id error instead of counting every clip twice.

- Speaker: DC, JE, JK, KL, four male native British English speakers, aged 27-31.
- Emotion code: a anger, d disgust, f fear, h happiness, n neutral, sa sadness,
  su surprise (:data:`ser_core.labels.SAVEE_EMOTIONS`).
- Sentence index: 01-15 per emotion (3 common, 2 emotion-specific, 10 generic TIMIT
  sentences); neutral has 01-30 (the common and all emotion-specific sentences).

480 clips (4 speakers x 120), 44.1 kHz mono. Free for research use; obtain it from
the authors. Haq & Jackson (2009), AVSP; http://kahlan.eps.surrey.ac.uk/savee/
"""

from __future__ import annotations

import re
from pathlib import Path

from ser_core.corpora.base import CorpusListing, list_corpus, make_utterance, require_root
from ser_core.labels import SAVEE_EMOTIONS
from ser_core.records import Utterance

CORPUS = "savee"
SPEAKERS = ("DC", "JE", "JK", "KL")
NEUTRAL_SENTENCES = 30
EMOTION_SENTENCES = 15

_NAME_RE = re.compile(r"^(?:([A-Z]{2})_)?([a-z]{1,2})(\d{2})$")


def parse_name(stem: str, folder: str) -> dict[str, str]:
    """Parse a SAVEE stem (``a01`` inside a speaker folder, or ``DC_a01``); ValueError if wrong."""
    m = _NAME_RE.match(stem)
    if not m:
        raise ValueError("name is not EMOTION+NN (a01) in a speaker folder, or SPEAKER_EMOTION+NN (DC_a01)")
    speaker, code, index = m.groups()
    if speaker is None:
        if folder not in SPEAKERS:
            raise ValueError(
                f"no speaker in the name and folder {folder!r} is not one of {', '.join(SPEAKERS)}")
        speaker = folder
    elif speaker not in SPEAKERS:
        raise ValueError(f"speaker {speaker} is not one of {', '.join(SPEAKERS)}")
    elif folder in SPEAKERS and folder != speaker:
        raise ValueError(f"speaker {speaker} in the name but folder {folder}")
    if code not in SAVEE_EMOTIONS:
        raise ValueError(f"emotion code {code!r} is not one of {', '.join(SAVEE_EMOTIONS)}")
    last = NEUTRAL_SENTENCES if code == "n" else EMOTION_SENTENCES
    if not 1 <= int(index) <= last:
        raise ValueError(f"sentence {index} is not 01-{last:02d} for emotion code {code!r}")
    return {"speaker": speaker, "code": code, "sentence": index}


def prepare_savee(root: str | Path, *, strict: bool = False) -> CorpusListing:
    """List SAVEE clips under ``root`` (per-speaker folders or flat names)."""
    root_path = require_root(root, CORPUS)

    def describe(path: Path) -> Utterance:
        fields = parse_name(path.stem, path.parent.name)
        speaker = fields["speaker"]
        return make_utterance(
            CORPUS, f"{speaker}_{fields['code']}{fields['sentence']}", path,
            speaker=speaker,
            gender="male",
            emotion=SAVEE_EMOTIONS[fields["code"]],
            custom={"sentence": fields["sentence"], "raw_label": fields["code"]},
        )

    return list_corpus(CORPUS, root_path, describe, strict=strict)
