"""Features shards -> arrays: the utterances of an experiment, with integer labels.

Reads ``DIR/features-*.parquet`` through the shard contract
(:mod:`ser_core.feature_shards`): one row per utterance with ``features`` (frames x dims,
float32) and the feature configuration in the schema metadata ``ser.features``. Utterances whose emotion is outside the experiment's label set
are dropped and counted (:func:`ser_core.labels.select_labels`), never relabelled.
Normalisation (:mod:`ser_core.normalisation`) and batching (:mod:`ser_core.batching`)
are shared with labelling and live beside the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ser_core.feature_shards import (COLUMNS, FEATURES_PREFIX, ORIGINAL, ROW_COLUMNS, read_feature_config,
                                     read_rows_config, read_shard, segmentation_differences)
from ser_core.features import frontend_differences
from ser_core.labels import select_labels
from ser_core.splits import corpus_of
from ser_core.storage import shard_paths

log = logging.getLogger(__name__)


@dataclass
class FeatureSet:
    """The utterances of an experiment, sorted by id, with integer labels."""

    utterance_ids: list[str]
    speakers: list[str]
    genders: list[str]
    features: list[np.ndarray]  # each (T, D) float32
    y: np.ndarray  # (N,) int64 index into labels
    labels: tuple[str, ...]
    feature_config: dict
    dropped: Counter = field(default_factory=Counter)
    rows_config: dict = field(default_factory=dict)  # ser.rows metadata: augmentations, segmentation
    sources: list[str] = field(default_factory=list)  # the clip each row comes from (= id for originals)
    variants: list[str] = field(default_factory=list)  # "" for an original row, else the augmentation
    corpora: list[str] = field(default_factory=list)  # each row's corpus (default: the speaker's namespace)

    def __post_init__(self) -> None:
        if not self.sources:
            self.sources = list(self.utterance_ids)
        if not self.variants:
            self.variants = [ORIGINAL] * len(self.utterance_ids)
        if not self.corpora:
            self.corpora = [corpus_of(s) for s in self.speakers]

    def corpus_classes(self, idx: Sequence[int]) -> dict[str, np.ndarray]:
        """Per corpus, which classes its rows among ``idx`` carry: (C,) bool. A class a
        corpus lacks is neither a target nor a negative for its clips (:func:`class_masks`)."""
        out: dict[str, np.ndarray] = {}
        for i in idx:
            out.setdefault(self.corpora[i], np.zeros(len(self.labels), dtype=bool))[self.y[i]] = True
        return out

    def class_masks(self, idx: Sequence[int], classes: dict[str, np.ndarray]) -> np.ndarray:
        """(len(idx), C) bool: the classes of each row's corpus, from :meth:`corpus_classes`."""
        every = np.ones(len(self.labels), dtype=bool)
        return np.stack([classes.get(self.corpora[i], every) for i in idx]) if len(idx) else \
            np.zeros((0, len(self.labels)), dtype=bool)

    @property
    def n_dims(self) -> int:
        return int(self.features[0].shape[1])

    def speaker_genders(self) -> dict[str, str]:
        return dict(zip(self.speakers, self.genders))

    def indices(self, speakers: Sequence[str], variants: Sequence[str] = (ORIGINAL,)) -> np.ndarray:
        """Row indices of ``speakers``' rows of the given ``variants`` (originals by default:
        validation and test never see an augmented row)."""
        wanted, kinds = set(speakers), set(variants)
        return np.array([i for i, (s, v) in enumerate(zip(self.speakers, self.variants))
                         if s in wanted and v in kinds], dtype=np.int64)

    def clips(self, idx: Sequence[int], positions: bool = False) -> list[np.ndarray]:
        """``idx`` grouped by source clip, clips in first-seen order: the row indices of each
        clip (or, with ``positions``, their positions within ``idx``). Whole-clip rows give
        one row per clip; windowed rows give every window of the clip."""
        groups: dict[str, list[int]] = {}
        for pos, i in enumerate(idx):
            groups.setdefault(self.sources[i], []).append(pos if positions else int(i))
        return [np.array(g, dtype=np.int64) for g in groups.values()]

    @property
    def augmentations(self) -> list[str]:
        """The augmentation variants these rows hold (sorted)."""
        return sorted(set(self.variants) - {ORIGINAL})

    def fingerprint(self) -> str:
        """A digest of everything training reads, to tell whether finished folds still hold."""
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps([self.feature_config, list(self.labels), self.utterance_ids,
                             self.speakers, self.y.tolist(), self.sources, self.variants],
                            sort_keys=True).encode())
        for x in self.features:
            h.update(np.ascontiguousarray(x).data)
        return h.hexdigest()


def load_features(features_dir: str | Path | Sequence[str | Path], labels: Sequence[str]) -> FeatureSet:
    """Every shard in ``features_dir`` (or in each of several folders, e.g. one per corpus,
    made with one feature configuration), keeping the utterances whose emotion is in ``labels``."""
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise ValueError(f"labels must be at least two distinct names, got {list(labels)}")
    folders = [features_dir] if isinstance(features_dir, (str, Path)) else list(features_dir)
    paths = []
    for folder in folders:
        found = shard_paths(folder, FEATURES_PREFIX)
        if not found:
            raise FileNotFoundError(f"no {FEATURES_PREFIX}-*.parquet shards in {folder}")
        paths += found
    where = ", ".join(map(str, folders))
    config = read_feature_config(paths[0])
    rows_config = read_rows_config(paths[0])
    columns: dict[str, list] = {c: [] for c in COLUMNS + ROW_COLUMNS if c != "features"}
    arrays: list[np.ndarray] = []
    for path in paths:
        differences = (frontend_differences(config, read_feature_config(path))
                       + segmentation_differences(rows_config["segmentation"], read_rows_config(path)["segmentation"]))
        if differences:
            raise ValueError(f"{path} was made otherwise than {paths[0]} ({'; '.join(differences)}): "
                             "features read together must come from one front-end and one cut")
        shard_columns, shard_arrays = read_shard(path)
        for name, values in shard_columns.items():
            columns[name] += values
        arrays += shard_arrays
    if len(set(columns["utterance_id"])) != len(arrays):
        raise ValueError(f"duplicate utterance ids across the shards in {where}")
    dims = {x.shape[1] for x in arrays}
    if len(dims) > 1 or dims - {config.get("n_dims", min(dims, default=0))}:
        raise ValueError(f"shards in {where} have {sorted(dims)} feature dimensions, "
                         f"ser.features says n_dims={config.get('n_dims')}")
    kept, dropped = select_labels(columns["emotion"], labels)
    # Sorted by id: shard layout (which worker wrote which row) must not change training.
    kept.sort(key=lambda i: columns["utterance_id"][i])
    if dropped:
        log.info("dropped %d utterance(s) outside the label set: %s",
                 sum(dropped.values()), dict(sorted(dropped.items())))
    if not kept:
        raise ValueError(f"no utterance in {where} has one of the labels {list(labels)}")
    if len(folders) > 1:  # the augmentations every folder's rows hold
        rows_config = {**rows_config, "augment": sorted(set(columns["variant"]) - {ORIGINAL})}
    index = {label: i for i, label in enumerate(labels)}
    return FeatureSet(
        utterance_ids=[columns["utterance_id"][i] for i in kept],
        speakers=[columns["speaker"][i] for i in kept],
        genders=[columns["gender"][i] for i in kept],
        features=[arrays[i] for i in kept],
        y=np.array([index[columns["emotion"][i]] for i in kept], dtype=np.int64),
        labels=tuple(labels),
        feature_config=config,
        rows_config=rows_config,
        dropped=dropped,
        sources=[columns["source_id"][i] for i in kept],
        variants=[columns["variant"][i] for i in kept],
        corpora=[columns["corpus"][i] for i in kept],
    )
