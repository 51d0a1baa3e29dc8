#!/usr/bin/env bash
# Builds the release files into $DIST (default dist/): a static tarball, a
# .deb (nfpm, pinned by packaging/go.mod) and SHA256SUMS of both. Both hold
# the same tree: the tusk and tusk-archive binaries, the walg-daemon-client name, the systemd
# units, the logrotate snippet, /etc/tusk/tusk.env and shell completions.
#
# make dist passes VERSION, LDFLAGS and GOBUILDFLAGS (see the Makefile); run
# alone, the script works them out the same way.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

VERSION=${VERSION:-$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || cat VERSION)}
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS=${LDFLAGS:-"-s -w -X main.version=$VERSION -X main.gitCommit=$COMMIT -X main.buildDate=$(date -u +%Y.%m.%d_%H:%M:%S)"}
GOBUILDFLAGS=${GOBUILDFLAGS--trimpath}
DIST=${DIST:-dist}
mkdir -p "$DIST"
DIST=$(cd "$DIST" && pwd)
[[ $VERSION == v[0-9]* ]] || {
	echo "dist: version $VERSION does not start with vN" >&2
	exit 1
}
name=tusk-$VERSION-linux-amd64
stage=$DIST/$name
rm -rf "$stage"
mkdir -p "$stage"/usr/bin

log() { printf 'dist: %s\n' "$*" >&2; }

# Static binaries: CGO off, so they run on any glibc or musl system.
# build OUT PKG [EXTRA_LDFLAGS]
build() {
	# shellcheck disable=SC2086 # GOBUILDFLAGS is a list of flags
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build $GOBUILDFLAGS -ldflags "$LDFLAGS ${3:-}" -o "$1" "$2"
}
log "building tusk $VERSION"
build "$stage/usr/bin/tusk" ./cmd/tusk
client=tusk
if [[ -d cmd/tusk-daemon-client ]]; then
	log "building tusk-daemon-client"
	# Its own entry point answers the common request before the Go runtime
	# starts (cmd/tusk-daemon-client/entry_linux_amd64.go).
	build "$stage/usr/bin/tusk-daemon-client" ./cmd/tusk-daemon-client -E=main.entry
	client=tusk-daemon-client
fi
log "building tusk-archive"
build "$stage/usr/bin/tusk-archive" ./cmd/tusk-archive
# archive_commands written for WAL-G keep working.
ln -s "$client" "$stage/usr/bin/walg-daemon-client"

comp=$stage/usr/share
mkdir -p "$comp/bash-completion/completions" "$comp/zsh/vendor-completions" "$comp/fish/vendor_completions.d"
"$stage/usr/bin/tusk" completion bash >"$comp/bash-completion/completions/tusk"
"$stage/usr/bin/tusk" completion zsh >"$comp/zsh/vendor-completions/_tusk"
"$stage/usr/bin/tusk" completion fish >"$comp/fish/vendor_completions.d/tusk.fish"

install -D -m 0644 README.md "$stage/usr/share/doc/tusk/README.md"
install -d "$stage/lib/systemd/system"
install -m 0644 packaging/systemd/* "$stage/lib/systemd/system/"
install -D -m 0644 packaging/logrotate/tusk "$stage/etc/logrotate.d/tusk"
install -D -m 0600 packaging/tusk.env "$stage/etc/tusk/tusk.env"

# Reproducible: owners, order and times do not depend on this machine.
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)
log "tarball $name.tar.gz"
tar -C "$DIST" --owner=0 --group=0 --numeric-owner --sort=name --mtime="@$epoch" \
	-czf "$DIST/$name.tar.gz" "$name"

log "deb (nfpm)"
rm -f "$DIST"/tusk_*.deb
# nfpm expands ${VERSION} itself, but not the source of a tree.
sed "s|\${TUSK_STAGE}|$stage|g" packaging/nfpm.yaml >"$DIST/nfpm.yaml"
(cd packaging && VERSION=${VERSION#v} SOURCE_DATE_EPOCH=$epoch \
	go tool nfpm package --config "$DIST/nfpm.yaml" --packager deb --target "$DIST/")
rm -r "$DIST/nfpm.yaml" "$stage"
deb=$(cd "$DIST" && ls tusk_*.deb)

(cd "$DIST" && sha256sum "$name.tar.gz" "$deb" >SHA256SUMS)
log "done: $DIST/{$name.tar.gz,$deb,SHA256SUMS}"
