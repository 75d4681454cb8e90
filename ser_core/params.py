"""params.yaml: one section per stage; command-line flags override it.

Typed configs are dataclasses; :func:`build_config` fills one from its defaults, then
the stage's params.yaml section, then any flags that were given (not None). Mistakes
raise :class:`~ser_core.errors.ParamsError`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from ser_core.errors import ParamsError

T = TypeVar("T")


def load_section(path: str | Path | None, section: str) -> dict[str, Any]:
    """The ``section`` mapping of a params file ({} when path is None or lacks it)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping of stage sections")
    value = data.get(section, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParamsError(f"{path}: section {section!r} must be a mapping")
    return value


def build_config(cls: type[T], *layers: Mapping[str, Any] | None) -> T:
    """An instance of dataclass ``cls`` from its defaults overlaid by each layer in turn.

    Keys that are not fields of ``cls`` are an error (a typo in params.yaml must not be
    silently ignored); None values in a layer mean "not given" and are skipped.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for layer in layers:
        if not layer:
            continue
        unknown = sorted(set(layer) - names)
        if unknown:
            raise ParamsError(f"unknown {cls.__name__} parameter(s) {unknown}; known: {sorted(names)}")
        values.update({k: v for k, v in layer.items() if v is not None})
    return cls(**values)


def flags(namespace: Any, *names: str) -> dict[str, Any]:
    """The given (non-None) argparse values among ``names``, for :func:`build_config`."""
    return {n: getattr(namespace, n) for n in names if getattr(namespace, n, None) is not None}
