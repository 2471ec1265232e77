#!/usr/bin/env bash
# The whole test suite on a throwaway cluster, as root (or with sudo):
#   bash scripts/test.sh            regression, isolation and TAP tests
#   bash scripts/test.sh --long     also `make check-long` (soak, fuzzing, valgrind)
# Ends with one line "N passed, M failed"; exits non-zero if anything failed.
set -uo pipefail

long=no
if [ "${1:-}" = "--long" ]; then
    long=yes
    # libFuzzer (clang's runtime) and valgrind for the long checks
    ITM_EXTRA_PACKAGES="clang-14 libclang-rt-14-dev valgrind"
fi

. "$(dirname "$0")/setup.sh" || exit 1
set +e   # setup.sh stops at the first error; from here on every suite runs

# PostgreSQL will not run as root: the tests run as postgres, from a copy of
# the tree it can write to.  No existing cluster is touched: pg_virtualenv
# makes a throwaway one, and the TAP tests make their own.
work=$(mktemp -d /tmp/invitetomedia-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
(cd "$ITM_TOP" && tar --exclude=.git -cf - .) | (cd "$work" && tar xf -)
chown -R postgres: "$work"
log="$work/test.log"
PGBIN=/usr/lib/postgresql/15/bin

as_pg() {
    (cd "$work" && runuser -u postgres -- env PATH="$PGBIN:$PATH" "$@")
}

passed=0
failed=0

# pg_regress and isolation: one line per test file, "ok" or "FAILED"
count_pg_regress() {
    local p f
    p=$(grep -cE '^(test +)?[a-z0-9_]+ +\.\.\. ok' "$1")
    f=$(grep -cE '^(test +)?[a-z0-9_]+ +\.\.\. (FAILED|failed)' "$1")
    passed=$((passed + p))
    failed=$((failed + f))
    echo "   -> $p passed, $f failed"
}

echo "== regression tests (pg_regress)"
as_pg pg_virtualenv -v 15 make -s installcheck ISOLATION= TAP_TESTS= >"$work/regress.log" 2>&1
grep -E '\.\.\. ' "$work/regress.log"
count_pg_regress "$work/regress.log"
[ -f "$work/regression.diffs" ] && cat "$work/regression.diffs"

echo "== isolation tests"
as_pg pg_virtualenv -v 15 make -s installcheck REGRESS= TAP_TESTS= >"$work/isolation.log" 2>&1
grep -E '\.\.\. ' "$work/isolation.log"
count_pg_regress "$work/isolation.log"
[ -f "$work/output_iso/regression.diffs" ] && cat "$work/output_iso/regression.diffs"

# TAP: every assertion counts; a script that dies counts as one failure
echo "== TAP tests"
as_pg make -s installcheck REGRESS= ISOLATION= PROVE_FLAGS='-v' >"$work/tap.log" 2>&1
grep -E '^(t/.*\.pl \.\.|# (crashes|fuzz|soak|[A-Za-z ]+:))|^not ok|Dubious|^Result' "$work/tap.log"
p=$(grep -cE '^ *ok [0-9]+' "$work/tap.log")
f=$(grep -cE '^ *not ok [0-9]+' "$work/tap.log")
d=$(grep -cE 'Dubious, test returned|No plan found|Bad plan' "$work/tap.log")
passed=$((passed + p))
failed=$((failed + f + d))
echo "   -> $p passed, $((f + d)) failed"
if [ $((f + d)) -gt 0 ]; then
    grep -B2 -A15 -E '^ *not ok|Dubious' "$work/tap.log" | head -200
    for l in "$work"/tmp_check/log/*.log; do [ -f "$l" ] && { echo "--- $l"; tail -30 "$l"; }; done
fi

if [ "$long" = yes ]; then
    # each fuzzer, the soak's assertions and the valgrind scan count
    echo "== long checks (make check-long: fuzzing, soak, valgrind)"
    as_pg make -k -s check-long PROVE_FLAGS='-v' >"$work/long.log" 2>&1
    rc=$?
    grep -E '^(fuzz .*: |valgrind: |t-long/.*\.pl \.\.|# (soak|transactions|errors|[a-z ]+:)|^not ok|Result)' "$work/long.log"
    p=$(grep -cE '^ *ok [0-9]+|^fuzz .*executions, no crash|^valgrind: no report' "$work/long.log")
    f=$(grep -cE '^ *not ok [0-9]+|^fuzz .*FAILED|^valgrind: (the|reports)|Dubious, test returned' "$work/long.log")
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        tail -40 "$work/long.log"
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    echo "   -> $p passed, $f failed"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
