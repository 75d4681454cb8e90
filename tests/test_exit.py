"""Every short ``ser`` command exits 0 every time it succeeds, under load.

The failure this guards against is not in our logic but at interpreter teardown: a native
thread left running (pyarrow's reader threads after a Parquet file was read from a Python
file object) aborted about one ``ser score`` in ten with SIGABRT when several ran at once,
after its outputs were written, so DVC failed the stage. Each command runs here as the
console script, several at a time, many times; every run must exit 0.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from ser_core.cli import main as ser
from tests.onnx_checkpoints import make_checkpoint
from tests.training.synth_features import feature_table, write_shards

RUNS = 6        # runs of each command
CONCURRENT = 4  # at once (the abort showed under load)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, real_ravdess):
    """A trained run, a checkpoint, a labelled call and its ground truth, a corpus."""
    root = tmp_path_factory.mktemp("exit")
    features = write_shards(root / "features", feature_table(per_class=1))
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {"epochs": 1, "hidden": 4, "batch_size": 32, "seeds": [0]}}))
    assert ser(["train", "--features", str(features), "--output", str(root / "run"), "--params", str(params),
                "--no-progress"]) == 0
    model = make_checkpoint(root / "m.pt")
    assert ser(["demo-archive", str(root / "archive"), "--calls", "1", "--minutes", "0.3", "--no-progress"]) == 0
    assert ser(["label", "--model", str(model), "--input", str(root / "archive" / "*.wav"),
                "--output", str(root / "labels")]) == 0
    return {"root": root, "run": root / "run", "model": model, "labels": root / "labels",
            "truth": root / "archive" / "ground_truth.csv", "corpus": real_ravdess}


def commands(inputs, i: int) -> dict[str, list[str]]:
    out = inputs["root"] / f"out{i}"
    return {
        "score": ["score", "--segments", str(inputs["labels"]), "--ground-truth", str(inputs["truth"]),
                  "--output", str(out / "score.json")],
        "evaluate": ["evaluate", "--predictions", str(inputs["run"] / "predictions.csv"),
                     "--run-info", str(inputs["run"] / "run.json"), "--output-dir", str(out / "evaluate")],
        "results": ["results", "--run", f"tiny={inputs['run']}", "--output", str(out / "RESULTS.md")],
        "report": ["report", str(inputs["labels"]), "--output", str(out / "report.html")],
        "export": ["export", str(inputs["model"]), "--output", str(out / "m.onnx"), "--int8"],
        "manifest": ["manifest", f"ravdess={inputs['corpus']}", "--output", str(out / "manifest.parquet")],
    }


def run_console_script(argv: list[str]) -> subprocess.CompletedProcess:
    ser_script = shutil.which("ser") or ""
    prefix = [ser_script] if ser_script else [sys.executable, "-m", "ser_core.cli"]
    return subprocess.run(prefix + argv, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["score", "evaluate", "results", "report", "export", "manifest"])
def test_short_commands_exit_0_every_time(inputs, name):
    with ThreadPoolExecutor(CONCURRENT) as pool:
        results = list(pool.map(run_console_script, (commands(inputs, i)[name] for i in range(RUNS))))
    failed = [(r.returncode, r.stderr.strip().splitlines()[-3:]) for r in results if r.returncode != 0]
    assert failed == [], f"ser {name}: {len(failed)} of {RUNS} runs did not exit 0: {failed}"
    assert all((inputs["root"] / f"out{i}").is_dir() for i in range(RUNS))
