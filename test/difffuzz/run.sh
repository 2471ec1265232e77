#!/usr/bin/env bash
# test/difffuzz/run.sh: the differential fuzzer of the direct path
# (itm_direct.c) against the SQL statements, on a throwaway cluster.
#
# Run it as postgres (PostgreSQL refuses root), from a tree postgres can
# read, with the extension installed for the server version (default 15):
#   pg_virtualenv bash test/difffuzz/run.sh          (as postgres)
#   bash test/difffuzz/run.sh                        (as postgres: starts
#                                                     pg_virtualenv itself)
# As root, from a copy postgres owns:
#   d=$(mktemp -d); cp -R test $d/; chown -R postgres: $d
#   runuser -u postgres -- env -C $d pg_virtualenv bash test/difffuzz/run.sh
#
# DIFFFUZZ_SECONDS (default 180) bounds the run; DIFFFUZZ_SEED replays a
# run, DIFFFUZZ_CASE one case (the failure report prints it); see
# test/difffuzz/README.md.  Prints one line per alteration family,
# "difffuzz_NAME ... ok" or "... FAILED" (pg_regress's form, which
# scripts/test.sh counts), then "# difffuzz: N sequences, M alterations, K
# calls, seed S, F differences".  Exits 0 only if the fuzzer ran and found no
# difference: 1 for differences, 2 if it could not start, 3 if it stopped.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" = 0 ]; then
    echo "difffuzz_setup ... FAILED (run it as postgres, not as root)"
    exit 2
fi
if [ -z "${PGHOST:-}" ]; then
    # not inside pg_virtualenv yet: make the throwaway cluster
    if ! command -v pg_virtualenv >/dev/null; then
        echo "difffuzz_setup ... FAILED (pg_virtualenv not found: postgresql-common)"
        exit 2
    fi
    exec pg_virtualenv -v "${PG_MAJOR:-15}" bash "$0" "$@"
fi
if [ ! -x /usr/bin/python3 ] || ! /usr/bin/python3 -c 'import psycopg' 2>/dev/null; then
    echo "difffuzz_setup ... FAILED (could not start: /usr/bin/python3 with python3-psycopg is needed)"
    exit 2
fi
/usr/bin/python3 "$here/difffuzz.py" --fast "$@"
rc=$?
# 0: no difference; 1: differences (FAILED lines above); 2: could not start
# and 3: stopped (a FAILED line above too).  Anything else (a signal) has
# printed nothing: a runner that died must not read as zero tests.
case "$rc" in
    0|1|2|3) ;;
    *) echo "difffuzz_runner ... FAILED (the fuzzer exited with status $rc)" ;;
esac
exit "$rc"
