"""Quiet the notes Beam's cloud connectors log when they are imported.

Any ``import apache_beam`` imports its GCP I/O modules, which log, without the ``gcp``
extra installed, "apitools not found, and bigquery client libraries are not available"
(a WARNING on the root logger) and that BigQuery's DIRECT_READ cannot be used (INFO).
Nothing here uses BigQuery, so on every ``ser`` command, ``--help`` included, these
lines would only read as something being wrong. The filters drop exactly those two
notes; every other Beam message is kept.
"""

from __future__ import annotations

import logging

# logger name -> the start of a message it logs at import time about missing cloud clients
_NOTES = {
    "root": "apitools not found",
    "apache_beam.io.gcp.bigquery": "No module named google.cloud.bigquery_storage",
}


class _CloudClientNotes(logging.Filter):
    """Drops a logger's import-time note about cloud client libraries not installed."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def silence_cloud_client_notes() -> None:
    """Install the filters (once); call before apache_beam is first imported."""
    for name, prefix in _NOTES.items():
        logger = logging.getLogger() if name == "root" else logging.getLogger(name)
        if not any(isinstance(f, _CloudClientNotes) for f in logger.filters):
            logger.addFilter(_CloudClientNotes(prefix))
