.PHONY: test build demo bench

test:
	scripts/test.sh

VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE    := $(shell date -u +%Y.%m.%d_%H:%M:%S)

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(VERSION) -X main.gitCommit=$(COMMIT) -X main.buildDate=$(DATE)" -o bin/tusk ./cmd/tusk

demo:
	scripts/demo.sh

# WAL-archiver memory benchmark (root; several minutes per archiver). Flags:
# make bench BENCH_FLAGS="--duration 720 --archivers tusk-daemon"
# bench/ is its own Go module (plotting libraries stay out of tusk's go.mod).
bench:
	cd bench && CGO_ENABLED=0 go build -o ../bin/tuskbench ./cmd/tuskbench
	bin/tuskbench $(BENCH_FLAGS)
