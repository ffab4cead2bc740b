# Two commands do everything on a fresh machine:
#   make run    - install into .venv, then run the default pipeline (synthetic data, CPU)
#   make test   - install into .venv, then run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin
STAMP := $(VENV)/.fcos-installed

.PHONY: install run test lint constraints clean-results

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[test]"
	touch $(STAMP)

run: install
	$(BIN)/snakemake --cores $(CORES)

test: install
	$(BIN)/python -m pytest -q -ra

lint: install
	$(BIN)/snakemake --lint

constraints: install
	{ head -3 requirements/constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==\([0-9.]*\)+cpu/torch==\1/'; } > requirements/constraints.new
	mv requirements/constraints.new requirements/constraints.txt

clean-results:
	rm -rf results logs benchmarks
