# Two commands from a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PIP     = $(VENV)/bin/pip
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-$(1)

.PHONY: demo test lint install install-test bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=23.1"

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install --quiet -c constraints.txt -e ".[test]"
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PIP) install --quiet -c constraints.txt -e ".[test,benchmarks]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(VENV)/bin/multissl demo

# pyflakes' checks (pyproject.toml [tool.ruff]): an undefined name or unused import fails the run early
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check --quiet .

# pytest-xdist: one test worker per core (most tests run one torch thread); TEST_WORKERS=0 for one process
TEST_WORKERS ?= auto
test: lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/image_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info runs
