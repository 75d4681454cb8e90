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
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from apache_beam.runners.portability.stager import Stager

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ser_core", "pipelines")
# Required for a file they ship, not imported: silero-vad's wheel holds the ONNX model that
# the silero detector locates (importlib.util.find_spec) and runs with onnxruntime.
SHIPS_FILES = {"silero-vad"}


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
    """Top-level names of every third-party module ``path`` imports, wherever the import
    sits (module level, inside a function, under try), and modules named by a string
    literal in ``importlib.import_module(...)`` / ``importlib.util.find_spec(...)``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("import_module", "find_spec") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in PACKAGES}


def _guarded_imports(path: Path) -> set[str]:
    """Top-level names imported under ``try: ... except ImportError`` (or
    ``ModuleNotFoundError``) inside a function: optional packages, loaded only when the
    feature that needs them is used, which say how to install them when they are missing."""
    names = set()
    for func in ast.walk(ast.parse(path.read_text())):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if not isinstance(node, ast.Try):
                continue
            caught = {n.id for h in node.handlers for n in ast.walk(h.type or ast.Name("BaseException"))
                      if isinstance(n, ast.Name)}
            if not caught & {"ImportError", "ModuleNotFoundError"}:
                continue
            for stmt in node.body:
                for imp in ast.walk(stmt):
                    if isinstance(imp, ast.Import):
                        names |= {a.name.split(".")[0] for a in imp.names}
                    elif isinstance(imp, ast.ImportFrom) and imp.level == 0 and imp.module:
                        names.add(imp.module.split(".")[0])
    return names


def _extras(metadata: str) -> set[str]:
    """Distributions the wheel declares for an extra (``Requires-Dist: x; extra == "..."``)."""
    return {canonicalize_name(Requirement(line.split(":", 1)[1].strip()).name)
            for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" in line}


def _name(requirement: str) -> str:
    return canonicalize_name(Requirement(requirement).name)


def _plain(requirements) -> list[Requirement]:
    """Requirements that apply without any extra (markers evaluated for this interpreter)."""
    out = []
    for text in requirements or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(req)
    return out


def _closure(roots: set[str]) -> set[str]:
    """``roots`` and every distribution they require without extras, recursively."""
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            todo += [canonicalize_name(r.name) for r in _plain(importlib.metadata.requires(name))]
        except importlib.metadata.PackageNotFoundError:
            pass  # a declared distribution that is not installed: the import map below says so
    return seen


def _declared(metadata: str) -> set[str]:
    """The wheel's plain ``Requires-Dist`` names (what a worker's pip install brings)."""
    return {canonicalize_name(r.name) for r in _plain(
        line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:"))}


def test_every_import_of_the_package_is_a_declared_dependency(built):
    """``pip install .`` (no extras) is what a Dataflow worker runs: every third-party module
    any file of the package imports must come from a distribution in the closure of the plain
    requirements; one reached only through an extra (scipy through librosa, once) fails here.
    The one exception is an optional package imported lazily under ``except ImportError``
    (the ``egemaps`` front-end's opensmile): it must be declared as an extra."""
    _, _, metadata, _ = built
    declared = _declared(metadata)
    closure = _closure(declared)
    extras = _extras(metadata)
    owners = importlib.metadata.packages_distributions()
    problems = {}
    for module in sorted(_modules()):
        guarded = _guarded_imports(ROOT / module)
        for name in sorted(_third_party_imports(ROOT / module)):
            dists = {canonicalize_name(d) for d in owners.get(name, [])}
            if not dists:
                problems[f"{module}: {name}"] = "no installed distribution provides it"
            elif name in guarded and not dists & closure:
                if not dists & extras:
                    problems[f"{module}: {name}"] = f"{sorted(dists)}: optional, but no extra declares it"
            elif not dists & closure:
                problems[f"{module}: {name}"] = f"{sorted(dists)} is not among the package's dependencies"
            elif not dists & declared:
                problems[f"{module}: {name}"] = f"{sorted(dists)} arrives only through another dependency; declare it"
    assert problems == {}


def test_workers_install_only_what_the_package_imports(built):
    """Workers pip-install the wheel's plain requirements: each must be imported by the
    package itself (what only tests and benchmarks use, such as librosa, is an extra)."""
    _, _, metadata, _ = built
    declared = _declared(metadata)
    owners = importlib.metadata.packages_distributions()
    imported = set().union(*(_third_party_imports(ROOT / m) for m in _modules()))
    imported_dists = {canonicalize_name(d) for name in imported for d in owners.get(name, [])}
    assert declared - imported_dists - SHIPS_FILES == set(), "required but never imported by ser_core or pipelines"
    assert "librosa" not in declared
