# Two entry points: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS := $(VENV)/.deps-installed

ANVIL := .tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil

.PHONY: install test demo lint clean tools

$(DEPS): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q '.[dev]'
	touch $(DEPS)

# The package is reinstalled (not editable) every time, so tests exercise the installed copy.
install: $(DEPS)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation --force-reinstall .

# anvil, the local EVM chain of the anchoring tests and the demo (npm @foundry-rs/anvil;
# its native binary is in the platform package), in the git-ignored .tools/.
$(ANVIL):
	npm install --prefix .tools --no-save --no-audit --no-fund @foundry-rs/anvil
	test -x $(ANVIL)

tools: $(ANVIL)

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

# Branch coverage of the consensus core must stay at or above 95% (pyproject.toml).
# --dist loadgroup: the tests marked `network` (real node processes) share one xdist group
# and run one at a time on one worker, while the other worker runs the rest.
test: install lint tools
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q --cov --cov-report=term

# The demo anchors when anvil can be installed and started; it runs without it too.
demo: install
	-$(MAKE) tools
	$(BIN)/somnet demo

clean:
	rm -rf $(VENV) .tools build dist .pytest_cache .mypy_cache .ruff_cache
