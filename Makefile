# Two commands do all the set-up on a fresh machine:
#   make run    install into .venv, then train bAbI task 1 (1k, bundled data) and register it in MLflow
#   make test   install into .venv, then run the test suite
# TORCH_INDEX_URL picks the torch build, e.g. https://download.pytorch.org/whl/cpu or .../whl/cu126
# (left empty, pip takes torch from its default index: the CPU wheel on the dev machine's disk here).

PYTHON ?= python3
VENV ?= .venv
TORCH_INDEX_URL ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint

install: $(STAMP)

# The last step compiles the fused scans for this CPU (about a minute; without a C++ compiler a warning, and
# the Python scans run).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt torch $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL) --extra-index-url https://pypi.org/simple)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -c "from dmn.models.recurrence import compiled_scans; compiled_scans()"
	touch $@

run: $(STAMP)
	$(BIN)/dmn run babi

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
