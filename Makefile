# One command to run the workshop's main job, one to install and pass the tests.
#   make workshop   set up .venv, then run notebooks 01-06 with papermill (executed copies + HTML handout)
#   make test       set up .venv (with test extras), start Docker and build the image (when this
#                   machine can), then run the whole test suite
#   make image      build the image (container/Dockerfile) on a Debian base bootstrapped here
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_DIR ?= runs/workshop
# The shared MSRA copy when it is there; otherwise the workshop generates its own data.
MSRA_DIR ?= $(abspath ../shared/data/msra)
# The image the container tests and notebook 03 use; why Docker is unusable here, if it is.
IMAGE ?= albert-ner:latest
DOCKER_STATUS := runs/docker-engine-status.txt

.PHONY: install test workshop clean docker image

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# Docker engine (installed and started when absent, as root) + the image. Without an engine
# the reason is printed and written to $(DOCKER_STATUS), and the container tests skip with it;
# an image that fails to build on a working engine fails the run.
docker: install
	@PYTHON=$(abspath $(PY)) bash container/docker_engine.sh --image $(IMAGE) $(DOCKER_STATUS); \
	 code=$$?; [ $$code -eq 3 ] && code=0; exit $$code

image: install
	PYTHON=$(abspath $(PY)) bash container/build_and_push.sh --no-push --local-base \
	    --name $(firstword $(subst :, ,$(IMAGE))) --tag $(lastword $(subst :, ,$(IMAGE)))

test: install docker
	ALBERT_NER_IMAGE=$(IMAGE) $(PY) -m pytest -q -rs -p no:cacheprovider

# Runs notebooks 01-06 in order with papermill on a CPU-sized default and writes the executed
# notebooks and an HTML handout under $(RUN_DIR) (AWS calls go to a local moto server).
workshop: install
	$(PY) -m pip install --quiet -e ".[workshop]"
	MSRA_DIR=$(MSRA_DIR) $(PY) -m albert_ner.workshop.papermill_runner --run-dir $(RUN_DIR)

clean:
	rm -rf $(VENV) runs .pytest_cache
