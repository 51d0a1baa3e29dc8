.PHONY: test build demo bench dist readme

test:
	scripts/test.sh

# The version tusk reports: the nearest release tag (v0.1.0, or
# v0.1.0-3-gabc1234 after it), else the VERSION file (a clone without tags).
VERSION := $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || cat VERSION)
COMMIT  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE    := $(shell date -u +%Y.%m.%d_%H:%M:%S)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.gitCommit=$(COMMIT) -X main.buildDate=$(DATE)
BIN     ?= bin/tusk
# tusk-daemon-client's own entry point, which answers the common request
# before the Go runtime starts (cmd/tusk-daemon-client/entry_linux_amd64.go);
# linux/amd64 only.
CLIENT_LDFLAGS := $(if $(filter linux/amd64,$(shell go env GOOS)/$(shell go env GOARCH)),-E=main.entry)
# -trimpath: no build machine paths in the binary.
GOBUILDFLAGS ?= -trimpath

build:
	CGO_ENABLED=0 go build $(GOBUILDFLAGS) -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/tusk
	CGO_ENABLED=0 go build $(GOBUILDFLAGS) -ldflags "$(LDFLAGS) $(CLIENT_LDFLAGS)" -o $(dir $(BIN))tusk-daemon-client ./cmd/tusk-daemon-client
	CGO_ENABLED=0 go build $(GOBUILDFLAGS) -ldflags "$(LDFLAGS)" -o $(dir $(BIN))tusk-archive ./cmd/tusk-archive

# Release files in $(DIST): a static tarball, a .deb and SHA256SUMS.
DIST ?= dist
dist:
	DIST="$(DIST)" VERSION="$(VERSION)" LDFLAGS="$(LDFLAGS)" GOBUILDFLAGS="$(GOBUILDFLAGS)" scripts/dist.sh

demo:
	scripts/demo.sh

# The README's generated tables: WAL-G's commands (from the command tree)
# and every setting (tusk settings --markdown, from the catalogue). A test
# fails while they are out of date.
readme:
	go test ./cmd/tusk -count=1 -run '^TestREADMETables$$' -update-readme

# WAL-archiver memory benchmark (root; several minutes per archiver). Flags:
# make bench BENCH_FLAGS="--duration 720 --archivers tusk-daemon"
# bench/ is its own Go module (plotting libraries stay out of tusk's go.mod).
bench:
	cd bench && CGO_ENABLED=0 go build -o ../bin/tuskbench ./cmd/tuskbench
	bin/tuskbench $(BENCH_FLAGS)
