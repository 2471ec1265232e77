#!/usr/bin/env bash
# The whole test suite on throwaway clusters, as root (or with sudo):
#   bash scripts/test.sh            regression, isolation, the regression
#                                   suite again with the table-AM paths
#                                   off (itm_direct.c), the differential
#                                   fuzzer of that path (test/difffuzz),
#                                   TAP, the 1.0, 1.0.1, 1.1 and 1.1.1
#                                   suites against the new library,
#                                   two demos at once, the reference lobby in
#                                   headless Chromium (test/lobby/run.sh),
#                                   and last the Debian packages
#                                   (test/package/run.sh: built, checked by
#                                   lintian, installed, tested, a mail sent
#                                   by the installed sender, the installed
#                                   lobby started from its unit, purged)
#   bash scripts/test.sh --long     also the long checks of test/long/ (soak,
#                                   fuzzing, valgrind)
#   --majors 15,18                  the PostgreSQL majors to test (default:
#                                   15 and 18).  Each major gets the build
#                                   (-Werror), the regression, isolation,
#                                   direct_use=off, differential fuzzer,
#                                   TAP and 1.0/1.0.1/1.1/1.1.1 suites and
#                                   the two demos; the lobby, the long
#                                   checks and the Debian packages run on
#                                   the first major only (the packages are
#                                   Debian 12's, for its PostgreSQL 15).  A
#                                   major that Debian 12 does not package is
#                                   built from Debian's source package first
#                                   (scripts/pg-from-source.sh: about 7
#                                   minutes once, then cached); one that
#                                   cannot be built counts as a failure.
# Ends with one line "N passed, M failed"; exits non-zero if anything failed
# or nothing passed.  Every test file (pg_regress, isolation), TAP assertion,
# fuzzer, demo, lobby check and package check counts as one; so does a
# runner that exits non-zero without reporting a failed test (it never
# started, or died): a suite that cannot run must not read as "0 failed".
#
# ITM_TEST_BREAK=STAGE (setup, regress, isolation, direct_off, difffuzz, tap,
# compat, demo, lobby, long, package)
# hands that stage's runner a bogus option, so that it fails before running
# anything: how to check that such a failure is counted.
set -uo pipefail
# The braces around the rest, which ends in exit, make bash read the whole
# script before it runs any of it: bash otherwise reads a script as it goes,
# and the tree is shared, so an edit during a run would run a mix of old and
# new lines.
{

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

work=""   # the scratch directory, once made
passed=0
failed=0
finish() {
    # a failed run keeps its logs and trees for a look (test runs remove
    # them after an hour): the failures above name files in there
    if [ "$failed" -ne 0 ] && [ -n "$work" ]; then
        trap - EXIT
        touch "$work/keep"
        echo "(logs kept in $work for an hour)"
    fi
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ] && exit 0
    exit 1
}

# what building and checking the Debian packages needs, and the browser
# that the lobby's test drives
export ITM_EXTRA_PACKAGES="debhelper dpkg-dev fakeroot lintian postgresql-server-dev-all
    python3-selenium chromium chromium-driver"
long=no
majors=15,18
usage() {
    echo "usage: bash scripts/test.sh [--long] [--majors 15,18]" >&2
    failed=1
    finish
}
while [ $# -gt 0 ]; do
    case "$1" in
        --long)
            long=yes
            # libFuzzer (clang's runtime) and valgrind for the long checks
            ITM_EXTRA_PACKAGES="$ITM_EXTRA_PACKAGES clang-14 libclang-rt-14-dev valgrind"
            shift ;;
        --majors)
            [ $# -ge 2 ] || usage
            majors=$2
            shift 2 ;;
        *) usage ;;
    esac
done
majors=${majors//,/ }
for m in $majors; do
    case $m in 1[5-9]) ;; *) echo "--majors: $m is not a major from 15 to 19" >&2; usage ;; esac
done
# the first major: the lobby, the long checks and the packages run on it
first=${majors%% *}

# the bogus option for ITM_TEST_BREAK's stage, nothing for the others
brk() { [ "${ITM_TEST_BREAK:-}" = "$1" ] && echo --itm-test-break; }

# tally LOG RC P F: adds a runner's P passed and F failed tests to the
# counts; a non-zero exit that no failed test explains is one failure more.
tally() {
    local log=$1 rc=$2 p=$3 f=$4
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        echo "   !! the runner exited with status $rc and no test failed; its log ends:"
        tail -n 40 "$log" | sed 's/^/   | /'
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    echo "   -> $p passed, $f failed"
}

# pg_regress and pg_isolation_regress: one line per test file, "ok" or
# "FAILED"; the diffs of failures are in DIFFS.  Up to 15 a line reads
# "name ... ok" (also the format of this project's own runners); since 16
# pg_regress prints TAP, "ok 2 - name 43 ms" and "not ok 3 - name 12 ms"
# ("+" for a test of a parallel group).
count_regress() {
    local log=$1 rc=$2 diffs=$3 p f
    local plain='^(test +| +)?[a-z0-9_]+ +\.\.\. ' tap='^(not )?ok [0-9]+ +[-+] +[a-z0-9_]+ '
    grep -E "$plain|$tap" "$log"
    p=$(grep -cE "$plain"'ok|^ok [0-9]+ +[-+] +[a-z0-9_]+ ' "$log")
    f=$(grep -cE "$plain"'(FAILED|failed)|^not ok [0-9]+ +[-+] +[a-z0-9_]+ ' "$log")
    [ "$f" -gt 0 ] && [ -f "$diffs" ] && cat "$diffs"
    tally "$log" "$rc" "$p" "$f"
}

# prove -v: every assertion counts.  Prints one line per test script with
# its result, and the diagnostics that carry figures ("# soak: ..."); sets
# tap_passed and tap_failed, and tap_failures to the names of the scripts
# that failed.  A script that fails without a failed assertion (died, bad
# plan) counts as one failure; planned tests that did not run count as
# failed.
count_tap() {
    local log=$1 rc=$2 totals failures
    totals=$(mktemp)
    failures=$(mktemp)
    awk -v totals="$totals" -v failures="$failures" '
        function done_file(   f) {
            if (file == "") return
            f = nok > missing ? nok : missing
            if (verdict !~ /^(ok|skipped)/ && f == 0) f = 1
            if (verdict == "") verdict = "no result"
            printf "%s %s (%d passed, %d failed)\n", head, \
                (verdict == "ok" || verdict ~ /^skipped/) ? verdict : "FAILED: " verdict, ok, f
            P += ok; F += f
            if (f > 0) { sub(/^.*\//, "", file); sub(/\.pl$/, "", file); print file > failures }
            file = ""
        }
        /^(t|test\/long)\/[^ ]+\.pl \.+( |$)/ {
            done_file()
            file = $1; ok = nok = missing = 0; verdict = ""
            match($0, /^[^ ]+ \.+/); head = substr($0, 1, RLENGTH)
            rest = substr($0, RLENGTH + 2)
            if (rest ~ /^skipped/) verdict = rest
            next
        }
        file != "" && /^ok [0-9]+/ { ok++; next }
        file != "" && /^not ok [0-9]+/ { nok++; next }
        file != "" && /^ok$/ { verdict = "ok"; next }
        file != "" && /^(Dubious|No subtests run)/ {
            verdict = verdict (verdict == "" ? "" : "; ") $0; next
        }
        file != "" && /^Failed [0-9]+\/[0-9]+ subtests/ {
            split($2, n, "/"); missing = n[1] + 0
            verdict = verdict (verdict == "" ? "" : "; ") $1 " " $2 " " $3; next
        }
        /^(Test Summary Report|Files=|All tests successful|Result:)/ { done_file(); next }
        /^# [A-Za-z][A-Za-z ]*:/ && !/^# Looks like/ { print }
        END { done_file(); print P + 0, F + 0 > totals }
    ' "$log"
    read -r tap_passed tap_failed <"$totals"
    tap_failures=$(cat "$failures")
    rm -f "$totals" "$failures"
    if [ "$tap_failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
        grep -B2 -A15 -E '^not ok|^Dubious|^No subtests run' "$log" | head -200
    fi
}

. "$here/throwaway.sh"

# Everything of this run lives in one scratch directory: a tree copy per
# major (PostgreSQL refuses root, so the tests run as postgres, from a copy
# it can write), the logs, the clusters.
work=$(itm_scratch invitetomedia-test) || { failed=1; finish; }
trap 'rm -rf "$work"' EXIT
logs=$work/logs
mkdir -p "$logs"
chown -R postgres: "$work"

# setup_major MAJOR: packages (or the source build of MAJOR), the build
# with -Werror and the install for MAJOR, then this major's copy of the
# tree in $tree, taken under the build lock so that an overlapping run's
# build cannot hand it half-written objects.  Non-zero if setup failed.
setup_major() {
    local m=$1 rc
    export PG_MAJOR=$m
    ITM_PGBIN=/usr/lib/postgresql/$m/bin
    echo "== setup for PostgreSQL $m (packages, build, install)"
    bash "$here/setup.sh" $(brk setup)
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "   !! setup for PostgreSQL $m failed with status $rc: nothing was tested on it"
        failed=$((failed + 1))
        echo "   -> 0 passed, 1 failed"
        return 1
    fi
    tree=$work/tree-$m
    rm -rf "$tree"
    mkdir -p "$tree"
    (
        flock -s 9
        (cd "$top" && tar --exclude=.git -cf - .) | (cd "$tree" && tar xf -)
    ) 9>>"$ITM_BUILD_LOCK"
    # earlier results in the source tree are not this run's
    rm -rf "$tree"/results "$tree"/regression.* "$tree"/output_iso "$tree"/tmp_check \
        "$tree"/test/long/fuzz/fuzz_work
    chown -R postgres: "$tree"
}

# run_major MAJOR: every suite that runs on each major, in its tree
run_major() {
local m=$1
logs=$work/logs/$m
mkdir -p "$logs"
chown postgres: "$logs"
# Two demos run while the regression tests do: runs must overlap (each has
# its own cluster and scratch directory).  They die with this script.  The
# last step's lobby takes a free port, checks that it answers and stops at
# once (it would wait for Enter on a terminal).
demo_pids=()
for i in 1 2; do
    ITM_DEMO_LOBBY_SECONDS=0 ITM_DEMO_LOBBY_LISTEN=127.0.0.1:0 \
        setpriv --pdeathsig KILL bash "$here/demo.sh" $(brk demo) >"$logs/demo$i.log" 2>&1 &
    demo_pids+=($!)
done

echo "== [$m] regression tests (pg_regress)"
itm_virtualenv "$tree" make -s installcheck ISOLATION= TAP_TESTS= \
    EXTRA_REGRESS_OPTS="$(brk regress)" >"$logs/regress.log" 2>&1
count_regress "$logs/regress.log" $? "$tree/regression.diffs"

echo "== [$m] two demos at once (scripts/demo.sh), beside the regression tests"
p=0; f=0
for i in 1 2; do
    wait "${demo_pids[$((i - 1))]}"
    r=$?
    # a demo ends with "Done."; it stops at its first failed step.  Read by
    # a newcomer: no colour codes in a log, the delivered link whole on one
    # line (decoded, not quoted-printable), and what the guest typed shown;
    # the lobby answered its link with the form, printed the link to open,
    # and stopped
    why=""
    if [ $r -ne 0 ] || ! grep -q '^Done\. ' "$logs/demo$i.log"; then
        why="status $r"
    elif grep -q $'\e' "$logs/demo$i.log"; then
        why="colour codes in a log"
    elif ! grep -qE '^   \| Open https://[^ ]+/itm_[A-Za-z0-9_-]{48}$' "$logs/demo$i.log"; then
        why="no decoded link on one line"
    elif ! grep -q "^   typed: '  zoe.guest@outside.EXAMPLE '" "$logs/demo$i.log"; then
        why="the typed email is not shown"
    elif ! grep -q '^   the lobby answers: 200, data-status form$' "$logs/demo$i.log"; then
        why="the lobby did not answer with the form"
    elif ! grep -qE '^   Open http://127\.0\.0\.1:[0-9]+/i/itm_[A-Za-z0-9_-]{48}$' "$logs/demo$i.log" ||
         ! grep -q '^   in a browser and type the invited email: newcomer@outside.example$' "$logs/demo$i.log"; then
        why="no lobby link to open, or no email to type"
    elif ! grep -q '^   the lobby stopped$' "$logs/demo$i.log"; then
        why="the lobby did not stop on SIGTERM"
    fi
    if [ -z "$why" ]; then
        echo "demo $i ... ok"
        p=$((p + 1))
    else
        echo "demo $i ... FAILED ($why); its log ends:"
        tail -n 40 "$logs/demo$i.log" | sed 's/^/   | /'
        f=$((f + 1))
    fi
done
tally /dev/null 0 $p $f

echo "== [$m] isolation tests"
itm_virtualenv "$tree" make -s installcheck REGRESS= TAP_TESTS= \
    EXTRA_REGRESS_OPTS="$(brk isolation)" >"$logs/isolation.log" 2>&1
count_regress "$logs/isolation.log" $? "$tree/output_iso/regression.diffs"
# The regression suite once more with every hot path on its SQL statements
# (GUC invitetomedia.direct_use, superuser-only: pg_regress connects as the
# superuser), so that both ways answer the same to every file (consume,
# check, create, guest join); sql/direct_use sets the GUC itself.  Its own output
# directory keeps the first run's results and diffs.
echo "== [$m] regression tests with invitetomedia.direct_use=off (pg_regress)"
itm_virtualenv "$tree" env PGOPTIONS='-c invitetomedia.direct_use=off' \
    make -s installcheck ISOLATION= TAP_TESTS= \
    EXTRA_REGRESS_OPTS="--outputdir=$work/regress-direct-off $(brk direct_off)" \
    >"$logs/regress-direct-off.log" 2>&1
count_regress "$logs/regress-direct-off.log" $? "$work/regress-direct-off-$m/regression.diffs"

# The differential fuzzer of the direct path (test/difffuzz/, issue 18):
# random call sequences on databases a DBA altered (a catalogue of
# alterations), each run with invitetomedia.direct_use on and off on
# identical databases; every alteration family counts, and a fuzzer that
# could not start counts as a failure.  The test command draws the same 350
# sequences every time (seed 1811, about 3 minutes; a slower machine stops
# at DIFFFUZZ_SECONDS), so that a run is reproducible; other seeds explore
# further: test/difffuzz/run.sh alone draws a random one (its README).
echo "== [$m] differential fuzzer of the direct path (test/difffuzz)"
itm_as_postgres "$tree" env DIFFFUZZ_SECONDS="${DIFFFUZZ_SECONDS:-240}" \
    DIFFFUZZ_SEED="${DIFFFUZZ_SEED:-1811}" DIFFFUZZ_SEQUENCES="${DIFFFUZZ_SEQUENCES:-350}" \
    bash test/difffuzz/run.sh $(brk difffuzz) >"$logs/difffuzz.log" 2>&1
rc=$?
f0=$failed
grep -E '^# difffuzz:' "$logs/difffuzz.log" | sed 's/^# /   /'
count_regress "$logs/difffuzz.log" $rc /dev/null
if [ "$failed" -ne "$f0" ]; then
    grep -E '^ +' "$logs/difffuzz.log" | head -80
fi

# The frozen suite of each release (test/compat-VERSION/), on the extension
# created at that version, against the library just built: what a site that
# has not run ALTER EXTENSION UPDATE yet runs.  test/compat/run.sh runs four
# runners, each counted; each release has a cluster and an output directory
# of its own.
for v in 1.0 1.0.1 1.1 1.1.1; do
    echo "== [$m] $v suite against the new library"
    itm_virtualenv "$tree" bash test/compat/run.sh $v "$work/compat-$v-$m" $(brk compat) \
        >"$logs/compat-$v.log" 2>&1
    rc=$?
    f0=$failed
    for l in "$work/compat-$v-$m"/*.log; do
        [ -f "$l" ] || continue
        echo "-- ${l##*/}"
        count_regress "$l" "$(cat "${l%.log}.rc" 2>/dev/null || echo 1)" "${l%.log}/regression.diffs"
    done
    # the cluster did not start, or run.sh died: nothing above explains it
    if [ $rc -ne 0 ] && [ "$failed" -eq "$f0" ]; then
        tally "$logs/compat-$v.log" $rc 0 0
    fi
done

echo "== [$m] TAP tests"
itm_as_postgres "$tree" make -s installcheck REGRESS= ISOLATION= \
    PROVE_FLAGS="-v $(brk tap)" >"$logs/tap.log" 2>&1
rc=$?
count_tap "$logs/tap.log" $rc
tally "$logs/tap.log" $rc "$tap_passed" "$tap_failed"
# the server logs of the scripts that failed
for t in $tap_failures; do
    for l in "$tree"/tmp_check/log/"$t"_*.log; do
        [ -f "$l" ] && { echo "--- $l"; tail -30 "$l"; }
    done
done

# The event relay on a 1.1.1 database too: one library serves both, and
# 1.1.1's relay counts with the record ids where 2.0's follows event_seq
# (t/110 runs on the default version above).
echo "== [$m] the event relay on a 1.1.1 database (t/110_relay.pl, ITM_RELAY_VERSION=1.1.1)"
itm_as_postgres "$tree" ITM_RELAY_VERSION=1.1.1 make -s installcheck REGRESS= ISOLATION= \
    PROVE_TESTS=t/110_relay.pl PROVE_FLAGS="-v $(brk tap)" >"$logs/tap-relay-1.1.1.log" 2>&1
rc=$?
count_tap "$logs/tap-relay-1.1.1.log" $rc
tally "$logs/tap-relay-1.1.1.log" $rc "$tap_passed" "$tap_failed"
for l in "$tree"/tmp_check/log/110_relay_*.log; do
    [ "$tap_failed" -gt 0 ] && [ -f "$l" ] && { echo "--- $l"; tail -30 "$l"; }
done

}

ok_majors=""
for m in $majors; do
    if setup_major "$m"; then
        ok_majors="$ok_majors $m"
        run_major "$m"
    fi
done
logs=$work/logs

# The lobby, the long checks and the packages run on the first major.  The
# tree holds the last major's objects: build the first's again (setup.sh
# cleans when the major changes), so that what these install is its build.
case " $ok_majors " in
    *" $first "*)
        if [ "${PG_MAJOR}" != "$first" ]; then
            setup_major "$first" >"$logs/setup-again.log" 2>&1 ||
                { cat "$logs/setup-again.log"; finish; }
        fi
        tree=$work/tree-$first ;;
    *)
        echo "   !! PostgreSQL $first could not be set up: no lobby, long or package checks"
        finish ;;
esac

# The reference lobby (examples/lobby) in headless Chromium, as postgres
# (Chromium keeps its sandbox) on a throwaway cluster, the app on a free
# port: every check counts; the screenshots go to the copy's docs/lobby/.
echo "== the lobby in headless Chromium (test/lobby/run.sh)"
itm_virtualenv "$tree" bash test/lobby/run.sh "$work/lobby" $(brk lobby) \
    >"$logs/lobby.log" 2>&1
rc=$?
f0=$failed
grep -E '^# (headers|screenshots|browser)' "$logs/lobby.log" | sed 's/^# /   /'
count_regress "$logs/lobby.log" $rc /dev/null
if [ "$failed" -ne "$f0" ]; then
    grep -E '^   \| ' "$logs/lobby.log" | head -80
    echo "   (the lobby's logs: $work/lobby)"
fi

if [ "$long" = yes ]; then
    # each fuzzer, the soak's assertions and the valgrind scan count
    # test/long/long.mk, as postgres (PostgreSQL refuses root) in this run's
    # copy of the tree, with the extension that setup installed
    echo "== long checks (test/long: fuzzing, soak, valgrind)"
    itm_as_postgres "$tree" make -k -s -f Makefile -f test/long/long.mk check-long \
        PROVE_FLAGS="-v $(brk long)" >"$logs/long.log" 2>&1
    rc=$?
    grep -E '^(fuzz .*: |valgrind: )' "$logs/long.log"
    count_tap "$logs/long.log" $rc
    p=$(grep -cE '^fuzz .*executions, no crash|^valgrind: no report' "$logs/long.log")
    f=$(grep -cE '^fuzz .*FAILED|^valgrind: (the|reports)' "$logs/long.log")
    tally "$logs/long.log" $rc $((p + tap_passed)) $((f + tap_failed))
fi

# Last: it installs the packages system-wide, over the development install,
# and puts that back when it removes them.  Each check counts as one, and
# each file of the regression suite run against the installed package.
# pg_buildext builds them for the majors installed from Debian's packages
# (Debian 12's 15), not for one built from source.
if ! dpkg-query -W -f='${Status}' "postgresql-$first" 2>/dev/null | grep -q "install ok installed"; then
    echo "== Debian packages: PostgreSQL $first is not installed from Debian's packages; not run"
    finish
fi
echo "== Debian packages (test/package/run.sh)"
bash "$top/test/package/run.sh" "$work" $(brk package) >"$logs/package.log" 2>&1
rc=$?
f0=$failed
count_regress "$logs/package.log" $rc /dev/null
if [ "$failed" -ne "$f0" ]; then
    grep -E '^   \| ' "$logs/package.log" | head -80
    for l in build install installcheck; do
        [ -f "$work/package/$l.log" ] && echo "   (log: $work/package/$l.log)"
    done
fi

finish
}
