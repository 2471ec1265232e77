#!/usr/bin/env bash
# The invitetomedia demo, on a throwaway cluster, as root (or with sudo):
#   bash scripts/demo.sh
# Builds and installs the extension, starts a temporary PostgreSQL 15
# cluster, fills it with a small media site and walks an invite from
# creation, through its email, to its uses.  Nothing on the machine's own
# clusters is touched.
set -euo pipefail
. "$(dirname "$0")/setup.sh"
exec pg_virtualenv -v 15 bash "$ITM_TOP/scripts/demo-session.sh"
