"""The import rules that keep labelling free of training, checked two ways: in a fresh
interpreter (what really ends up loaded) and statically (every import statement, those
inside functions included, followed through the project's modules)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ser_core.codebase import import_closure, imported_modules

ROOT = Path(__file__).resolve().parents[1]
INFERENCE = sorted("ser_core.inference." + p.stem for p in (ROOT / "ser_core" / "inference").glob("*.py")
                   if p.stem != "__init__")
SEGMENTATION = sorted("ser_core.segmentation." + p.stem for p in (ROOT / "ser_core" / "segmentation").glob("*.py")
                      if p.stem != "__init__")
LABELLING = ["pipelines.label", "pipelines.resume", "ser_core.inference", *INFERENCE, "ser_core.segmentation",
             *SEGMENTATION]
# What a plain-Python caller of the labelling code needs, and must get without Beam.
BEAM_FREE = ["ser_core.inference.windows", "ser_core.inference.outputs", "ser_core.inference.engine",
             "ser_core.inference.labeller", "ser_core.checkpoint", "ser_core.onnx_model",
             "ser_core.storage", "ser_core.normalisation", "ser_core.batching", "ser_core.metrics",
             "ser_core.errors"]


def loaded_after_import(modules: list[str]) -> list[str]:
    """Every module loaded by importing ``modules`` in a fresh interpreter."""
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_labelling_side_covers_every_inference_module():
    assert {"ser_core.inference.handler", "ser_core.inference.windows", "ser_core.inference.outputs",
            "ser_core.inference.score"} <= set(INFERENCE)


def test_labelling_loads_no_training_module():
    loaded = loaded_after_import(LABELLING)
    assert "pipelines.label" in loaded and "ser_core.inference.handler" in loaded
    assert [m for m in loaded if m.startswith("ser_core.training")] == []


def test_the_beam_free_pieces_load_without_beam():
    loaded = loaded_after_import(BEAM_FREE)
    assert "ser_core.inference.windows" in loaded
    assert [m for m in loaded if m.split(".")[0] == "apache_beam" or m.startswith("ser_core.training")] == []


def test_the_package_is_light_until_the_labeller_is_used():
    """``import ser_core`` (every ``ser`` command, ``--help`` included) loads neither the
    labelling API nor torch or numpy; ``from ser_core import Labeller`` loads it, without Beam."""
    code = ("import json, sys\nimport ser_core\nbefore = sorted(sys.modules)\n"
            "from ser_core import Labeller\nprint(json.dumps([before, sorted(sys.modules), Labeller.__module__]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after, module = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [m for m in before if m.split(".")[0] in ("torch", "numpy", "apache_beam")
            or m.startswith("ser_core.inference")] == []
    assert module == "ser_core.inference.labeller" and "ser_core.inference.labeller" in after
    assert [m for m in after if m.split(".")[0] == "apache_beam"] == []


@pytest.mark.parametrize("module", LABELLING)
def test_no_import_statement_reaches_training(module):
    closure = import_closure(module)
    assert [m for m in closure if m.startswith("ser_core.training")] == []
    direct = imported_modules(closure[module])
    assert [m for m in direct if m.startswith("ser_core.training")] == []


def test_the_static_check_sees_imports_at_any_depth(tmp_path):
    """A module that reaches training through another one, inside a function, is caught."""
    for pkg in ("ser_core", "ser_core/inference", "ser_core/training"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "ser_core" / "training" / "train.py").write_text("X = 1\n")
    (tmp_path / "ser_core" / "helper.py").write_text("def f():\n    from ser_core.training import train\n")
    (tmp_path / "ser_core" / "inference" / "bad.py").write_text("import ser_core.helper\n")
    closure = import_closure("ser_core.inference.bad", root=tmp_path)
    assert "ser_core.training.train" in closure and "ser_core.helper" in closure
    assert imported_modules(tmp_path / "ser_core" / "inference" / "bad.py", root=tmp_path) == {"ser_core.helper"}


def test_a_modules_lazy_attributes_are_not_its_imports(tmp_path):
    """Imports in a module-level __getattr__ run when the attribute is asked for, not when
    the module is imported: the package's closure leaves them out (training's fingerprint
    must not change with the labelling API that ``ser_core.Labeller`` loads)."""
    for pkg in ("ser_core", "ser_core/inference"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "ser_core" / "inference" / "api.py").write_text("X = 1\n")
    (tmp_path / "ser_core" / "inference" / "other.py").write_text("X = 2\n")
    (tmp_path / "ser_core" / "__init__.py").write_text(
        "def __getattr__(name):\n    from ser_core.inference import api\n    return api\n"
        "def helper():\n    import ser_core.inference.other\n")
    assert imported_modules(tmp_path / "ser_core" / "__init__.py", root=tmp_path) == {"ser_core.inference.other"}
    assert "ser_core.inference.labeller" not in import_closure("ser_core.model")


def _exits_inside_run_or_main(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in ("run", "main"):
            for inner in ast.walk(node):
                if (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute)
                        and inner.func.attr == "exit" and isinstance(inner.func.value, ast.Name)
                        and inner.func.value.id == "sys"):
                    found.append(f"{path.relative_to(ROOT)}:{inner.lineno} in {node.name}()")
    return found


def test_stage_functions_raise_instead_of_exiting():
    """Only the command line (ser_core.cli.entry) ends the process; run()/main() raise."""
    files = sorted(p for pkg in ("ser_core", "pipelines") for p in (ROOT / pkg).rglob("*.py"))
    assert ROOT / "pipelines" / "label.py" in files
    assert [hit for p in files for hit in _exits_inside_run_or_main(p)] == []


def import_cycles(root: Path = ROOT) -> list[list[str]]:
    """Groups of project modules that import each other, directly or through others (the
    strongly connected components of the import graph with more than one module, or a
    module importing itself). Every import statement counts, those in functions included."""
    files = sorted(p for pkg in ("ser_core", "pipelines") for p in (root / pkg).rglob("*.py"))
    names = [".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__") for p in files]
    graph = {n: sorted(imported_modules(p, root)) for n, p in zip(names, files)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph.get(v, []):
                cycles.append(sorted(group))

    for name in names:
        if name not in index:
            visit(name)
    return cycles


def test_no_module_imports_itself_back():
    """The structure drawn from the imports is a hierarchy: no two modules import each other,
    however far apart."""
    assert import_cycles() == []


def test_the_cycle_check_finds_a_cycle_through_a_function(tmp_path):
    (tmp_path / "ser_core").mkdir()
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "ser_core" / "__init__.py").write_text("")
    (tmp_path / "pipelines" / "__init__.py").write_text("")
    (tmp_path / "ser_core" / "a.py").write_text("from ser_core import b\n")
    (tmp_path / "ser_core" / "b.py").write_text("def f():\n    from pipelines import c\n")
    (tmp_path / "pipelines" / "c.py").write_text("import ser_core.a\n")
    assert import_cycles(tmp_path) == [["pipelines.c", "ser_core.a", "ser_core.b"]]
