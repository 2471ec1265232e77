#!/usr/bin/env bash
# test/lobby/run.sh WORK [--shots DIR]: the reference lobby
# (examples/lobby) in headless Chromium, a stage of scripts/test.sh.
#
# Runs as an unprivileged user (postgres: PostgreSQL refuses root, and
# Chromium keeps its sandbox) inside pg_virtualenv, whose PG* variables
# name a throwaway cluster; scripts/test.sh runs it so:
#   itm_virtualenv TREE bash test/lobby/run.sh WORK
# By hand, as postgres, from a tree postgres can write:
#   pg_virtualenv -v 15 bash test/lobby/run.sh /tmp/lobby-work
# WORK receives the lobby's logs and the browser profiles; the screenshots
# go to docs/lobby/ of this tree (or DIR).  Needs python3-flask,
# python3-psycopg, python3-selenium, chromium and chromium-driver
# (scripts/test.sh has scripts/setup.sh install them).
#
# Runs lobby_test.py (one site, the 1.x calls) and multisite_test.py (many
# sites of a 2.0 database, LOBBY_SITES).  Prints one line per check,
# "name ... ok" or "name ... FAILED (why)"; exits non-zero if a check
# failed, or if a test could not run.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
work=""
shots=$top/docs/lobby
while [ $# -gt 0 ]; do
    case "$1" in
        --shots) shots=${2:?--shots needs a directory}; shift 2 ;;
        -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
        *) [ -z "$work" ] || { echo "run.sh: one WORK directory" >&2; exit 2; }
           work=$1; shift ;;
    esac
done
[ -n "$work" ] || { echo "usage: run.sh WORK [--shots DIR]" >&2; exit 2; }
if [ "$(id -u)" = 0 ]; then
    echo "run.sh: run it as an unprivileged user (postgres), not as root" >&2
    exit 2
fi
: "${PGHOST:?run it inside pg_virtualenv (no PGHOST)}"

mkdir -p "$work" "$shots"
# Chromium writes its caches under HOME
export HOME=$work/home
mkdir -p "$HOME"
# one site (1.x calls, a 1.x database), then many sites (LOBBY_SITES, a
# 2.0 database in the same cluster); both run, whatever the first gives
/usr/bin/python3 "$here/lobby_test.py" --work "$work" --shots "$shots"
one=$?
/usr/bin/python3 "$here/multisite_test.py" --work "$work"
many=$?
echo "# run.sh: lobby_test.py exit $one, multisite_test.py exit $many"
[ "$one" = 0 ] && [ "$many" = 0 ]
