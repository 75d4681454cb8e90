"""Several corpora in one experiment: masked classes, corpus-balanced epochs, transfer
folds that never share a speaker, and the corpus x corpus matrix rebuilt from the runs."""

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ser_core.cli import main as ser
from ser_core.labels import RAVDESS_LABELS
from ser_core.metrics import argmax_within, uar
from ser_core.splits import TRANSFER_INDEX, corpus_transfer_folds, make_folds
from ser_core.training import fold as fold_module
from ser_core.training.augment import mixup_batch
from ser_core.training.data import load_features
from ser_core.training.config import TrainConfig
from ser_core.training.fold import balanced_draw, masked_cross_entropy, restricted_uar, train_fold
from ser_core.training.train import run_training
from ser_core.training.transfer import score_views, write_matrix
from tests.training.synth_features import feature_table, write_shards

SIX = ("neutral", "happy", "sad", "angry", "fearful", "surprised")  # nEMO's classes


def speakers(corpus, n):
    return [(f"{corpus}:{i:02d}", "male" if i % 2 else "female") for i in range(n)]


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory):
    """An 8-class corpus of 8 speakers and a 6-class one of 6 (separate feature folders)."""
    root = tmp_path_factory.mktemp("corpora")
    a = write_shards(root / "a", feature_table(speakers=speakers("alpha", 8), seed=1))
    b = write_shards(root / "b", feature_table(speakers=speakers("beta", 6), emotions=SIX, seed=2))
    return a, b


def test_a_class_a_corpus_lacks_never_enters_its_loss():
    torch.manual_seed(0)
    logits = torch.randn(4, 8, requires_grad=True)
    y = torch.tensor([0, 2, 7, 6])
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[:2, [1, 6, 7]] = False  # the first two clips' corpus has no calm, disgust, surprised
    for smoothing in (0.0, 0.1):
        loss = masked_cross_entropy(logits, y, mask, label_smoothing=smoothing)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.all(grad[:2, [1, 6, 7]] == 0)  # neither target nor negative
        assert torch.all(grad[2:] != 0)
        # the masked clips' loss is the cross-entropy over their own classes alone
        keep = [0, 2, 3, 4, 5]
        own = F.cross_entropy(logits[:2, keep], torch.tensor([0, 1]), label_smoothing=smoothing, reduction="sum")
        rest = F.cross_entropy(logits[2:], y[2:], label_smoothing=smoothing, reduction="sum")
        assert torch.allclose(loss, (own + rest) / 4, atol=1e-6)
    # even a huge logit on a missing class changes nothing for that clip
    bumped = logits.detach().clone()
    bumped[0, 7] = 1e4
    assert torch.allclose(masked_cross_entropy(bumped[:1], y[:1], mask[:1]),
                          masked_cross_entropy(logits.detach()[:1], y[:1], mask[:1]))
    # no mask, or every class allowed: exactly F.cross_entropy (single-corpus runs unchanged)
    w = torch.rand(8)
    assert torch.equal(masked_cross_entropy(logits, y, torch.ones(4, 8, dtype=torch.bool), w, 0.1),
                       F.cross_entropy(logits, y, weight=w, label_smoothing=0.1))


def test_balanced_epochs_give_each_corpus_an_equal_share():
    corpora = ["big"] * 900 + ["small"] * 100
    pick = balanced_draw(corpora, np.random.default_rng(0))
    share = np.mean(np.array(corpora)[pick] == "small")
    assert len(pick) == 1000 and 0.45 < share < 0.55
    assert balanced_draw(["one"] * 50, np.random.default_rng(0)) is None


def test_transfer_folds_never_share_a_speaker_and_test_whole_corpora():
    genders = dict(speakers("alpha", 8) + speakers("beta", 6) + speakers("gamma", 5))
    folds = corpus_transfer_folds(genders, n_val=2, seed=0)
    assert [t for t, _ in folds] == [("beta", "gamma"), ("alpha", "gamma"), ("alpha", "beta"),
                                     ("alpha",), ("beta",), ("gamma",)]
    val_of = {}
    for trained, fold in folds:
        parts = [set(fold.train), set(fold.val), set(fold.test)]
        assert sum(map(len, parts)) == len(set().union(*parts)) == len(genders)  # disjoint, complete
        assert {s.split(":")[0] for s in fold.train} == {s.split(":")[0] for s in fold.val} == set(trained)
        assert {s for s in genders if s.split(":")[0] not in trained} == set(fold.test)
        for s in fold.val:  # a corpus validates with the same speakers in every fold
            val_of.setdefault(s.split(":")[0], set()).add(s)
        assert fold.index >= TRANSFER_INDEX
    assert all(len(v) == 2 for v in val_of.values())
    with pytest.raises(ValueError, match="two corpora"):
        corpus_transfer_folds(dict(speakers("alpha", 8)))


def test_views_score_as_written_restricted_and_core4():
    labels = list(RAVDESS_LABELS)
    idx = {name: i for i, name in enumerate(labels)}
    y = np.array([idx[e] for e in ("neutral", "happy", "sad", "angry", "fearful", "surprised")])
    probs = np.full((6, 8), 0.01)
    probs[np.arange(6), y] = 0.2
    probs[0, idx["calm"]] = 0.5   # neutral clip: calm wins as written, neutral within its classes
    probs[4, idx["disgust"]] = 0.9  # fearful clip: disgust as written; restricted: fearful
    probs[5, idx["happy"]] = 0.3    # surprised clip: happy in every view but core4, where it is absent
    v = score_views(y, probs, labels)
    assert v["as_written"] == pytest.approx(3 / 6) and v["restricted"] == pytest.approx(5 / 6)
    assert v["core4"] == 1.0 and v["n_core_clips"] == 4 and v["chance"] == pytest.approx(1 / 6)
    assert v["shared"] == v["restricted"] and v["shared_classes"] == 6  # a model that learnt every class
    # A model that never learnt surprised: that clip is not counted against it, and the
    # other clips choose among the 5 classes both sides carry.
    learnt = np.ones(8, dtype=bool)
    learnt[idx["surprised"]] = False
    v = score_views(y, probs, labels, learnt)
    assert v["shared"] == 1.0 and v["shared_classes"] == 5 and v["shared_chance"] == pytest.approx(1 / 5)
    assert v["restricted"] == pytest.approx(5 / 6)  # the other views do not change


def test_multi_corpus_fold_masks_the_missing_classes_and_validates_per_corpus(two_corpora):
    data = load_features(list(two_corpora), RAVDESS_LABELS)
    assert sorted(set(data.corpora)) == ["alpha", "beta"]
    classes = data.corpus_classes(np.arange(len(data.y)))
    assert classes["beta"].sum() == 6 and not classes["beta"][[1, 6]].any() and classes["alpha"].all()
    folds = dict((t, f) for t, f in corpus_transfer_folds(data.speaker_genders()))
    cfg = TrainConfig(epochs=2, hidden=4, batch_size=16)
    result = train_fold(data, folds[("alpha",)], cfg, seed=0, progress=False)
    assert result.test_probs.shape == (6 * 6 * 2, 8)
    # validation: one corpus, all of its classes: restricted UAR is the plain UAR
    y = np.array([0, 1, 2]); p = np.eye(8)[[0, 1, 3]]
    assert restricted_uar(y, p, ["alpha"] * 3, {"alpha": np.ones(8, bool)}, 8) == pytest.approx(2 / 3)


def test_mixup_within_a_corpus_never_blends_two_corpora(two_corpora, features_dir, monkeypatch):
    """``mixup_pairs='corpus'``: in joint training every blend's partner is of the row's own
    corpus (batches do hold both corpora); 'batch' does blend across; with one corpus the
    two settings train identically."""
    data = load_features(list(two_corpora), RAVDESS_LABELS)
    fold = make_folds("speaker_kfold", data.speaker_genders(), k=3, n_val=2)[0]
    seen = []

    def recording(x, lengths, lam, gen, groups=None):
        out = mixup_batch(x, lengths, lam, gen, groups)
        seen.append((groups, out[2]))
        return out

    monkeypatch.setattr(fold_module, "mixup_batch", recording)
    cfg = TrainConfig(epochs=2, hidden=4, batch_size=16, mixup_alpha=0.4, mixup_pairs="corpus")
    within = train_fold(data, fold, cfg, seed=0, progress=False)
    assert seen and any(len(set(g.tolist())) > 1 for g, _ in seen)  # mixed batches were met
    assert all(torch.equal(g[perm], g) for g, perm in seen)
    seen.clear()
    across = train_fold(data, fold, dataclasses.replace(cfg, mixup_pairs="batch"), seed=0, progress=False)
    assert all(g is None for g, _ in seen) and within.history != across.history
    monkeypatch.undo()
    one = load_features(features_dir, RAVDESS_LABELS)
    one_fold = make_folds("ravdess_paper", one.speaker_genders())[0]
    a, b = (train_fold(one, one_fold, dataclasses.replace(cfg, mixup_pairs=m), seed=0, progress=False)
            for m in ("corpus", "batch"))
    assert a.history == b.history and np.array_equal(a.test_probs, b.test_probs)


def test_transfer_matrix_is_rebuilt_byte_identical_from_the_runs(tmp_path, two_corpora):
    a, b = two_corpora
    out = tmp_path / "transfer"
    args = ["transfer", "--features", str(a), "--features", str(b), "--output", str(out),
            "--epochs", "2", "--hidden", "4", "--batch-size", "16", "--no-progress"]
    assert ser(args) == 0
    first = (out / "matrix.json").read_bytes()
    matrix = json.loads(first)
    assert {(r["trained_on"], r["tested"], r["part"]) for r in matrix["mean"]} == {
        ("alpha", "beta", "val"), ("alpha", "beta", "test"), ("beta", "alpha", "val"), ("beta", "alpha", "test")}
    (out / "matrix.json").unlink()
    (out / "predictions.csv").unlink()
    write_matrix(out)
    assert (out / "matrix.json").read_bytes() == first
    assert ser(args) == 0 and (out / "matrix.json").read_bytes() == first  # finished runs are skipped
    page = tmp_path / "RESULTS.md"
    assert ser(["results", "--transfer", f"tiny={out}", "--output", str(page)]) == 0
    text = page.read_text()
    row = next(r for r in matrix["mean"] if r["trained_on"] == "alpha" and r["part"] == "test")
    assert f"| alpha | beta | test | {row['n_clips']} | 1 | {row['as_written']:.3f} ({row['chance']:.2f}) |" in text
    assert ser(["results", "--transfer", f"tiny={out}", "--output", str(tmp_path / "again.md")]) == 0
    assert (tmp_path / "again.md").read_text() == text
    # a page made earlier from other runs keeps its sections; the matrix section is replaced
    earlier = tmp_path / "earlier.md"
    earlier.write_text("# Results\n\nintro\n\n## Runs: pooled out-of-fold UAR\n\n| a | b |\n\n"
                       "## Between corpora: trained on some, tested on a corpus never heard (ser transfer)\n\nstale\n")
    for _ in range(2):
        assert ser(["results", "--transfer", f"tiny={out}", "--output", str(earlier), "--update"]) == 0
    updated = earlier.read_text()
    assert updated.startswith("# Results\n\nintro\n\n## Runs: pooled out-of-fold UAR\n\n| a | b |\n\n")
    assert "stale" not in updated and updated.endswith(text[text.index("## Between corpora"):].rstrip("\n") + "\n")
    check_speaker_section(tmp_path, out, matrix)


def check_speaker_section(tmp_path, out, matrix):
    """``ser results --transfer-speakers``: every tested speaker once per training set, with
    the 4-core-class UAR of its own clips, and each part's lowest / median / highest."""
    import csv

    page = tmp_path / "speakers.md"
    assert ser(["results", "--transfer-speakers", f"tiny={out}", "--transfer-speakers", f"again={out}",
                "--output", str(page)]) == 0
    rows = [line.strip("|").split("|") for line in page.read_text().splitlines() if line.startswith("| alpha")
            or line.startswith("| beta")]
    cells = {(r[0].strip(), r[1].strip(), r[2].strip()): [c.strip() for c in r[3:]] for r in rows}
    predictions = list(csv.DictReader(open(out / "predictions.csv")))
    labels = matrix["labels"]
    validation = {s for v in matrix["validation_speakers"].values() for s in v}
    learnt = {c: np.isin(labels, names) for c, names in matrix["corpus_classes"].items()}
    tested = sorted({(r["trained_on"], r["speaker"]) for r in predictions})
    assert len(tested) == 14 and len(cells) == 14 + 4  # 8 + 6 speakers, and 2 parts x 2 directions
    values = {}
    for trained, speaker in tested:
        mine = [r for r in predictions if r["trained_on"] == trained and r["speaker"] == speaker]
        y = np.array([labels.index(r["label"]) for r in mine])
        probs = np.array([[float(r["prob_" + label]) for label in labels] for r in mine])
        part = "val" if speaker in validation else "test"
        expected = score_views(y, probs, labels, learnt[trained])["core4"]
        assert cells[(trained, speaker, part)] == [f"{expected:.3f}"] * 2  # one column per recipe given
        values.setdefault((trained, part), []).append(expected)
    for (trained, part), v in values.items():
        spread = f"{min(v):.3f} / {np.median(v):.3f} / {max(v):.3f}"
        assert cells[(trained, "lowest / median / highest", part)] == [spread] * 2
    # a page made from run folders no longer at hand keeps their columns when others are added
    earlier = tmp_path / "earlier_speakers.md"
    earlier.write_text("# Results\n\n## Between corpora, per tested speaker\n\nold intro\n\n"
                       "| trained on | tested speaker | part | gone | again |\n|---|---|---|---|---|\n"
                       "| alpha | zeta:9 | test | 0.700 | 0.100 |\n"
                       "| alpha | lowest / median / highest | test | 0.700 / 0.700 / 0.700 | x |\n"
                       "\n## Later\n\nkept\n")
    for _ in range(2):  # once adds, twice changes nothing
        assert ser(["results", "--transfer-speakers", f"tiny={out}", "--transfer-speakers", f"again={out}",
                    "--output", str(earlier), "--update"]) == 0
    text = earlier.read_text()
    assert text.endswith("\n## Later\n\nkept\n") and "old intro" not in text
    merged = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ")]
    assert [c.strip() for c in merged[0][3:]] == ["gone", "again", "tiny"]  # given again: in place
    merged = {tuple(c.strip() for c in r[:3]): [c.strip() for c in r[3:]] for r in merged[1:]}
    merged_before = dict(merged)
    assert merged.pop(("alpha", "zeta:9", "test")) == ["0.700", "-", "-"]
    assert merged.pop(("alpha", "lowest / median / highest", "test")) == [
        "0.700 / 0.700 / 0.700", *cells[("alpha", "lowest / median / highest", "test")]]
    assert merged == {key: ["-", *both] for key, both in cells.items() if key != ("alpha", "lowest / median / highest", "test")}
    lines = text.splitlines()
    assert lines.index("| alpha | zeta:9 | test | 0.700 | - | - |") < min(
        i for i, line in enumerate(lines) if "lowest" in line)
    # the same runs under a new name replace the columns they made, in place
    assert ser(["results", "--transfer-speakers", f"renamed={out}", "--output", str(earlier), "--update"]) == 0
    renamed = [line.strip("|").split("|") for line in earlier.read_text().splitlines() if line.startswith("| ")]
    assert [c.strip() for c in renamed[0][3:]] == ["gone", "renamed"]
    renamed = {tuple(c.strip() for c in r[:3]): [c.strip() for c in r[3:]] for r in renamed[1:]}
    assert renamed == {key: [gone, tiny] for key, (gone, _, tiny) in merged_before.items()}


def test_evaluate_reports_each_corpus_as_written_and_restricted(tmp_path):
    """A joint model's out-of-fold predictions: per corpus, UAR as written (argmax over every
    label) and restricted to the classes that corpus's clips carry."""
    from ser_core.training.evaluate import compute_metrics, read_predictions
    from ser_core.training.train import prediction_fields
    from ser_core.storage import write_csv

    labels = list(RAVDESS_LABELS)
    rows = []
    for corpus, truth, probs in (
        ("alpha", "calm", {"calm": 0.6, "neutral": 0.4}),      # right as written
        ("alpha", "neutral", {"calm": 0.6, "neutral": 0.4}),   # wrong either way: alpha has calm
        ("beta", "neutral", {"calm": 0.6, "neutral": 0.4}),    # wrong as written, right restricted
        ("beta", "sad", {"disgust": 0.7, "sad": 0.3}),         # the same
    ):
        row = {"utterance_id": f"{corpus}:{len(rows)}", "speaker": f"{corpus}:s{len(rows)}", "gender": "female",
               "fold": 0, "seed": 0, "label": truth, "predicted": max(probs, key=probs.get), "temperature": "1.0"}
        row.update({f"prob_{label}": str(probs.get(label, 0.0)) for label in labels})
        rows.append(row)
    write_csv(tmp_path / "predictions.csv", rows, prediction_fields(labels))
    metrics, _, _ = compute_metrics(read_predictions(tmp_path / "predictions.csv"))
    assert metrics["per_corpus"] == {
        "alpha": {"n_test": 2, "uar": 0.5, "uar_restricted": 0.5},
        "beta": {"n_test": 2, "uar": 0.0, "uar_restricted": 1.0}}


def test_seeds_run_as_separate_processes_all_count(tmp_path, two_corpora, caplog):
    """One process per seed into one folder (one per core) gives the matrix that one process
    running both seeds gives; a seed still running is left out (said), not an error."""
    a, b = two_corpora
    base = ["transfer", "--features", str(a), "--features", str(b), "--epochs", "2", "--hidden", "4",
            "--batch-size", "16", "--no-progress"]
    together, apart = tmp_path / "together", tmp_path / "apart"
    assert ser(base + ["--output", str(together), "--seeds", "0", "1"]) == 0
    assert ser(base + ["--output", str(apart), "--seeds", "1"]) == 0
    assert ser(base + ["--output", str(apart), "--seeds", "0"]) == 0
    assert json.loads((apart / "transfer.json").read_text())["config"]["seeds"] == [0, 1]
    for name in ("transfer.json", "matrix.json", "predictions.csv"):
        assert (apart / name).read_bytes() == (together / name).read_bytes(), name
    # seed 1's run not finished (its predictions not yet written): seed 0 alone, and said
    (apart / "runs" / "seed1" / "alpha" / "predictions.csv").unlink()
    with caplog.at_level("WARNING"):
        matrix = write_matrix(apart)
    assert {s for r in matrix["mean"] for s in r["seeds"]} == {0}
    assert "seed 1 left out of the matrix" in caplog.text
    (apart / "runs" / "seed0" / "beta" / "predictions.csv").unlink()
    with pytest.raises(FileNotFoundError, match="no seed"):
        write_matrix(apart)


def test_another_experiment_in_the_folder_replaces_the_seed_list(tmp_path, two_corpora):
    a, b = two_corpora
    out = tmp_path / "transfer"
    base = ["transfer", "--features", str(a), "--features", str(b), "--output", str(out), "--hidden", "4",
            "--batch-size", "16", "--no-progress"]
    assert ser(base + ["--epochs", "1", "--seeds", "0"]) == 0
    assert ser(base + ["--epochs", "2", "--seeds", "1"]) == 0
    info = json.loads((out / "transfer.json").read_text())
    assert info["config"]["seeds"] == [1] and info["config"]["epochs"] == 2
    assert {s for r in json.loads((out / "matrix.json").read_text())["mean"] for s in r["seeds"]} == {1}


def test_seed_lists_merge_under_a_lock(tmp_path):
    """Processes started at once each merge their seeds into transfer.json one after another."""
    import multiprocessing

    from ser_core.storage import write_atomic
    from ser_core.training.transfer import RUN_INFO, folder_lock, merged_seeds

    info = {"labels": ["a"], "config": {"seeds": [0], "epochs": 2}}
    write_atomic(tmp_path / RUN_INFO, json.dumps(info))
    ctx = multiprocessing.get_context("fork")
    with folder_lock(tmp_path):  # held here: the children wait for it, then merge in turn
        children = [ctx.Process(target=_merge_seed, args=(tmp_path, seed)) for seed in range(1, 7)]
        for child in children:
            child.start()
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert json.loads((tmp_path / RUN_INFO).read_text())["config"]["seeds"] == list(range(7))
    assert merged_seeds(tmp_path / RUN_INFO, {"labels": ["b"], "config": {"seeds": [3]}}) == [3]  # another experiment


def _merge_seed(folder, seed):
    from ser_core.training.transfer import record_run_info

    record_run_info(folder, {"labels": ["a"], "config": {"seeds": [seed], "epochs": 2}})


def test_each_corpus_validates_and_the_criterion_is_their_mean(tmp_path, two_corpora, caplog):
    """Joint training with speaker folds: every corpus has validation speakers in every fold,
    each one's validation UAR is recorded (done.json, run.json, the log) and the kept epoch's
    figure is their mean, also when both corpora have every class (nothing masked)."""
    full = write_shards(tmp_path / "c", feature_table(speakers=speakers("gamma", 6), seed=3))
    for dirs in (list(two_corpora), [two_corpora[0], full]):
        data = load_features(dirs, RAVDESS_LABELS)
        classes = data.corpus_classes(np.arange(len(data.y)))
        fold = make_folds("speaker_kfold", data.speaker_genders(), k=3, n_val=1)[0]
        assert len({c.split(":")[0] for c in fold.val}) == 2
        result = train_fold(data, fold, TrainConfig(epochs=2, hidden=4, batch_size=16), seed=0, progress=False)
        assert sorted(result.val_uar_by_corpus) == sorted(set(data.corpora))
        assert result.val_uar == pytest.approx(np.mean(list(result.val_uar_by_corpus.values())))
        val_idx = data.indices(fold.val)
        corpora = np.array([data.corpora[val_idx[g[0]]] for g in data.clips(val_idx, positions=True)])
        for corpus, figure in result.val_uar_by_corpus.items():
            sel = corpora == corpus
            pred = argmax_within(result.val_probs[sel], classes[corpus])
            assert figure == pytest.approx(uar(result.val_y[sel], pred, 8))
    cfg = TrainConfig(epochs=1, hidden=4, batch_size=16, split="speaker_kfold", k=3, n_val=1, seeds=[0])
    with caplog.at_level(logging.INFO, logger="ser_core.training.train"):
        info = run_training(data, cfg, tmp_path / "run")
    assert all(set(r["val_uar_by_corpus"]) == {"alpha", "gamma"} for r in info["results"])
    assert "the mean over corpora, alpha " in caplog.text
