"""Distilling a seed ensemble into one model on a corpus left out: the teachers' mean
probabilities, the loss over the classes the training corpora carry, and a left-out corpus
that takes part through its features and the teachers' predictions, never its labels."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from ser_core.cli import main as ser
from ser_core.labels import RAVDESS_LABELS
from ser_core.splits import corpus_transfer_folds
from ser_core.storage import write_csv
from ser_core.training.config import TrainConfig
from ser_core.training.data import load_features
from ser_core.training.distillation import Teacher, ensemble_probabilities
from ser_core.training.fold import train_fold
from ser_core.training.train import fold_key
from tests.training.test_transfer import SIX, speakers
from tests.training.synth_features import feature_table, write_shards

LABELS = ["neutral", "happy", "sad"]


def teachers(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "predictions.csv", rows, ["trained_on", "utterance_id", "seed"] + [f"prob_{c}" for c in LABELS])
    return folder


def row(trained, uid, seed, *p):
    return {"trained_on": trained, "utterance_id": uid, "seed": seed, **{f"prob_{c}": v for c, v in zip(LABELS, p)}}


def test_the_ensemble_is_the_mean_over_the_teachers_of_one_training_set(tmp_path):
    folder = teachers(tmp_path / "t", [row("a", "x", 0, 0.6, 0.2, 0.2), row("a", "x", 1, 0.2, 0.6, 0.2),
                                       row("b", "x", 0, 0.0, 0.0, 1.0), row("a", "y", 0, 0.1, 0.1, 0.8)])
    ensemble = ensemble_probabilities(folder, "a", LABELS)
    assert set(ensemble) == {"x", "y"}
    np.testing.assert_allclose(ensemble["x"], [0.4, 0.4, 0.2])
    np.testing.assert_allclose(ensemble["y"], [0.1, 0.1, 0.8])
    with pytest.raises(ValueError, match=r"no teacher was trained on 'c'.*\['a', 'b'\]"):
        ensemble_probabilities(folder, "c", LABELS)
    with pytest.raises(ValueError, match=r"lack the classes \['angry'\]"):
        ensemble_probabilities(folder, "a", LABELS + ["angry"])
    with pytest.raises(FileNotFoundError, match="finished ser transfer output"):
        ensemble_probabilities(tmp_path / "nothing", "a", LABELS)
    bad = teachers(tmp_path / "bad", [row("a", "x", 0, 0.5, float("nan"), 0.5)])
    with pytest.raises(ValueError, match="of 'x' .*not all finite"):
        ensemble_probabilities(bad, "a", LABELS)
    features = [torch.zeros(4, 2) for _ in range(3)]
    with pytest.raises(ValueError, match="did not label 1 of the target's clips"):
        Teacher.build(folder, "a", LABELS, ["x", "y", "z"], features, np.array([1, 2]), np.ones(3, bool),
                      1.0, 0, np.random.default_rng(0))


def test_the_loss_is_the_divergence_over_the_classes_the_training_corpora_carry(tmp_path):
    folder = teachers(tmp_path / "t", [row("a", "x", 0, 0.5, 0.3, 0.2), row("a", "y", 0, 0.1, 0.7, 0.2)])
    learnt = np.array([True, True, False])  # the training corpora have no 'sad'
    teacher = Teacher.build(folder, "a", LABELS, ["x", "y"], [torch.zeros(5, 2), torch.zeros(3, 2)],
                            np.array([0, 1]), learnt, 0.5, 0, np.random.default_rng(0))
    np.testing.assert_allclose(teacher.probs.numpy(), [[0.625, 0.375, 0.0], [0.125, 0.875, 0.0]], rtol=1e-6)
    # a clip the teachers gave only to a class never learnt: uniform over the learnt ones
    only_sad = teachers(tmp_path / "sad", [row("a", "z", 0, 0.0, 0.0, 1.0)])
    uniform = Teacher.build(only_sad, "a", LABELS, ["z"], [torch.zeros(5, 2)], np.array([0]), learnt, 1.0, 0,
                            np.random.default_rng(0))
    assert uniform.probs.tolist() == [[0.5, 0.5, 0.0]]
    rows, probs = teacher.batch(4)
    assert len(rows) == 4 and probs.shape == (4, 3)
    logits = torch.tensor([[0.2, -0.1, 3.0], [1.0, 0.5, -2.0]], requires_grad=True)
    loss = teacher.loss(logits, teacher.probs)
    q = torch.softmax(logits[:, :2], 1)
    p = teacher.probs[:, :2]
    expected = 0.5 * (p * (p.log() - q.log())).sum(1).mean()
    assert torch.allclose(loss, expected)
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.all(grad[:, 2] == 0)  # a class never learnt takes no part
    matched = torch.log(teacher.probs[:, :2].clamp_min(1e-12))
    assert abs(float(teacher.loss(torch.cat([matched, torch.zeros(2, 1)], 1), teacher.probs))) < 1e-6


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    a = write_shards(root / "a", feature_table(speakers=speakers("alpha", 8), seed=1))
    b = write_shards(root / "b", feature_table(speakers=speakers("beta", 6), emotions=SIX, seed=2))
    out = root / "teachers"  # a real seed ensemble: ser transfer, two seeds
    assert ser(["transfer", "--features", str(a), "--features", str(b), "--output", str(out), "--epochs", "2",
                "--hidden", "4", "--batch-size", "16", "--seeds", "0", "1", "--no-progress"]) == 0
    return load_features([a, b], RAVDESS_LABELS), out


def state_and_probs(result):
    return {k: v.clone() for k, v in result.model.state_dict().items()}, result.test_probs.copy()


def test_a_left_out_corpus_is_distilled_on_through_its_features_never_its_labels(corpora):
    data, teacher_dir = corpora
    fold = dict(corpus_transfer_folds(data.speaker_genders()))[("alpha",)]
    cfg = TrainConfig(epochs=3, hidden=4, batch_size=16, mixup_alpha=0.4, crop_frames=6, distil=1.0,
                      distil_from=str(teacher_dir), domain_adversarial=0.5)
    state, probs = state_and_probs(train_fold(data, fold, cfg, seed=0, progress=False))
    beta = np.array([c == "beta" for c in data.corpora])
    y = data.y.copy()
    y[beta] = np.random.default_rng(0).permutation(y[beta])
    assert (y != data.y).any()
    state2, probs2 = state_and_probs(train_fold(dataclasses.replace(data, y=y), fold, cfg, seed=0, progress=False))
    assert all(torch.equal(state[k], state2[k]) for k in state) and np.array_equal(probs, probs2)
    plain = dataclasses.replace(cfg, distil=0.0, distil_from="")
    plain_state, plain_probs = state_and_probs(train_fold(data, fold, plain, seed=0, progress=False))
    assert state.keys() == plain_state.keys() and not np.allclose(probs, plain_probs)


def test_the_teachers_are_part_of_a_runs_identity(corpora, tmp_path):
    data, teacher_dir = corpora
    fold = dict(corpus_transfer_folds(data.speaker_genders()))[("alpha",)]
    cfg = TrainConfig(distil=1.0, distil_from=str(teacher_dir))
    key = fold_key(cfg, fold, 0, "f", "c")
    other = tmp_path / "other"
    other.mkdir()
    text = (teacher_dir / "predictions.csv").read_text()
    (other / "predictions.csv").write_text(text.replace("0.", "0.1", 1))
    assert fold_key(dataclasses.replace(cfg, distil_from=str(other)), fold, 0, "f", "c") != key
    (other / "predictions.csv").write_text(text)
    assert fold_key(dataclasses.replace(cfg, distil_from=str(other)), fold, 0, "f", "c") != key  # another path


def test_a_student_run_through_ser_transfer_and_its_errors(corpora, tmp_path):
    data, teacher_dir = corpora
    out = tmp_path / "student"
    a, b = (str(p) for p in sorted({p.parent for p in teacher_dir.parent.glob("[ab]/*.parquet")}))
    assert ser(["transfer", "--features", a, "--features", b, "--output", str(out), "--epochs", "2",
                "--hidden", "4", "--batch-size", "16", "--no-progress", "--distil", "1",
                "--distil-from", str(teacher_dir)]) == 0
    info = json.loads((out / "matrix.json").read_text())
    assert info["config"]["distil"] == 1.0 and info["config"]["distil_from"] == str(teacher_dir)
    # a corpus left out is needed: the test speakers of one corpus trained on are not one
    alpha = sorted({s for s, c in zip(data.speakers, data.corpora) if c == "alpha"})
    fold = dataclasses.replace(next(iter(corpus_transfer_folds(data.speaker_genders())))[1],
                               train=tuple(alpha[:5]), val=tuple(alpha[5:6]), test=tuple(alpha[6:]))
    with pytest.raises(ValueError, match="train.distil needs a corpus left out"):
        train_fold(data, fold, TrainConfig(epochs=1, hidden=4, distil=1.0, distil_from=str(teacher_dir)),
                   seed=0, progress=False)
    for bad in ({"distil": 1.0}, {"distil_from": "x"}, {"distil": -1.0, "distil_from": "x"}):
        with pytest.raises(ValueError, match="train.distil must be >= 0"):
            TrainConfig(**bad)
