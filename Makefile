# gfl-repro: every target sets itself up first (a venv in .venv with the package and its extras).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PRESET ?= mini
SEEDS ?= 1
JOBS ?= 1
MAIN_SEEDS ?= 5
# RECORDS=DIR: the sweeps unpack the run records of DIR first and pack each run there as it
# completes (gfl-repro pack-runs), for machines that keep nothing between sessions.
RECORDS ?=
SWEEP_RECORDS = $(if $(RECORDS),--records $(RECORDS))

.PHONY: setup test lint format demo reproduce data clean all-tables plan figures bench gpu-check report regime \
	table1 table2 table3 table4 table5 table6 table7 table8

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

# The main job: GFLV1 and GFLV2 at PRESET (built-in data by default), their AP beside the paper's,
# then their analysis: Table 6 (PCC), Figures 1b-d, 4, 7, 8, 9 and claims.md.
# Finished runs are skipped and interrupted ones resume, so re-running it only does what is missing.
reproduce: setup
	$(BIN)/gfl-repro sweep main --preset $(PRESET) --seeds $(SEEDS) --jobs $(JOBS)
	$(BIN)/python analysis/main_result.py --preset $(PRESET)
	$(BIN)/gfl-repro table 6 --preset $(PRESET)
	$(BIN)/python analysis/figures.py --preset $(PRESET)
	$(MAKE) report

# JOBS=2 trains two runs at once (one per GPU; on CPU each with half the cores' threads).
# One paper table: its missing runs (shared runs once), bench-model for the speed columns of
# runs not yet timed, then results/$(PRESET)/tableN.{csv,md}.
table1 table2 table3 table4 table5 table6 table8: setup
	$(BIN)/gfl-repro sweep $(@:table%=%) --preset $(PRESET) --seeds $(SEEDS) --jobs $(JOBS) --bench $(SWEEP_RECORDS)

table7: setup
	@case "$(PRESET)" in coco*) ;; *) echo "table7 runs at the COCO presets only" >&2; exit 2;; esac
	$(BIN)/gfl-repro sweep 7 --preset $(PRESET) --seeds $(SEEDS) --bench

# Every table but 7 at SEEDS seeds with the main pair (GFLV1, GFLV2) at MAIN_SEEDS, bench-model
# for the speed columns, then main.md, every table, figure, claims.md and the results page.
all-tables: setup
	$(BIN)/gfl-repro sweep main --preset $(PRESET) --seeds $(MAIN_SEEDS) --jobs $(JOBS) $(SWEEP_RECORDS)
	$(BIN)/gfl-repro sweep all --preset $(PRESET) --seeds $(SEEDS) --jobs $(JOBS) --bench $(SWEEP_RECORDS)
	$(BIN)/python analysis/main_result.py --preset $(PRESET)
	$(BIN)/python analysis/figures.py --preset $(PRESET)
	$(MAKE) report

# Every figure the existing runs allow (PNG, PDF and the CSV behind each) and claims.md.
figures: setup
	$(BIN)/python analysis/figures.py --preset $(PRESET)

# One static page of the results so far, results/$(PRESET)/index.html: the claims and their
# verdicts, every table written, every figure, the runs and their environments.
report: setup
	$(BIN)/gfl-repro report --preset $(PRESET)

# Speed against torchvision's FCOS, what DGQP costs, the mini step's speed levers and a whole mini
# run against one at width x 0.5 (minutes: four short runs), measured in one process:
# results/bench.csv.
bench: setup
	$(BIN)/gfl-repro bench

# On a GPU machine: the CUDA tests, then step times (2 and 8 images of 1333 x 800, fp32 and bf16),
# FPS, peak memory and the ratios against FCOS and GFLV1 in one process: results/gpu/*.csv.
gpu-check:
	tools/gpu_check.sh results/gpu

# One candidate of the mini regime search (docs/differences.md): GFLV1 and GFLV2 at seeds
# 0 .. SEEDS-1 in runs/regime/CANDIDATE, two at a time; `python -m experiments.regime --help`
# lists the candidates, analysis/regime.py writes their table.
regime: setup
	@test -n "$(CANDIDATE)" || { echo "usage: make regime CANDIDATE=NAME [SEEDS=N]" >&2; exit 2; }
	$(BIN)/python -m experiments.regime $(CANDIDATE) --seeds $(SEEDS)

# The plan of every table and its cost, without running anything.
plan: setup
	$(BIN)/gfl-repro sweep all --preset $(PRESET) --seeds $(SEEDS) --dry-run

data: setup
	$(BIN)/gfl-repro data mini --out data/mini --contact-sheet results/mini/contact_sheet.png

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
