# Two entry points: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS := $(VENV)/.deps-installed

ANVIL := .tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil

.PHONY: install test demo lint clean tools wheelhouse image container-deps

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
test: install lint tools container-deps
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q --cov --cov-report=term

# The container image (deploy/Dockerfile). The build reads only build/image: the project's
# wheel and its dependencies' wheels, made here on the host (the image's Python must be the
# minor version of this venv's, 3.11), so it needs no network and no registry but the base.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= somnet:$(VERSION)
BASE_IMAGE ?= docker.io/library/python:3.11-slim-bookworm
ENGINE ?= $(shell command -v podman || command -v docker)
SOURCE ?= $(shell git remote get-url origin 2>/dev/null || echo unknown)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)

wheelhouse: $(DEPS)
	rm -rf build/image && mkdir -p build/image/wheels
	$(BIN)/python -m pip wheel -q --no-build-isolation --wheel-dir build/image/wheels .

# --format docker keeps the HEALTHCHECK (podman's default OCI format has no field for it).
image: wheelhouse
	@test -n "$(ENGINE)" || { echo "make image: needs podman or docker" >&2; exit 1; }
	$(ENGINE) build $(if $(findstring podman,$(ENGINE)),--format docker) \
		--build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg VERSION=$(VERSION) \
		--build-arg SOURCE=$(SOURCE) --build-arg REVISION=$(REVISION) \
		--tag $(IMAGE) --file deploy/Dockerfile build/image
	$(ENGINE) image prune --force --filter label=somnet.stage=build >/dev/null

# What the container tests need (tests/integration/test_containers.py). As root (CI, a
# fresh machine) it installs them; otherwise it only says what is missing, and those
# tests fail with the same advice: they are never skipped.
CONTAINER_PACKAGES := podman runc podman-compose debootstrap
container-deps:
	@missing=; for tool in podman runc podman-compose debootstrap; do \
		command -v $$tool >/dev/null || [ -x /usr/sbin/$$tool ] || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing$$missing for the container tests"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(CONTAINER_PACKAGES) >/dev/null \
			|| { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -q $(CONTAINER_PACKAGES) >/dev/null; }; \
		else \
			echo "missing$$missing: the container tests will fail;" \
				"as root: apt-get install -y $(CONTAINER_PACKAGES)" >&2; \
		fi; \
	fi


# The demo anchors when anvil can be installed and started; it runs without it too.
demo: install
	-$(MAKE) tools
	$(BIN)/somnet demo

clean:
	rm -rf $(VENV) .tools build dist .pytest_cache .mypy_cache .ruff_cache
