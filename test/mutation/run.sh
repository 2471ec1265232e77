#!/usr/bin/env bash
# test/mutation/run.sh [ID...]: the mutation run of the direct path
# (itm_direct.c).  See test/mutation/README.md.
#
# Every mutant of test/mutation/mutants.txt (or only the IDs given) is
# applied to a copy of the tree, built and installed into a private copy of
# PostgreSQL (never the system-wide install), and tested on a fresh cluster
# of that copy with:
#   regress     the regression suite (the direct path on: the default)
#   direct_off  the regression suite with PGOPTIONS='-c invitetomedia.direct_use=off'
#   isolation   the isolation suite
#   difffuzz    test/difffuzz/run.sh, if the tree has it, with a short
#               budget and a fixed seed
# A mutant is killed if any of these fails, times out, or the server
# crashes.  The unmutated tree runs first and must pass everything, else the
# run is void.  Prints one line per mutant, "mutant_ID ... ok" (killed, with
# what killed it) or "mutant_ID ... FAILED" (it survived): pg_regress's
# form, so that scripts/test.sh could count it; then
# "# mutation: K of N mutants killed" and how long the run took.
# Exits 0 if every mutant was killed, 1 if one survived, 2 if the run is
# void (the unmutated tree fails, a mutant no longer applies, no cluster).
#
# Run as root (the servers and tests run as postgres, through runuser).
# Settings (environment):
#   ITM_MUTATION_SOURCE=head      the tree tested: head (default; git
#                                 archive HEAD of this repository: what is
#                                 committed, not someone's edit in
#                                 progress) or worktree (the files as they
#                                 are now, uncommitted changes included)
#   ITM_MUTATION_SKIP="a b"       regression/isolation tests left out (say
#                                 why in the commit that uses it: a test
#                                 that fails on the unmutated tree for a
#                                 reason that has nothing to do with
#                                 itm_direct.c); printed in the output
#   ITM_MUTATION_FUZZ_SECONDS=30  the fuzzer's budget per mutant (0: no fuzzing)
#   ITM_MUTATION_FUZZ_SEED=18011  its seed
#   ITM_MUTATION_STAGE_TIMEOUT=300  seconds before a stage counts as hung
#   ITM_MUTATION_KEEP=1           keep the scratch directory (prefix, trees),
#                                 not only the logs
set -uo pipefail
# read the whole script before running it (the tree is shared and edited)
{

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
[ -f "$top/scripts/pg_major.sh" ] && . "$top/scripts/pg_major.sh"
PG_MAJOR=${PG_MAJOR:-15}
source_kind=${ITM_MUTATION_SOURCE:-head}
skip=${ITM_MUTATION_SKIP:-}
fuzz_seconds=${ITM_MUTATION_FUZZ_SECONDS:-30}
fuzz_seed=${ITM_MUTATION_FUZZ_SEED:-18011}
stage_timeout=${ITM_MUTATION_STAGE_TIMEOUT:-300}
mutants=$here/mutants.txt
mutate=$here/mutate.py
start_time=$(date +%s)

die() {
    echo "mutation_setup ... FAILED ($*)"
    echo "# mutation: void"
    exit 2
}
[ "$(id -u)" = 0 ] || die "run it as root: the servers run as postgres through runuser"
id postgres >/dev/null 2>&1 || die "no postgres user"
command -v python3 >/dev/null || die "python3 is needed (test/mutation/mutate.py)"
sysbin=/usr/lib/postgresql/$PG_MAJOR/bin
[ -x "$sysbin/pg_config" ] || die "no PostgreSQL $PG_MAJOR in /usr/lib/postgresql/$PG_MAJOR"

ids=("$@")
if [ ${#ids[@]} -eq 0 ]; then
    mapfile -t ids < <(python3 "$mutate" "$mutants" list) || die "cannot read $mutants"
fi
[ ${#ids[@]} -gt 0 ] || die "no mutants"

work=$(mktemp -d /tmp/itm-mutation.XXXXXX) || die "no scratch directory"
chmod 755 "$work"
logs=$work/logs
mkdir -p "$logs" "$work/run"
pgdata=$work/data
server_up=no
as_pg() { runuser -u postgres -- "$@"; }
stop_server() {
    if [ "$server_up" = yes ]; then
        as_pg "$pgbin/pg_ctl" -D "$pgdata" -m immediate -w stop >/dev/null 2>&1
        server_up=no
    fi
}
cleanup() {
    stop_server
    if [ -z "${ITM_MUTATION_KEEP:-}" ]; then
        rm -rf "$work/prefix" "$work/src" "$work/tree" "$pgdata" "$work/template"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- 1. a private PostgreSQL: the system's copied.  Its programs find share/
# and lib/ relative to themselves, so the copy keeps /usr's layout; pg_config
# must then report the copy's paths, or the run stops before installing
# anything anywhere.
prefix=$work/prefix
mkdir -p "$prefix/usr/lib/postgresql" "$prefix/usr/share/postgresql" "$prefix/usr/include"
cp -a "/usr/lib/postgresql/$PG_MAJOR" "$prefix/usr/lib/postgresql/" &&
    cp -a "/usr/share/postgresql/$PG_MAJOR" "$prefix/usr/share/postgresql/" &&
    cp -a /usr/include/postgresql "$prefix/usr/include/" ||
    die "cannot copy PostgreSQL $PG_MAJOR (the server and its development files must be installed)"
pgbin=$prefix/usr/lib/postgresql/$PG_MAJOR/bin
pg_config=$pgbin/pg_config
for opt in --bindir --sharedir --pkglibdir --pgxs --includedir-server; do
    p=$("$pg_config" $opt)
    case "$p" in
        "$prefix"/*) ;;
        *) die "the copy's pg_config $opt says $p, not a path in $prefix" ;;
    esac
done
[ -f "$("$pg_config" --pkglibdir)/pgcrypto.so" ] || die "pgcrypto is not in the copy"

# -- 2. the tree, once: every mutant starts from a copy of it
src=$work/src
mkdir -p "$src"
case "$source_kind" in
    head)
        commit=$(git -C "$top" rev-parse --short HEAD) || die "not a git repository: $top"
        git -C "$top" archive HEAD | tar -x -C "$src" || die "git archive failed"
        what="commit $commit" ;;
    worktree)
        commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null)
        # the files git knows or would add (not the ignored build outputs,
        # results and benchmark logs)
        (cd "$top" && git ls-files -z -co --exclude-standard |
            while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
            tar --null -T - -cf -) | tar -x -C "$src" || die "cannot copy the work tree"
        what="the work tree (on commit $commit, with uncommitted changes)" ;;
    *) die "ITM_MUTATION_SOURCE is head or worktree, not $source_kind" ;;
esac
[ -f "$src/itm_direct.c" ] || die "no itm_direct.c in the tree"
python3 "$mutate" "$mutants" check "$src/itm_direct.c" >"$logs/check.log" 2>&1 ||
    { cat "$logs/check.log"; die "a mutant no longer applies to itm_direct.c: fix test/mutation/mutants.txt"; }

# the tests: the Makefile's globs, less ITM_MUTATION_SKIP
list_tests() {   # DIR EXT
    local f n
    for f in "$src/$1"/*."$2"; do
        n=$(basename "$f" ".$2")
        case " $skip " in *" $n "*) continue ;; esac
        echo "$n"
    done
}
regress_tests=$(list_tests sql sql | tr '\n' ' ')
isolation_tests=$(list_tests specs spec | tr '\n' ' ')
fuzz=no
if [ "$fuzz_seconds" != 0 ] && [ -f "$src/test/difffuzz/run.sh" ]; then
    fuzz=yes
fi

# -- 3. one cluster made once, copied fresh for every mutant (a failed test
# can leave roles behind, which must not fail the next mutant's tests)
chown -R postgres: "$work"
as_pg "$pgbin/initdb" -D "$work/template" -A trust -U postgres -E UTF8 --locale=C.UTF-8 \
    --no-sync >"$logs/initdb.log" 2>&1 || { cat "$logs/initdb.log"; die "initdb failed"; }
port=""

start_server() {   # LOG
    local try p
    rm -rf "$pgdata"
    as_pg cp -a "$work/template" "$pgdata" || return 1
    for try in 1 2 3 4 5; do
        if [ -z "$port" ]; then
            p=$((20000 + RANDOM % 12000))
            ss -Htln "sport = :$p" 2>/dev/null | grep -q . && continue
        else
            p=$port
        fi
        if as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$1" -w -t 60 \
            -o "-p $p -k $work/run -c listen_addresses=''" start >/dev/null 2>&1; then
            port=$p
            server_up=yes
            return 0
        fi
        port=""
    done
    return 1
}

# run_stage NAME LOG COMMAND...: one stage, as postgres on the cluster, in
# the tree, bounded in time; sets stage_failures to what failed ("" if
# nothing did)
run_stage() {
    local name=$1 log=$2 rc failed
    shift 2
    as_pg env -C "$work/tree" PGHOST="$work/run" PGPORT="$port" PGUSER=postgres \
        PGDATABASE=postgres timeout -k 10 "$stage_timeout" "$@" >"$log" 2>&1
    rc=$?
    failed=$(grep -E '^(test +| +)?[a-z0-9_]+ +\.\.\. +(FAILED|failed)' "$log" |
        sed -E 's/^(test +| +)?([a-z0-9_]+) .*/\2/' | sort -u | tr '\n' ' ')
    failed=${failed% }
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        stage_failures="$name:timeout${failed:+($failed)}"
    elif [ -n "$failed" ]; then
        stage_failures=$(echo "$failed" | sed "s/[^ ]*/$name:&/g")
    elif [ "$rc" -ne 0 ]; then
        stage_failures="$name:exit$rc"
    else
        stage_failures=""
    fi
}

# test_tree ID: builds and installs $work/tree, runs every stage; sets
# verdict to "" (everything passed) or what failed
test_tree() {
    local id=$1 out=$logs/$1 killers=()
    mkdir -p "$out"
    chown postgres: "$out"
    if ! (cd "$work/tree" && make -s -j2 PG_CONFIG="$pg_config" install) >"$out/build.log" 2>&1; then
        verdict="build"
        return
    fi
    chown -R postgres: "$work/tree"
    if ! start_server "$out/server.log"; then
        verdict="server did not start"
        return
    fi
    run_stage regress "$out/regress.log" make -s installcheck PG_CONFIG="$pg_config" \
        ISOLATION= TAP_TESTS= REGRESS="$regress_tests" EXTRA_REGRESS_OPTS="--outputdir=$out/regress"
    [ -n "$stage_failures" ] && killers+=("$stage_failures")
    run_stage direct_off "$out/direct_off.log" env PGOPTIONS='-c invitetomedia.direct_use=off' \
        make -s installcheck PG_CONFIG="$pg_config" \
        ISOLATION= TAP_TESTS= REGRESS="$regress_tests" EXTRA_REGRESS_OPTS="--outputdir=$out/direct_off"
    [ -n "$stage_failures" ] && killers+=("$stage_failures")
    run_stage isolation "$out/isolation.log" make -s installcheck PG_CONFIG="$pg_config" \
        REGRESS= TAP_TESTS= ISOLATION="$isolation_tests" EXTRA_REGRESS_OPTS="--outputdir=$out/isolation"
    [ -n "$stage_failures" ] && killers+=("$stage_failures")
    if [ "$fuzz" = yes ]; then
        run_stage difffuzz "$out/difffuzz.log" env DIFFFUZZ_SECONDS="$fuzz_seconds" \
            DIFFFUZZ_SEED="$fuzz_seed" bash test/difffuzz/run.sh
        if [ "$id" = baseline ] && grep -q '^difffuzz_setup \.\.\. FAILED\|^difffuzz_runner' "$out/difffuzz.log"; then
            # the fuzzer cannot run here (e.g. python3-psycopg missing): the
            # run goes on without it, and says so
            echo "# mutation: the differential fuzzer could not start, not used:"
            grep -E '^difffuzz_(setup|runner)' "$out/difffuzz.log" | sed 's/^/#   /'
            fuzz=no
        elif [ -n "$stage_failures" ]; then
            killers+=("difffuzz$(grep -oE 'seed [0-9]+' "$out/difffuzz.log" | head -1 | sed 's/^/(/;s/$/)/')")
        fi
    fi
    # a crash: the postmaster logs the backend's signal (and restarts)
    if grep -qE 'terminated by signal|was terminated by exception' "$out/server.log"; then
        killers+=("server crash")
    fi
    stop_server
    verdict="${killers[*]:-}"
}

echo "# mutation: itm_direct.c of $what, ${#ids[@]} mutants; PostgreSQL $PG_MAJOR copied to $prefix"
echo "# mutation: stages regress, direct_off, isolation$([ "$fuzz" = yes ] && echo ", difffuzz (${fuzz_seconds}s, seed $fuzz_seed)")"
[ -n "$skip" ] && echo "# mutation: left out (ITM_MUTATION_SKIP): $skip"

# -- 4. the unmutated tree: it must pass everything
rm -rf "$work/tree"
cp -a "$src" "$work/tree"
t0=$(date +%s)
test_tree baseline
if [ -n "$verdict" ]; then
    echo "mutation_baseline ... FAILED (the unmutated tree fails: $verdict; logs in $logs/baseline)"
    for f in "$logs"/baseline/*/regression.diffs; do
        [ -f "$f" ] && head -n 60 "$f"
    done
    echo "# mutation: void (the unmutated tree must pass everything)"
    exit 2
fi
echo "mutation_baseline ... ok    ($(( $(date +%s) - t0 )) s)"

# -- 5. the mutants
killed=0
survived=()
for id in "${ids[@]}"; do
    t0=$(date +%s)
    rm -rf "$work/tree"
    cp -a "$src" "$work/tree"
    if ! python3 "$mutate" "$mutants" apply "$id" "$work/tree/itm_direct.c" >"$logs/apply-$id.log" 2>&1; then
        cat "$logs/apply-$id.log"
        echo "# mutation: void (mutant $id does not apply)"
        exit 2
    fi
    test_tree "$id"
    secs=$(( $(date +%s) - t0 ))
    if [ "$verdict" = build ]; then
        # not a kill: a mutant must be a bug that compiles
        echo "mutant_$id ... FAILED (it does not build: fix the mutant; $logs/$id/build.log)"
        survived+=("$id")
    elif [ -n "$verdict" ]; then
        echo "mutant_$id ... ok    (killed by $verdict; $secs s)"
        killed=$((killed + 1))
    else
        echo "mutant_$id ... FAILED (survived: every test passed; $secs s)"
        survived+=("$id")
    fi
done

total=$(( $(date +%s) - start_time ))
echo "# mutation: $killed of ${#ids[@]} mutants killed"
[ ${#survived[@]} -gt 0 ] && echo "# mutation: survivors: ${survived[*]}"
echo "# mutation: the run took $((total / 60)) min $((total % 60)) s (logs in $logs)"
[ ${#survived[@]} -eq 0 ] && exit 0
exit 1
}
