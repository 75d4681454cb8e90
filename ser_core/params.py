"""params.yaml: one section per stage; command-line flags override it.

Typed configs are dataclasses; :func:`build_config` fills one from its defaults, then
the stage's params.yaml section, then any flags that were given (not None). Mistakes
raise :class:`~ser_core.errors.ParamsError`.
"""

from __future__ import annotations

import argparse
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


def setting(default: Any = dataclasses.MISSING, *, help: str, choices: tuple | None = None,
            default_factory: Any = dataclasses.MISSING) -> Any:
    """A config dataclass field declared once: its default, and the help and choices its
    command-line flag shows (:func:`add_flags`)."""
    metadata = {"help": help, "choices": choices}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# How a field's annotation becomes a flag: lists are comma-separated (as in params.yaml's
# one-line lists), seeds take several values, booleans take --x / --no-x.
def _optional_float(value: str) -> float | None:
    return None if value.strip().lower() in ("none", "null", "") else float(value)


_FLAG_TYPES = {"int": dict(type=int), "float": dict(type=float), "str": dict(type=str),
               "list[str]": dict(type=str), "list[int]": dict(type=int, nargs="+"),
               "float|None": dict(type=_optional_float),            # 'none' for None
               "tuple[float,float]|None": dict(type=str)}           # 'LOW,HIGH' or 'none': the config parses it


def add_flags(group: Any, cls: type, exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    """One ``--field-name`` flag per field of dataclass ``cls`` (but ``exclude``), typed
    from its annotation, with the help and choices of its :func:`setting`; every flag
    defaults to None (not given: params.yaml's value stands). Returns the field names."""
    names = []
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        kind = str(f.type).replace(" ", "")
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        help_text = f.metadata.get("help", "") + (f" [{shown}]" if shown not in ("", None) else "")
        if kind == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)
        elif kind in _FLAG_TYPES:
            choices = f.metadata.get("choices")
            group.add_argument(flag, dest=f.name, choices=choices, default=None,
                               metavar=None if choices is None else "{" + ",".join(choices) + "}",
                               help=help_text, **_FLAG_TYPES[kind])
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no command-line form for type {f.type!r}")
        names.append(f.name)
    return tuple(names)
