#!/usr/bin/env bash
# test/compat/run.sh VERSION OUTDIR [pg_regress option...]
#
# Runs the frozen regression and isolation suites of release VERSION
# (test/compat-VERSION/: sql/, expected/, specs/) against the library
# installed now, with the extension created at VERSION, not at the default
# version: what a site runs between replacing the library and ALTER
# EXTENSION ... UPDATE.  Run by scripts/test.sh as postgres inside
# pg_virtualenv (PG* variables set); any user the server accepts will do.
#
# The frozen files stay as released.  test/compat/VERSION/ adds two test
# files: compat_install (CREATE EXTENSION invitetomedia VERSION 'VERSION'
# and shows extversion) first, and compat_version (extversion still
# VERSION) last.  It also adds alternative expected files where a newer
# PostgreSQL major words an answer differently than the 15 the suite was
# frozen on (NAME_1.out: pg_regress takes whichever matches): on 18 a
# RESTRICT foreign key reports 23001 (settings_1.out), and since 17
# 'infinity' is an interval, which invite_purge refuses itself with 22023
# (abuse_1.out); each made by a run on 18 and read line by line, differing
# from the frozen file in those lines only.  Four runners, each leaving OUTDIR/NAME.log, its exit
# status in OUTDIR/NAME.rc and its output directory OUTDIR/NAME/ for the
# caller to count:
#   1-regress       the frozen pg_regress files, in one database
#   2-iso-install   compat_install in a fresh database for the specs
#   3-isolation     the frozen specs there (pg_isolation_regress --use-existing)
#   4-iso-version   compat_version there
# Extra arguments go to the first runner.  Exits non-zero if any runner did.
set -uo pipefail

version=${1:?usage: run.sh VERSION OUTDIR [pg_regress option...]}
out=${2:?usage: run.sh VERSION OUTDIR [pg_regress option...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
frozen=$here/../compat-$version
pgxs=$(dirname "$(pg_config --pgxs)")/..
bindir=$(pg_config --bindir)

# One input directory with the frozen files and the two added ones.  The
# frozen files include the fixture as `\i sql/include/fixture.psql`, which
# psql resolves against its working directory: the runners run in this
# directory, so that they read the frozen fixture and not the live one.
mkdir -p "$out"
out=$(cd "$out" && pwd)
suite=$out/suite
rm -rf "$suite"
mkdir -p "$suite"
cp -R "$frozen"/sql "$frozen"/expected "$frozen"/specs "$suite"/ || exit 1
cp "$here/$version"/sql/* "$suite"/sql/ && cp "$here/$version"/expected/* "$suite"/expected/ || exit 1
cd "$suite" || exit 1

tests=$(cd sql && for f in *.sql; do echo "${f%.sql}"; done | grep -v '^compat_')
specs=$(cd specs && for f in *.spec; do echo "${f%.spec}"; done)

status=0
# run NAME PROGRAM ARG...: one runner, as PGXS's installcheck invokes it
run() {
    local name=$1 rc
    shift
    "$@" --inputdir=. --outputdir="$out/$name" --bindir="$bindir" >"$out/$name.log" 2>&1
    rc=$?
    echo $rc >"$out/$name.rc"
    cat "$out/$name.log"
    [ $rc -eq 0 ] || status=1
}

run 1-regress "$pgxs/test/regress/pg_regress" "$@" \
    --dbname=itm_compat --load-extension=pgcrypto compat_install $tests compat_version
run 2-iso-install "$pgxs/test/regress/pg_regress" \
    --dbname=itm_compat_iso --load-extension=pgcrypto compat_install
run 3-isolation "$pgxs/test/isolation/pg_isolation_regress" \
    --use-existing --dbname=itm_compat_iso $specs
run 4-iso-version "$pgxs/test/regress/pg_regress" \
    --use-existing --dbname=itm_compat_iso compat_version
exit $status
