#!/usr/bin/env bash
# test/package/session.sh SHARED: the database side of the package test,
# run by test/package/run.sh inside pg_virtualenv (PG* variables set, the
# socket in $TMPDIR), as postgres, in a copy of the source tree (sql/,
# expected/, specs/), with the packages installed.
#
# Prints one line per check, "name ... ok" or "name ... FAILED (why)", and
# pg_regress's own lines; run.sh counts them.  SHARED is a directory that
# run.sh reads too: this script writes SHARED/lobby (the lobby's role's
# password, an invite for the lobby to admit) and then SHARED/ready (where
# the sender is to connect) once the outbox holds one invite email, and
# waits for run.sh to write SHARED/sender.done after it ran the sender and
# the lobby; the lobby's device id is then in SHARED/lobby.device.
set -uo pipefail

shared=${1:?usage: session.sh SHARED}
db=itm_pkg
failed=0
ok() { echo "$1 ... ok"; }
bad() { echo "$1 ... FAILED ($2)"; failed=1; }
q() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }

control=$(pg_config --sharedir)/extension/invitetomedia.control
default_version=$(sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" "$control")

# 1. CREATE EXTENSION from the package's files
createdb "$db" || { bad create_extension "createdb failed"; exit 1; }
if out=$(q -c "CREATE EXTENSION invitetomedia CASCADE" -c "
        SELECT extversion FROM pg_extension WHERE extname = 'invitetomedia'" 2>&1) &&
   [ "$out" = "$default_version" ] &&
   [ "$(q -c "SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto'")" = 1 ]; then
    ok create_extension
else
    bad create_extension "version '$out', expected '$default_version' with pgcrypto"
fi

# 2. the regression and isolation suites against the installed files
# (PGXS's installcheck: pg_regress loads the installed extension; nothing
# is built here)
make -s installcheck TAP_TESTS= >"$shared/installcheck.log" 2>&1
rc=$?
grep -E '^(test +| +)?[a-z0-9_]+ +\.\.\. ' "$shared/installcheck.log"
if [ $rc -ne 0 ]; then
    for d in regression.diffs output_iso/regression.diffs; do
        [ -f "$d" ] && head -200 "$d"
    done
    bad installcheck "make installcheck exited with status $rc"
fi

# 3. an invite with an email for the sender to deliver, and the role it
# connects as (README, "A database role for the sender"), with peer
# authentication over the socket: the system user has the same name
if q >/dev/null 2>&1 <<'SQL'
INSERT INTO invitetomedia.users (user_id, email, first_name, last_name, role)
VALUES ('olivia', 'olivia@media.example', 'Olivia', 'Owner', 'private_only');
INSERT INTO invitetomedia.media (media_id, media_type, title, owner_id)
VALUES ('0_launch', 'webcast', 'Spring launch webcast', 'olivia');
INSERT INTO invitetomedia.email_templates (name, subject, body) VALUES ('invite',
  'You are invited to {MEDIA_TITLE}', E'Hello {FIRST_NAME},\nopen {URL}\n');
UPDATE invitetomedia.settings
   SET enabled = true, invite_email_template = 'invite',
       link_base_url = 'https://media.example.com/invitetomedia/';
SELECT invite_id FROM invitetomedia.invite_create('0_launch', 'olivia',
       'guest@outside.example', 'Gina', 'Guest', 'speaker', send_email => true);
CREATE ROLE invitetomedia_sender LOGIN;
GRANT USAGE ON SCHEMA invitetomedia TO invitetomedia_sender;
GRANT EXECUTE ON FUNCTION invitetomedia.email_claim(integer, interval),
                          invitetomedia.email_sent(bigint, integer),
                          invitetomedia.email_failed(bigint, text, integer, boolean),
                          invitetomedia.email_release(bigint, integer),
                          invitetomedia.email_sent(bigint),
                          invitetomedia.email_failed(bigint, text)
   TO invitetomedia_sender;
SQL
then
    ok queue_invite_email
else
    bad queue_invite_email "the fixture or the sender's role failed"
fi

# 3b. the lobby's role from the README's recipe (EXECUTE on invite_check,
# invite_consume and guest_link_join), with a password: the installed lobby
# connects over TCP with a password file, as lobby.conf says; and an invite
# (no email) for it to admit
recipe=$(awk '/<!-- readme-test: lobby-role -->/ { f = 1; next }
              f && /^```sql/ { g = 1; next }
              g && /^```/ { exit }
              g { print }' README.md)
lobby_password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
lobby_invite=""
if [ -n "$recipe" ] &&
   printf '%s\n' "$recipe" "ALTER ROLE media_lobby PASSWORD '$lobby_password';" | q >/dev/null 2>&1; then
    lobby_invite=$(q -F ' ' -c "SELECT invite_id, token FROM invitetomedia.invite_create('0_launch',
        'olivia', 'lina.lobby@outside.example', 'Lina', 'Lobby', 'viewer')" 2>&1)
fi
if [[ "$lobby_invite" =~ ^[0-9]+\ itm_[A-Za-z0-9_-]+$ ]]; then
    {
        echo "port=$PGPORT"
        echo "db=$db"
        echo "password=$lobby_password"
        echo "invite=${lobby_invite% *}"
        echo "token=${lobby_invite#* }"
    } >"$shared/lobby.tmp"
    mv "$shared/lobby.tmp" "$shared/lobby"
    ok lobby_role
else
    bad lobby_role "the README's lobby-role recipe or the invite failed: ${lobby_invite:-no recipe}"
fi

# the sender's user must reach the socket; run.sh starts the sender
chmod 711 "$TMPDIR"
echo "host=$TMPDIR port=$PGPORT dbname=$db" >"$shared/ready.tmp"
mv "$shared/ready.tmp" "$shared/ready"
for _ in $(seq 1 1500); do
    [ -e "$shared/sender.done" ] && break
    sleep 0.2
done
if [ ! -e "$shared/sender.done" ]; then
    bad sender_confirmed "run.sh did not finish with the sender and the lobby in 300 s"
    exit 1
fi

# 4. the sender confirmed the delivery in the database
state=$(q -c "SELECT string_agg(state, ',') FROM invitetomedia.email_messages")
if [ "$state" = sent ]; then
    ok sender_confirmed
else
    bad sender_confirmed "message states: '$state', expected 'sent'"
fi

# 5. the lobby's use of its invite: one wrong email, then one use, both by
# the device the lobby issued (lobby-check.py wrote it), and the link used
# (in the order they were made: 2.0's record ids are drawn, not counted)
if [ -f "$shared/lobby" ]; then
    invite=$(sed -n 's/^invite=//p' "$shared/lobby")
    device=$(cat "$shared/lobby.device" 2>/dev/null)
    got=$(q -c "SELECT string_agg(status || ':' || (device_id IS NOT DISTINCT FROM '$device'), ','
                                  ORDER BY at, status)
                  FROM invitetomedia.redemptions WHERE invite_id = $invite")
    state=$(q -c "SELECT state || ':' || use_count FROM invitetomedia.invite_status
                   WHERE invite_id = $invite")
    if [ -n "$device" ] && [ "$got" = "email_mismatch:true,ok:true" ] && [ "$state" = exhausted:1 ]; then
        ok lobby_use_recorded
    else
        bad lobby_use_recorded "records '$got' (expected email_mismatch then ok, by the lobby's device '$device'), state '$state'"
    fi
fi
exit $failed
