# Two entry points: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS := $(VENV)/.deps-installed

.PHONY: install test demo lint clean

$(DEPS): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q '.[dev]'
	touch $(DEPS)

# The package is reinstalled (not editable) every time, so tests exercise the installed copy.
install: $(DEPS)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation --force-reinstall .

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

# Branch coverage of the consensus core must stay at or above 95% (pyproject.toml).
# --dist loadgroup: the tests marked `network` (real node processes) share one xdist group
# and run one at a time on one worker, while the other worker runs the rest.
test: install lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q --cov --cov-report=term

demo: install
	$(BIN)/somnet demo

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
