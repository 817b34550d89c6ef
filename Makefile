# Each target builds its own virtual environment; nothing else needs to be installed first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test lint bench clean venv

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,redis,postgres,process,cli,metrics,weather]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/gaia weather run

demo: $(STAMP)
	$(BIN)/gaia demo

test: $(STAMP)
	$(BIN)/ruff check gaia tests benchmarks
	$(BIN)/mypy gaia
	$(BIN)/lint-imports
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	# saq and arq pin older redis clients; they are benchmark peers only, so skip their pins.
	$(BIN)/pip install -q --no-deps 'saq>=0.26' 'arq>=0.28' croniter click
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
