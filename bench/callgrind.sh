#!/bin/bash
# bench/callgrind.sh: instructions per call of the hot paths, with callgrind
# (issue 13's method, bench/README.md): deterministic where the throughput
# of a small shared machine is not.
#
#   bench/callgrind.sh [--links N] [--counts 1000,2000] [--calls consume,join,create,check]
#                      [--direct on,off] [--floor] [--lib PATH --version V]
#                      [--label NAME] [--baseline DIR --baseline-label NAME]
#                      [--set NAME=VALUE]... [--outdir DIR] [--report FILE] [--keep]
#                      [--tenants N [--sites-per-tenant 3] [--api at|1x]]
#
# PostgreSQL: the Debian installation of scripts/pg_major.sh's major, or
# another one (a private copy, with the extension installed into it):
# PG_CONFIG=/path/to/bin/pg_config, or PGBIN=/path/to/bin, in the
# environment, or --pg-config PATH.  Its postgres, initdb, pg_ctl and psql
# run the cluster; its pkglibdir and sharedir are what is reported.
#
# A throwaway cluster in /tmp/itm_cg.*: a server loads one database as
# bench/run's loaded site is loaded (bench.py's load(): --links single-use
# links, default 20,000, every invitee an existing user, the hot invite and
# guest links, as many past guest joins), then stops.  For every call, every
# direct_use setting and every count (1,000 and 2,000 by default), a copy of
# that database is made and `postgres --single` runs, under
# `valgrind --tool=callgrind`, one PREPARE of the bench's statement of that
# call and EXECUTE count times (each its own transaction, commit included).
# Instructions per call = (Ir(2,000) - Ir(1,000)) / 1,000: start-up, the
# first calls' cache loading and the shutdown cancel out.  Every run's
# output is checked: every call must have taken the ok path.
#
# --lib PATH runs another build of the library (say an earlier release's,
# built in a scratch directory, never installed) by pointing the database's
# C functions at it, with --version the extension version its SQL is (1.1:
# CREATE EXTENSION ... VERSION '1.1').  --baseline DIR (an earlier run's
# --outdir) puts that run's figures and functions beside these.  --floor also
# measures the bench's floor statements (direct_use does not apply: "-").
# --set NAME=VALUE adds a server setting to every single-user run (say
# plan_cache_mode=force_generic_plan, to see what re-planning costs).
#
# --tenants N (issue 22): the database is a 2.0 one (CREATE EXTENSION
# invitetomedia VERSION '2.0' CASCADE) with N tenants of --sites-per-tenant
# sites each, loaded by bench.py's load_tenants(): every tenant has its
# role, users and media, the --links links are spread over the tenants'
# sites, and the calls run as bench_app, a role mapped to one of the
# tenants (SET ROLE), on the 2.0 entry points: --api at (default) names
# the link's site (invite_consume_at, invite_check_at, invite_create_at,
# guest_link_join_at), --api 1x calls the 1.x names, which act on the
# tenant's default site.  The measured tenant holds the links the calls
# use (at least --sites-per-tenant x the largest count) whatever its share.
#
# Uses the installed extension (make install is not run).  Run it as root
# (the server runs as postgres, which it must: PostgreSQL refuses root) or
# as postgres.  Output: --outdir (default bench/out/callgrind/LABEL: the
# callgrind files, each run's output) and the report, Markdown, --report
# (default bench/results/callgrind-LABEL.md).  About 3 minutes for the
# default set on a 2-core VM (5 with --floor).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
. "$ROOT/scripts/pg_major.sh"
PORT=54988
LINKS=20000
COUNTS=1000,2000
CALLS=consume,join,create,check
DIRECT=on,off
FLOOR=0
LIB=
VERSION=
LABEL=installed
BASELINE=
BASELINE_LABEL=baseline
OUTDIR=
REPORT=
KEEP=0
SETS=()
TENANTS=0
SITES_PER_TENANT=3
API=at

while [ $# -gt 0 ]; do
	case "$1" in
		--links) LINKS="$2"; shift 2 ;;
		--counts) COUNTS="$2"; shift 2 ;;
		--calls) CALLS="$2"; shift 2 ;;
		--direct) DIRECT="$2"; shift 2 ;;
		--floor) FLOOR=1; shift ;;
		--lib) LIB="$2"; shift 2 ;;
		--version) VERSION="$2"; shift 2 ;;
		--label) LABEL="$2"; shift 2 ;;
		--baseline) BASELINE="$2"; shift 2 ;;
		--baseline-label) BASELINE_LABEL="$2"; shift 2 ;;
		--outdir) OUTDIR="$2"; shift 2 ;;
		--report) REPORT="$2"; shift 2 ;;
		--port) PORT="$2"; shift 2 ;;
		--set) SETS+=(-c "$2"); shift 2 ;;
		--keep) KEEP=1; shift ;;
		--pg-config) PG_CONFIG="$2"; shift 2 ;;
		--tenants) TENANTS="$2"; shift 2 ;;
		--sites-per-tenant) SITES_PER_TENANT="$2"; shift 2 ;;
		--api)
			case "$2" in at|1x) API="$2" ;; *) echo "bench/callgrind.sh: --api at or 1x" >&2; exit 2 ;; esac
			shift 2 ;;
		-h|--help) sed -n '2,/^set -e/{/^set -e/!p;}' "$0"; exit 0 ;;
		*) echo "bench/callgrind.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
# the PostgreSQL to run: PG_CONFIG, else PGBIN, else the Debian one
if [ -n "${PG_CONFIG:-}" ]; then
	PGBIN="$("$PG_CONFIG" --bindir)"
elif [ -n "${PGBIN:-}" ]; then
	PG_CONFIG="$PGBIN/pg_config"
else
	PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
	PG_CONFIG="$PGBIN/pg_config"
fi
export PGBIN PG_CONFIG
[ -x "$PGBIN/postgres" ] || { echo "bench/callgrind.sh: no postgres in $PGBIN" >&2; exit 1; }
case "$TENANTS" in ''|*[!0-9]*) echo "bench/callgrind.sh: --tenants takes a number" >&2; exit 2 ;; esac
case "$SITES_PER_TENANT" in ''|*[!0-9]*|0) echo "bench/callgrind.sh: --sites-per-tenant takes a number >= 1" >&2; exit 2 ;; esac
if [ "$TENANTS" -gt 0 ] && [ -n "$VERSION" ] && [ "$VERSION" != 2.0 ]; then
	echo "bench/callgrind.sh: --tenants loads a 2.0 database, not $VERSION" >&2; exit 2
fi
[ "$TENANTS" -gt 0 ] && VERSION=2.0
if [ "$TENANTS" -gt 0 ] && [ "$FLOOR" = 1 ]; then
	echo "bench/callgrind.sh: --floor measures 1.1.1's tables, not --tenants" >&2; exit 2
fi
OUTDIR="${OUTDIR:-$HERE/out/callgrind/$LABEL}"
REPORT="${REPORT:-$HERE/results/callgrind-$LABEL.md}"
command -v valgrind >/dev/null || { echo "bench/callgrind.sh: valgrind is not installed" >&2; exit 1; }
if [ -n "$LIB" ]; then
	LIB="$(cd "$(dirname "$LIB")" && pwd)/$(basename "$LIB")"
	[ -r "$LIB" ] || { echo "bench/callgrind.sh: no library $LIB" >&2; exit 1; }
fi

# as the server's user
as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

BASE="$(mktemp -d /tmp/itm_cg.XXXXXX)"
DATA="$BASE/data"
chmod 755 "$BASE"
[ "$(id -u)" = 0 ] && chown postgres: "$BASE"
rm -rf "$OUTDIR"
mkdir -p "$OUTDIR" "$(dirname "$REPORT")"
chmod 777 "$OUTDIR"
stop() {
	if [ -f "$DATA/postmaster.pid" ]; then
		as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
	fi
	if [ "$KEEP" = 0 ]; then rm -rf "$BASE"; else echo "kept $BASE"; fi
}
trap stop EXIT

# the same settings for the load and for every single-user run
OPTS=(-c fsync=off -c synchronous_commit=off -c jit=off -c huge_pages=off
      -c autovacuum=off -c max_wal_size=16GB)

as_pg "$PGBIN/initdb" -D "$DATA" --auth=trust -U postgres -E UTF8 --locale=C.UTF-8 >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$BASE/server.log" -w \
	-o "-c listen_addresses='' -c unix_socket_directories='$BASE' -p $PORT ${OPTS[*]}" start >/dev/null
TPASS=()
if [ "$TENANTS" -gt 0 ]; then
	MAXCOUNT=$(echo "$COUNTS" | tr , '\n' | sort -n | tail -1)
	TPASS=(--tenants "$TENANTS" --sites-per-tenant "$SITES_PER_TENANT" --pool $(( SITES_PER_TENANT * MAXCOUNT + 1 )))
fi
echo "== loading: $LINKS links${LIB:+, library $LIB}${VERSION:+, extension $VERSION}${TPASS[*]:+, ${TPASS[*]}}"
python3 "$HERE/callgrind.py" load --sock "$BASE" --port "$PORT" --links "$LINKS" --workdir "$BASE" \
	${VERSION:+--version "$VERSION"} ${LIB:+--lib "$LIB"} ${TPASS[@]+"${TPASS[@]}"}
as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
# what was measured, for the report
lib="${LIB:-$("$PG_CONFIG" --pkglibdir)/invitetomedia.so}"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'): library $lib (md5 $(md5sum < "$lib" | cut -c1-12),"\
" $(date -u -r "$lib" '+%Y-%m-%d %H:%M UTC')), extension ${VERSION:-$(sed -n "s/^default_version = '\(.*\)'/\1/p" \
"$("$PG_CONFIG" --sharedir)/extension/invitetomedia.control")}, $("$PGBIN/postgres" --version) ($PGBIN)," \
"$LINKS links${TPASS[*]:+, ${TPASS[*]} --api $API (calls as role bench_app)}${SETS[*]:+, ${SETS[*]}}" > "$OUTDIR/build.txt"

single() {   # single DB < stdin
	as_pg "$PGBIN/postgres" --single -D "$DATA" "${OPTS[@]}" "$@"
}

runs=()
for call in ${CALLS//,/ }; do
	for d in ${DIRECT//,/ }; do runs+=("$call c $d"); done
	[ "$FLOOR" = 1 ] && runs+=("$call floor na")
done
fail=0
for r in "${runs[@]}"; do
	set -- $r
	call=$1 impl=$2 d=$3
	for n in ${COUNTS//,/ }; do
		name="$call.$impl.$d.$n"
		python3 "$HERE/callgrind.py" script --call "$call" --impl "$impl" --count "$n" \
			${TPASS[@]:+--tenants "$TENANTS" --sites-per-tenant "$SITES_PER_TENANT" --api "$API"} > "$OUTDIR/$name.sql"
		echo "CREATE DATABASE cg TEMPLATE site" | single postgres >/dev/null 2>&1
		guc=()
		[ "$d" != na ] && guc=(-c "invitetomedia.direct_use=$d")
		t0=$(date +%s)
		as_pg valgrind --tool=callgrind --callgrind-out-file="$OUTDIR/$name.callgrind" \
			"$PGBIN/postgres" --single -D "$DATA" "${OPTS[@]}" "${guc[@]}" ${SETS[@]+"${SETS[@]}"} cg \
			< "$OUTDIR/$name.sql" > "$OUTDIR/$name.log" 2>&1
		echo "DROP DATABASE cg" | single postgres >/dev/null 2>&1
		if python3 "$HERE/callgrind.py" check --call "$call" --count "$n" "$OUTDIR/$name.log"; then
			echo "  $name: $(grep -m1 '^summary:' "$OUTDIR/$name.callgrind" | awk '{print $2}') instructions ($(( $(date +%s) - t0 )) s)"
		else
			fail=1
		fi
	done
done

python3 "$HERE/callgrind.py" report --outdir "$OUTDIR" --counts "$COUNTS" --label "$LABEL" \
	${BASELINE:+--baseline "$BASELINE" --baseline-label "$BASELINE_LABEL"} > "$REPORT"
echo "== $REPORT"
sed -n '1,/^$/p;/^| call/,/^$/p' "$REPORT"
exit $fail
