"""Speaker-independent cross-validation: which speakers train, validate and test in each fold.

Two protocols, chosen by name (params.yaml ``train.split``):

- ``ravdess_paper``: the five fixed folds of docs/PAPER.md (test and validation actors per
  fold; every other actor trains). Speakers are ``ravdess:NN``.
- ``speaker_kfold``: any corpus or mix of corpora. Speakers are dealt into k test groups,
  stratified by (corpus, gender) so that groups stay balanced, shuffled with a fixed
  ``split_seed``; fold i validates on ``n_val`` speakers of every corpus, from fold i+1's
  test group (the pattern of the paper's table; the groups after it when that one has too
  few of a corpus), every other speaker trains.

In every fold no speaker is in two partitions, and over the folds every speaker is tested
exactly once. :func:`final_split` gives the split of the final model used for labelling.

Between corpora, :func:`corpus_transfer_folds`: a model trained on some corpora (a few of
each one's speakers validating) is tested on every speaker of a corpus it never heard.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Mapping, Sequence

log = logging.getLogger(__name__)

SPLITS = ("ravdess_paper", "speaker_kfold")

# (test actors, validation actors) per fold, exactly as docs/PAPER.md tabulates them.
RAVDESS_PAPER_FOLDS: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (
    ((2, 5, 14, 15, 16), (3, 6)),
    ((3, 6, 7, 13, 18), (10, 11)),
    ((10, 11, 12, 19, 20), (8, 17)),
    ((8, 17, 21, 23, 24), (1, 14)),
    ((1, 4, 9, 22), (2, 5)),
)
RAVDESS_ACTORS = tuple(range(1, 25))


@dataclass(frozen=True)
class Fold:
    """The speakers of one fold; ``index`` is -1 for the final (no test) split."""

    index: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"index": self.index, "train": list(self.train), "val": list(self.val),
                "test": list(self.test)}


def corpus_of(speaker: str) -> str:
    """The corpus of a namespaced speaker id (``ravdess:01`` -> ``ravdess``)."""
    return speaker.split(":", 1)[0]


def ravdess_speaker(actor: int) -> str:
    return f"ravdess:{actor:02d}"


def ravdess_paper(speakers: Sequence[str]) -> list[Fold]:
    """The paper's five folds, restricted to the RAVDESS actors present in ``speakers``.

    Any speaker that is not one of the 24 RAVDESS actors is an error (use speaker_kfold for
    other corpora or mixes). A fold whose test actors are all absent is left out, with a
    warning; a fold left with no training or validation actor is an error.
    """
    present = set(speakers)
    known = {ravdess_speaker(a) for a in RAVDESS_ACTORS}
    foreign = sorted(present - known)
    if foreign:
        raise ValueError(f"split 'ravdess_paper' takes RAVDESS actors (ravdess:01..24) only; "
                         f"found {foreign[:5]}{' ...' if len(foreign) > 5 else ''}; "
                         f"use split 'speaker_kfold' for other corpora")
    folds = []
    for index, (test_actors, val_actors) in enumerate(RAVDESS_PAPER_FOLDS):
        test = tuple(s for s in map(ravdess_speaker, test_actors) if s in present)
        val = tuple(s for s in map(ravdess_speaker, val_actors) if s in present)
        train = tuple(sorted(present - set(test) - set(val)))
        if not test:
            log.warning("ravdess_paper fold %d: none of its test actors %s are present; fold skipped",
                        index, test_actors)
            continue
        if not train or not val:
            raise ValueError(f"ravdess_paper fold {index}: no {'training' if not train else 'validation'} "
                             f"actor present among {sorted(present)}")
        folds.append(Fold(index, train, val, test))
    return folds


def _stratum(speaker: str, genders: Mapping[str, str]) -> tuple[str, str]:
    return corpus_of(speaker), genders[speaker]


def _interleave(speakers: Sequence[str], genders: Mapping[str, str]) -> list[str]:
    """Round-robin over the (corpus, gender) strata of ``speakers``, keeping their order."""
    strata: dict[tuple[str, str], list[str]] = {}
    for speaker in speakers:
        strata.setdefault(_stratum(speaker, genders), []).append(speaker)
    rows = [strata[key] for key in sorted(strata)]
    return [row[i] for i in range(max(map(len, rows), default=0)) for row in rows if i < len(row)]


def speaker_kfold(genders: Mapping[str, str], k: int = 5, n_val: int = 2, seed: int = 0) -> list[Fold]:
    """k speaker-independent folds over ``genders`` (speaker -> gender), ``n_val`` validation
    speakers of every corpus in each (see :func:`_fold_validation`)."""
    if k < 2 or n_val < 1:
        raise ValueError(f"speaker_kfold needs k >= 2 and n_val >= 1, got k={k}, n_val={n_val}")
    # Each (corpus, gender) stratum shuffled, strata laid end to end, dealt round-robin:
    # every group gets a near-equal share of every stratum.
    rng = random.Random(seed)
    order: list[str] = []
    for key in sorted({_stratum(s, genders) for s in genders}):
        members = sorted(s for s in genders if _stratum(s, genders) == key)
        rng.shuffle(members)
        order += members
    groups = [tuple(sorted(order[i::k])) for i in range(k)]
    folds = []
    for i, test in enumerate(groups):
        val = _fold_validation(order, groups, i, genders, n_val)
        train = tuple(sorted(set(genders) - set(test) - set(val)))
        if not test or not val or not train or (len(speakers_by_corpus(genders)) == 1 and len(val) < n_val):
            raise ValueError(f"speaker_kfold: {len(genders)} speakers are too few for k={k} folds "
                             f"with n_val={n_val} validation speakers each and some left to train")
        folds.append(Fold(i, train, val, test))
    return folds


def _fold_validation(order: Sequence[str], groups: Sequence[tuple[str, ...]], i: int,
                     genders: Mapping[str, str], n_val: int) -> tuple[str, ...]:
    """Fold ``i``'s validation speakers: ``n_val`` of every corpus, the next fold's test
    group first (the pattern of the paper's table), then the groups after it, genders
    alternating. A corpus keeps at least one of its speakers training: one too small for
    that gives fewer (none with a single speaker outside the test group). Every corpus
    validating is what lets the kept epoch and the temperature answer for every corpus (the
    criterion is the mean over corpora); with one corpus these are the speakers it always had.
    """
    test = set(groups[i])
    val: list[str] = []
    for corpus in sorted({corpus_of(s) for s in order}):
        candidates: list[str] = []
        for step in range(1, len(groups)):  # the next group, then the ones after it
            group = set(groups[(i + step) % len(groups)])
            candidates += _interleave([s for s in order if s in group and corpus_of(s) == corpus], genders)
        chosen = candidates[:max(0, min(n_val, len(candidates) - 1))]
        if len(chosen) < n_val:
            log.warning("speaker_kfold fold %d: corpus %r has %d speaker(s) outside the fold's test group: "
                        "%d validate (of n_val=%d), one at least trains", i, corpus, len(candidates),
                        len(chosen), n_val)
        val += chosen
    return tuple(sorted(val))


def make_folds(split: str, genders: Mapping[str, str], k: int = 5, n_val: int = 2,
               seed: int = 0) -> list[Fold]:
    """Folds by protocol name (see the module docstring)."""
    if split == "ravdess_paper":
        return ravdess_paper(sorted(genders))
    if split == "speaker_kfold":
        return speaker_kfold(genders, k=k, n_val=n_val, seed=seed)
    raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")


def validation_speakers(genders: Mapping[str, str], n_val: int, seed: int) -> tuple[str, ...]:
    """``n_val`` speakers of one corpus, alternating genders, from a fixed shuffle."""
    members = sorted(genders)
    random.Random(seed).shuffle(members)
    return tuple(sorted(_interleave(members, genders)[:n_val]))


def speakers_by_corpus(genders: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``genders`` (speaker -> gender) split by the speakers' corpus namespace."""
    out: dict[str, dict[str, str]] = {}
    for speaker, gender in genders.items():
        out.setdefault(corpus_of(speaker), {})[speaker] = gender
    return out


def corpus_validation_speakers(genders: Mapping[str, str], n_val: int, seed: int) -> dict[str, tuple[str, ...]]:
    """Each corpus's validation speakers between corpora: they validate when it trains, and
    are its validation part when it is tested."""
    return {c: validation_speakers(g, n_val, seed) for c, g in speakers_by_corpus(genders).items()}


TRANSFER_INDEX = 100  # transfer folds are numbered from here (their seeds differ from the k folds')


def corpus_transfer_folds(genders: Mapping[str, str], n_val: int = 2,
                          seed: int = 0) -> list[tuple[tuple[str, ...], Fold]]:
    """(training corpora, fold) per training set: every corpus but one (that one tested),
    and, with three corpora or more, each corpus alone (every other one tested): the corpus
    x corpus matrix. Each training corpus gives ``n_val`` validation speakers (the same in
    every fold), its other speakers train; every speaker of a corpus left out is tested."""
    by_corpus = speakers_by_corpus(genders)
    names = sorted(by_corpus)
    if len(names) < 2:
        raise ValueError(f"transfer between corpora needs two corpora or more, found {names}")
    for c in names:
        if len(by_corpus[c]) <= n_val:
            raise ValueError(f"corpus {c!r} has {len(by_corpus[c])} speakers: too few for {n_val} "
                             f"validation speakers and some to train")
    val = corpus_validation_speakers(genders, n_val, seed)
    sources = [tuple(c for c in names if c != held) for held in names]
    sources += [(c,) for c in names if (c,) not in sources]
    out = []
    for i, trained in enumerate(sources):
        train = tuple(sorted(s for c in trained for s in by_corpus[c] if s not in val[c]))
        test = tuple(sorted(s for c in names if c not in trained for s in by_corpus[c]))
        out.append((trained, Fold(TRANSFER_INDEX + i, train, tuple(sorted(v for c in trained for v in val[c])), test)))
    return out


def final_split(folds: Sequence[Fold]) -> Fold:
    """The final model's split: every speaker trains except fold 0's validation speakers,
    which choose the checkpoint (no test speakers: the folds measured the protocol)."""
    first = folds[0]
    speakers = set(first.train) | set(first.val) | set(first.test)
    return Fold(-1, tuple(sorted(speakers - set(first.val))), first.val, ())
