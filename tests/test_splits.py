import logging
from collections import Counter

import pytest

from ser_core.splits import (RAVDESS_PAPER_FOLDS, corpus_of, final_split, make_folds,
                             ravdess_paper, speaker_kfold)

RAVDESS = {f"ravdess:{a:02d}": "male" if a % 2 else "female" for a in range(1, 25)}


def test_paper_table_is_pinned():
    assert RAVDESS_PAPER_FOLDS == (
        ((2, 5, 14, 15, 16), (3, 6)),
        ((3, 6, 7, 13, 18), (10, 11)),
        ((10, 11, 12, 19, 20), (8, 17)),
        ((8, 17, 21, 23, 24), (1, 14)),
        ((1, 4, 9, 22), (2, 5)),
    )


def assert_speaker_independent(folds, speakers):
    tested = Counter()
    for fold in folds:
        parts = [set(fold.train), set(fold.val), set(fold.test)]
        assert all(parts), f"fold {fold.index} has an empty partition"
        assert sum(map(len, parts)) == len(set.union(*parts)), f"fold {fold.index} shares a speaker"
        assert set.union(*parts) == set(speakers)
        tested.update(fold.test)
    assert tested == Counter({s: 1 for s in speakers}), "every speaker is tested exactly once"


def test_ravdess_paper_folds():
    folds = ravdess_paper(sorted(RAVDESS))
    assert_speaker_independent(folds, RAVDESS)
    assert [f.test for f in folds][4] == ("ravdess:01", "ravdess:04", "ravdess:09", "ravdess:22")
    assert folds[3].val == ("ravdess:01", "ravdess:14")
    assert len(folds[0].train) == 17 and len(folds[4].train) == 18


def test_ravdess_paper_with_missing_actors_and_foreign_speakers():
    present = [s for s in RAVDESS if s not in {"ravdess:01", "ravdess:04", "ravdess:09", "ravdess:22"}]
    assert [f.index for f in ravdess_paper(present)] == [0, 1, 2, 3]  # fold 4 has no test actor
    with pytest.raises(ValueError, match="speaker_kfold"):
        ravdess_paper(sorted(RAVDESS) + ["tess:OAF"])
    with pytest.raises(ValueError, match="validation"):
        ravdess_paper([s for s in RAVDESS if s not in {"ravdess:03", "ravdess:06"}])


@pytest.mark.parametrize("genders, k, n_val", [
    (RAVDESS, 5, 2),
    (RAVDESS, 4, 1),
    ({**RAVDESS, "tess:OAF": "female", "tess:YAF": "female", "savee:DC": "male",
      "emodb:03": "male", "emodb:08": "female", "crema_d:1001": "unknown"}, 5, 2),
    ({f"emodb:{i:02d}": g for i, g in zip(range(10), "mfmfmfmfmf")}, 3, 2),
])
def test_speaker_kfold_is_speaker_independent(genders, k, n_val):
    folds = speaker_kfold(genders, k=k, n_val=n_val, seed=3)
    assert len(folds) == k
    assert_speaker_independent(folds, genders)
    for fold in folds:  # n_val of every corpus that can spare them and keep one training
        for corpus in {corpus_of(s) for s in genders}:
            spare = sum(corpus_of(s) == corpus and s not in fold.test for s in genders) - 1
            assert sum(corpus_of(s) == corpus for s in fold.val) == max(0, min(n_val, spare))


def test_speaker_kfold_validates_on_every_corpus(caplog):
    """With two corpora each fold validates on speakers of both (the kept epoch is chosen
    on the mean over corpora: a fold that validated on one corpus alone, as the splitter
    once did with RAVDESS + nEMO, chose it for that corpus); a corpus's validation
    speakers come from the next test group first, then the ones after it; with one corpus
    the folds are the next group's speakers exactly as before."""
    nine = {f"nemo:{s}": g for s, g in zip("ABCDEFGHI", "fmfmfmfmf")}
    folds = speaker_kfold({**RAVDESS, **nine}, k=5, n_val=2, seed=0)
    assert_speaker_independent(folds, {**RAVDESS, **nine})
    for fold in folds:
        assert Counter(map(corpus_of, fold.val)) == {"nemo": 2, "ravdess": 2}
        ravdess_val = [s for s in fold.val if corpus_of(s) == "ravdess"]
        assert set(ravdess_val) <= set(folds[(fold.index + 1) % 5].test)
        assert {RAVDESS[s] for s in ravdess_val} == {"male", "female"}
    short = [f for f in folds if sum(corpus_of(s) == "nemo" for s in folds[(f.index + 1) % 5].test) < 2]
    assert short  # 9 speakers in 5 groups: a next group with one nEMO speaker, topped up from the one after
    for fold in short:
        nemo_val = {s for s in fold.val if corpus_of(s) == "nemo"}
        assert nemo_val <= set(folds[(fold.index + 1) % 5].test) | set(folds[(fold.index + 2) % 5].test)
    with caplog.at_level(logging.WARNING, logger="ser_core.splits"):
        small = speaker_kfold({**RAVDESS, "savee:DC": "male", "savee:JE": "male"}, k=5, n_val=2, seed=0)
    assert all(sum(corpus_of(s) == "savee" for s in f.val) <= 1 for f in small)
    assert "corpus 'savee' has" in caplog.text  # a corpus too small to give n_val is said, not silent
    for fold in speaker_kfold(RAVDESS, k=5, n_val=2, seed=0):
        assert len(fold.val) == 2 and set(fold.val) <= set(speaker_kfold(RAVDESS, seed=0)[(fold.index + 1) % 5].test)


def test_speaker_kfold_is_seeded_and_gender_balanced():
    a, b = speaker_kfold(RAVDESS, seed=1), speaker_kfold(RAVDESS, seed=1)
    assert a == b
    assert a != speaker_kfold(RAVDESS, seed=2)
    for fold in a:
        males = sum(RAVDESS[s] == "male" for s in fold.test)
        assert abs(males - len(fold.test) / 2) <= 1
        assert {RAVDESS[s] for s in fold.val} == {"male", "female"}


def test_speaker_kfold_rejects_too_few_speakers():
    with pytest.raises(ValueError, match="too few"):
        speaker_kfold({f"tess:{s}": "female" for s in ("OAF", "YAF")}, k=2, n_val=1)
    with pytest.raises(ValueError):
        make_folds("leave_one_out", RAVDESS)


def test_final_split_holds_out_fold_zero_validation_speakers():
    folds = make_folds("ravdess_paper", RAVDESS)
    final = final_split(folds)
    assert final.val == ("ravdess:03", "ravdess:06") and final.test == ()
    assert set(final.train) == set(RAVDESS) - set(final.val)
