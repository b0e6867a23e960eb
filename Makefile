# inferops.gpu developer and CI entry points. `make test` is the one test command: it sets
# up everything it needs (tests/harness/setup.sh) and runs every check. See README "Testing".
SHELL := /bin/bash
.DEFAULT_GOAL := test

VENV      := .venv
PYTHON    := $(VENV)/bin/python
SETUP     := tests/harness/setup.sh
PYTEST    := $(PYTHON) -m pytest -p no:cacheprovider -v -rfEs --durations=10
# `make molecule SCENARIO=<name>`
SCENARIO  ?=

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: test demo demo-clean setup venv images xinference-image unit lint sanity molecule scenarios bench bench-noop bench-fleet clean help

help:
	@echo "make demo                       site.yml on one SIMULATED GPU host, then health, endpoint and an embedding"
	@echo "make demo-clean                 remove the demo host"
	@echo "make test                       everything: set-up, unit, lint, sanity, all Molecule scenarios"
	@echo "make setup                      only the set-up (venv, docker engine, base images, fake NVML, Xinference image)"
	@echo "make xinference-image           only the CPU Xinference test image and its embedding model"
	@echo "make unit                       unit tests (tests/unit)"
	@echo "make lint                       ansible-lint, production profile"
	@echo "make sanity                     ansible-test sanity"
	@echo "make molecule SCENARIO=<name>   one Molecule scenario (molecule test -s <name>)"
	@echo "make scenarios                  list the Molecule scenarios"
	@echo "make bench                      benchmarks that print figures: gpu_health on 8 fake GPUs, no-op site.yml, fleet drift"
	@echo "make bench-noop | bench-fleet   one of the two playbook benchmarks (container hosts bench-*)"

test: setup
	$(PYTEST) tests/unit tests/static tests/integration

# The main job: set-up, a simulated GPU host (fake NVML pcie-4-acs), site.yml, and what it shows.
demo:
	@tests/demo/run.sh

demo-clean:
	@tests/demo/run.sh clean

setup:
	@$(SETUP)

venv:
	@$(SETUP) venv

images:
	@$(SETUP) packages dockerd images

xinference-image:
	@$(SETUP) packages dockerd xinference_image

unit:
	@$(SETUP) venv fake_nvml
	$(PYTEST) tests/unit

lint:
	@$(SETUP) venv
	$(PYTEST) tests/static/test_ansible_lint.py

sanity:
	@$(SETUP) venv
	$(PYTEST) tests/static/test_sanity.py

molecule: setup
	@if [ -z "$(SCENARIO)" ]; then echo "usage: make molecule SCENARIO=<name>; scenarios:"; \
	  ls molecule/*/molecule.yml | cut -d/ -f2; exit 2; fi
	@test -f molecule/$(SCENARIO)/molecule.yml || { echo "no scenario molecule/$(SCENARIO)"; exit 2; }
	@mkdir -p .cache/logs
	@echo "==> molecule test -s $(SCENARIO) (log: .cache/logs/molecule-$(SCENARIO).log)"
	set -o pipefail; molecule test -s $(SCENARIO) 2>&1 | tee .cache/logs/molecule-$(SCENARIO).log

# The playbook benchmarks start their own bench-* container hosts and remove them at the end.
bench:
	@$(SETUP) venv packages dockerd images fake_nvml
	$(PYTHON) tests/benchmarks/gpu_health_bench.py
	$(PYTHON) tests/benchmarks/noop_bench.py
	$(PYTHON) tests/benchmarks/fleet_drift_bench.py

bench-noop:
	@$(SETUP) venv packages dockerd images fake_nvml
	$(PYTHON) tests/benchmarks/noop_bench.py

bench-fleet:
	@$(SETUP) venv packages dockerd images fake_nvml
	$(PYTHON) tests/benchmarks/fleet_drift_bench.py

scenarios:
	@ls molecule/*/molecule.yml | cut -d/ -f2

clean:
	rm -rf .cache/logs .cache/ansible_collections tests/output
