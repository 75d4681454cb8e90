"""dvc.yaml's stages depend on every setting their outputs depend on: a params.yaml change
that would change a model or a feature row must make `dvc repro` redo it."""

import dataclasses
from pathlib import Path

import yaml

from ser_core.segmentation import SegmentConfig

ROOT = Path(__file__).resolve().parents[1]


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_training_stages_depend_on_the_whole_train_section():
    for name in ("train", "transfer"):
        stage = stages()[name].get("do", stages()[name])
        assert "train" in stage["params"], name
    train = stages()["train"]["do"]
    for name in ("augment", "stats_clips"):  # set per variant, passed as flags
        assert f"--{name.replace('_', '-')} ${{item.{name}}}" in train["cmd"]
        assert f"variants.${{key}}.{name}" in train["params"]
    variants = yaml.safe_load((ROOT / "params.yaml").read_text())["variants"]
    assert all("stats_clips" in v and "augment" in v for v in variants.values())


def test_features_stage_tracks_every_segmentation_setting_params_yaml_holds():
    """The features stage cuts training clips with label's segmentation settings: each one
    params.yaml sets is among its params (a setting added to params.yaml but not here
    would change the rows without re-extracting them)."""
    features = stages()["features"]["do"]
    assert {"features", "variants.${key}"} <= set(features["params"])
    label = yaml.safe_load((ROOT / "params.yaml").read_text())["label"]
    cut = {f.name for f in dataclasses.fields(SegmentConfig)} & set(label)
    assert cut and {f"label.{name}" for name in cut} <= set(features["params"])
    assert "label" in stages()["label"]["params"]
