# `make run` and `make test` set everything up themselves: a fresh clone needs nothing else.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bundle clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's metadata changes.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/diffstudio

test: $(STAMP)
	$(BIN)/ruff check diffstudio plugins tests bench
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check diffstudio plugins tests bench

bench: $(STAMP)
	$(BIN)/python bench/bench_engine.py

# The frozen onedir application in dist/diffstudio, self-tested (packaging/README.md).
bundle: $(STAMP)
	$(BIN)/python -m pip install --quiet 'pyinstaller>=6.10'
	$(BIN)/python packaging/build_bundle.py

clean:
	rm -rf $(VENV) build dist *.egg-info
