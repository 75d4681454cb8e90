"""dvc.yaml's stages depend on every setting their outputs depend on: a params.yaml change
that would change a model or a feature row must make `dvc repro` redo it."""

import dataclasses
from pathlib import Path

import yaml

from ser_core.codebase import import_closure, imported_modules, module_file
from ser_core.segmentation import SegmentConfig

ROOT = Path(__file__).resolve().parents[1]


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_training_stages_depend_on_the_whole_train_section():
    for name in ("train", "transfer"):
        stage = stages()[name].get("do", stages()[name])
        assert "train" in stage["params"], name
    train = stages()["train"]["do"]
    per_variant = ("augment", "stats_clips", "arch", "crop_frames")  # set per variant, passed as flags
    transfer = stages()["transfer"]
    for name in per_variant:
        assert f"--{name.replace('_', '-')} ${{item.{name}}}" in train["cmd"]
        assert f"variants.${{key}}.{name}" in train["params"]
        assert f"--{name.replace('_', '-')} ${{variants.telephone.{name}}}" in transfer["cmd"]
        assert f"variants.telephone.{name}" in transfer["params"]
    variants = yaml.safe_load((ROOT / "params.yaml").read_text())["variants"]
    assert all(name in v for v in variants.values() for name in per_variant)


def test_training_stages_depend_on_the_code_that_trains():
    """Every training module the stage's command reaches, and every module the fold loop
    calls (the model, normalisation, adaptation, ...), is a dependency: editing one of them
    makes `dvc repro` train again."""
    fold = module_file("ser_core.training.fold")
    loop = {str(module_file(m).relative_to(ROOT)) for m in imported_modules(fold)}
    for name, entry in (("train", "ser_core.training.train"), ("transfer", "ser_core.training.transfer")):
        stage = stages()[name].get("do", stages()[name])
        reached = {str(p.relative_to(ROOT)) for p in import_closure(entry).values()}
        training = {f for f in reached if f.startswith("ser_core/training/") and not f.endswith("__init__.py")}
        missing = sorted((training | (loop & reached)) - set(stage["deps"]))
        assert not missing, f"dvc.yaml stage {name} does not depend on {missing}"
    assert "ser_core/training/adversarial.py" in loop and "ser_core/adaptation.py" in loop


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


def test_stages_that_extract_features_depend_on_every_front_end_module():
    """The features and label stages compute features: every module the front-ends reach
    (the voice descriptors, the pretrained encoder, ...) is among their dependencies, a
    file itself or in a folder they depend on."""
    reached = {str(p.relative_to(ROOT)) for p in import_closure("ser_core.features").values()}
    reached = {f for f in reached if not f.endswith("__init__.py")}
    assert {"ser_core/encoder.py", "ser_core/voice.py", "ser_core/spectral.py"} <= reached
    for name in ("features", "label"):
        stage = stages()[name].get("do", stages()[name])
        covered = [d.rstrip("/") for d in stage["deps"]]
        missing = sorted(f for f in reached if not any(f == d or f.startswith(d + "/") for d in covered))
        assert not missing, f"dvc.yaml stage {name} does not depend on {missing}"
