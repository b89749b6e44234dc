# Roost: see README.md. `make demo` runs the main job, `make test` the tests.
GO        ?= go
BIN       := bin
PKGS      := ./...
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/roostnet/roost/internal/version.Version=$(VERSION)
# Tests that need root, namespaces, etcd and BIRD run when those exist; with
# CI=true a missing one fails instead of skipping.
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: all build test e2e bench demo demo-down lint deps clean fmt

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/confd ./confd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/birdctl ./birdctl
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/roost-node ./node
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/roost-cni ./cni

deps:
	bash scripts/install-deps.sh

# staticcheck is pinned and fetched through the Go module proxy on first use
# (then cached), so a fresh machine needs nothing installed beforehand.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) mod tidy -diff
	$(STATICCHECK) $(PKGS)

test: deps lint build
	$(GO) test $(TESTFLAGS) $(PKGS)

e2e: deps build
	$(GO) test $(TESTFLAGS) -v ./tests/...

# Performance harness (bench/): real etcd, bin/confd, BIRD in a network
# namespace, the node agent's and confd's Go benchmarks, iperf3 on the lab
# per pool mode, the CNI plugin's ADD/DEL through libcni on a lab host; the
# report goes to docs/performance.md. BENCH_FLAGS=-full
# runs 200 changes per size and repeats everything (~25 min); the default
# takes about 6 minutes.
BENCH_FLAGS ?=
bench: build
	bash scripts/install-deps.sh bench
	GO=$(GO) $(GO) run ./bench -out docs/performance.md $(BENCH_FLAGS)

# MODE=bgp|vxlan|crosssubnet picks the pool mode; IPV6=1 makes it dual-stack;
# KEEP=1 leaves the lab up (make demo-down).
demo: deps build
	$(GO) run ./tests/demo $(if $(MODE),-mode $(MODE)) $(if $(filter 1,$(IPV6)),-ipv6) $(if $(filter 1,$(KEEP)),-keep)

demo-down:
	$(GO) run ./tests/demo -down

# The node image (etc/image/Dockerfile) with the first container engine that
# works: docker, podman or buildah. IMAGE=name:tag picks the tag.
IMAGE ?= roost/node:$(VERSION)
.PHONY: image
image:
	@engine=; why=; \
	for e in docker podman buildah; do \
	  if ! command -v $$e >/dev/null 2>&1; then why="$$why $$e: not installed;"; continue; fi; \
	  if $$e info >/dev/null 2>&1; then engine=$$e; break; fi; \
	  why="$$why $$e: installed but \`$$e info\` fails (no engine/daemon reachable);"; \
	done; \
	if [ -z "$$engine" ]; then \
	  echo "make image: no container engine available:$$why" >&2; \
	  echo "make image: install and start docker or podman (or buildah) to build $(IMAGE) from etc/image/Dockerfile." >&2; \
	  exit 1; \
	fi; \
	echo "make image: building $(IMAGE) with $$engine"; \
	if [ "$$engine" = buildah ]; then set -- buildah build; else set -- $$engine build; fi; \
	"$$@" -f etc/image/Dockerfile --build-arg VERSION=$(VERSION) -t $(IMAGE) .

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
