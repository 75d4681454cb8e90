"""Two clones in different folders, each with a corpus outside the project: the DVC chain
up to the features writes the same bytes in both, and records the same dvc.lock.

Clone A starts with the demo corpus only and adds TESS as an experiment
(``dvc exp run -S +manifest.sources.tess=...``); clone B has both in params.yaml from the
start. Same corpora, so the same manifest, features and lock entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq
import pytest
import yaml

from tests.synth_audio import touch_tree
from tests.test_dvc_chain import copy_project, small_params

TARGET = "features@telephone"
STAGES = ("demo_corpus", "listing@ravdess", "listing@tess", "manifest", TARGET)
TESS_FILES = [f"{spk}_{emotion}/{spk}_{word}_{emotion}.wav" for spk in ("OAF", "YAF")
              for emotion in ("angry", "happy", "neutral", "sad") for word in ("back", "bite")]


def make_clone(project: Path, with_tess: bool) -> tuple[Path, Callable[..., subprocess.CompletedProcess]]:
    """A copy of the project with small params (2 demo speakers), a git repo, and a TESS
    tree beside it at ``../outside/tess``; returns (project, run)."""
    copy_project(project)
    small_params(project / "params.yaml")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["demo_corpus"]["speakers"] = 2
    if with_tess:
        params["manifest"]["sources"]["tess"] = "../outside/tess"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    touch_tree(project.parent / "outside" / "tess", TESS_FILES, duration_s=0.3, sample_rate=16000)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    def run(*cmd: str) -> subprocess.CompletedProcess:
        done = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{cmd}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    run("git", "init", "-q")
    return project, run


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def lock_entries(project: Path) -> dict[str, dict]:
    return {name: stage for name, stage in yaml.safe_load((project / "dvc.lock").read_text())["stages"].items()
            if name in STAGES}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_clones_in_different_folders_write_the_same_bytes(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is needed for a DVC project")
    first, run_first = make_clone(tmp_path / "a" / "project", with_tess=False)
    second, run_second = make_clone(tmp_path / "b" / "deeper" / "other-name", with_tess=True)

    run_first("dvc", "repro", TARGET)
    run_first("git", "add", "-A")
    run_first("git", "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "commit", "-qm", "baseline")
    added = run_first("dvc", "exp", "run", "-S", "+manifest.sources.tess=../outside/tess", TARGET)
    assert "Running stage 'listing@tess'" in added.stdout and "Running stage 'demo_corpus'" not in added.stdout
    run_second("dvc", "repro", TARGET)

    manifests = [(p / "data" / "manifest.parquet").read_bytes() for p in (first, second)]
    assert manifests[0] == manifests[1]
    table = pq.read_table(first / "data" / "manifest.parquet")
    assert table.num_rows == 2 * 60 + len(TESS_FILES)
    assert not any(os.path.isabs(p) for p in table.column("path").to_pylist())
    roots = {s["corpus"]: s["base"] for s in json.loads(table.schema.metadata[b"ser.manifest"])["sources"]}
    assert roots == {"ravdess": "corpora/demo_ravdess", "tess": "../../outside/tess"}

    features = [digests(p / "data" / "features" / "telephone") for p in (first, second)]
    assert features[0] == features[1] and "features-00000-of-00001.parquet" in features[0]
    rows = pq.read_table(first / "data" / "features" / "telephone" / "features-00000-of-00001.parquet")
    ids = rows.column("utterance_id").to_pylist()  # windows and augmented copies of each clip
    assert ids == sorted(ids) and set(rows.column("source_id").to_pylist()) <= set(table.column("utterance_id").to_pylist())
    path_of = dict(zip(table.column("utterance_id").to_pylist(), table.column("path").to_pylist()))
    assert rows.column("path").to_pylist() == [path_of[s] for s in rows.column("source_id").to_pylist()]

    assert lock_entries(first) == lock_entries(second)
    assert set(lock_entries(first)) == set(STAGES)
