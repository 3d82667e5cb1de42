# Sluice's build. `make demo` and `make test` are the README's quickstart:
# each installs what it needs first.

GO       ?= go
BIN      := bin/sluice
# The fuzzers run for a number of inputs, not a time: with -fuzztime as a
# duration, Go's fuzzing coordinator can fail a target with a bare "context
# deadline exceeded" when the time ends while a worker is mid-input on a
# loaded machine (golang/go#51484), though nothing was found. These counts
# take about 20 s each on the 2-core CI machine.
FUZZ_COMPILE ?= 8000x
FUZZ_RENDER  ?= 200000x
PKGS     := ./...

.PHONY: all build tools test test-unit fuzz lint bench demo demo-release demo-server deps clean image

all: build

build:
	$(GO) build -o bin/ ./cmd/sluice ./cmd/sluice-temporal
	CGO_ENABLED=0 $(GO) build -o bin/ ./cmd/sluice-exec

# tools builds the BuildKit daemon and CLI that Sluice starts when no
# BUILDKIT_HOST is given, pinned by tools/buildkit/go.mod; buildkitd runs
# containers with Debian's runc.
tools: bin/buildkitd bin/buildctl
	@scripts/deps.sh runc busybox

bin/buildkitd bin/buildctl: tools/buildkit/go.mod tools/buildkit/go.sum
	cd tools/buildkit && $(GO) build -o ../../bin/ github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl

# deps installs what the tests need beyond Go: git, Prometheus (the verify
# step's tests), npm, iproute2 (ip: the tests across hosts make network
# namespaces, internal/testing/netns), Chromium (the web view's tests drive it,
# internal/testing/browsertest), PostgreSQL (the embedded Temporal on
# PostgreSQL, internal/testing/pgtest), and GitHub's REST API description from
# the npm package @octokit/openapi (the fake GitHub validates against it).
deps:
	@scripts/deps.sh git prometheus npm curl ip chromium postgres
	@scripts/octokit-openapi.sh >/dev/null

# test runs every Go test (real servers included: buildkitd from make
# tools, which the build tests start through runners/buildkitd), then the
# fuzzers for a bounded time, then the lint checks.
test: deps tools test-unit fuzz lint replay-check

test-unit:
	$(GO) test -count=1 $(PKGS)
	cd deploy/helm && $(GO) test -count=1 ./...

fuzz:
	$(GO) test ./dsl -run '^$$' -fuzz '^FuzzCompile$$' -fuzztime $(FUZZ_COMPILE) -fuzzminimizetime 200x
	$(GO) test ./server/ansi -run '^$$' -fuzz '^FuzzRender$$' -fuzztime $(FUZZ_RENDER) -fuzzminimizetime 2000x

WORKFLOWCHECK := go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	cd deploy/helm && $(GO) vet ./...
	$(GO) run $(WORKFLOWCHECK) ./engine/... ./server/...

# replay-check replays the workflow histories recorded in engine/testdata
# (the *.json there; replay/ holds a report, no history) against the
# workflow code of bin/sluice, with the command a team runs before an
# upgrade (docs/operations.md, "Upgrading"): a workflow change that would
# break runs in flight fails here.
.PHONY: replay-check
replay-check: build
	$(BIN) replay --history engine/testdata/*.json

# bench measures the figures recorded in docs/benchmarks.md.
bench: build tools
	@scripts/deps.sh hyperfine
	$(GO) test ./dsl -run '^$$' -bench 'Compile1000|Parse1000' -benchmem -count 5
	$(GO) test ./engine -run 'TestLarge' -count=1 -v
	$(GO) test ./engine -run '^$$' -bench LargeRunUnbatched -benchtime 1x -v
	hyperfine --warmup 5 --runs 50 -N '$(BIN) validate examples/go-service/.sluice'
	scripts/bench/run-bench.sh
	scripts/bench/local-server-bench.sh
	scripts/bench/approvals.sh
	scripts/bench/build-bench.sh
	scripts/bench/webhooks.sh
	scripts/bench/temporal-starts.sh
	scripts/bench/runner-idle.sh
	SLUICE_BENCH_BIN=bin scripts/bench/runner-pickup.sh
	SLUICE_BENCH=1 $(GO) test ./server -run '^TestLogViewSpeed$$' -v -count 1

# demo is the main job on the embedded default: the base images
# (busybox:local, golang:local) pushed to the local registry under
# $SLUICE_HOME (no public registry is reachable), the hello example run,
# then the go-service example run for real: its image built with BuildKit
# and pushed, its tests run in containers, and the release, deploy and
# monitor stages skipped (they run on a tag). sluice run starts the
# embedded Temporal server, buildkitd and the registry, and stops them
# when it ends.
demo: deps build tools
	$(BIN) images
	$(BIN) run examples/hello/.sluice --progress plain
	$(BIN) run examples/go-service/.sluice --event manual --progress plain

# demo-release runs the go-service example as the tag v0.1.0 would, with
# nothing configured: first as a dry run (nothing leaves the workspaces),
# then for real: the image built, pushed and tested, the scan and the
# GitHub release reported as dry runs (no Harbor, no GitHub credentials),
# the deploy approved by `sluice approve` from a second process, its GitOps
# commit made in a local bare repository
# ($$TMPDIR/sluice-gitops/go-service-deploy.git) and the Argo CD sync
# reported; the monitor stage is skipped (no Prometheus).
demo-release: deps build tools
	$(BIN) images
	$(BIN) run examples/go-service/.sluice --event tag --ref v0.1.0 --dry-run --progress plain
	BIN=$(BIN) scripts/demo-release.sh

# demo-server is issue 9's server for real on this machine: sluice server
# (embedded Temporal, its own runner), a bare git repository per example
# with the post-receive hook installed, a git push of examples/hello and of
# examples/go-service, and the runs the pushes started, through the API.
demo-server: deps build tools
	$(BIN) images
	BIN=$(BIN) scripts/demo-server.sh

# image is Sluice building itself with its own pipeline, .sluice/sluice.hcl:
# go vet and the unit tests in containers of golang:local, then the sluice
# image (deploy/image/Dockerfile) built with BuildKit, pushed to the local
# registry as sluice/sluice:0.0.0-<commit> and tried as its non-root user.
# It builds the working tree as it is (--dirty), uncommitted changes
# included; the containers download modules through this machine's GOPROXY.
image: build tools
	$(BIN) images
	$(BIN) run .sluice --event manual --dirty --progress plain --var goproxy="$$($(GO) env GOPROXY)"

clean:
	rm -rf bin
