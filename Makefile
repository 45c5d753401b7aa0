# Two commands set everything up on a fresh machine: `make train` and `make test`.
# The virtualenv is rebuilt when setup.cfg changes; LIT_MC_DATA (default ./data) says where datasets live.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LIT_MC_DATA ?= data
CONFIG ?= configs/cifar10/baseline.yaml
export LIT_MC_DATA

.PHONY: install data data-flickr8k train test lint bench notebooks readme slides clean

$(BIN)/lit-mc: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(BIN)/lit-mc

install: $(BIN)/lit-mc

# CIFAR-10 into $(LIT_MC_DATA): kept if present, downloaded from the official site when online,
# otherwise a one-line message saying where to put cifar-10-batches-py/.
data: install
	$(BIN)/lit-mc data cifar10 --dest $(LIT_MC_DATA)

# Flickr8k cannot be downloaded: link a copy (FLICKR8K=/path/with/Images+Flickr8k_text).
FLICKR8K ?= ../shared/data/flickr8k
data-flickr8k: install
	$(BIN)/lit-mc data flickr8k --dest $(LIT_MC_DATA)/flickr8k --source $(FLICKR8K)

train: data
	$(BIN)/lit-mc fit --config $(CONFIG)

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks notebooks
	$(BIN)/ruff format --check src tests benchmarks notebooks

# Every speed benchmark (about 45 min on 2 cores), then one table: benchmarks/RESULTS.md.
bench: data
	$(BIN)/python benchmarks/suite.py

# Re-run the report notebooks on the stored results (outputs saved in the .ipynb files; no training). The sources are
# the jupytext files notebooks/*.py, paired with the .ipynb: edit either (Jupyter with jupytext saves both).
notebooks: install
	$(BIN)/python notebooks/execute.py

# The README's result tables (between <!-- NAME:start/end --> markers), rendered from results/.
readme: install
	$(BIN)/python -m lit_mc.report.readme

# The two slide decks (slides/*.html, reveal.js inlined, code hidden) from the stored results, and a screenshot of every
# slide (slides/screenshots/) when Chromium is installed (apt-get install chromium). reveal.js comes from npm.
REVEAL := build/reveal.js
$(REVEAL)/package/dist/reveal.js:
	mkdir -p $(REVEAL) && cd $(REVEAL) && npm pack --silent reveal.js@4.6.1 && tar xzf reveal.js-4.6.1.tgz

slides: install $(REVEAL)/package/dist/reveal.js
	$(BIN)/python notebooks/build_slides.py --reveal $(REVEAL)/package

clean:
	rm -rf lightning_logs .pytest_cache .ruff_cache
