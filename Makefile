# One entry point: `make report` runs the whole study, `make test` runs the test suite.
# Each creates .venv from the pinned requirements when it is missing or out of date.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= study.yaml
# UTF-8 text I/O whatever the machine locale (captions, formulas and the HTML supplement hold non-ASCII characters).
export PYTHONUTF8 := 1

.PHONY: all setup report validate test test-fast bench clean-reports browser example

all: report

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is required, found {sys.version.split()[0]}; set PYTHON=/path/to/python3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU build in requirements.txt; see README for GPU machines.
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

report: $(STAMP)
	$(BIN)/python -m helpers run --config $(CONFIG)

validate: $(STAMP)
	$(BIN)/python -m helpers validate --config $(CONFIG)

# One example study (examples/README.md): simulate its cohort when missing, then run it, e.g. make example EXAMPLE=000_ki67_mri
example: $(STAMP)
	@test -n "$(EXAMPLE)" || { echo "name the example: make example EXAMPLE=<folder under examples/>"; exit 2; }
	if [ -f examples/$(EXAMPLE)/make_tables.py ]; then $(BIN)/python examples/$(EXAMPLE)/make_tables.py; \
	elif [ ! -f examples/$(EXAMPLE)/cohort/data_manifest.csv ]; then \
	  $(BIN)/python -m helpers simulate --settings examples/$(EXAMPLE)/simulation.yaml --out examples/$(EXAMPLE)/cohort; fi
	$(BIN)/python -m helpers run --config examples/$(EXAMPLE)/study.yaml

# Both cores (pytest-xdist): the slow tier runs whole example studies end to end.
test: $(STAMP) browser
	$(BIN)/python -m pytest -n 2

# The fast tier for development: no whole-study runs, network training or phantom/baseline extraction (see README).
test-fast: $(STAMP) browser
	$(BIN)/python -m pytest -m "not slow and not reference" -n 2

# Headless Chromium renders the HTML supplement in tests/test_supplement.py; installed from Debian when missing.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-dejavu-core; \
	fi

bench: $(STAMP)
	$(BIN)/python bench/bench_rerun.py
	nice -n 10 $(BIN)/python bench/bench_scale.py --sizes 50 200  # issue 7; ~20 min; 1000 patients: add --sizes 1000 by hand (~45 min)

clean-reports:
	rm -rf reports/*/
