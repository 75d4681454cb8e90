"""Beam's import-time notes about missing cloud clients stay out of every command's output."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ser_core.logs import silence_cloud_client_notes

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", ["label", "features"])
def test_help_prints_no_cloud_client_warnings(command):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "ser_core.cli", command, "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: ser" in done.stdout
    assert [line for line in done.stderr.splitlines() if "WARNING" in line or "bigquery" in line.lower()] == []


def test_only_the_two_notes_are_dropped(caplog):
    silence_cloud_client_notes()
    silence_cloud_client_notes()  # twice installs nothing twice
    assert sum(type(f).__name__ == "_CloudClientNotes" for f in logging.getLogger().filters) == 1
    # (Pipelines set the apache_beam logger to WARNING: this test sets its own levels.)
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="apache_beam.io.gcp.bigquery"):
        logging.getLogger().warning("apitools not found, and bigquery client libraries are not available")
        logging.getLogger("apache_beam.io.gcp.bigquery").info("No module named google.cloud.bigquery_storage_v1.")
        logging.getLogger().warning("apitools found, something else went wrong")
        logging.getLogger("apache_beam.io.gcp.bigquery").info("retry delay: 1.0")
    assert [r.getMessage() for r in caplog.records] == ["apitools found, something else went wrong",
                                                        "retry delay: 1.0"]
