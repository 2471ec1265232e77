#!/usr/bin/env bash
# Installs what invitetomedia needs on Debian 12, builds and installs the
# extension, and builds the sender (sender/invitetomedia-sender, which the
# tests and the demo run from the tree).  Run as root, by demo.sh and
# test.sh:
#   bash scripts/setup.sh [make option...]
# ITM_EXTRA_PACKAGES names more packages to install.  Warnings are errors
# here (COPT=-Werror, WERROR=-Werror): the Makefiles leave them warnings for
# users and packagers.
set -euo pipefail
# The braces around the rest, which ends in exit, make bash read the whole
# script before it runs any of it: bash otherwise reads a script as it goes,
# and the tree is shared, so an edit during a run would run a mix of old and
# new lines.
{

if [ "$(id -u)" != 0 ]; then
    echo "run this as root (or with sudo)" >&2
    exit 1
fi

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$top/scripts/pg_major.sh"

# Packages: the server and its build files, TAP test modules, the sender's
# MIME library, what the tests use to read messages, and the reference
# lobby's Flask and psycopg 3 (examples/lobby, which the demo starts).
# A major that this Debian does not package (18 on Debian 12) is built
# from Debian's source package by pg-from-source.sh instead, into
# /usr/lib/postgresql/$PG_MAJOR, where pg_virtualenv finds it.
ITM_PACKAGES="postgresql-common
    make gcc pkg-config libpq-dev libgmime-3.0-dev libipc-run-perl python3
    python3-flask python3-psycopg python3-waitress python3-psycopg-pool"
from_source=no
if dpkg-query -W -f='${Status}' "postgresql-$PG_MAJOR" 2>/dev/null | grep -q "install ok installed" ||
   apt-cache show "postgresql-$PG_MAJOR" >/dev/null 2>&1; then
    ITM_PACKAGES="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR $ITM_PACKAGES"
else
    from_source=yes
fi

missing=""
for p in $ITM_PACKAGES ${ITM_EXTRA_PACKAGES:-}; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "== installing:$missing"
    # apt takes its own lock; wait for it rather than fail when another
    # run, or a fresh machine's unattended upgrades, holds it (minutes)
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
        install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ $from_source = yes ]; then
    bash "$top/scripts/pg-from-source.sh" "$PG_MAJOR"
fi

# Runs may overlap (two demos and a test run): one build and install at a
# time in the tree, or two makes write the same objects at once.  Readers
# of the built tree (test.sh's copy) take the lock shared.  install -C
# leaves identical installed files alone, so that backends of a run under
# way never load a library that another run is rewriting.
echo "== building and installing invitetomedia"
exec 9>>/tmp/invitetomedia-build.lock
flock 9
pg_config=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
# The objects of another major's build are not this one's: make would
# link them as they are.  .build-major (ignored by git) names the major of
# the objects in the tree.
if [ "$(cat "$top/.build-major" 2>/dev/null)" != "$PG_MAJOR" ]; then
    make -C "$top" -s PG_CONFIG="$pg_config" clean
    echo "$PG_MAJOR" >"$top/.build-major"
fi
make -C "$top" -s PG_CONFIG="$pg_config" COPT=-Werror "$@"
make -C "$top" -s PG_CONFIG="$pg_config" COPT=-Werror \
    install_bin='/usr/bin/install -C' "$@" install >/dev/null
make -C "$top/sender" -s WERROR=-Werror "$@"
exit
}
