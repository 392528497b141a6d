# One command to run the workshop's main job, one to install and pass the tests.
#   make workshop   set up .venv, then run notebooks 01-05 with papermill (executed copies + HTML handout)
#   make test       set up .venv (with test extras), then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_DIR ?= runs/workshop
# The shared MSRA copy when it is there; otherwise the workshop generates its own data.
MSRA_DIR ?= $(abspath ../shared/data/msra)

.PHONY: install test workshop clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q -p no:cacheprovider

# Runs notebooks 01-05 in order with papermill on a CPU-sized default and writes the executed
# notebooks and an HTML handout under $(RUN_DIR) (AWS calls go to a local moto server).
workshop: install
	$(PY) -m pip install --quiet -e ".[workshop]"
	MSRA_DIR=$(MSRA_DIR) $(PY) -m albert_ner.workshop.papermill_runner --run-dir $(RUN_DIR)

clean:
	rm -rf $(VENV) runs .pytest_cache
