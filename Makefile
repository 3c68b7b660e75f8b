# csi-libstorage: see README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
export PATH := $(PATH):/usr/local/go/bin:/usr/sbin:/sbin

GO      ?= go
VAR     := $(CURDIR)/var
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/csi-libstorage/csi-libstorage/identity.Version=$(VERSION)

.PHONY: build run test deps vet lint sanity bench bench-quick clean release image

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/csi-libstorage ./cmd/csi-libstorage
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/csictl ./cmd/csictl

# The plugin on its embedded default: a file pool and the socket under ./var.
run: build deps
	mkdir -p $(VAR)
	./bin/csi-libstorage --endpoint unix://$(VAR)/csi.sock --pool $(VAR)/pool \
		--node-id $$(hostname) --log-format console

deps:
	@.ci/deps

vet:
	$(GO) vet ./...

# staticcheck is pinned and run through go run, so a fresh machine fetches
# it from the module proxy; it runs after gofmt and vet.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

# Unit, integration and conformance tests. Root is needed for loop devices
# and mounts. Everything runs under the race detector, and csi-sanity prints
# its pass/skip counts at the end. Packages run
# one at a time (-p 1): the two-agent tests create mount namespaces, and a new
# namespace takes a copy of every mount present at that moment, which would
# keep another package's loop device busy after it unmounted it.
test: deps lint
	$(GO) test -race -count=1 -p 1 $$($(GO) list ./... | grep -v '/sanity')
	mkdir -p $(VAR)
	$(GO) test -race -count=1 -p 1 -v ./sanity/... -ginkgo.no-color 2>&1 | tee $(VAR)/sanity.log \
		| grep -E '^(Ran [0-9]+ of|SUCCESS|FAIL|--- |ok |PASS)|Passed \|'

sanity: deps
	$(GO) test -count=1 -v ./sanity/... -ginkgo.no-color

clean:
	rm -rf bin

# Benchmarks (root: loop devices and mounts). bench writes BENCHMARKS.md,
# keeping its hand-written analysis; bench-quick is the same with smaller
# trials and pools and writes var/BENCHMARKS-quick.md.
BENCH_PKGS := ./internal/lock ./controller ./backends/file

bench: build deps
	mkdir -p $(VAR)
	$(GO) build -o bin/csi-bench ./cmd/csi-bench
	$(GO) test -run '^$$' -bench . -benchtime 1s $(BENCH_PKGS) | tee $(VAR)/gobench.txt
	./bin/csi-bench --plugin bin/csi-libstorage --gobench $(VAR)/gobench.txt --out BENCHMARKS.md \
		--command-label "make bench (bin/csi-bench --plugin bin/csi-libstorage --out BENCHMARKS.md; go test -bench . -benchtime 1s $(BENCH_PKGS))"

bench-quick: build deps
	mkdir -p $(VAR)
	$(GO) build -o bin/csi-bench ./cmd/csi-bench
	$(GO) test -run '^$$' -bench . -benchtime 100ms $(BENCH_PKGS) | tee $(VAR)/gobench-quick.txt
	./bin/csi-bench --quick --plugin bin/csi-libstorage --gobench $(VAR)/gobench-quick.txt --out $(VAR)/BENCHMARKS-quick.md \
		--command-label "make bench-quick (bin/csi-bench --quick; go test -bench . -benchtime 100ms $(BENCH_PKGS))"

# Static release binaries for linux/amd64 and linux/arm64, stamped with the
# git version, and their checksums: bin/release/{csi-libstorage,csictl}-linux-ARCH
# and bin/release/SHA256SUMS.
RELEASE_ARCHES := amd64 arm64
release:
	rm -rf bin/release && mkdir -p bin/release
	for arch in $(RELEASE_ARCHES); do \
		for cmd in csi-libstorage csictl; do \
			CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath \
				-ldflags "-s -w $(LDFLAGS)" -o bin/release/$$cmd-linux-$$arch ./cmd/$$cmd; \
		done; \
	done
	cd bin/release && sha256sum csi-libstorage-linux-* csictl-linux-* > SHA256SUMS
	@cat bin/release/SHA256SUMS

# The plugin image, with whichever of docker, podman or buildah is present.
# IMAGE names it; deploy/kubernetes/kustomization.yaml and the Nomad jobs'
# `image` variable take the same name (docs/kubernetes.md, docs/nomad.md).
IMAGE ?= csi-libstorage:$(VERSION)
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
image: release
	@if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then b="docker build"; \
	elif command -v podman >/dev/null 2>&1; then b="podman build"; \
	elif command -v buildah >/dev/null 2>&1; then b="buildah bud"; \
	elif command -v docker >/dev/null 2>&1; then echo "make image: docker is installed but its daemon does not answer (docker info fails); start it, or install podman or buildah" >&2; exit 1; \
	else echo "make image: no image builder found; install docker, podman or buildah (apt-get install podman)" >&2; exit 1; fi; \
	echo "$$b -t $(IMAGE) --build-arg TARGETARCH=$(IMAGE_ARCH) ."; \
	$$b -t $(IMAGE) --build-arg TARGETARCH=$(IMAGE_ARCH) .
