"""Packaging shim for Beam's ``--setup_file``: the Dataflow stager runs ``python setup.py
sdist`` (or ``python -m build --sdist`` where ``build`` is installed) and every worker
pip-installs the result, so ``ser_core`` and ``pipelines`` import there as they do here.
All metadata and dependencies live in pyproject.toml.
"""

from setuptools import setup

setup()
