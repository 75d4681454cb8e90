"""Your own recordings sorted into one folder per emotion.

Layout: ``ROOT/<emotion>/<file>``, e.g. ``ROOT/happy/spk01_take3.wav``; any audio
extension the decoder reads (.wav .flac .ogg .mp3 .opus). Files may sit deeper
(``ROOT/happy/session2/x.wav``): the emotion is always the first folder under ROOT.
Files directly in ROOT have no emotion and are rejected.

- Emotion: the folder name through :func:`ser_core.labels.normalise_label`, so
  ``Angry``, ``anger`` and ``mad`` all become ``angry``, ``pleasant surprise`` becomes
  ``surprised``, and a name with no canonical equivalent is kept as its own label
  (lower-cased). A folder name that is not a plain word is rejected.
- Speaker: option ``speaker_pattern``, a regular expression searched in the file stem
  whose named group ``speaker`` is the speaker id, e.g. ``^(?P<speaker>spk\\d+)_``.
  Without a pattern every file belongs to one speaker, ``folders:unknown`` (fine for
  labelling or a quick look, but speaker-independent splits then have one speaker to
  split). With a pattern, a stem it does not match is rejected: a clip silently filed
  under "unknown" would leak between training and test speakers.
- Gender: option ``gender`` (male, female, unknown; default unknown) for every file.
- Utterance id: ``folders:<path under ROOT without extension>``.

Licence and source: yours.
"""

from __future__ import annotations

import re
from pathlib import Path

from ser_core.corpora.base import (
    AUDIO_EXTENSIONS, CorpusError, CorpusListing, list_corpus, make_utterance, normalise_gender,
    require_root,
)
from ser_core.labels import normalise_label
from ser_core.records import Utterance

CORPUS = "folders"
UNKNOWN_SPEAKER = "unknown"


def compile_speaker_pattern(pattern: str | None) -> re.Pattern[str] | None:
    """The compiled ``speaker_pattern`` option, or a CorpusError before any file is read."""
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise CorpusError(
            f"{CORPUS}: speaker_pattern {pattern!r} is not a regular expression: {exc}") from exc
    if "speaker" not in compiled.groupindex:
        raise CorpusError(f"{CORPUS}: speaker_pattern {pattern!r} has no named group (?P<speaker>...)")
    return compiled


def prepare_folders(
    root: str | Path,
    *,
    strict: bool = False,
    speaker_pattern: str | None = None,
    gender: str = "unknown",
) -> CorpusListing:
    """List audio files under ``root/<emotion>/``; see the module docstring for the options."""
    root_path = require_root(root, CORPUS)
    pattern = compile_speaker_pattern(speaker_pattern)
    try:
        gender = normalise_gender(gender)
    except ValueError as exc:
        raise CorpusError(f"{CORPUS}: option gender: {exc}") from exc

    def describe(path: Path) -> Utterance:
        relative = path.relative_to(root_path)
        if len(relative.parts) < 2:
            raise ValueError("file is not inside an emotion folder ROOT/<emotion>/")
        raw_label = relative.parts[0]
        emotion = normalise_label(raw_label)
        speaker = UNKNOWN_SPEAKER
        if pattern is not None:
            m = pattern.search(path.stem)
            if not m or not m.group("speaker"):
                raise ValueError(f"speaker_pattern {pattern.pattern!r} does not match {path.stem!r}")
            speaker = m.group("speaker")
        return make_utterance(
            CORPUS, relative.with_suffix("").as_posix(), path,
            speaker=speaker,
            gender=gender,
            emotion=emotion,
            custom={"raw_label": raw_label},
        )

    return list_corpus(CORPUS, root_path, describe, strict=strict, extensions=AUDIO_EXTENSIONS)
