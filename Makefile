# gfl-repro: every target sets itself up first (a venv in .venv with the package and its extras).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PRESET ?= mini
SEED ?= 0

.PHONY: setup test lint format demo reproduce data clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: setup
	$(BIN)/gfl-repro demo

# The main job: GFLV1 and GFLV2 at PRESET (built-in data by default), their AP beside the paper's.
# Finished runs are skipped and interrupted ones resume, so re-running it only does what is missing.
reproduce: setup
	$(BIN)/gfl-repro train gflv1 --preset $(PRESET) --seed $(SEED)
	$(BIN)/gfl-repro train gflv2 --preset $(PRESET) --seed $(SEED)
	$(BIN)/python analysis/main_result.py --preset $(PRESET)

data: setup
	$(BIN)/gfl-repro data mini --out data/mini --contact-sheet results/mini/contact_sheet.png

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
