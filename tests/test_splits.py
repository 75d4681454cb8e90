from collections import Counter

import pytest

from ser_core.splits import (RAVDESS_PAPER_FOLDS, final_split, make_folds, ravdess_paper,
                             speaker_kfold)

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
    assert all(len(f.val) == n_val for f in folds)


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
