"""A smoke run of the training chain on the 144 real RAVDESS clips (all 24 actors).

Too few clips to learn from (six per actor); the point is that real files go through
manifest -> features -> every paper fold -> evaluation -> a checkpoint that labels.
"""

import json

from pipelines import features as feature_pipeline
from ser_core.cli import main as ser_main
from ser_core.corpora import prepare
from ser_core.records import write_manifest
from ser_core.checkpoint import load_checkpoint


def test_real_clips_train_and_evaluate_on_the_paper_folds(real_ravdess, tmp_path):
    manifest = tmp_path / "manifest.parquet"
    write_manifest(prepare("ravdess", str(real_ravdess), strict=True).utterances, manifest)
    feature_pipeline.run(["--manifest", str(manifest), "--output", str(tmp_path / "features")])

    assert ser_main(["train", "--features", str(tmp_path / "features"), "--output", str(tmp_path / "train"),
                     "--epochs", "2", "--hidden", "16", "--no-progress"]) == 0
    assert ser_main(["evaluate", "--predictions", str(tmp_path / "train" / "predictions.csv"),
                     "--output-dir", str(tmp_path / "eval")]) == 0

    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_test"] == 144  # the five paper folds test every actor once
    assert 0.0 <= metrics["uar"] <= 1.0
    checkpoint = load_checkpoint(tmp_path / "train" / "final.pt")
    assert checkpoint.feature_config["sample_rate"] == 48000 and len(checkpoint.labels) == 8
