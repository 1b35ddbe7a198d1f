# CATs developer targets. `make demo` and `make test` work on a fresh clone (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: system-runtime system-test install install-core oracles fmt lint test test-only bench demo demo-chain docs lock-iac lock-image image clean

$(VENV)/.core: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.full: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,iac]"
	touch $(VENV)/.core $@

system-runtime:                      ## Debian packages the runtime needs (.ci/apt-runtime.txt)
	bash .ci/install-system.sh runtime

system-test:                         ## ... and those the tests need (.ci/apt-test.txt)
	bash .ci/install-system.sh test

install-core: $(VENV)/.core system-runtime   ## runtime only (what the demo needs)
install: $(VENV)/.full system-test           ## runtime + IaC + dev tools

oracles:                             ## independent implementations the tests compare against
	bash .ci/install-oracles.sh
	bash .ci/install-jsipfs.sh

fmt: install
	$(BIN)/ruff format cats_runtime components policies tests benchmarks examples __main__.py
	$(BIN)/ruff check --fix cats_runtime components policies tests benchmarks examples __main__.py

lint: install                        ## ruff, mypy --strict, import contracts, generated docs
	$(BIN)/ruff check .
	$(BIN)/ruff format --check cats_runtime components policies tests benchmarks examples __main__.py
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(PY) scripts/gen_cli_docs.py --check

test-only: install
	$(BIN)/cats policy check
	$(BIN)/pytest

test: install oracles lint test-only ## everything CI runs

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

demo: install-core                   ## the two-organization mesh demo (README's main command)
	$(PY) examples/two_orgs_demo.py

demo-chain: install-core             ## one node: a chain of CATs, lineage, verify, memoization
	bash examples/demo.sh

docs: install
	$(PY) scripts/gen_cli_docs.py

lock-iac: install                    ## requirements.lock: the Pulumi program's dependencies, hashed
	$(PY) scripts/lock_iac.py

lock-image: install                  ## images/ray/requirements.lock: the Plant image's dependencies, hashed
	$(PY) scripts/image.py lock

image:                               ## build + push the Plant's Ray image: make image IMAGE=repo [STACKS="acme"]
	test -n "$(IMAGE)" || { echo "make image: set IMAGE=registry/repository"; exit 2; }
	$(PY) scripts/image.py build --image $(IMAGE) $(foreach s,$(STACKS),--stack $(s))

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
