# The two commands of the quickstart are `make run` and `make test`; every other
# target is something they build on. Everything the project needs is installed
# into folders git ignores: .venv (Python), .tools (uv, opa).

PYTHON  ?= python3
HOST    ?= 127.0.0.1
PORT    ?= 8080
UV_VERSION := 0.13.8
TOOLS   := $(CURDIR)/.tools
UV      := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/uv/bin/uv)
VENV    := $(CURDIR)/.venv
STAMP   := $(VENV)/.synced
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
OPA_VERSION := v1.22.0
OPA     := $(TOOLS)/opa/$(OPA_VERSION)/opa

.PHONY: setup run test test-setup opa lint bench clean

setup: $(STAMP)

$(TOOLS)/uv/bin/uv:
	$(PYTHON) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet uv==$(UV_VERSION)

# The lock file pins every dependency; `--locked` fails instead of silently re-resolving.
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --quiet
	touch $@

# The real OPA binary, built from source by the Go toolchain (the only way in here),
# static so it runs anywhere; reused while the pinned version stays the same.
opa: $(OPA)

$(OPA):
	GOBIN=$(dir $(OPA)) CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
		$(GO) install -trimpath -ldflags="-s -w" github.com/open-policy-agent/opa@$(OPA_VERSION)

run: setup
	$(VENV)/bin/gateway serve --dev --host $(HOST) --port $(PORT)

# Provides the real components the tests use (PostgreSQL, OPA, Chromium for the
# console's browser test), then runs every test.
test-setup: setup $(OPA)
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-chromium.sh

test: test-setup
	GATEWAY_OPA=$(OPA) $(VENV)/bin/pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check gateway tests bench

bench: test-setup
	GATEWAY_OPA=$(OPA) $(VENV)/bin/python -m bench.run_all

clean:
	rm -rf $(VENV) var .pytest_cache
