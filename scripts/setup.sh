#!/usr/bin/env bash
# Installs what invitetomedia needs on Debian 12 and builds and installs the
# extension (and the sender).  Run as root; sourced by demo.sh and test.sh.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "run this as root (or with sudo)" >&2
    exit 1
fi

ITM_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ITM_TOP

# Packages: the server and its build files, TAP test modules, the sender's
# MIME library, and what the tests use to read messages.
ITM_PACKAGES="postgresql-15 postgresql-server-dev-15 postgresql-common
    make gcc pkg-config libpq-dev libgmime-3.0-dev libipc-run-perl python3"

missing=""
for p in $ITM_PACKAGES ${ITM_EXTRA_PACKAGES:-}; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "== installing:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

echo "== building and installing invitetomedia"
make -C "$ITM_TOP" -s PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
make -C "$ITM_TOP" -s PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config install >/dev/null
