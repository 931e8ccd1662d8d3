# InfraScope developer entry points. GNU make.
#   make demo   run the whole stack natively on the demo fleet (Ctrl-C stops it)
#   make test   install what is needed and run every test suite
#   make install / make uninstall   the server side into /opt/infrascope (root;
#               scripts/install.sh, docs/install.md)
#   make lint / make bench / make clean   developer extras (lint: ruff, mypy,
#               lint-imports checking the layers in .importlinter, and pylint's
#               duplicate-code check over everything but the tests)

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
	@echo "make lint    ruff + mypy + lint-imports (.importlinter) + pylint's duplicate-code check"
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

# pylint's duplicate-code check (R0801) alone, over every Python file but the tests: 8 or
# more similar lines are a copy to remove (one owner per concept), not to disable. Left
# out of the comparison, as pylint does by default (spelled out so that a new default
# cannot widen or narrow the check unseen): import blocks (modules import the same
# names), docstrings and comments (prose), and function signatures (an override or a
# wrapper repeats its parameters: an interface, not logic). Nothing else is left out.
DUPLICATE_CODE_PATHS = $(SRC_DIRS) prometheus/generate.py grafana/dashboards/generate.py \
	compose/generate.py alertmanager/render_demo.py \
	$(wildcard scripts/*.py demo/*.py bench/*.py)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy $(SRC_DIRS)
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/pylint --disable=all --enable=duplicate-code --min-similarity-lines=8 \
		--ignore-imports=y --ignore-docstrings=y --ignore-comments=y --ignore-signatures=y \
		--score=n --persistent=n $(DUPLICATE_CODE_PATHS)

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
