"""The training fingerprint covers the code ``ser train`` runs and nothing else: editing
``ser evaluate`` (its report wording) leaves finished folds valid, editing the model
does not."""

import shutil
from pathlib import Path

from ser_core.training.train import code_fingerprint, training_code

ROOT = Path(__file__).resolve().parents[2]


def test_training_code_is_what_train_imports():
    names = set(training_code())
    assert {"ser_core.model", "ser_core.splits", "ser_core.labels", "ser_core.normalisation",
            "ser_core.batching", "ser_core.checkpoint", "ser_core.metrics", "ser_core.training.data",
            "ser_core.training.train"} <= names
    assert "ser_core.training.evaluate" not in names
    assert not [n for n in names if n.startswith(("ser_core.inference", "pipelines"))]


def test_editing_evaluate_keeps_the_fingerprint_editing_the_model_changes_it(tmp_path):
    shutil.copytree(ROOT / "ser_core", tmp_path / "ser_core", ignore=shutil.ignore_patterns("__pycache__"))
    before = code_fingerprint(tmp_path)
    assert before == code_fingerprint()  # same code, wherever it lives

    evaluate = tmp_path / "ser_core" / "training" / "evaluate.py"
    text = evaluate.read_text()
    assert "# Evaluation:" in text
    evaluate.write_text(text.replace("# Evaluation:", "# Evaluation report:"))
    assert code_fingerprint(tmp_path) == before

    model = tmp_path / "ser_core" / "model.py"
    model.write_text(model.read_text() + "\n# a change to the model\n")
    assert code_fingerprint(tmp_path) != before
