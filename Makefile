.PHONY: test build demo

test:
	scripts/test.sh

build:
	CGO_ENABLED=0 go build -o bin/tusk ./cmd/tusk

demo:
	scripts/demo.sh
