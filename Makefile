# Set up a fresh machine and work: `make test`, `make book`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch first, pinned: this machine has a local CPU wheel of exactly this version, and any
# other spec would pull gigabytes of CUDA packages.
TORCH  := torch==2.13.0

.PHONY: venv test test-fast book bench starter clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,eval]'
	touch $@

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2

test-fast: venv
	$(BIN)/python -m pytest -q -n 2 -m "not slow"

# the PDFs and the web edition (dist/web/index.html)
book: venv
	$(BIN)/python build.py

# each prints ours, peer and ratio, measured in the same run (--quick: minutes, not hours)
BENCHMARKS := tokenizer data train generate quantize serve build
bench: venv
	for b in $(BENCHMARKS); do $(BIN)/python benchmarks/$$b.py --quick || exit 1; done

starter: venv
	$(BIN)/python -m scaffold new --track beginner --budget cpu:30m -o my-llm --no-input --force

clean:
	rm -rf dist build .pytest_cache
