#!/bin/bash
# bench/events.sh: the event relay measured (issue 21).  See bench/README.md,
# "Issue 21", "The relay, measured".
#
#   bench/events.sh [--seconds S] [--rounds N] [--clients 2,8,32] [--sync on,off]
#                   [--workloads consume,create_email] [--links N] [--history N]
#                   [--naptime MS] [--port P]
#                   [--wait-quiet MINUTES] [--keep]
#
# Starts a throwaway PostgreSQL cluster (as user postgres, private port and
# socket directory) with shared_preload_libraries = 'invitetomedia',
# invitetomedia.relay_databases = 'bench' and track_commit_timestamp = on,
# with two databases made from one template: bench (the relay announces its
# events) and bench_tx (not listed: 1.1's NOTIFY in the writing
# transaction).  bench/events.py then runs, for each synchronous_commit and
# client count, pgbench (prepared, fixed time) of consumes on distinct
# single-use links and of invite_create with send_email = true, in three
# modes: none (bench, relay paused: no event at all), relay (bench, relay
# running) and transaction (bench_tx); a listener (python3-psycopg2)
# LISTENs on both channels in every run and records each notification's
# receive time, compared with the commit timestamp of its record.  The
# databases hold --history N (default 100,000) used links with their records
# and sent mail, so that the record tables have a size and statistics as on
# a site in use (--history 0: empty tables at every run's start).
# Results: bench/results/events.{md,csv}; scratch and logs: bench/out/events/.
#
# --wait-quiet M: first wait (polling every 30 s, up to M minutes) until no
# other PostgreSQL runs as postgres and the 1-minute load is below 1.0; the
# results say whether it got quiet.  Uses the installed library (it builds
# and installs nothing).  Run as root.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
. "$ROOT/scripts/pg_major.sh"
export PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
PORT=54988
KEEP=0
WAIT_QUIET=0
PASS=()

while [ $# -gt 0 ]; do
	case "$1" in
		--port) PORT="$2"; shift 2 ;;
		--keep) KEEP=1; shift ;;
		--wait-quiet) WAIT_QUIET="$2"; shift 2 ;;
		--seconds|--rounds|--clients|--sync|--workloads|--links|--history|--naptime) PASS+=("$1" "$2"); shift 2 ;;
		-h|--help) sed -n '2,30p' "$0"; exit 0 ;;
		*) echo "bench/events.sh: unknown option $1" >&2; exit 2 ;;
	esac
done

if [ "$(id -u)" != 0 ]; then
	echo "bench/events.sh: run it as root (the server runs as user postgres)" >&2
	exit 2
fi

# Debian's python3 (not a pyenv shim on PATH) with psycopg2, the listener's
# client library; pgbench comes with postgresql-client-$PG_MAJOR.
PY=/usr/bin/python3
if ! "$PY" -c 'import psycopg2' 2>/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-psycopg2 >/dev/null
fi
if ! "$PGBIN/postgres" -V >/dev/null || [ ! -x "$PGBIN/pgbench" ]; then
	echo "bench/events.sh: PostgreSQL $PG_MAJOR's server and pgbench are needed ($PGBIN)" >&2
	exit 2
fi
if [ ! -f "/usr/lib/postgresql/$PG_MAJOR/lib/invitetomedia.so" ]; then
	echo "bench/events.sh: the extension is not installed for PostgreSQL $PG_MAJOR" >&2
	exit 2
fi

# other clusters: postgres processes of user postgres (before ours starts)
others() { pgrep -c -u postgres postgres || true; }
QUIET="not waited for"
if [ "$WAIT_QUIET" -gt 0 ]; then
	deadline=$(( $(date +%s) + WAIT_QUIET * 60 ))
	while :; do
		n=$(others)
		load=$(cut -d' ' -f1 /proc/loadavg)
		if [ "$n" = 0 ] && awk -v l="$load" 'BEGIN { exit !(l < 1.0) }'; then
			QUIET="quiet at $(date -u '+%F %T') UTC (no other postgres process, load $load)"
			break
		fi
		if [ "$(date +%s)" -ge "$deadline" ]; then
			QUIET="NOT quiet after $WAIT_QUIET min, measured anyway: $n postgres processes of other clusters, load $load at $(date -u '+%F %T') UTC"
			break
		fi
		echo "   waiting for quiet: $n other postgres processes, load $load ($(date -u +%T))"
		sleep 30
	done
	echo "== $QUIET"
fi

OUT="$HERE/out/events"
RESULTS="$HERE/results"
BASE="$(mktemp -d /tmp/itm_events.XXXXXX)"
DATA="$BASE/data"
chmod 755 "$BASE"
chown postgres: "$BASE"
rm -rf "$OUT"
mkdir -p "$OUT" "$RESULTS"
chmod 777 "$OUT"

CONF="$OUT/postgresql.events.conf"
cat > "$CONF" <<CONFEOF
shared_preload_libraries = 'invitetomedia'
invitetomedia.relay_databases = 'bench'
track_commit_timestamp = on
shared_buffers = 1GB
max_connections = 60
listen_addresses = ''
unix_socket_directories = '$BASE'
port = $PORT
fsync = on
full_page_writes = on
wal_level = minimal
max_wal_senders = 0
max_wal_size = 16GB
checkpoint_timeout = 30min
autovacuum = on
jit = off
work_mem = 16MB
maintenance_work_mem = 1GB
log_min_messages = warning
log_line_prefix = '%m [%p] %q%a '
CONFEOF

stop() {
	if [ -f "$DATA/postmaster.pid" ]; then
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null || true
	fi
	cp "$BASE/server.log" "$OUT/server.log" 2>/dev/null || true
	if [ "$KEEP" = 0 ]; then rm -rf "$BASE"; fi
}
trap stop EXIT

runuser -u postgres -- "$PGBIN/initdb" -D "$DATA" --auth=trust -U postgres -E UTF8 --locale=C.UTF-8 >/dev/null
cat "$CONF" >> "$DATA/postgresql.conf"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DATA" -l "$BASE/server.log" -w start >/dev/null
echo "== events: throwaway cluster in $DATA (port $PORT), configuration:"
sed 's/^/   /' "$CONF"

"$PY" "$HERE/events.py" --sock "$BASE" --port "$PORT" --outdir "$OUT" --results "$RESULTS" \
	--conf "$CONF" --quiet "$QUIET" --server-log "$BASE/server.log" --pidfile "$DATA/postmaster.pid" \
	--lib "/usr/lib/postgresql/$PG_MAJOR/lib/invitetomedia.so" --root "$ROOT" \
	${PASS[@]+"${PASS[@]}"} 2>&1 | tee "$OUT/events.log"
