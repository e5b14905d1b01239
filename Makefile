# Two entry points: `make run` (the whole loop on the embedded server) and `make test` (install + full suite);
# `make test-fast` is the quick subset: no agents, no browser, no multi-epoch training (under 2 minutes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Test processes (pytest-xdist). The full suite hands them whole files, so the agents and servers a file's
# fixtures start run once; the fast subset hands out single tests (78 s instead of 99 s on 2 cores).
WORKERS ?= 2
PYTEST := $(PY) -m pytest -n $(WORKERS)
# Content-addressed, so a fresh clone with the same requirements reuses an installed virtualenv.
REQ_HASH := $(shell cat requirements.txt requirements-torch.txt requirements-dev.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(REQ_HASH)

.PHONY: run test test-fast install install-test lint

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-torch.txt
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

install: $(STAMP)

install-test: $(STAMP)
	bash scripts/ensure-chromium.sh

run: $(STAMP)
	$(PY) -m devstack run $(ARGS)

test: install-test lint
	$(PYTEST) --dist loadfile $(ARGS)

test-fast: install lint
	$(PYTEST) --dist load -m "not slow and not browser" $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
