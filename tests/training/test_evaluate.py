import argparse
import csv
import json

import numpy as np
import pytest

from ser_core.features import describe
from ser_core.metrics import recall_per_class, uar
from ser_core.labels import RAVDESS_LABELS
from ser_core.training.evaluate import compute_metrics, evaluate, format_report, read_predictions
from ser_core.training.evaluate import main as evaluate_main

LABELS = ["a", "b", "c"]


def test_uar_is_the_mean_recall_over_present_classes():
    y = np.array([0, 0, 0, 0, 1, 1])
    pred = np.array([0, 0, 0, 1, 1, 0])
    np.testing.assert_allclose(recall_per_class(y, pred, 3), [0.75, 0.5, np.nan])
    assert uar(y, pred, 3) == pytest.approx(0.625)  # class c never occurs: not averaged in


def _write(path, rows):
    fields = ["utterance_id", "speaker", "gender", "fold", "seed", "label", "predicted"] + \
        [f"prob_{x}" for x in LABELS]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for uid, spk, fold, seed, label, pred in rows:
            w.writerow({"utterance_id": uid, "speaker": spk, "gender": "male", "fold": fold,
                        "seed": seed, "label": label, "predicted": pred,
                        **{f"prob_{x}": float(x == pred) for x in LABELS}})
    return path


# Six utterances, two folds, two seeds. Seed 0: 4/6 right; seed 1: all right.
TRUTH = [("u1", "s:1", 0, "a"), ("u2", "s:1", 0, "b"), ("u3", "s:1", 0, "c"),
         ("u4", "s:2", 1, "a"), ("u5", "s:2", 1, "b"), ("u6", "s:2", 1, "c")]
SEED0 = ["a", "b", "c", "b", "b", "a"]


def _rows():
    rows = [(u, s, f, 0, y, p) for (u, s, f, y), p in zip(TRUTH, SEED0)]
    return rows + [(u, s, f, 1, y, y) for u, s, f, y in TRUTH]


def test_metrics_pool_folds_the_papers_way_and_summarise_seeds(tmp_path):
    metrics, runs, folds = compute_metrics(read_predictions(_write(tmp_path / "p.csv", _rows())))
    # Seed 0 pooled: recalls a 1/2, b 2/2, c 1/2 -> UAR 2/3.
    assert [r["uar"] for r in runs] == pytest.approx([2 / 3, 1.0])
    assert metrics["uar_mean"] == pytest.approx(5 / 6) and metrics["uar"] == pytest.approx(5 / 6)
    assert metrics["uar_std"] == pytest.approx(np.std([2 / 3, 1], ddof=1))
    assert metrics["uar_std_ddof0"] == pytest.approx(1 / 6)
    assert metrics["uar_max"] == 1.0 and metrics["n_test"] == 6 and metrics["n_runs"] == 2
    assert metrics["wa"] == pytest.approx(10 / 12)
    assert metrics["per_class_recall"] == pytest.approx({"a": 0.75, "b": 1.0, "c": 0.75})
    # Seed 0 fold 1: a->b, b->b, c->a: UAR 1/3; fold 0 all right.
    assert [f["uar"] for f in folds] == pytest.approx([1.0, 1 / 3, 1.0, 1.0])
    assert metrics["fold_uar_mean"] == pytest.approx(5 / 6)


def test_an_utterance_tested_twice_in_one_run_is_an_error(tmp_path):
    rows = _rows() + [("u1", "s:1", 1, 0, "a", "a")]
    with pytest.raises(ValueError, match="more than once"):
        compute_metrics(read_predictions(_write(tmp_path / "p.csv", rows)))


def test_evaluate_writes_metrics_plots_and_report(tmp_path):
    run_info = {"config": {"arch": "reslstm", "hidden": 64, "split": "ravdess_paper",
                           "normalisation": "speaker", "epochs": 100, "seeds": [0, 1]}}
    metrics = evaluate(_write(tmp_path / "p.csv", _rows()), tmp_path / "out", run_info)
    out = tmp_path / "out"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for key in ("uar", "wa", "per_class_recall", "n_test", "uar_mean", "uar_std", "uar_max"):
        assert key in saved
    with open(out / "confusion.csv") as fh:
        confusion = list(csv.DictReader(fh))
    assert len(confusion) == 12 and set(confusion[0]) == {"actual", "predicted"}
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    with open(out / "speakers.csv") as fh:
        assert [r["speaker"] for r in csv.DictReader(fh)] == ["s:1", "s:2"]
    report = (out / "report.md").read_text()
    assert "0.6232 ± 0.0119" in report and "ResLSTM-SA-h64" in report
    other_labels = {"config": {**run_info["config"], "labels": LABELS}}
    assert "0.6232" not in format_report(metrics, [], other_labels)  # not comparable


def test_single_run_has_no_std():
    from ser_core.training.evaluate import Predictions
    p = Predictions(LABELS, ["u1", "u2"], np.array(["s:1", "s:1"]), np.array([0, 0]),
                    np.array([0, 0]), np.array([0, 1]), np.array([0, 1]), np.eye(3)[:2])
    metrics, _, _ = compute_metrics(p)
    assert metrics["uar_std"] is None and metrics["uar"] == 1.0
    assert "0.6232" not in format_report(metrics, [], None)  # no model named: no paper figure


def test_shared_view_needs_the_classes_the_model_was_trained_on():
    """``transfer_views``: "shared" scores the clips of classes the model learnt, chosen among
    them; a checkpoint that does not record them (older ones) gets no shared view."""
    from ser_core.metrics import uar as uar_of
    from ser_core.training.evaluate import Predictions, transfer_views

    labels = ["neutral", "happy", "sad", "angry"]
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[.1, .2, .7, 0], [.6, .3, .1, 0], [.5, .1, .4, 0], [.2, .7, .1, 0],
                      [.1, .5, .4, 0], [.3, .3, .4, 0]])
    p = Predictions(labels, [f"u{i}" for i in range(6)], np.array(["x:1"] * 6), np.zeros(6, int),
                    np.zeros(6, int), y, probs.argmax(1), probs)
    views = transfer_views(p, ["neutral", "happy", "angry"])  # never trained on sad
    keep = y < 2
    within = probs[keep][:, :2].argmax(1)
    assert views["views"]["shared"] == pytest.approx(uar_of(y[keep], within, 4))
    assert views["chance"]["shared"] == 0.5 and views["chance"]["restricted"] == pytest.approx(1 / 3)
    assert "shared" not in transfer_views(p)["views"] and "shared" not in transfer_views(p)["chance"]


def test_cross_corpus_scores_shared_labels_and_counts_the_rest(tmp_path, features_dir):
    """A RAVDESS-label model on a corpus with boredom (unknown to it) and without most of
    its labels: boredom is dropped and counted, the rest is scored over the shared labels,
    and predicting a label the corpus lacks is an error."""
    import yaml

    from ser_core.cli import main as ser
    from ser_core.metrics import uar as uar_of
    from tests.training.synth_features import feature_table, write_shards

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {"epochs": 2, "hidden": 4, "batch_size": 32, "seeds": [0]}}))
    assert ser(["train", "--features", str(features_dir), "--output", str(tmp_path / "run"),
                "--params", str(params), "--no-progress"]) == 0
    other = write_shards(tmp_path / "other", feature_table(
        speakers=[("emodb:03", "male"), ("emodb:08", "female")], emotions=("neutral", "happy", "sad", "boredom"),
        per_class=3, seed=7))
    out = tmp_path / "cross"
    assert ser(["evaluate", "--model", str(tmp_path / "run" / "final.pt"), "--features", str(other),
                "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    cc = metrics["cross_corpus"]
    assert cc["dropped"] == {"boredom": 6} and cc["n_dropped"] == 6
    assert cc["shared_labels"] == ["neutral", "happy", "sad"] and "calm" in cc["model_labels_absent_from_corpus"]
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == metrics["n_test"] == 18 and {r["label"] for r in rows} == {"neutral", "happy", "sad"}
    labels = list(RAVDESS_LABELS)
    y = np.array([labels.index(r["label"]) for r in rows])
    pred = np.array([labels.index(r["predicted"]) for r in rows])  # any of the model's 8 labels
    assert metrics["uar"] == pytest.approx(uar_of(y, pred, len(labels)))
    assert metrics["wa"] == pytest.approx(float(np.mean(y == pred)))
    # the views of ser transfer: as written (above), and chosen among the corpus's own classes
    probs = np.array([[float(r["prob_" + label]) for label in labels] for r in rows])
    own = [labels.index(c) for c in ("neutral", "happy", "sad")]
    within = np.array(own)[probs[:, own].argmax(1)]
    assert cc["views"]["as_written"] == pytest.approx(metrics["uar"])
    assert cc["views"]["restricted"] == pytest.approx(uar_of(y, within, len(labels)))
    assert cc["views"]["core4"] == pytest.approx(cc["views"]["restricted"])  # its 3 classes are all core
    # trained on all 8 labels (the checkpoint records them): shared = the corpus's classes
    assert cc["trained_classes"] == labels and cc["views"]["shared"] == pytest.approx(cc["views"]["restricted"])
    assert cc["chance"] == {"as_written": 1 / 3, "restricted": 1 / 3, "shared": 1 / 3, "core4": 1 / 3}
    # its report is a cross-corpus one: the views, the drops; no RAVDESS paper column beside another corpus
    report = (out / "report.md").read_text()
    assert report.startswith("# Cross-corpus:") and "| restricted (chosen among the corpus's classes) |" in report
    assert "{'boredom': 6}" in report and "paper" not in report
    with pytest.raises(ValueError, match="either --predictions"):
        evaluate_main(argparse.Namespace(model="x", features=None, predictions=None, output_dir=str(out),
                                         run_info=None))
    # --adapt-batchnorm: the same clips, the model's BatchNorm statistics re-estimated on them first
    adapted = tmp_path / "cross_adapted"
    assert ser(["evaluate", "--model", str(tmp_path / "run" / "final.pt"), "--features", str(other),
                "--output-dir", str(adapted), "--adapt-batchnorm"]) == 0
    assert json.loads((adapted / "metrics.json").read_text())["cross_corpus"]["adapt_batchnorm"] is True
    assert cc["adapt_batchnorm"] is False
    adapted_rows = list(csv.DictReader(open(adapted / "predictions.csv")))
    assert [r["utterance_id"] for r in adapted_rows] == [r["utterance_id"] for r in rows]
    assert any(a["prob_happy"] != b["prob_happy"] for a, b in zip(adapted_rows, rows))
    with pytest.raises(ValueError, match="adapts a --model"):
        evaluate_main(argparse.Namespace(model=None, features=None, predictions="p.csv", output_dir=str(out),
                                         run_info=None, adapt_batchnorm=True))


def test_seed_ensemble_and_calibration_are_reported_beside(tmp_path):
    rows = []
    for seed, probs in ((0, [[0.6, 0.4], [0.45, 0.55]]), (1, [[0.4, 0.6], [0.3, 0.7]])):
        for uid, label, p in zip(("u1", "u2"), ("a", "b"), probs):
            rows.append({"utterance_id": uid, "speaker": "s", "gender": "male", "fold": 0, "seed": seed,
                         "label": label, "predicted": "ab"[int(np.argmax(p))], "temperature": 2.0,
                         "prob_a": p[0], "prob_b": p[1]})
    path = tmp_path / "predictions.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    metrics, runs, _ = compute_metrics(read_predictions(path))
    assert [r["uar"] for r in runs] == [1.0, 0.5]
    # ensemble: u1 mean (0.5, 0.5) -> a (first on ties), u2 (0.375, 0.625) -> b
    assert metrics["ensemble_uar"] == 1.0 and metrics["ensemble_runs"] == 2
    from ser_core.metrics import apply_temperature, expected_calibration_error

    probs = np.array([[0.6, 0.4], [0.45, 0.55], [0.4, 0.6], [0.3, 0.7]])
    y = np.array([0, 1, 0, 1])
    assert metrics["uar_mean"] == 0.75
    assert metrics["ece"] == pytest.approx(expected_calibration_error(probs, y))
    assert metrics["ece_calibrated"] == pytest.approx(expected_calibration_error(apply_temperature(probs, 2.0), y))
    assert metrics["ece_calibrated"] != metrics["ece"]


def test_results_page_is_rebuilt_from_the_runs_and_trials(tmp_path, features_dir):
    """RESULTS.md is reproducible: rebuilt from the same runs it is byte-identical, and its
    figures are the ones compute_metrics gives for the runs' predictions."""
    import yaml

    from ser_core.cli import main as ser

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {"epochs": 2, "hidden": 4, "batch_size": 32, "seeds": [0, 1]},
                                      "tune": {"seeds": [3], "candidates": {"paper": {}, "mix": {"mixup_alpha": 0.4}}}}))
    run = tmp_path / "run"
    assert ser(["train", "--features", str(features_dir), "--output", str(run), "--params", str(params),
                "--no-progress"]) == 0
    assert ser(["tune", "--features", str(features_dir), "--output", str(tmp_path / "tune"),
                "--params", str(params)]) == 0
    args = ["results", "--run", f"tiny={run}", "--trials", str(tmp_path / "tune" / "trials.json"),
            "--output", str(tmp_path / "RESULTS.md")]
    assert ser(args) == 0
    first = (tmp_path / "RESULTS.md").read_text()
    assert ser(args) == 0 and (tmp_path / "RESULTS.md").read_text() == first
    metrics, runs, _ = compute_metrics(read_predictions(run / "predictions.csv"))
    row = next(line for line in first.splitlines() if line.startswith("| tiny |"))
    assert f"{metrics['uar_mean']:.4f} ± {metrics['uar_std']:.4f}" in row and f"{metrics['wa']:.4f}" in row
    trials = json.loads((tmp_path / "tune" / "trials.json").read_text())
    for t in trials.values():
        assert f"| {t['name']} | {describe(t['feature_config'])} |" in first and f"{t['val_uar']:.4f}" in first
    with pytest.raises(FileNotFoundError, match="run.json"):
        from ser_core.training.results import render
        render([("missing", tmp_path / "nowhere")], [], [])

    # Seeds trained at another time share the row of their recipe (repeated NAME) ...
    more = tmp_path / "more"
    assert ser(["train", "--features", str(features_dir), "--output", str(more), "--params", str(params),
                "--no-progress", "--seeds", "2"]) == 0
    pooled_page = render([("tiny", run), ("tiny", more)], [], [])
    rows = [line for line in pooled_page.splitlines() if line.startswith("| tiny |")]
    both = (run / "predictions.csv").read_text() + "".join(
        (more / "predictions.csv").read_text().splitlines(keepends=True)[1:])
    (tmp_path / "both.csv").write_text(both)
    pooled, pooled_runs, _ = compute_metrics(read_predictions(tmp_path / "both.csv"))
    assert len(rows) == 1 and f"| 3 | {pooled['uar_mean']:.4f} ± {pooled['uar_std']:.4f} |" in rows[0]
    assert [r["seed"] for r in pooled_runs] == [0, 1, 2]
    # ... but never a run of other settings, nor the same seed twice
    other = tmp_path / "other"
    assert ser(["train", "--features", str(features_dir), "--output", str(other), "--params", str(params),
                "--no-progress", "--seeds", "3", "--hidden", "6"]) == 0
    with pytest.raises(ValueError, match="hidden"):
        render([("tiny", run), ("tiny", other)], [], [])
    with pytest.raises(ValueError, match="more than once"):
        render([("tiny", run), ("tiny", run)], [], [])


def test_update_replaces_only_the_sections_and_recipes_given():
    """``ser results --update``: a section given replaces its namesake; in a section of
    ``###`` recipes (the transfer matrices), only the recipes given are replaced or added."""
    from ser_core.training.results import update

    page = "\n".join(["# Results", "", "## Runs", "", "old runs", "", "## Between corpora", "", "intro",
                      "", "### a", "", "old a", "", "### b", "", "old b", ""])
    new = update(page, [["## Between corpora", "", "intro", "", "### b", "", "new b", "", "### c", "", "new c", ""],
                        ["## Runs", "", "new runs", ""]])
    assert new.split("\n") == ["# Results", "", "## Runs", "", "new runs", "", "## Between corpora", "", "intro",
                               "", "### a", "", "old a", "", "### b", "", "new b", "", "### c", "", "new c", ""]


def test_update_replaces_only_the_rows_of_the_runs_given():
    """In the runs, cross-corpus and per-corpus tables a run's row (and its recipe line) is
    what a NAME replaces or adds: runs made at different times share one table, each row
    still generated; a table whose columns changed is replaced whole."""
    from ser_core.training.results import PER_CORPUS_HEADING, RUNS_HEADING, update

    header, rule = "| run | UAR |", "|---|---|"
    page = "\n".join(["# Results", "", RUNS_HEADING, "", header, rule, "| a | 0.5 |", "| b | 0.6 |", "",
                      "Recipes:", "", "- a: front-end x; seeds [0]", "- b: front-end y; seeds [0]", "",
                      PER_CORPUS_HEADING, "", "intro", "", "| model | tested on |", "|---|---|",
                      "| j | x |", "| j | y |", "| k | x |", ""])
    new = update(page, [[RUNS_HEADING, "", header, rule, "| b | 0.7 |", "| c | 0.8 |", "", "Recipes:", "",
                         "- b: front-end z; seeds [1]", "- c: front-end w; seeds [0]", ""],
                        [PER_CORPUS_HEADING, "", "intro", "", "| model | tested on |", "|---|---|", "| j | z |", ""]])
    assert new.split("\n") == [
        "# Results", "", RUNS_HEADING, "", header, rule, "| a | 0.5 |", "| b | 0.7 |", "| c | 0.8 |", "",
        "Recipes:", "", "- a: front-end x; seeds [0]", "- b: front-end z; seeds [1]", "- c: front-end w; seeds [0]",
        "", PER_CORPUS_HEADING, "", "intro", "", "| model | tested on |", "|---|---|", "| k | x |", "| j | z |", ""]
    # a NAME may hold ": " itself: its recipe line is still its own
    named = update(page, [[RUNS_HEADING, "", header, rule, "| b: more | 0.9 |", "", "Recipes:", "",
                           "- b: more: front-end v; seeds [2]", ""]])
    assert "- b: front-end y; seeds [0]" in named and "- b: more: front-end v; seeds [2]" in named
    other_columns = update(page, [[RUNS_HEADING, "", "| run | UAR | seeds |", "|---|---|---|", "| c | 0.8 | 1 |", ""]])
    assert "| a | 0.5 |" not in other_columns and "| c | 0.8 | 1 |" in other_columns


def test_per_corpus_section_scores_each_corpus_as_written_and_restricted(tmp_path):
    """``ser results --per-corpus``: a model trained on two corpora, each corpus's pooled
    UAR as written (among all labels) and restricted to the classes its clips carry."""
    from ser_core.features import FeatureConfig
    from ser_core.training.results import PER_CORPUS_HEADING, render

    run = tmp_path / "joint"
    run.mkdir()
    _write(run / "predictions.csv", [
        ("u1", "x:1", 0, 0, "a", "a"), ("u2", "x:1", 0, 0, "b", "b"),  # x: a 1/2, b 2/2 -> 0.75
        ("u3", "x:1", 0, 0, "a", "b"), ("u4", "x:1", 0, 0, "b", "b"),
        ("u5", "y:2", 1, 0, "a", "a"), ("u6", "y:2", 1, 0, "c", "c"),  # y as written: a 1/2, c 1/2 -> 0.5
        ("u7", "y:2", 1, 0, "c", "b"), ("u8", "y:2", 1, 0, "a", "b"),  # y has no b: restricted u7 -> a, u8 -> a
    ])
    (run / "run.json").write_text(json.dumps({"config": {"seeds": [0], "split": "speaker_kfold"},
                                              "feature_config": FeatureConfig().to_dict()}))
    page = render([], [], [], per_corpus=[("joint", run)])
    assert PER_CORPUS_HEADING in page
    rows = {line.split(" | ")[1]: line for line in page.splitlines() if line.startswith("| joint |")}
    assert rows["x"].endswith("| 0.7500 | 0.7500 |") and "| 4 | 1 | speaker_kfold |" in rows["x"]
    assert rows["y"].endswith("| 0.5000 | 0.7500 |")


def test_per_corpus_rows_pool_the_seeds_of_one_recipe(tmp_path):
    """Folders given one name in ``--per-corpus`` are one recipe's seeds: a row per corpus
    with the mean and std (ddof=1) over seeds; runs of other settings are refused, except
    settings that act only between corpora when every run holds one corpus."""
    from ser_core.features import FeatureConfig
    from ser_core.training.results import render

    def run(name, seed, x_right, config=None, corpora=("x", "y")):
        folder = tmp_path / name
        folder.mkdir()
        rows = [(f"u{i}", f"{corpora[i % len(corpora)]}:1", 0, seed, "a", "a" if i < x_right else "b")
                for i in range(4)]
        _write(folder / "predictions.csv", rows)
        folds = [{"train": [], "val": [], "test": sorted({r[1] for r in rows})}]
        (folder / "run.json").write_text(json.dumps({"config": {"seeds": [seed], "split": "speaker_kfold",
                                                                **(config or {})},
                                                     "feature_config": FeatureConfig().to_dict(), "folds": folds}))
        return folder

    pairs = [("r", run("s0", 0, 4)), ("r", run("s1", 1, 2))]  # corpus x: u0 u2 right, then u0 only
    rows = [line for line in render([], [], [], per_corpus=pairs).splitlines() if line.startswith("| r |")]
    x = next(line for line in rows if line.startswith("| r | x |"))
    assert "| 2 | 2 | speaker_kfold |" in x  # 2 clips, 2 seeds
    # as written: 1.0 and 0.5; restricted to x's one class (a), every clip is right
    assert x.endswith(f"| 0.7500 ± {np.std([1.0, 0.5], ddof=1):.4f} | 1.0000 ± 0.0000 |")
    with pytest.raises(ValueError, match="other settings"):
        render([], [], [], per_corpus=[("q", run("q0", 0, 4)), ("q", run("q1", 1, 4, {"mixup_pairs": "corpus"}))])
    with pytest.raises(ValueError, match="the same seed"):
        render([], [], [], per_corpus=[("d", run("d0", 0, 4)), ("d", run("d1", 0, 2))])
    one = [("o", run("o0", 0, 4, corpora=("x",))), ("o", run("o1", 1, 4, {"mixup_pairs": "corpus"}, ("x",)))]
    assert "| o | x | 4 | 2 |" in render([], [], [], per_corpus=one)
    with pytest.raises(ValueError, match="other settings"):
        render([], [], [], per_corpus=[one[0], ("o", run("o2", 2, 4, {"lr": 0.1}, ("x",)))])


def test_a_recipe_line_names_every_setting_that_is_not_the_default():
    """A transfer section's recipe: the training settings always, the model's and the
    optimiser's where they differ from the defaults, the teachers' folder after ``distil``."""
    from ser_core.training.config import TrainConfig
    from ser_core.training.results import recipe_of

    default = TrainConfig().to_dict()
    line = recipe_of(default)
    assert "crop_frames=0" in line and "distil=0.0" in line and "arch=" not in line and "weight_decay" not in line
    changed = recipe_of({**default, "arch": "pooled", "hidden": 0, "weight_decay": 0.05, "distil": 1.0,
                         "distil_from": "runs/teachers"})
    assert changed.endswith("distil=1.0 from teachers, arch=pooled, hidden=0, weight_decay=0.05")
