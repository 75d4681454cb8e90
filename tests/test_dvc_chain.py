"""The whole DVC chain (`dvc repro`) on a small copy of the default params.

demo corpus -> manifest -> features (both variants) -> train -> evaluate -> demo archive
-> label -> score, run by DVC itself in a copy of the project, exactly as `make demo` runs
it but with a small corpus and two epochs so it fits in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("pyproject.toml", "setup.py", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore",
          ".dvc/config", ".dvc/.gitignore", "ser_core", "pipelines")

SMALL = {
    "demo_corpus": {"speakers": 8, "sample_rate": 16000, "workers": 1},
    "variants": {"paper": {"kind": "logmel_deltas", "arch": "reslstm", "crop_frames": 0,
                           "sample_rate": 16000, "band_hz": "none", "fmin": 0.0, "fmax": "none",
                           "segmentation": "none", "stats_clips": 0, "augment": "speed0.9,speed1.1"},
                 "telephone": {"kind": "speaker_encoder", "arch": "pooled", "crop_frames": 0,
                               "sample_rate": 16000, "band_hz": "300,3400", "fmin": 300.0, "fmax": 3400.0,
                               "segmentation": "windows", "stats_clips": 10,
                               "augment": "speed0.9,speed1.1,hiss"}},
    "train": {"epochs": 2, "hidden": 16, "split": "speaker_kfold", "k": 4, "n_val": 1},
    "demo_archive": {"calls": 2, "minutes": 0.5},
}


def copy_project(dest: Path) -> None:
    """The files a clone has (what git tracks), under ``dest``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for rel in COPIED:
        src, dst = ROOT / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore)
        else:
            shutil.copy2(src, dst)


def small_params(path: Path) -> None:
    """params.yaml with the SMALL settings, so the chain fits in a test."""
    params = yaml.safe_load(path.read_text())
    for section, values in SMALL.items():
        if section == "variants":
            params[section] = values
        else:
            params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_dvc_repro_runs_the_whole_chain(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is needed for a DVC project")
    project = tmp_path / "project"
    copy_project(project)
    small_params(project / "params.yaml")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    run = lambda *cmd: subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)  # noqa: E731
    assert run("git", "init", "-q").returncode == 0

    repro = run("dvc", "repro")
    assert repro.returncode == 0, repro.stdout[-4000:] + repro.stderr[-4000:]

    manifest = pq.read_table(project / "data/manifest.parquet")
    assert manifest.num_rows == 8 * 60
    for variant in ("paper", "telephone"):
        features = pa.concat_tables(pq.read_table(p, columns=["source_id", "variant"])
                                    for p in sorted((project / "data/features" / variant).glob("features-*")))
        sources = set(features.column("source_id").to_pylist())
        errors = sum(pq.read_table(p).num_rows for p in (project / "data/features" / variant).glob("errors-*"))
        assert len(sources) + errors == manifest.num_rows  # every clip: rows (all its copies) or one error
        copies = SMALL["variants"][variant]["augment"].split(",")  # each variant's own
        assert set(features.column("variant").to_pylist()) == {"", *copies}
        if variant == "paper":  # whole clips: one row per clip and copy, no clip fails
            assert (features.num_rows, errors) == (3 * manifest.num_rows, 0)
        metrics = json.loads((project / "reports" / variant / "metrics.json").read_text())
        assert metrics["n_test"] == len(sources)  # every clip tested exactly once (windows pooled per clip)
        for key in ("uar", "wa", "per_class_recall", "uar_mean", "uar_std", "uar_max"):
            assert key in metrics
        assert (project / "models" / variant / "final.pt").is_file()
        assert (project / "reports" / variant / "confusion.png").stat().st_size > 0

    calls = sorted((project / "data/demo_archive").glob("*.wav"))
    labelled = sum(pq.read_table(p).num_rows for p in (project / "data/labels").glob("files-*.parquet"))
    errors = sum(pq.read_table(p).num_rows for p in (project / "data/labels").glob("errors-*.parquet"))
    assert (labelled, errors) == (len(calls), 0)
    label_metrics = json.loads((project / "reports/label/metrics.json").read_text())
    assert label_metrics["n_scored"] > 0 and 0.0 <= label_metrics["uar"] <= 1.0

    shown = run("dvc", "metrics", "show")
    assert shown.returncode == 0 and "reports/paper/metrics.json" in shown.stdout
    status = run("dvc", "status")
    assert status.returncode == 0 and "up to date" in status.stdout.lower()
    plots = run("dvc", "plots", "show")
    assert plots.returncode == 0 and (project / "dvc_plots" / "index.html").is_file(), plots.stderr

    # An experiment with one parameter changed re-runs training and what follows it.
    git = ("git", "-c", "user.name=ci", "-c", "user.email=ci@example.invalid")
    assert run("git", "add", "-A").returncode == 0
    assert run(*git, "commit", "-qm", "baseline").returncode == 0
    experiment = run("dvc", "exp", "run", "-S", "train.hidden=8")
    assert experiment.returncode == 0, experiment.stdout[-4000:] + experiment.stderr[-4000:]
    assert "Running stage 'train@paper'" in experiment.stdout
    assert "Running stage 'demo_corpus'" not in experiment.stdout
    checkpoint = torch.load(project / "models/paper/final.pt", weights_only=True)
    assert checkpoint["model_config"]["hidden"] == 8

    # The experiment and the baseline commit both carry their metrics and plot data (kept
    # in git), so they compare: numbers in every row of `dvc exp show`, in `metrics diff`.
    shown = run("dvc", "exp", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    baseline, experiment = _baseline_and_experiment(json.loads(shown.stdout))
    assert experiment["data"]["params"]["params.yaml"]["data"]["train"]["hidden"] == 8
    for row in (baseline, experiment):
        metrics = row["data"]["metrics"]
        for report in ("paper", "telephone", "label"):
            uar = metrics[f"reports/{report}/metrics.json"]["data"]["uar"]
            assert isinstance(uar, float) and 0.0 <= uar <= 1.0, (row["name"], report, uar)
    diff = run("dvc", "metrics", "diff", "--all", "--json")
    assert diff.returncode == 0, diff.stderr
    paper = json.loads(diff.stdout)["reports/paper/metrics.json"]["uar"]
    assert isinstance(paper["old"], float) and isinstance(paper["new"], float)
    assert paper["old"] == baseline["data"]["metrics"]["reports/paper/metrics.json"]["data"]["uar"]
    plots = run("dvc", "plots", "diff", "--json")
    assert plots.returncode == 0, plots.stderr
    revisions = _plot_revisions(json.loads(plots.stdout))
    for plot in ("reports/paper/confusion.csv", "reports/label/confusion.csv", "UAR per epoch (mean over folds)"):
        assert revisions.get(plot) == {"HEAD", "workspace"}, (plot, revisions)


def _baseline_and_experiment(shown: list[dict]) -> tuple[dict, dict]:
    """The committed baseline's row and its one experiment's row of `dvc exp show --json`."""
    (baseline,) = [row for row in shown if row["rev"] != "workspace"]
    (experiment,) = [rev for group in baseline["experiments"] for rev in group["revs"]]
    return baseline, experiment


def _plot_revisions(plots: dict) -> dict[str, set[str]]:
    """Plot -> the revisions `dvc plots diff --json` has data points from."""
    return {name: {point["rev"] for render in renders for point in render["content"]["data"]["values"]}
            for name, renders in plots["data"].items()
            if all(render.get("type") == "vega" for render in renders)}
