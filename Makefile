# Two commands do everything (see README):  make repro  |  make test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU wheel of torch, pinned so setup never drags in a multi-GB CUDA build.
# GPU users: install the torch build for your CUDA first (see README), then `make setup`.
TORCH ?= torch==2.13.0

.PHONY: setup repro test smoke clean-venv

$(BIN)/activate:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

repro: setup
	. $(BIN)/activate && dvc repro

smoke: setup
	. $(BIN)/activate && dvc exp run -S smoke=true

test: setup
	. $(BIN)/activate && python -m pytest -q

clean-venv:
	rm -rf $(VENV)
