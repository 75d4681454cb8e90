import csv
import json

import numpy as np
import pytest
import torch
import yaml

from ser_core.cli import main as ser
from ser_core.metrics import apply_temperature
from ser_core.splits import RAVDESS_PAPER_FOLDS
from ser_core.batching import predict_logits
from ser_core.checkpoint import load_checkpoint
from ser_core.normalisation import frame_stats
from ser_core.training.data import load_features
from ser_core.training import train as train_module
from ser_core.training.config import TrainConfig
from ser_core.training.fold import fold_seed
from ser_core.params import ParamsError, build_config
from tests.training.synth_features import FEATURE_CONFIG

TINY = {"epochs": 2, "hidden": 4, "batch_size": 32, "seeds": [0, 1], "threads": 1}


def train(features_dir, output, tmp_path, **overrides):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {**TINY, **overrides}}))
    args = ["train", "--features", str(features_dir), "--output", str(output), "--params", str(params),
            "--no-progress"]
    assert ser(args) == 0
    return output


def read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def mtimes(output):
    return {p.relative_to(output): p.stat().st_mtime_ns for p in sorted(output.glob("runs/*/*.pt"))
            + sorted(output.glob("runs/*/*/*.pt"))}


@pytest.fixture(scope="module")
def trained(features_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    return train(features_dir, tmp / "out", tmp)


def test_every_utterance_is_tested_once_per_seed_in_its_papers_fold(trained, features_dir):
    rows = read(trained / "predictions.csv")
    data = load_features(features_dir, TrainConfig().labels)
    fold_of = {f"ravdess:{a:02d}": i for i, (test, _) in enumerate(RAVDESS_PAPER_FOLDS) for a in test}
    for seed in ("0", "1"):
        mine = [r for r in rows if r["seed"] == seed]
        assert sorted(r["utterance_id"] for r in mine) == data.utterance_ids
        assert all(int(r["fold"]) == fold_of[r["speaker"]] for r in mine)
    assert {k for k in rows[0] if k.startswith("prob_")} == {f"prob_{x}" for x in TrainConfig().labels}
    curves = read(trained / "curves.csv")
    assert [int(r["epoch"]) for r in curves] == [1, 2] and "val_uar" in curves[0]
    assert len(read(trained / "history.csv")) == 2 * 5 * 2
    info = json.loads((trained / "run.json").read_text())
    assert info["n_utterances"] == 384 and len(info["folds"]) == 5


def test_seeds_and_folds_get_different_streams(trained):
    assert len({fold_seed(s, f) for s in range(3) for f in range(-1, 5)}) == 18
    rows = read(trained / "predictions.csv")
    by_seed = {s: {r["utterance_id"]: r["prob_angry"] for r in rows if r["seed"] == s} for s in ("0", "1")}
    assert by_seed["0"] != by_seed["1"]


def test_final_checkpoint_is_self_describing(trained):
    raw = torch.load(trained / "final.pt", weights_only=True)
    assert raw["feature_config"] == dict(FEATURE_CONFIG, n_dims=6)
    assert raw["train_params"]["hidden"] == 4 and raw["normalisation"]["mode"] == "speaker"
    prov = raw["provenance"]
    assert prov["val_speakers"] == ["ravdess:03", "ravdess:06"] and prov["test_speakers"] == []
    assert len(prov["train_speakers"]) == 22 and "rule" in prov
    ckpt = load_checkpoint(trained / "final.pt")
    assert ckpt.model_config.n_dims == 6 and ckpt.labels == TrainConfig().labels


def test_fold_checkpoint_reproduces_its_predictions(trained, features_dir):
    data = load_features(features_dir, TrainConfig().labels)
    ckpt = load_checkpoint(trained / "runs" / "seed1" / "fold2" / "checkpoint.pt")
    rows = {r["utterance_id"]: r for r in read(trained / "predictions.csv")
            if r["seed"] == "1" and r["fold"] == "2"}
    for speaker in ckpt.provenance["test_speakers"]:
        idx = data.indices([speaker])
        feats = [data.features[i] for i in idx]
        probs = ckpt.predict_proba(feats, stats=frame_stats(feats))  # one speaker: own statistics
        for i, p in zip(idx, probs):
            row = rows[data.utterance_ids[i]]
            # predictions.csv holds the uncalibrated probabilities and the fold's temperature,
            # which the checkpoint applies (fitted on the fold's validation speakers)
            assert float(row["temperature"]) == pytest.approx(ckpt.temperature, rel=1e-5)
            expected = apply_temperature(np.array([[float(row[f"prob_{x}"]) for x in ckpt.labels]]),
                                         ckpt.temperature)[0]
            np.testing.assert_allclose(p, expected, atol=2e-5)
    assert ckpt.calibration["speakers"] == ckpt.provenance["val_speakers"] and ckpt.temperature != 1.0


def test_training_is_deterministic_and_restartable(trained, features_dir, tmp_path, monkeypatch):
    again = train(features_dir, tmp_path / "again", tmp_path)
    for name in ("predictions.csv", "history.csv", "run.json"):  # run.json holds no wall time
        assert (again / name).read_text() == (trained / name).read_text()
    timing = json.loads((again / "timing.json").read_text())["fold_seconds"]  # times live apart
    assert sorted(timing) == sorted([f"seed{s}/fold{f}" for s in (0, 1) for f in range(5)] + ["final"])
    assert all(v >= 0 for v in timing.values())
    a, b = (torch.load(p / "final.pt", weights_only=True)["state_dict"] for p in (trained, again))
    assert all(torch.equal(a[k], b[k]) for k in a)

    before = mtimes(again)
    train(features_dir, again, tmp_path)  # nothing to do: every fold is skipped
    assert mtimes(again) == before
    (again / "runs" / "seed1" / "fold3" / "done.json").unlink()  # as if interrupted there
    train(features_dir, again, tmp_path)
    changed = {k for k, v in mtimes(again).items() if before[k] != v}
    assert changed == {next(k for k in before if k.parts[1:] == ("seed1", "fold3", "checkpoint.pt"))}
    assert (again / "predictions.csv").read_text() == (trained / "predictions.csv").read_text()
    before = mtimes(again)
    train(features_dir, again, tmp_path, dropout=0.1)  # a param that matters: everything reruns
    assert all(before[k] != v for k, v in mtimes(again).items())
    before = mtimes(again)
    monkeypatch.setattr(train_module, "code_fingerprint", lambda: "edited")
    train(features_dir, again, tmp_path, dropout=0.1)  # so does a change of the training code
    assert all(before[k] != v for k, v in mtimes(again).items())


def test_flags_override_params_and_typos_are_errors(tmp_path, features_dir, capsys):
    cfg = build_config(TrainConfig, {"hidden": 32, "seeds": 3, "labels": "sad,angry"}, {"hidden": 128})
    assert cfg.hidden == 128 and cfg.seeds == [3] and cfg.labels == ["sad", "angry"]
    with pytest.raises(ParamsError, match="hiden"):
        build_config(TrainConfig, {"hiden": 32})
    with pytest.raises(ValueError, match="normalisation"):
        TrainConfig(normalisation="utterance")
    # the model's settings are checked with the rest, before any data is read
    with pytest.raises(ValueError, match=r"train\.hidden must be >= 1 \(0 only with arch 'pooled'\)"):
        TrainConfig(hidden=0)
    with pytest.raises(ValueError, match=r"train\.dropout"):
        TrainConfig(dropout=1.0)
    assert TrainConfig(arch="pooled", hidden=0).hidden == 0
    (tmp_path / "params.yaml").write_text("train:\n  epoch: 3\n")
    assert ser(["train", "--features", str(features_dir), "--output", str(tmp_path / "o"),
                "--params", str(tmp_path / "params.yaml")]) == 1
    assert "epoch" in capsys.readouterr().err


def test_learns_speaker_independently_and_evaluates(features_dir, tmp_path):
    out = train(features_dir, tmp_path / "out", tmp_path, epochs=12, hidden=16, batch_size=16,
                lr=3e-3, seeds=[0], split="speaker_kfold", k=4, n_val=2, arch="lstm",
                mask_padding=False)
    assert ser(["evaluate", "--predictions", str(out / "predictions.csv"),
                "--output-dir", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_test"] == 384 and metrics["n_runs"] == 1
    assert metrics["uar"] > 0.7  # chance is 0.125 (measured: 0.95)


def test_every_train_setting_is_a_flag_declared_by_its_field():
    """``ser train``'s overrides come from TrainConfig's fields: each one is a flag that
    sets exactly that field, and nothing else is."""
    import argparse

    from ser_core.training.config import add_overrides, config_from_args

    parser = argparse.ArgumentParser()
    parser.add_argument("--params", default=None)
    add_overrides(parser)
    given = {"arch": ("lstm", "lstm"), "hidden": ("7", 7), "dropout": ("0.1", 0.1), "epochs": ("3", 3),
             "labels": ("happy,sad", ["happy", "sad"]), "seeds": (["4", "5"], [4, 5]),
             "augment": ("speed0.9", ["speed0.9"]), "split": ("speaker_kfold", "speaker_kfold"),
             "crop_frames": ("20", 20), "threads": ("0", 0)}
    argv = [a for name, (value, _) in given.items()
            for a in ([f"--{name.replace('_', '-')}"] + (value if isinstance(value, list) else [value]))]
    cfg = config_from_args(parser.parse_args(argv + ["--no-mask-padding", "--no-balance-corpora"]))
    for name, (_, expected) in given.items():
        assert getattr(cfg, name) == expected, name
    assert cfg.mask_padding is False and cfg.balance_corpora is False
    untouched = set(TrainConfig().to_dict()) - set(given) - {"mask_padding", "balance_corpora"}
    assert all(getattr(cfg, n) == getattr(TrainConfig(), n) for n in untouched)
    dests = {a.dest for a in parser._actions} - {"help", "params"}
    assert dests == set(TrainConfig().to_dict())
    with pytest.raises(SystemExit):
        parser.parse_args(["--arch", "transformer"])  # choices come from the field too


def test_adapt_batchnorm_changes_the_test_predictions_not_the_model(trained, features_dir, tmp_path):
    """train.adapt_batchnorm: the fold's test speakers' windows (unlabelled) adapt the model
    that labels them; training, the saved checkpoint and its validation choice stay as they were."""
    from ser_core.adaptation import adapt_batchnorm

    adapted = train(features_dir, tmp_path / "adapted", tmp_path, adapt_batchnorm=True)
    for seed, fold in (("0", "0"), ("1", "2")):
        plain_ckpt = torch.load(trained / "runs" / f"seed{seed}" / f"fold{fold}" / "checkpoint.pt", weights_only=True)
        ckpt = torch.load(adapted / "runs" / f"seed{seed}" / f"fold{fold}" / "checkpoint.pt", weights_only=True)
        assert all(torch.equal(plain_ckpt["state_dict"][k], v) for k, v in ckpt["state_dict"].items())
    plain = {(r["seed"], r["utterance_id"]): r for r in read(trained / "predictions.csv")}
    rows = read(adapted / "predictions.csv")
    assert {(r["seed"], r["utterance_id"]) for r in rows} == set(plain)
    assert any(r["prob_happy"] != plain[(r["seed"], r["utterance_id"])]["prob_happy"] for r in rows)
    # the adapted probabilities are the checkpoint's, adapted on its test speakers' windows
    data = load_features(features_dir, TrainConfig().labels)
    ckpt = load_checkpoint(adapted / "runs" / "seed1" / "fold2" / "checkpoint.pt")
    idx = data.indices(ckpt.provenance["test_speakers"])
    normed = [torch.from_numpy(np.asarray(x, dtype=np.float32)) for i in idx
              for x in ckpt.normalise([data.features[i]], stats=frame_stats(
                  [data.features[j] for j in data.indices([data.speakers[i]])]))]
    model = adapt_batchnorm(ckpt.model, normed)
    probs = torch.softmax(predict_logits(model, normed), 1).numpy()
    by_id = {r["utterance_id"]: r for r in rows if r["seed"] == "1" and r["fold"] == "2"}
    for i, p in zip(idx, probs):
        np.testing.assert_allclose(p, [float(by_id[data.utterance_ids[i]][f"prob_{x}"]) for x in ckpt.labels],
                                   atol=2e-5)
