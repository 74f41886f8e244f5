# The two commands of the quickstart are `make run` and `make test`; every other
# target is something they build on. Everything the project needs is installed
# into folders git ignores: .venv (Python), .tools (uv, opa, helm, kubecheck).

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
HELM_VERSION := v4.3.2
HELM    := $(TOOLS)/helm/$(HELM_VERSION)/helm
# Our manifest checker (deploy/kubecheck), kept by a hash of its sources: .tools may be
# shared by several checkouts, and each must run the checker its own sources describe.
KUBECHECK_SRC := $(sort $(wildcard deploy/kubecheck/*.go)) deploy/kubecheck/go.mod deploy/kubecheck/go.sum
KUBECHECK := $(TOOLS)/kubecheck/$(shell cat $(KUBECHECK_SRC) 2>/dev/null | sha256sum | cut -c1-16)/kubecheck

PEERS   := tests/peers/node_modules/.installed
# langchain-mcp-adapters needs mcp<2, the gateway mcp>=2.3: it gets its own environment.
LANGCHAIN := tests/peers/langchain/.venv/.synced

.PHONY: setup run test test-setup opa helm kubecheck peers lint bench bench-setup clean

setup: $(STAMP)

$(TOOLS)/uv/bin/uv:
	$(PYTHON) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet uv==$(UV_VERSION)

# The lock file pins every dependency; `--locked` fails instead of silently re-resolving.
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --quiet
	touch $@

# The real OPA binary, built from source by the Go toolchain (the only way in here),
# static so it runs anywhere; reused while the pinned version stays the same. The
# embedded engine compiles the policy folder with it (to Wasm), so `make run` needs it
# too. The first build takes minutes: -v names each package as it is compiled.
opa: $(OPA)

$(OPA):
	@echo "Building OPA $(OPA_VERSION) from source into $(dir $(OPA)) (once; a few minutes)..."
	GOBIN=$(dir $(OPA)) CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
		$(GO) install -v -trimpath -ldflags="-s -w" github.com/open-policy-agent/opa@$(OPA_VERSION)
	@echo "OPA $(OPA_VERSION) built: $(OPA)"

# Helm, the same way: `helm lint` and `helm template` check the chart in deploy/helm.
helm: $(HELM)

$(HELM):
	@echo "building helm $(HELM_VERSION) from source (the first build takes a few minutes)"
	GOBIN=$(dir $(HELM)) CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
		$(GO) install -trimpath -ldflags="-s -w" helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

# Decodes rendered manifests strictly into the Kubernetes API's Go types (k8s.io/api).
kubecheck: $(KUBECHECK)

$(KUBECHECK): $(KUBECHECK_SRC)
	@echo "building kubecheck (the first build downloads k8s.io/api)"
	cd deploy/kubecheck && CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
		$(GO) build -trimpath -ldflags="-s -w" -o $@ .

# Real third-party MCP peers from npm (tests/peers/package.json, pinned by its lock):
# the reference server, the TypeScript SDK clients (v1 and v2), the Inspector, the
# official conformance suite, and a Node 22 it needs (this machine's Node is 20).
peers: $(PEERS) $(LANGCHAIN)

$(PEERS): tests/peers/package.json tests/peers/package-lock.json
	@echo "installing the npm test peers (tests/peers)"
	cd tests/peers && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(LANGCHAIN): tests/peers/langchain/pyproject.toml tests/peers/langchain/uv.lock | $(UV)
	$(UV) sync --project tests/peers/langchain --locked --quiet
	touch $@

run: setup $(OPA)
	GATEWAY_OPA=$(OPA) $(VENV)/bin/gateway serve --dev --host $(HOST) --port $(PORT)

# Provides the real components the tests use (PostgreSQL, OPA, Helm and kubecheck for
# the chart, the npm MCP peers, Chromium for the browser tests), then runs every test.
test-setup: setup $(OPA) $(HELM) $(KUBECHECK) $(PEERS) $(LANGCHAIN)
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-chromium.sh

test: test-setup
	GATEWAY_OPA=$(OPA) GATEWAY_HELM=$(HELM) GATEWAY_KUBECHECK=$(KUBECHECK) \
		$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check gateway tests bench

# The peer the comparison measures: IBM ContextForge in its own virtual environment
# (var/bench/, Python 3.12); idempotent, and never part of `make test`.
bench-setup: setup
	$(VENV)/bin/python -m bench.contextforge setup

bench: test-setup bench-setup
	GATEWAY_OPA=$(OPA) $(VENV)/bin/python -m bench.run_all

clean:
	rm -rf $(VENV) var .pytest_cache
