import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ser_core.labels import RAVDESS_LABELS
from ser_core.batching import collate, length_batches
from ser_core.normalisation import STD_FLOOR, ClipGroupStats, Normaliser, frame_stats
from ser_core.training.data import load_features
from tests.training.synth_features import FEATURE_CONFIG, feature_table, write_shards

SPEAKERS = [("ravdess:01", "male"), ("ravdess:02", "female"), ("ravdess:03", "male")]


def test_load_features_reads_what_was_written(tmp_path):
    table = feature_table(SPEAKERS, per_class=1)
    write_shards(tmp_path, table, n_shards=3)
    pq.write_table(table.slice(0, 0), str(tmp_path / "features-empty.parquet"))  # a worker wrote nothing
    data = load_features(tmp_path, RAVDESS_LABELS)
    rows = {r["utterance_id"]: r for r in table.to_pylist()}
    assert data.utterance_ids == sorted(rows)  # sorted, whatever the shard layout
    assert data.feature_config == dict(FEATURE_CONFIG, n_dims=6) and data.n_dims == 6
    for uid, x, y, speaker in zip(data.utterance_ids, data.features, data.y, data.speakers):
        np.testing.assert_array_equal(x, np.array(rows[uid]["features"], dtype=np.float32))
        assert x.shape == (rows[uid]["n_frames"], 6) and x.dtype == np.float32
        assert data.labels[y] == rows[uid]["emotion"] and speaker == rows[uid]["speaker"]
    assert not data.dropped


def test_labels_outside_the_set_are_dropped_and_counted(tmp_path):
    table = feature_table(SPEAKERS, emotions=("angry", "sad", "boredom", "calm"), per_class=2)
    data = load_features(write_shards(tmp_path, table), ["sad", "angry"])
    assert data.labels == ("sad", "angry")
    assert sorted(data.labels[y] for y in data.y) == ["angry"] * 6 + ["sad"] * 6
    assert data.dropped == {"boredom": 6, "calm": 6}


def test_bad_shards_fail_loudly(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_features(tmp_path / "missing", RAVDESS_LABELS)
    table = feature_table(SPEAKERS[:1], per_class=1)
    pq.write_table(table.replace_schema_metadata(None), str(tmp_path / "features-0.parquet"))
    with pytest.raises(ValueError, match="ser.features"):
        load_features(tmp_path, RAVDESS_LABELS)
    wrong = table.set_column(table.schema.get_field_index("n_frames"), "n_frames",
                             pa.array([1] * table.num_rows, pa.int32()))
    pq.write_table(wrong, str(tmp_path / "features-0.parquet"))
    with pytest.raises(ValueError, match="n_frames"):
        load_features(tmp_path, RAVDESS_LABELS)


def test_global_normalisation_uses_training_speakers_only(tmp_path):
    data = load_features(write_shards(tmp_path, feature_table(SPEAKERS)), RAVDESS_LABELS)
    train = data.indices(["ravdess:01", "ravdess:02"])
    norm = Normaliser.fit("global", data, train)
    frames = np.concatenate([data.features[i] for i in train])
    np.testing.assert_allclose(norm.mean, frames.mean(0), rtol=1e-6)
    np.testing.assert_allclose(norm.std, frames.std(0), rtol=1e-6)
    # The test speaker's features change wildly: the statistics do not.
    for i in data.indices(["ravdess:03"]):
        data.features[i] = data.features[i] * 100 + 7
    again = Normaliser.fit("global", data, train)
    np.testing.assert_array_equal(again.mean, norm.mean)
    np.testing.assert_array_equal(again.std, norm.std)
    out = np.concatenate([x for i, x in enumerate(norm.apply(data)) if i in set(train)])
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
    assert json.dumps(norm.to_dict())  # plain JSON-able numbers for the checkpoint


def test_speaker_normalisation_uses_each_speakers_own_statistics(tmp_path):
    data = load_features(write_shards(tmp_path, feature_table(SPEAKERS)), RAVDESS_LABELS)
    norm = Normaliser.fit("speaker", data, data.indices(["ravdess:01"]))
    out = norm.apply(data)
    for speaker, _ in SPEAKERS:
        frames = np.concatenate([out[i] for i in data.indices([speaker])])
        np.testing.assert_allclose(frames.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(frames.std(0), 1, atol=1e-4)
    with pytest.raises(ValueError, match="normalisation"):
        Normaliser.fit("utterance", data, data.indices(["ravdess:01"]))


def with_copies(data, variant="speed0.9"):
    """``data`` plus one augmented copy of every row (other levels, the same clip)."""
    n = len(data.features)
    for i in range(n):
        data.utterance_ids.append(f"{data.utterance_ids[i]}#{variant}")
        data.speakers.append(data.speakers[i])
        data.genders.append(data.genders[i])
        data.features.append(data.features[i] * 3 + 5)
        data.sources.append(data.sources[i])
        data.variants.append(variant)
    data.y = np.concatenate([data.y, data.y])
    return data


def test_clip_groups_normalise_each_group_with_its_own_statistics(tmp_path):
    data = with_copies(load_features(write_shards(tmp_path, feature_table(SPEAKERS, per_class=2)),
                                     RAVDESS_LABELS))
    groups = ClipGroupStats(data, 6)
    rows = np.arange(len(data.features))
    out = groups.normalise(rows, np.random.default_rng(0))
    dealt = groups.groups(data.speakers, np.random.default_rng(0))  # the grouping normalise drew
    members: dict = {}
    for source, number in dealt.items():
        members.setdefault(number, []).append(source)
    # 16 clips per speaker dealt into 3 groups of at most 6 (6, 5, 5), one speaker each
    assert sorted(len(m) for m in members.values()) == [5, 5, 5, 5, 5, 5, 6, 6, 6]
    for sources in members.values():
        assert len({data.speakers[data.sources.index(s)] for s in sources}) == 1
        for variant in ("", "speed0.9"):
            frames = np.concatenate([out[i] for i in rows
                                     if data.sources[i] in sources and data.variants[i] == variant])
            np.testing.assert_allclose(frames.mean(0), 0, atol=1e-4)
            np.testing.assert_allclose(frames.std(0), 1, atol=1e-3)
    again = groups.normalise(rows, np.random.default_rng(1))
    assert not all(np.array_equal(a, b) for a, b in zip(out, again))  # a fresh grouping
    # groups as large as a speaker's clips: the whole-speaker normalisation of training
    whole = ClipGroupStats(data, 16).normalise(rows, np.random.default_rng(0))
    reference = Normaliser.fit("speaker", data, rows).apply(data)
    for a, b in zip(whole, reference):
        np.testing.assert_allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError, match="group_clips"):
        ClipGroupStats(data, 0)


def test_std_is_floored():
    mean, std = frame_stats([np.ones((5, 3), np.float32), np.ones((2, 3), np.float32)])
    np.testing.assert_array_equal(mean, 1)
    np.testing.assert_array_equal(std, STD_FLOOR)


def test_length_batches_cover_everything_once():
    lengths = np.random.default_rng(0).integers(5, 50, 103)
    for rng in (None, np.random.default_rng(1)):
        batches = length_batches(lengths, 8, rng)
        assert sorted(np.concatenate(batches).tolist()) == list(range(103))
        assert max(map(len, batches)) == 8
    ordered = np.concatenate(length_batches(lengths, 8))
    assert np.all(np.diff(lengths[ordered]) >= 0)
    a = length_batches(lengths, 8, np.random.default_rng(5))
    b = length_batches(lengths, 8, np.random.default_rng(5))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_collate_pads_with_zeros():
    tensors = [torch.ones(3, 2), torch.ones(5, 2) * 2]
    x, lengths = collate(tensors, [1, 0])
    assert x.shape == (2, 5, 2) and lengths.tolist() == [5, 3]
    assert torch.all(x[1, 3:] == 0) and torch.all(x[1, :3] == 1)
