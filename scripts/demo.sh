#!/usr/bin/env bash
# tusk's main job on a throwaway local PostgreSQL 15 cluster with file
# storage: archive WAL with `tusk wal-push`, then rebuild the cluster from a
# copy of its initial state plus the archive with `tusk wal-fetch`, and check
# the data matches. Everything lives in one temp dir, removed on exit.
#
# Runs as root (PostgreSQL then runs as the postgres user) or as any user.
# TUSK=/path/to/tusk uses that binary instead of building ./cmd/tusk.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
# On a fresh machine, install what the demo needs (root only; a no-op when
# everything is there).
if [[ ! -x $PG_BIN/postgres && $(id -u) -eq 0 ]]; then
	scripts/install-deps.sh
fi
[[ -x $PG_BIN/postgres ]] || {
	echo "no PostgreSQL in $PG_BIN (run scripts/install-deps.sh)" >&2
	exit 1
}

work=$(mktemp -d /tmp/tusk-demo.XXXXXX)
primary_up=
restored_up=
cleanup() {
	local rc=$?
	[[ -n $restored_up ]] && pg "$PG_BIN/pg_ctl" -D "$work/restored" -m immediate stop >/dev/null 2>&1 || true
	[[ -n $primary_up ]] && pg "$PG_BIN/pg_ctl" -D "$work/primary" -m immediate stop >/dev/null 2>&1 || true
	# wal-fetch may have left a detached prefetcher running; only this run's
	# binary (a path inside $work) is matched.
	for pid in $(pgrep -f -- "$work/bin/tusk" || true); do
		kill "$pid" 2>/dev/null || true
	done
	if ((rc != 0)); then
		for f in "$work"/*.log; do
			[[ -f $f ]] && {
				echo "--- $f (tail)"
				tail -n 30 "$f"
			}
		done >&2
	fi
	rm -rf "$work"
}
trap cleanup EXIT

if [[ $(id -u) -eq 0 ]]; then
	pguser=postgres
	chown postgres: "$work"
	as_pg() { runuser -u postgres -- "$@"; }
else
	pguser=$(id -un)
	as_pg() { "$@"; }
fi
chmod 755 "$work"
# Server-side commands get a clean environment: WALG_*/AWS_* settings of the
# caller must not redirect the demo's archive elsewhere.
pg() { as_pg env -i PATH="$PATH" HOME="$work" LC_ALL=C TZ=UTC "$@"; }
step() { printf '==> %s\n' "$*"; }

mkdir -p "$work/bin"
tusk=$work/bin/tusk
if [[ -n ${TUSK:-} ]]; then
	step "using $TUSK"
	cp "$TUSK" "$tusk" # a copy the server user can surely run
else
	step "building tusk"
	CGO_ENABLED=0 go build -o "$tusk" ./cmd/tusk
fi
chmod 755 "$work/bin" "$tusk"

# The storage location is in an explicit config file, readable by the server
# user, rather than in the server's environment.
storage=$work/storage
as_pg mkdir "$storage"
printf '{"WALG_FILE_PREFIX": "%s"}\n' "$storage" >"$work/walg.json"
chmod 644 "$work/walg.json"

sock=$work/sock
as_pg mkdir "$sock"
port=54329 # only names the unix socket: no TCP listener
psql() { "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres -d postgres "$@"; }
pgconf() {
	cat >>"$1/postgresql.conf" <<-EOF
		# --- demo settings
		port = $port
		listen_addresses = ''
		unix_socket_directories = '$sock'
	EOF
}

step "initdb (as $pguser) and a copy of the fresh, shut-down cluster as the restore base"
pg "$PG_BIN/initdb" -D "$work/primary" -U postgres --auth=trust -E UTF8 --locale=C --no-sync --no-instructions >"$work/initdb.log"
as_pg cp -a "$work/primary" "$work/restored"
pgconf "$work/primary"
# GNU time records each wal-push's peak RSS, for the summary.
timed=
if [[ -x /usr/bin/time ]]; then
	as_pg touch "$work/archive-rss.log"
	timed="/usr/bin/time -a -o $work/archive-rss.log -f %M "
fi
cat >>"$work/primary/postgresql.conf" <<EOF
archive_mode = on
archive_command = '$timed$tusk --config $work/walg.json wal-push %p'
EOF

step "starting the primary with archive_command = 'tusk --config walg.json wal-push %p'"
pg "$PG_BIN/pg_ctl" -D "$work/primary" -l "$work/primary.log" -w start >/dev/null
primary_up=1

step "writing data across several WAL segments"
psql <<'SQL'
create table accounts (id bigint primary key, balance bigint not null, owner text not null);
insert into accounts select g, g % 1000, md5(g::text) from generate_series(1, 100000) g;
select pg_switch_wal() \g /dev/null
update accounts set balance = balance + 10 where id % 3 = 0;
select pg_switch_wal() \g /dev/null
delete from accounts where id % 11 = 0;
insert into accounts select g, 0, 'late' from generate_series(100001, 120000) g;
checkpoint;
SQL
digest_sql="select md5(coalesce(string_agg(t::text, ',' order by id), '')) || ' ' || count(*) from accounts t"
want=$(psql -c "$digest_sql")
last=$(psql -c "select pg_walfile_name(pg_switch_wal())")

step "waiting until $last is archived"
for _ in $(seq 600); do
	archived=$(psql -c "select coalesce(last_archived_wal, '') from pg_stat_archiver")
	[[ $archived > $last || $archived == "$last" ]] && break
	sleep 0.1
done
[[ $archived > $last || $archived == "$last" ]] || {
	echo "timed out: last archived '$archived'" >&2
	exit 1
}
read -r archived_count failed_count < <(psql -F ' ' -c "select archived_count, failed_count from pg_stat_archiver")
pg "$PG_BIN/pg_ctl" -D "$work/primary" -m fast -w stop >/dev/null
primary_up=

step "restoring the copy with restore_command = 'tusk --config walg.json wal-fetch %f %p'"
pgconf "$work/restored"
cat >>"$work/restored/postgresql.conf" <<EOF
restore_command = '$tusk --config $work/walg.json wal-fetch %f %p'
recovery_target_action = 'promote'
EOF
as_pg touch "$work/restored/recovery.signal"
pg "$PG_BIN/pg_ctl" -D "$work/restored" -l "$work/restored.log" -w start >/dev/null
restored_up=1
for _ in $(seq 600); do
	[[ $(psql -c "select pg_is_in_recovery()" 2>/dev/null || true) == f ]] && break
	sleep 0.1
done
[[ $(psql -c "select pg_is_in_recovery()") == f ]] || {
	echo "restored cluster still in recovery" >&2
	exit 1
}
got=$(psql -c "$digest_sql")
# Each "restored log file" line is one wal-fetch that found its file.
restored=$(grep -o 'restored log file "[0-9A-F]*"' "$work/restored.log" | cut -d'"' -f2 || true)
restored_count=$(grep -c . <<<"$restored" || true)
restored_unique=$(sort -u <<<"$restored" | grep -c . || true)
restored_twice=$(sort <<<"$restored" | uniq -d | paste -sd' ' -)
pg "$PG_BIN/pg_ctl" -D "$work/restored" -m fast -w stop >/dev/null
restored_up=

segments=$(find "$storage/wal_005" -type f | wc -l)
bytes=$(du -sb "$storage" | cut -f1)
# Compression: the segments' size (16 MiB each, initdb's default) against
# what they take in storage.
wal_stored=$(find "$storage/wal_005" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
wal_raw=$((segments * 16 * 1024 * 1024))
method=$(find "$storage/wal_005" -type f -name '*.*' | head -n1 | sed 's/.*\.//')
ratio=$(awk -v r="$wal_raw" -v s="$wal_stored" 'BEGIN { if (s > 0) printf "%.1f", r / s; else print "n/a" }')
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
peak="not measured (no /usr/bin/time)"
if [[ -s $work/archive-rss.log ]]; then
	peak=$(awk '/^[0-9]+$/ { n++; if ($1 > m) m = $1 } END { printf "%.1f MiB (the highest of %d wal-push runs, by GNU time)", m / 1024, n }' "$work/archive-rss.log")
fi
why="each archived segment once"
if [[ -n $restored_twice ]]; then
	# At the end of archive recovery PostgreSQL reads the last segment
	# again (restore_command fetched it into a temporary file, now gone) to
	# find the end of WAL and start its new timeline.
	why="the $restored_unique archived segments, and $restored_twice once more: PostgreSQL reads the last segment again when recovery ends, to start its new timeline"
fi
match=no
[[ $got == "$want" ]] && match=yes
cat <<EOF

tusk demo summary
  WAL segments archived by PostgreSQL: $archived_count (failures: $failed_count), last $last
  objects in storage:                  $segments ($bytes bytes, $((bytes / 1024 / 1024)) MiB)
  WAL compression:                     $method, $(mib "$wal_raw") of segments stored in $(mib "$wal_stored"), ratio $ratio:1
  archiver peak memory (RSS):          $peak
  WAL files restored from storage:     $restored_count ($why)
  accounts on the primary:             $want
  accounts after restore:              $got
  restored rows match:                 $match
EOF
[[ $match == yes ]]
