"""The errors a stage raises for bad input, so that only the command line decides how a
failure ends (``ser_core.cli``: one line ``ser COMMAND: error: ...``, no traceback).

- :class:`ParamsError`: params.yaml or flags name unknown keys or bad values;
- :class:`StageError`: a stage refuses its inputs before any work starts (no input
  matches, a missing or foreign checkpoint, an output made with other settings); the
  command line exits with :data:`EXIT_BAD_INPUT`, as for a usage error;
- :class:`FileError`: one input file failed inside a pipeline, at ``stage``; the
  pipeline turns it into that file's row of the errors output and goes on.

The errors output of both pipelines (``DIR/errors-*.parquet``, docs/CONTRACTS.md) is
:data:`ERRORS_SCHEMA`; :func:`error_row` builds its rows.
"""

from __future__ import annotations

from typing import Any, Mapping

import pyarrow as pa

EXIT_BAD_INPUT = 2  # like argparse's usage errors: nothing was done
ERRORS_PREFIX = "errors"
ERRORS_SCHEMA = pa.schema([
    pa.field("utterance_id", pa.string()),
    pa.field("path", pa.string()),
    pa.field("stage", pa.string()),
    pa.field("error", pa.string()),
])


class SerError(Exception):
    """Base of the project's expected errors (bad input, not a bug)."""


class ParamsError(SerError, ValueError):
    """params.yaml is missing, malformed, or names keys a stage does not know."""


class StageError(SerError):
    """A stage cannot start with these inputs; the message names the path and what was expected."""


class FileError(SerError):
    """One input file could not be processed; ``stage`` says where (decode, features, spill)."""

    def __init__(self, path: str, stage: str, reason: str) -> None:
        super().__init__(f"{path}: {stage}: {reason}")
        self.path, self.stage, self.reason = path, stage, reason

    def __reduce__(self):  # keep the fields when pickled between Beam workers
        return (type(self), (self.path, self.stage, self.reason))


def error_row(key: Mapping[str, Any], stage: str, error: str) -> dict[str, str]:
    """One row of the errors output; ``key`` supplies utterance_id and path."""
    return {"utterance_id": str(key.get("utterance_id", "")), "path": str(key.get("path", "")),
            "stage": stage, "error": error}
