# Two entry points for a fresh machine (see README):
#   make demo   set up .venv and run the whole DVC pipeline on the embedded demo data
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is installed first, pinned: where a local CPU wheel of this version is on pip's
# find-links (as on our build machines) pip takes it; elsewhere it is the normal
# PyPI install. The package's own range (torch>=2.2,<3) is then already satisfied.
TORCH_VERSION ?= 2.13.0
# The speaker_encoder front-end's weights ship in this wheel (ser_core/encoder.py reads the file,
# never imports the package). --no-deps: its dependency webrtcvad, an sdist, would overwrite
# webrtcvad-wheels' module with one that imports pkg_resources (gone with current setuptools).
RESEMBLYZER_VERSION ?= 0.1.4

.PHONY: setup demo test benchmarks clean-venv

$(BIN)/ser: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps "resemblyzer==$(RESEMBLYZER_VERSION)"
	touch $(BIN)/ser

setup: $(BIN)/ser

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

benchmarks: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/features.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/train.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/label.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/latency.py

clean-venv:
	rm -rf $(VENV)
