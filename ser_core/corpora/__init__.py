"""Corpus readers, one module per corpus, registered by name.

Each reader lists utterances (it never opens audio) and returns a
:class:`~ser_core.corpora.base.CorpusListing`: the utterances plus every file it
rejected with the reason. Use :func:`prepare` to call one by name.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from ser_core.corpora.base import CorpusError, CorpusListing, Rejected

# name -> (module, function, one-line description)
_READERS: dict[str, tuple[str, str, str]] = {
    "ravdess": ("ser_core.corpora.ravdess", "prepare_ravdess",
                "RAVDESS speech and song, audio-only (Actor_NN/03-VV-EE-II-SS-RR-AA.wav)"),
    "crema_d": ("ser_core.corpora.crema_d", "prepare_crema_d",
                "CREMA-D (AudioWAV/1001_DFA_ANG_XX.wav, VideoDemographics.csv)"),
    "tess": ("ser_core.corpora.tess", "prepare_tess",
             "Toronto Emotional Speech Set (OAF_angry/OAF_bar_angry.wav)"),
    "savee": ("ser_core.corpora.savee", "prepare_savee",
              "SAVEE (AudioData/DC/a01.wav or DC_a01.wav)"),
    "emodb": ("ser_core.corpora.emodb", "prepare_emodb",
              "Berlin EmoDB (wav/03a01Fa.wav)"),
    "folders": ("ser_core.corpora.folders", "prepare_folders",
                "your own folders: ROOT/<emotion>/<file>, speaker from a file-name pattern"),
    "csv": ("ser_core.corpora.user_csv", "prepare_csv",
            "your own CSV: path,speaker,emotion[,gender] (paths relative to the CSV)"),
}

CORPORA: tuple[str, ...] = tuple(_READERS)


def describe() -> dict[str, str]:
    """Corpus name -> one-line description, for ``ser corpora``."""
    return {name: spec[2] for name, spec in _READERS.items()}


def get_reader(name: str) -> Callable[..., CorpusListing]:
    if name not in _READERS:
        raise CorpusError(f"unknown corpus {name!r}; known corpora: {', '.join(CORPORA)}")
    module, func, _ = _READERS[name]
    return getattr(importlib.import_module(module), func)


def prepare(reader_name: str, root: str, /, *, strict: bool = False, **options: Any) -> CorpusListing:
    """List corpus ``reader_name`` under ``root`` with that reader's options (unknown ones
    are an error; a reader may take an option called ``name``)."""
    reader = get_reader(reader_name)
    accepted = set(inspect.signature(reader).parameters) - {"root", "strict"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise CorpusError(f"{reader_name}: unknown reader option(s) {unknown}; known: {sorted(accepted) or 'none'}")
    return reader(root, strict=strict, **options)


__all__ = ["CORPORA", "CorpusError", "CorpusListing", "Rejected", "describe", "get_reader", "prepare"]
