#!/usr/bin/env bash
# The test command: installs missing dependencies, vets, runs every test.
# Exits with go test's status (or go vet's when the tests pass but vet did
# not), after printing go test's normal output.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

scripts/install-deps.sh

PATH="$PATH:$(go env GOPATH)/bin"
export PATH
# WAL-G-written archives the tests restore; tests skip when absent.
export TUSK_FIXTURES="${TUSK_FIXTURES:-$repo/../shared/fixtures/walg}"
export CGO_ENABLED=0

vet=0
go vet ./... || vet=$?
# bench/ is a module of its own: its harness code is vetted and unit-tested
# here too.
(cd bench && go vet ./...) || vet=$?

status=0
go test -count=1 -timeout 25m ./... || status=$?
(cd bench && go test -count=1 ./...) || status=$?

if ((status == 0 && vet != 0)); then
	echo "go vet failed (exit $vet)" >&2
	status=$vet
fi
exit "$status"
