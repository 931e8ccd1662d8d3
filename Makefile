# InfraScope developer entry points. GNU make.
#   make demo   run the whole stack natively on the demo fleet (Ctrl-C stops it)
#   make test   install what is needed and run every test suite
#   make install / make uninstall   the server side into /opt/infrascope (root;
#               scripts/install.sh, docs/install.md)
#   make lint / make bench / make clean   developer extras (lint: ruff, mypy, and
#               lint-imports checking the layers in .importlinter)

VENV ?= .venv
PY = $(VENV)/bin/python

PROJECTS = core simulator exporter agent recommender cli testkit
SRC_DIRS = $(addsuffix /src,$(PROJECTS))
STAMP = $(VENV)/.installed

.DEFAULT_GOAL := help

.PHONY: help apt-deps venv test lint bench demo clean install uninstall

help:
	@echo "make demo    run the whole stack on the demo fleet (DEMO_ARGS=--once: start, report, stop)"
	@echo "make test    install dependencies (apt + $(VENV)) and run all tests"
	@echo "make install / make uninstall   (as root) exporter, recommender and the infrascope"
	@echo "             command into /opt/infrascope with systemd units (docs/install.md)"
	@echo "make lint    ruff + mypy + lint-imports (.importlinter)"
	@echo "make bench   run bench/*_bench.py"
	@echo "make clean   remove $(VENV) and caches"

apt-deps:
	@scripts/ensure-apt-deps.sh

$(STAMP): $(addsuffix /pyproject.toml,$(PROJECTS)) requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(addprefix -e ./,$(PROJECTS)) -r requirements-dev.txt
	touch $@

venv: $(STAMP)

test: apt-deps venv
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy $(SRC_DIRS)
	$(VENV)/bin/lint-imports --no-cache

bench: venv
	$(PY) bench/run.py

# DEMO_ARGS: flags of scripts/demo.py, e.g. DEMO_ARGS="--once --prometheus-port 0".
# Ctrl-C, or SIGINT/SIGTERM to make's pid alone, stops the demo and all it started: make
# passes SIGTERM on but only waits on SIGINT, so the demo watches make (scripts/demo.py,
# watch_parent).
demo: apt-deps venv
	$(PY) scripts/demo.py $(DEMO_ARGS)

# The server side into /opt/infrascope, /etc/infrascope and systemd units, as root
# (docs/install.md). UNINSTALL_ARGS=--purge also removes /etc/infrascope and
# /var/lib/infrascope with what they hold.
install:
	scripts/install.sh

uninstall:
	scripts/install.sh --uninstall $(UNINSTALL_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -type d -prune -exec rm -rf {} +
