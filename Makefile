# toolgate: `make run` serves the development default, `make test` runs
# everything CI runs. Only Go is needed; the OPA command line comes from
# go.mod's tool line.

GO      ?= go
BIN     ?= bin/toolgate
PKGS    := ./...

.PHONY: build run test test-go test-rego vet fmt-check token

build:
	$(GO) build -o $(BIN) ./cmd/toolgate

run:
	$(GO) run ./cmd/toolgate serve

token:
	@$(GO) run ./cmd/toolgate token $(ARGS)

# The whole suite: formatting, vet, Go tests under the race detector, and
# the Rego tests with the real OPA command line at the library's version.
test: fmt-check vet test-go test-rego

# Everything CI runs (.ci/run): make test with a real redis-server (the
# rate-limit and session-end tests then run instead of skipping: CI=true),
# the static build, the Kubernetes manifests, fuzzing, make e2e and
# make e2e-fleet. Installs with apt-get what is missing (redis-server here;
# the e2e scripts install chromium and nginx; npm and the Go module proxy
# the rest).
.PHONY: ci
ci:
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	CI=true $(MAKE) test
	$(MAKE) static
	$(MAKE) k8s-check
	$(MAKE) fuzz
	$(MAKE) e2e
	$(MAKE) e2e-fleet

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

test-go:
	$(GO) test -race -count=1 $(PKGS)

test-rego:
	$(GO) tool opa check --strict rego/
	$(GO) tool opa test -v rego/
	@for d in examples/*/; do \
		echo "== $$d"; \
		$(GO) tool opa check --strict $$d && $(GO) tool opa test $$d && \
		$(GO) run ./cmd/toolgate policy check $$d || exit 1; \
	done

# The static binary the Dockerfile ships (docs/deployment.md): cgo off,
# -trimpath, the version in server.Version. `make static` builds it, then
# deploy/smoke checks it is statically linked and starts it as a container
# does (not root, an empty environment, the embedded default) through
# /healthz, /readyz and one tools/list.
STATIC_BIN ?= bin/toolgate-static
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     = -s -w -X github.com/toolgate/toolgate/server.Version=$(VERSION)

.PHONY: static static-build
static: static-build
	$(GO) run ./deploy/smoke -version '$(VERSION)' $(STATIC_BIN)

static-build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(STATIC_BIN) ./cmd/toolgate

# The Kubernetes manifests (deploy/kubernetes): no cluster runs here, so each
# is decoded strictly into the k8s.io/api types, and their configuration,
# ports, probes and policy are checked against toolgate's config package and
# the static binary. A module of its own keeps k8s.io/api out of go.mod.
# After a change to rego/: make k8s-check K8S_CHECK_FLAGS=-update
K8S_CHECK_FLAGS ?=

.PHONY: k8s-check
k8s-check: static-build
	cd deploy/kubernetes/check && $(GO) run . $(K8S_CHECK_FLAGS) -toolgate $(abspath $(STATIC_BIN)) .. && \
		$(GO) vet . && $(GO) test -count=1 .

# Performance: Go micro-benchmarks (token verification, decisions,
# visible_tools for 50 and 1000 tools, startup, session memory, and the cost
# of a rate-limited call: BenchmarkLimitedCall's memory-ratio and, with
# redis-server installed, redis-added-ms), then the end-to-end load
# comparison against a bare mcp-go server in one run.
.PHONY: bench
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./idp/ ./policy/ ./server/
	$(GO) run ./bench/load

# End to end against software nobody here wrote: Ory Hydra (built from the Go
# module proxy, testdata/hydra), the MCP TypeScript SDK, MCP Inspector and the
# MCP conformance suite (npm, e2e/package-lock.json). Builds what is not
# cached, starts everything on loopback, runs e2e/tests, stops it all.
.PHONY: e2e
e2e:
	bash e2e/run.sh

# A fleet: three replicas behind nginx without affinity, one bundle server,
# Redis, on loopback (e2e/fleet/run.sh; apt-get installs redis-server and
# nginx when missing). Sessions across replicas, a replica killed under
# load, a bundle rollout.
.PHONY: e2e-fleet
e2e-fleet:
	bash e2e/fleet/run.sh

# Fuzzing: every Go fuzz target for a number of executions each (about ten
# seconds of this machine's 2 cores per target); by time instead with
# `make fuzz FUZZTIME=10m`. A count, not a duration, is the default because
# go1.26's fuzz coordinator can fail a run whose -fuzztime ends while a worker
# is mid-execution ("context deadline exceeded", no failing input: Go issue
# 75804, fixed in go1.27); a count has no deadline to race. go test fuzzes one
# target per package per run. A failing input lands in the package's
# testdata/fuzz/<FuzzName>/ and runs as a seed with every `go test` from then
# on. Minimising each new input is capped (FUZZMINIMIZETIME): an execution
# costs up to a millisecond here (OPA and the other dependencies are
# instrumented too), and go test's default of 60s per input would spend a
# short run on minimising alone.
FUZZTIME ?=
FUZZMINIMIZETIME ?= 1s
# $(call fuzzrun,package,FuzzName,executions)
fuzzrun = $(GO) test -run '^$$' -fuzztime $(or $(FUZZTIME),$(3)x) -fuzzminimizetime $(FUZZMINIMIZETIME) -fuzz '^$(2)$$' ./$(1)/

.PHONY: fuzz
fuzz:
	$(call fuzzrun,idp,FuzzVerify,25000)
	$(call fuzzrun,idp,FuzzNormalise,100000)
	$(call fuzzrun,config,FuzzParse,200000)
	$(call fuzzrun,policy,FuzzDecideArguments,20000)
	$(call fuzzrun,policy,FuzzFastPathAgrees,5000)
	$(call fuzzrun,server,FuzzBearerChallenge,40000)
	$(call fuzzrun,server,FuzzScanRequest,50000)
	$(call fuzzrun,server,FuzzAppendString,40000)

# Soak: toolgate as its own process under a couple of minutes of steady mixed
# load; prints its resident memory and goroutines at the start and the end
# (they must be flat) and fails if they grow.
.PHONY: soak
soak:
	$(GO) run ./bench/soak -duration $${SOAK_DURATION:-2m}
