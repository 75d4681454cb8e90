"""dvc.yaml's train stage depends on every setting a trained fold depends on: a params.yaml
change that would change the model must make `dvc repro` retrain it."""

from pathlib import Path

import yaml

from ser_core.training.train import TrainConfig, result_settings

ROOT = Path(__file__).resolve().parents[1]


def test_train_stage_depends_on_every_result_setting():
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["do"]
    params, cmd = stage["params"], stage["cmd"]
    for name in [*result_settings(TrainConfig().to_dict()), "seeds"]:
        per_variant = f"--{name.replace('_', '-')} ${{item.{name}}}" in cmd
        assert f"train.{name}" in params or (per_variant and f"variants.${{key}}.{name}" in params), name
    variants = yaml.safe_load((ROOT / "params.yaml").read_text())["variants"]
    assert all("stats_clips" in v and "augment" in v for v in variants.values())
