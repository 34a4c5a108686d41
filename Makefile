# `make up` runs Vigil; `make test` runs the checks. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: up test install-check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed-run

up: $(VENV)/.installed-run
	$(BIN)/vigil up $(ARGS)

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# A bare `pip install .` in a new venv under /tmp, then `vigil up` from it (tests/install). It needs
# the package registry, so `make test` skips it; .ci/run runs it.
install-check: $(VENV)/.installed-test
	VIGIL_INSTALL_CHECK=1 $(BIN)/python -m pytest -s tests/install

bench: $(VENV)/.installed-test
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .vigil .pytest_cache .ruff_cache
