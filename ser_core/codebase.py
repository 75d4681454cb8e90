"""The project's own modules and which of them a module imports, read statically.

Two uses: the training fingerprint hashes exactly the code ``ser train`` runs (the
modules ``ser_core.training.train`` imports, directly or through each other), so editing
``ser evaluate``'s report wording retrains nothing; and the layering test checks that the
labelling side never reaches ``ser_core.training``. Every ``import``/``from ... import``
statement counts, including those inside functions (a lazy import still runs), except in
a module-level ``__getattr__`` (PEP 562): those run only when a caller asks the module
for that attribute (``from ser_core import Labeller``), not when the module is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the folder holding ser_core/ and pipelines/
PACKAGES = ("ser_core", "pipelines")


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The source file of a project module (``ser_core.model`` -> ser_core/model.py), or
    None when ``name`` is not one of the project's modules."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """The project modules one file imports (``from pkg import submodule`` included)."""
    names: set[str] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    lazy = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"]
    tree.body = [n for n in tree.body if not any(n is f for f in lazy)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if module_file(n, root) is not None}


def import_closure(module: str, root: Path = ROOT) -> dict[str, Path]:
    """``module`` and every project module it imports, directly or not: name -> file.
    Importing ``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b``, so those count."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_file(name, root)
        if path is None:
            raise ModuleNotFoundError(f"{name} is not a module under {root}")
        seen[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(imported_modules(path, root))
    return dict(sorted(seen.items()))
