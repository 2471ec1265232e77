#!/usr/bin/env bash
# The invitetomedia demo, on a throwaway cluster, as root (or with sudo):
#   bash scripts/demo.sh
# Builds and installs the extension, starts a temporary PostgreSQL cluster
# (version $PG_MAJOR, 15 unless set: scripts/pg_major.sh), fills it with a
# small media site and walks an invite from creation, through its email,
# to its uses.  Nothing on the machine's own clusters is touched.  Demos
# and test runs may run at the same time: each has its own cluster, as
# postgres, in a scratch directory of its own (scripts/throwaway.sh).
set -euo pipefail
# The braces around the rest, which ends in exit, make bash read the whole
# script before it runs any of it: bash otherwise reads a script as it goes,
# and the tree is shared, so an edit during a run would run a mix of old and
# new lines.
{

if [ $# -ne 0 ]; then
    echo "usage: bash scripts/demo.sh" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

bash "$here/setup.sh"
. "$here/throwaway.sh"

# What the demo runs, copied out of the tree under the build lock: postgres
# may not be able to read the tree, and another run may be rebuilding it.
dir=$(itm_scratch invitetomedia-demo)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/top/scripts" "$dir/top/sender/test" "$dir/top/examples"
(
    flock -s 9
    cp "$top/scripts/demo-session.sh" "$dir/top/scripts/"
    cp "$top/sender/invitetomedia-sender" "$dir/top/sender/"
    cp "$top/sender/test/fake-sendmail" "$dir/top/sender/test/"
    cp -r "$top/examples/lobby" "$dir/top/examples/"
) 9>>"$ITM_BUILD_LOCK"
chown -R postgres: "$dir/top"

# The last step starts the lobby and waits for Enter on a terminal;
# ITM_DEMO_LOBBY_SECONDS=N keeps it up N seconds instead (0: stop at once,
# as scripts/test.sh does), ITM_DEMO_LOBBY_LISTEN=host:port moves it.
lobby_env=()
for v in ITM_DEMO_LOBBY_SECONDS ITM_DEMO_LOBBY_LISTEN; do
    [ -n "${!v+set}" ] && lobby_env+=("$v=${!v}")
done
# no exec: this shell stays the parent, so that killing it ends the cluster
itm_virtualenv "$dir" env ITM_TOP="$dir/top" "${lobby_env[@]}" \
    bash "$dir/top/scripts/demo-session.sh"
exit
}
