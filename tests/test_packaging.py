"""Packaging for remote workers (Dataflow, Flink, any portable runner), as far as it can be
checked offline: build the sdist exactly as Beam's stager does for ``--setup_file``, build
the wheel a worker would install from it, and check both hold every module the workers
import and that the wheel declares the third-party packages those modules import."""

import ast
import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from apache_beam.runners.portability.stager import Stager

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ser_core", "pipelines")
# import name -> distribution name, for what the worker-side modules import
DISTRIBUTIONS = {"apache_beam": "apache-beam", "numpy": "numpy", "pyarrow": "pyarrow", "scipy": "scipy",
                 "soundfile": "soundfile", "soxr": "soxr", "yaml": "pyyaml", "librosa": "librosa",
                 "torch": "torch", "tqdm": "tqdm", "matplotlib": "matplotlib",
                 "onnxruntime": "onnxruntime", "onnx": "onnx", "webrtcvad": "webrtcvad-wheels"}
# Required for a file they ship, not imported: silero-vad's wheel holds the ONNX model that
# ser_core/inference/vad.py locates (importlib.util.find_spec) and runs with onnxruntime.
SHIPS_FILES = {"silero-vad"}
# Imported by worker code (scipy: only with numpy < 2) but so far only required through
# another requirement.
TRANSITIVE = {"scipy": "librosa"}
WORKER_MODULES = ("pipelines/features.py", "pipelines/common.py", "ser_core/audio.py", "ser_core/features.py",
                  "ser_core/records.py", "ser_core/params.py", "ser_core/onnx_model.py")


def _modules() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(sdist members, wheel members, wheel METADATA text), built from a copy of the tree."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")

    sdist = Path(Stager._build_setup_package(str(src / "setup.py"), str(dist)))  # what --setup_file runs
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", str(sdist), "-w", str(dist)], check=True, capture_output=True)
    (wheel,) = dist.glob("*.whl")

    with tarfile.open(sdist) as tar:
        sdist_members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
    with zipfile.ZipFile(wheel) as whl:
        wheel_members = set(whl.namelist())
        metadata = next(whl.read(n).decode() for n in wheel_members if n.endswith(".dist-info/METADATA"))
        entry_points = next(whl.read(n).decode() for n in wheel_members if n.endswith(".dist-info/entry_points.txt"))
    return sdist_members, wheel_members, metadata, entry_points


def test_sdist_and_wheel_hold_every_module(built):
    sdist_members, wheel_members, _, entry_points = built
    modules = _modules()
    assert {"pipelines/features.py", "pipelines/common.py", "ser_core/audio.py", "ser_core/features.py"} <= modules
    assert modules - sdist_members == set()
    assert modules - wheel_members == set()
    assert "setup.py" in sdist_members and "pyproject.toml" in sdist_members
    assert "ser = ser_core.cli:entry" in entry_points


def _third_party_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in PACKAGES}


def _requirement_names(requirements) -> set[str]:
    return {r.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].split("!")[0].strip().lower()
            for r in requirements or []}


def test_wheel_declares_what_the_workers_import(built):
    _, _, metadata, _ = built
    declared = _requirement_names(line.split(":", 1)[1] for line in metadata.splitlines()
                                  if line.startswith("Requires-Dist:") and "extra ==" not in line)
    imported = set().union(*(_third_party_imports(ROOT / m) for m in WORKER_MODULES))
    missing = set()
    for name in imported - {"threadpoolctl"}:  # optional, guarded import
        dist = DISTRIBUTIONS.get(name, name)
        if dist in declared:
            continue
        via = TRANSITIVE.get(name)
        if via in declared and dist in _requirement_names(importlib.metadata.requires(via)):
            continue
        missing.add(dist)
    assert missing == set(), f"workers import {missing} but the package does not require them"


def test_workers_install_only_what_the_package_imports(built):
    """Workers pip-install the wheel's plain requirements: each must be imported by the
    package itself (what only tests and benchmarks use, such as librosa, is an extra)."""
    _, _, metadata, _ = built
    declared = _requirement_names(line.split(":", 1)[1] for line in metadata.splitlines()
                                  if line.startswith("Requires-Dist:") and "extra ==" not in line)
    imported = set().union(*(_third_party_imports(ROOT / m) for m in _modules()))
    imported_dists = {DISTRIBUTIONS.get(name, name) for name in imported}
    assert declared - imported_dists - SHIPS_FILES == set(), "required but never imported by ser_core or pipelines"
    assert "librosa" not in declared
