.PHONY: test build demo bench

test:
	scripts/test.sh

build:
	CGO_ENABLED=0 go build -o bin/tusk ./cmd/tusk

demo:
	scripts/demo.sh

# WAL-archiver memory benchmark (root; several minutes per archiver). Flags:
# make bench BENCH_FLAGS="--duration 720 --archivers tusk-daemon"
bench:
	CGO_ENABLED=0 go build -o bin/tuskbench ./bench/cmd/tuskbench
	bin/tuskbench $(BENCH_FLAGS)
