# Two commands do all set-up on a fresh machine:
#   make demo   install, then run the offline end-to-end demo on the embedded synthetic data
#   make test   install, then run the test suite (this is what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test lint typecheck docs bench clean

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	NUCFUSE_OFFLINE=1 $(BIN)/nucfuse demo --out demo-output

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check nucfuse_datasets tests benchmarks examples

# mypy --strict over the package ([tool.mypy] in pyproject.toml); CI runs it before the tests (.ci/run)
typecheck: install
	$(BIN)/mypy

docs: install
	$(BIN)/mkdocs build --strict

bench: install
	$(BIN)/python benchmarks/metrics.py
	$(BIN)/python benchmarks/metrics_peers.py
	$(BIN)/python benchmarks/monuseg_xml.py
	$(BIN)/python benchmarks/loading.py
	$(BIN)/python benchmarks/prepare.py
	$(BIN)/python benchmarks/stain.py
	$(BIN)/python benchmarks/augment.py
	@if [ -n "$(OFFICIAL)" ]; then $(BIN)/python benchmarks/class_metrics.py --official $(OFFICIAL); \
	else echo "benchmarks/class_metrics.py skipped: pass OFFICIAL=<folder with the official PanNuke-metrics, CoNIC and hover_net clones> (see its docstring)"; fi

clean:
	rm -rf $(VENV) site demo-output .pytest_cache .ruff_cache
