# `make up` runs Vigil; `make test` runs the checks. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: up test install-check bench clean assets

# The dashboard's browser libraries (uPlot, htmx, Swagger UI) from npm at the versions web/package-lock.json
# pins, copied into the package (dashboard/static/vendor/, gitignored; package-data, so a wheel needs no npm).
VENDOR := dashboard/static/vendor
VENDOR_FILES := uplot/dist/uPlot.iife.min.js uplot/dist/uPlot.min.css htmx.org/dist/htmx.min.js \
	swagger-ui-dist/swagger-ui-bundle.js swagger-ui-dist/swagger-ui.css

$(VENDOR)/.built: web/package.json web/package-lock.json
	npm ci --prefix web --ignore-scripts --no-audit --no-fund
	mkdir -p $(VENDOR)
	cd web/node_modules && cp $(VENDOR_FILES) ../../$(VENDOR)/
	touch $@

assets: $(VENDOR)/.built

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml $(VENDOR)/.built | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENDOR)/.built | $(BIN)/python
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
	rm -rf $(VENV) .vigil .pytest_cache .ruff_cache web/node_modules $(VENDOR)
