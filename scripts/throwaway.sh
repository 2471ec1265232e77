# scripts/throwaway.sh: scratch directories and throwaway clusters for
# test.sh and demo.sh (sourced by them; run as root).
#
# Runs must be able to overlap (two demos and a test run at once) and a
# killed run must block nothing.  So:
#   - everything runs as postgres, never as root: pg_virtualenv run by root
#     makes the one system-wide cluster $PG_MAJOR/regress, which a second run
#     refuses to overwrite and which a killed run leaves behind;
#   - each run keeps everything (tree copy, logs, pg_virtualenv's cluster,
#     sockets, temporary files) in one scratch directory of its own;
#   - each runner lives in a PID namespace of its own that the kernel tears
#     down with it, and the namespace dies with the script that started it
#     (parent-death signal), so that kill -9 leaves no server running;
#   - each cluster gets a random port, and another one if it did not start:
#     pg_createcluster's "next free port" is racy between concurrent runs.

. "$(dirname "${BASH_SOURCE[0]}")/pg_major.sh"
ITM_PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
# taken exclusively by setup.sh's build and install, shared by readers of
# the built tree
ITM_BUILD_LOCK=/tmp/invitetomedia-build.lock

# The namespace needs CAP_SYS_ADMIN; where it is refused (some containers),
# runs still overlap, but a kill -9 may leave a server running.
if unshare --pid --fork --kill-child --mount-proc true 2>/dev/null; then
    ITM_KILLSAFE=(setpriv --pdeathsig KILL unshare --pid --fork --kill-child --mount-proc --)
else
    ITM_KILLSAFE=(setpriv --pdeathsig KILL --)
fi

# itm_scratch NAME: makes /tmp/NAME.XXXXXX for this run, owned by postgres,
# and prints its path.  It records the pid of the script that owns it; the
# directories of owners that died without cleaning up (kill -9) are removed,
# those that an owner kept on purpose (a file "keep": logs of a failed run)
# once they are an hour old.
itm_scratch() {
    local d pid
    for d in /tmp/"$1".*; do
        [ -f "$d/owner.pid" ] || continue
        [ -f "$d/keep" ] && [ -z "$(find "$d/keep" -mmin +60)" ] && continue
        pid=$(cat "$d/owner.pid" 2>/dev/null)
        [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && rm -rf "$d"
    done
    d=$(mktemp -d "/tmp/$1.XXXXXX") || return 1
    echo $$ >"$d/owner.pid"
    mkdir "$d/tmp"
    chmod 755 "$d"
    chown -R postgres: "$d"
    echo "$d"
}

# itm_as_postgres DIR COMMAND...: runs COMMAND as postgres in DIR (a scratch
# directory or below one), with temporary files in the scratch directory.
# Call it from the script's own shell, not a subshell: the namespace dies
# with its parent process.
itm_as_postgres() {
    local dir=$1 top
    shift
    top=$(itm_scratch_of "$dir")
    "${ITM_KILLSAFE[@]}" runuser -u postgres -- env -C "$dir" \
        PATH="$ITM_PGBIN:$PATH" TMPDIR="$top/tmp" "$@"
}

# itm_virtualenv DIR COMMAND...: runs COMMAND as postgres in DIR inside
# pg_virtualenv, on a fresh throwaway cluster (PG* variables set), and
# returns COMMAND's status.
itm_virtualenv() {
    local dir=$1 top run port try rc=1
    shift
    top=$(itm_scratch_of "$dir")
    for try in 1 2 3; do
        run=$(mktemp -d "$top/tmp/cluster.XXXXXX") || return 1
        chown postgres: "$run"
        port=$((20000 + RANDOM % 12000))   # below the ephemeral ports
        if ss -Htln "sport = :$port" | grep -q .; then
            continue
        fi
        # the marker tells a cluster that did not start (try another port)
        # from a command that failed
        "${ITM_KILLSAFE[@]}" runuser -u postgres -- env -C "$dir" \
            PATH="$ITM_PGBIN:$PATH" TMPDIR="$run" PGPORT="$port" \
            pg_virtualenv -v "$PG_MAJOR" -o "unix_socket_directories=$run" \
            sh -c 'touch "$0/started" && exec "$@"' "$run" "$@"
        rc=$?
        [ -e "$run/started" ] && break
        echo "(the throwaway cluster did not start on port $port, attempt $try of 3)"
    done
    return $rc
}

# the scratch directory (the one holding owner.pid) that DIR is in
itm_scratch_of() {
    local d
    d=$(cd "$1" && pwd) || return 1
    while [ "$d" != / ] && [ ! -f "$d/owner.pid" ]; do
        d=$(dirname "$d")
    done
    [ "$d" != / ] || { echo "$1 is not in a scratch directory" >&2; return 1; }
    echo "$d"
}
