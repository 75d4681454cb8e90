"""The recipe beyond the paper (augmentation, losses, early stopping) and ``ser tune``."""

import dataclasses
import json

import numpy as np
import pytest
import torch
import yaml

from ser_core.cli import main as ser
from ser_core.splits import make_folds
from ser_core.training import fold as fold_module
from ser_core.training import tune as tune_module
from ser_core.training.augment import Augment, mask_batch, mixup_batch, partners
from ser_core.training.data import load_features
from ser_core.model import SERModel
from ser_core.batching import predict_logits
from ser_core.training.config import TrainConfig
from ser_core.training.fold import class_weights, clip_level, fold_seed, train_fold

TINY = {"epochs": 3, "hidden": 4, "batch_size": 32, "threads": 1}


def test_masks_stay_inside_valid_frames_and_are_seeded():
    x = torch.ones(3, 10, 6)
    lengths = torch.tensor([10, 6, 3])
    x[1, 6:] = 0
    x[2, 3:] = 0
    aug = Augment(time_masks=2, time_mask_frames=3, freq_masks=1, freq_mask_dims=2)
    a = mask_batch(x, lengths, aug, torch.Generator().manual_seed(0))
    b = mask_batch(x, lengths, aug, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.equal(x[1, 6:], a[1, 6:]) and torch.equal(x[2, 3:], a[2, 3:])
    assert (a == 0).sum() > (x == 0).sum()  # something was masked
    assert ((a == 0) | (a == 1)).all()  # masking only zeroes, never rescales


def test_mixup_blends_pairs_and_keeps_the_longer_length():
    x = torch.zeros(2, 4, 1)
    x[0, :2] = 1.0
    x[1, :4] = 3.0
    lengths = torch.tensor([2, 4])
    mixed, mixed_len, perm = mixup_batch(x, lengths, 0.25, torch.Generator().manual_seed(1))
    for i in range(2):
        assert torch.allclose(mixed[i], 0.25 * x[i] + 0.75 * x[perm[i]])
        assert mixed_len[i] == max(lengths[i], lengths[perm[i]])


def test_mixup_partners_stay_within_their_group():
    groups = torch.tensor([0, 0, 1, 1, 1, 2, 0, 1])
    for seed in range(20):
        perm = partners(len(groups), torch.Generator().manual_seed(seed), groups)
        assert sorted(perm.tolist()) == list(range(len(groups)))  # a shuffle: every row a partner once
        assert torch.equal(groups[perm], groups)  # each partner from the row's own group
        assert perm[5] == 5  # alone in its group: its own partner
    # some draw does shuffle within the groups (not the identity every time)
    assert any(not torch.equal(partners(8, torch.Generator().manual_seed(s), groups), torch.arange(8))
               for s in range(5))
    # one group draws exactly what no groups draws (single-corpus training unchanged)
    for seed in range(5):
        assert torch.equal(partners(8, torch.Generator().manual_seed(seed), torch.zeros(8, dtype=torch.long)),
                           torch.randperm(8, generator=torch.Generator().manual_seed(seed)))


def test_balanced_class_weights():
    w = class_weights(np.array([0, 0, 0, 1, 2, 2]), 4, "balanced")
    # n / (C * count): 6/(4*3), 6/(4*1), 6/(4*2); an absent class weighs 0
    assert torch.allclose(w, torch.tensor([0.5, 1.5, 0.75, 0.0]))
    assert class_weights(np.array([0, 1]), 2, "none") is None


@pytest.mark.parametrize("bad", [{"class_weights": "inverse"}, {"label_smoothing": 1.0},
                                 {"mixup_alpha": -1.0}, {"mixup_pairs": "speaker"}, {"patience": -1}, {"time_masks": -2},
                                 {"ema_decay": 1.0}, {"ema_decay": -0.1}, {"stats_clips": -1},
                                 {"stats_clips": 4, "normalisation": "global"}])
def test_recipe_options_are_validated(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_early_stopping_stops_after_patience(features_dir):
    data = load_features(features_dir, TrainConfig().labels)
    fold = make_folds("ravdess_paper", data.speaker_genders())[0]
    cfg = TrainConfig(**{**TINY, "epochs": 40, "patience": 2, "lr": 1e-9})  # nothing improves
    result = train_fold(data, fold, cfg, seed=0, progress=False)
    assert len(result.history) == result.best_epoch + 2 < 40


def test_moving_average_is_what_is_validated_and_kept(features_dir):
    """With a moving average so slow that it hardly leaves the initial weights, the kept
    model is (almost) the untrained one, while the raw weights have moved away from it."""
    data = load_features(features_dir, TrainConfig().labels)
    fold = make_folds("ravdess_paper", data.speaker_genders())[0]
    cfg = TrainConfig(**{**TINY, "epochs": 2, "lr": 1e-2})
    torch.manual_seed(fold_seed(0, fold.index))
    initial = SERModel(cfg.model_config(data.n_dims)).state_dict()

    def distance(model):
        return sum(float((v.float() - initial[k].float()).abs().sum())
                   for k, v in model.state_dict().items() if k.endswith("weight"))

    raw = train_fold(data, fold, cfg, seed=0, progress=False)
    slow = train_fold(data, fold, dataclasses.replace(cfg, ema_decay=1 - 1e-9), seed=0, progress=False)
    assert distance(slow.model) < 1e-3 * distance(raw.model)
    assert np.isfinite(slow.test_probs).all()


def test_augmented_recipe_trains_deterministically(features_dir):
    data = load_features(features_dir, TrainConfig().labels)
    fold = make_folds("ravdess_paper", data.speaker_genders())[1]
    cfg = TrainConfig(**TINY, class_weights="balanced", label_smoothing=0.1, time_masks=1,
                      time_mask_frames=3, freq_masks=1, freq_mask_dims=2, mixup_alpha=0.4)
    a, b = (train_fold(data, fold, cfg, seed=3, progress=False) for _ in range(2))
    assert a.history == b.history and np.array_equal(a.test_probs, b.test_probs)
    plain = train_fold(data, fold, TrainConfig(**TINY), seed=3, progress=False)
    assert plain.history != a.history


def test_group_statistics_train_deterministically(features_dir):
    """``stats_clips``: each epoch the training clips are normalised in fresh random groups
    of clips; the run is still a function of its seed, differs from whole-speaker
    statistics, and the checkpoint says how it was normalised."""
    data = load_features(features_dir, TrainConfig().labels)
    fold = make_folds("ravdess_paper", data.speaker_genders())[1]
    cfg = TrainConfig(**TINY, stats_clips=3)
    a, b = (train_fold(data, fold, cfg, seed=3, progress=False) for _ in range(2))
    assert a.history == b.history and np.array_equal(a.test_probs, b.test_probs)
    plain = train_fold(data, fold, TrainConfig(**TINY), seed=3, progress=False)
    assert plain.history != a.history
    assert a.normaliser.to_dict()["stats_clips"] == 3 and plain.normaliser.to_dict()["stats_clips"] == 0


def test_kept_validation_predictions_are_the_kept_models(features_dir):
    """The validation probabilities (tuning's objective, temperature scaling) are the kept
    epoch's, not the last epoch's: the kept model predicts them again exactly."""
    data = load_features(features_dir, TrainConfig().labels)
    fold = make_folds("ravdess_paper", data.speaker_genders())[0]
    result = train_fold(data, fold, TrainConfig(**{**TINY, "epochs": 4, "lr": 0.1}), seed=0, progress=False)
    assert result.best_epoch < len(result.history)  # an earlier epoch was kept
    features = [torch.from_numpy(x) for x in result.normaliser.apply(data)]
    val_idx = data.indices(fold.val)
    logits = predict_logits(result.model, [features[i] for i in val_idx])
    np.testing.assert_allclose(clip_level(logits, data.clips(val_idx, positions=True)), result.val_probs,
                               atol=1e-6)


def test_tuning_never_sees_a_test_speaker(features_dir, monkeypatch):
    """The objective is computed with each fold's test speakers removed from the data:
    poisoning their features (NaN) or their labels changes nothing."""
    data = load_features(features_dir, TrainConfig().labels)
    folds = make_folds("ravdess_paper", data.speaker_genders())
    seen_speakers = []
    real_train_fold = fold_module.train_fold

    def spy(d, fold, cfg, seed, progress):
        seen_speakers.append((fold.index, set(d.speakers), set(fold.test)))
        return real_train_fold(d, fold, cfg, seed, progress)

    monkeypatch.setattr(tune_module, "train_fold", spy)
    cfg = TrainConfig(**TINY, seeds=[5])
    clean = tune_module.run_trial(data, cfg, folds)
    for fold_index, speakers, test in seen_speakers:
        original = folds[fold_index]
        assert not speakers & set(original.test), f"fold {fold_index} saw a test speaker"
        assert speakers == set(original.train) | set(original.val) and test == set()

    # Every speaker is some fold's test speaker: poison each fold's test speakers (features
    # NaN, labels shifted) and that fold's validation predictions must not move.
    for fold in folds:
        bad = load_features(features_dir, TrainConfig().labels)
        for i in bad.indices(fold.test):
            bad.features[i] = np.full_like(bad.features[i], np.nan)
            bad.y[i] = (bad.y[i] + 1) % len(bad.labels)
        mine = tune_module.validate_fold(bad, fold, cfg, 5)
        ref = tune_module.validate_fold(data, fold, cfg, 5)
        assert np.array_equal(mine.y_pred, ref.y_pred) and np.array_equal(mine.y_true, ref.y_true)
    assert np.isfinite(clean["val_uar"])


def test_ser_tune_records_every_trial_and_resumes(features_dir, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": TINY, "tune": {
        "seeds": [1], "candidates": {"paper": {}, "smooth": {"label_smoothing": 0.2}}}}))
    out = tmp_path / "tune"
    args = ["tune", "--features", str(features_dir), "--output", str(out), "--params", str(params)]
    assert ser(args) == 0
    trials = json.loads((out / "trials.json").read_text())
    assert sorted(trials) == ["paper", "smooth"]
    best = json.loads((out / "best.json").read_text())
    assert best["val_uar"] == max(t["val_uar"] for t in trials.values())
    assert (out / "trials.csv").read_text().count("\n") == 3
    before = (out / "trials.json").stat().st_mtime_ns
    assert ser(args) == 0  # everything done: nothing retrained, nothing rewritten
    assert (out / "trials.json").stat().st_mtime_ns == before


@pytest.fixture(scope="module")
def augmented_dir(tmp_path_factory):
    from tests.training.synth_features import feature_table, with_augmented_rows, write_shards

    return write_shards(tmp_path_factory.mktemp("aug"), with_augmented_rows(feature_table(), ["speed0.9", "noise20"]))


def test_augmented_rows_come_from_training_speakers_of_the_same_clip(augmented_dir):
    data = load_features(augmented_dir, TrainConfig().labels)
    assert data.augmentations == ["noise20", "speed0.9"] and len(data.y) == 3 * 384
    for fold in make_folds("ravdess_paper", data.speaker_genders()):
        train_idx = data.indices(fold.train)
        pools = fold_module.augmentation_pools(data, train_idx, ["speed0.9"])
        for original, pool in zip(train_idx, pools):
            assert data.variants[original] == "" and pool[0] == original and len(pool) == 2
            assert {data.sources[i] for i in pool} == {data.utterance_ids[original]}
            assert {data.speakers[i] for i in pool} <= set(fold.train)
            assert data.y[pool].tolist() == [data.y[original]] * 2
        for part in (fold.val, fold.test):  # evaluation sees originals only
            assert {data.variants[i] for i in data.indices(part)} == {""}
    with pytest.raises(ValueError, match="asks for \\['telephone'\\]"):
        fold_module.augmentation_pools(data, data.indices(fold.train), ["telephone"])


def test_poisoned_augmented_rows_of_other_speakers_are_never_trained_on(augmented_dir):
    data = load_features(augmented_dir, TrainConfig().labels)
    fold = make_folds("ravdess_paper", data.speaker_genders())[2]
    outside = set(fold.val) | set(fold.test)
    for i, (speaker, variant) in enumerate(zip(data.speakers, data.variants)):
        if variant and speaker in outside:
            data.features[i] = np.full_like(data.features[i], np.nan)
    cfg = TrainConfig(**TINY, augment=["speed0.9", "noise20"], normalisation="global")
    result = train_fold(data, fold, cfg, seed=0, progress=False)
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in result.history)
    assert np.isfinite(result.test_probs).all()


def test_a_batch_of_one_sits_the_epoch_out(features_dir):
    """BatchNorm cannot train on a single example: such a batch (windowed rows make any
    remainder possible) is skipped for that epoch instead of failing the run."""
    from ser_core.model import SERModel

    data = load_features(features_dir, TrainConfig().labels)
    cfg = TrainConfig(**TINY)
    model = SERModel(cfg.model_config(data.n_dims))
    tensors = [torch.from_numpy(np.array(x)) for x in data.features[:3]]  # writable copies
    y = torch.from_numpy(data.y[:3])
    objective = fold_module.Objective(None, 0.0, cfg.batch_augment(), torch.Generator().manual_seed(0),
                                       np.random.default_rng(0))
    optimizer = torch.optim.Adam(model.parameters())
    loss, pred = fold_module.train_epoch(model, tensors, y, [np.array([0, 1]), np.array([2])], optimizer, objective)
    assert np.isfinite(loss) and pred[2] == -1 and (pred[:2] >= 0).all()


def test_random_crops_cut_long_rows_to_a_contiguous_span_and_keep_short_ones():
    from ser_core.training.augment import random_crops

    rows = [torch.arange(40.0).reshape(20, 2), torch.arange(6.0).reshape(3, 2)]
    first = random_crops(rows, 5, np.random.default_rng(1))
    again = random_crops(rows, 5, np.random.default_rng(1))
    assert [t.shape for t in first] == [(5, 2), (3, 2)] and torch.equal(first[1], rows[1])
    start = int(first[0][0, 0]) // 2
    assert torch.equal(first[0], rows[0][start:start + 5]) and torch.equal(first[0], again[0])
