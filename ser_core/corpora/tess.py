"""TESS: the Toronto Emotional Speech Set.

Layout: one folder per speaker and emotion, ``<SPK>_<emotion>/<SPK>_<word>_<code>.wav``,
e.g. ``OAF_angry/OAF_back_angry.wav``, ``YAF_pleasant_surprised/YAF_dog_ps.wav``.

- SPK speaker: OAF (older adult female, aged 64) or YAF (younger adult female, aged 26);
  both speakers are female.
- word: one of the 200 NU-6 target words, spoken in the carrier phrase "Say the word _".
- code emotion: angry, disgust, fear, happy, neutral, ps (pleasant surprise), sad
  (:data:`ser_core.labels.TESS_EMOTIONS`).

The released folder names are not uniform (``OAF_Fear``, ``OAF_Pleasant_surprise``,
``OAF_Sad``, ``YAF_fear``, ``YAF_pleasant_surprised``), so the emotion is read from the
file name; a folder shaped like ``<SPK>_<emotion>`` is cross-checked against it
(through :func:`ser_core.labels.normalise_label`) and a disagreement is a rejection.
Files outside such folders are accepted on their names alone. One released file has its
speaker cut short, ``OAF_neutral/OA_bite_neutral.wav``: a name whose speaker is the start
of the one its ``<SPK>_<emotion>`` folder names is read with the folder's speaker (its id
keeps the file's own name, ``tess:OA_bite_neutral``). Some redistributions
(Kaggle) nest two copies of the whole tree; listing their common parent stops with a
duplicate-id error naming both copies: point ROOT at one of them.

2,800 clips (2 speakers x 7 emotions x 200 words), 24,414 Hz mono.
Licence CC BY-NC-ND 4.0. Dupuis & Pichora-Fuller (2010), University of Toronto;
https://doi.org/10.5683/SP2/E8H2MF
"""

from __future__ import annotations

import re
from pathlib import Path

from ser_core.corpora.base import CorpusListing, list_corpus, make_utterance, require_root
from ser_core.labels import TESS_EMOTIONS, normalise_label
from ser_core.records import Utterance

CORPUS = "tess"
SPEAKERS = ("OAF", "YAF")

_NAME_RE = re.compile(rf"^({'|'.join(SPEAKERS)})_(.+)_([^_]+)$", re.IGNORECASE)
_FOLDER_RE = re.compile(rf"^({'|'.join(SPEAKERS)})_(.+)$", re.IGNORECASE)
_SHORT_SPEAKER_RE = re.compile(r"^([A-Z]{1,2})_(.+)_([^_]+)$", re.IGNORECASE)


def parse_name(stem: str, folder: str = "") -> dict[str, str]:
    """Parse and validate a TESS file stem; ValueError says which field is wrong.

    A speaker cut short in the name (``OA_bite_neutral``) is the speaker of the
    ``<SPK>_<emotion>`` ``folder`` when it is the start of that speaker's code.
    """
    m = _NAME_RE.match(stem)
    if m:
        speaker, word, code = m.groups()
    else:
        short, in_folder = _SHORT_SPEAKER_RE.match(stem), _FOLDER_RE.match(folder)
        if not (short and in_folder and in_folder.group(1).upper().startswith(short.group(1).upper())):
            raise ValueError("name is not SPEAKER_WORD_EMOTION with speaker OAF or YAF")
        speaker, (word, code) = in_folder.group(1), short.group(2, 3)
    if code.lower() not in TESS_EMOTIONS:
        raise ValueError(f"emotion {code!r} is not one of {', '.join(TESS_EMOTIONS)}")
    return {"speaker": speaker.upper(), "word": word, "code": code}


def check_folder(folder: str, fields: dict[str, str]) -> None:
    """Raise ValueError when a ``<SPK>_<emotion>`` folder disagrees with the file name."""
    m = _FOLDER_RE.match(folder)
    if not m:
        return
    if m.group(1).upper() != fields["speaker"]:
        raise ValueError(f"speaker {fields['speaker']} in the name but folder {folder}")
    try:
        folder_emotion = normalise_label(m.group(2))
    except ValueError:
        folder_emotion = None
    if folder_emotion != TESS_EMOTIONS[fields["code"].lower()]:
        raise ValueError(f"emotion {fields['code']!r} in the name but folder {folder}")


def prepare_tess(root: str | Path, *, strict: bool = False) -> CorpusListing:
    """List TESS clips under ``root``."""
    root_path = require_root(root, CORPUS)

    def describe(path: Path) -> Utterance:
        fields = parse_name(path.stem, path.parent.name)
        check_folder(path.parent.name, fields)
        return make_utterance(
            CORPUS, path.stem, path,
            speaker=fields["speaker"],
            gender="female",
            emotion=TESS_EMOTIONS[fields["code"].lower()],
            custom={"word": fields["word"], "raw_label": fields["code"]},
        )

    return list_corpus(CORPUS, root_path, describe, strict=strict)
