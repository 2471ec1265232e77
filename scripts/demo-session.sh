#!/usr/bin/env bash
# The demo's steps; run by demo.sh inside pg_virtualenv (PG* variables set),
# as postgres, with TMPDIR private to the run.
set -euo pipefail

# no pager: on a terminal, psql would stop the walk at the first wide table
q() { psql -X -q -v ON_ERROR_STOP=1 -P pager=off "$@"; }
# bold step titles on a terminal only: escape codes in a log are noise
if [ -t 1 ]; then
    step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    step() { printf '\n== %s\n' "$*"; }
fi
say() { printf '%s\n' "$*"; }

step "1. CREATE EXTENSION invitetomedia CASCADE"
q -c "CREATE EXTENSION invitetomedia CASCADE" 2>&1 | sed 's/^/   /'
q -c "\dx invitetomedia"

step "2. The host application's directory: users, media, collaborators"
q <<'SQL'
INSERT INTO invitetomedia.users (user_id, email, first_name, last_name, role) VALUES
    ('olivia', 'olivia@media.example', 'Olivia', 'Owner', 'private_only'),
    ('carl',   'carl@media.example',   'Carl',   'Coeditor', 'private_only'),
    ('vic',    'vic@media.example',    'Vic',    'Viewer', 'viewer');
INSERT INTO invitetomedia.media (media_id, media_type, title, owner_id) VALUES
    ('0_launch', 'webcast', 'Spring launch webcast', 'olivia'),
    ('0_intro',  'video',   'Intro video',           'olivia');
INSERT INTO invitetomedia.media_collaborators VALUES ('0_launch', 'carl', 'co_editor');
SELECT user_id, email, role FROM invitetomedia.users ORDER BY user_id;
SELECT media_id, media_type, title, owner_id FROM invitetomedia.media ORDER BY media_id;
SQL

step "3. The DBA configures the module (it starts disabled)"
q <<'SQL'
INSERT INTO invitetomedia.email_templates (name, subject, body) VALUES ('invite',
  'You are invited to {MEDIA_TITLE}',
  E'Hello {FIRST_NAME} {LAST_NAME},\n\n{INVITER_NAME} invites you to "{MEDIA_TITLE}" as {ROLE}.\nOpen {URL}\nand enter this email address. The link works until {EXPIRES_AT}.\n');
UPDATE invitetomedia.settings
   SET enabled = true,
       link_duration = 120,
       link_reusability = 1,
       invite_email_template = 'invite',
       restrict_new_user_domains = '{Corp.Example}',
       link_base_url = 'https://media.example.com/invitetomedia/';
SELECT enabled, link_duration, link_reusability, allowed_users_roles,
       invite_email_template, restrict_new_user_domains, link_base_url
  FROM invitetomedia.settings;
SQL

step "4. A listener waits on channel invitetomedia_email (as the sender does)"
fifo=$(mktemp -u)
mkfifo "$fifo"
listener_out=$(mktemp)
psql -X -q <"$fifo" >"$listener_out" 2>&1 &
listener=$!
exec 3>"$fifo"
echo "LISTEN invitetomedia_email;" >&3
say "   listening (backend of psql pid $listener)"

step "5. Carl, a co-editor, invites an outside speaker, with email"
# the token comes back through a file of this run's own (demos may overlap)
tokfile=$(mktemp)
q -v tokfile="$tokfile" <<'SQL'
SELECT invite_id, token, url, expires_at, max_uses
  FROM invitetomedia.invite_create('0_launch', 'carl', 'Zoe.Guest@Outside.example',
                                   'Zoë', 'Guest', 'speaker', send_email => true) \gset
\echo '   invite_id:  ' :invite_id
\echo '   token:      ' :token '(shown once: only its SHA-256 is stored)'
\echo '   url:        ' :url
\echo '   expires_at: ' :expires_at
\echo '   max_uses:   ' :max_uses
\o :tokfile
\qecho :token
\o
SQL
token=$(tr -d '[:space:]' <"$tokfile")
rm -f "$tokfile"

step "6. The NOTIFY reached the listener (payload: the message id only)"
echo "SELECT 'listener polled';" >&3
sleep 1
exec 3>&-
wait "$listener" 2>/dev/null || true
sed -n 's/^/   /p' "$listener_out" | grep -i notification || say "   (no notification seen)"
rm -f "$fifo" "$listener_out"

step "7. The rendered message waiting in the outbox"
q <<'SQL'
\x on
SELECT message_id, to_email, to_name, subject, body FROM invitetomedia.outbox;
\x off
SELECT * FROM invitetomedia.email_queue;
SQL

step "7b. The sender delivers it (sendmail stand-in: one file per message)"
maildir=$(mktemp -d)
FAKE_MAIL_DIR="$maildir" "$ITM_TOP/sender/invitetomedia-sender" --once \
    --from 'Media Portal <invites@media.example.com>' --domain media.example.com \
    --sendmail "$ITM_TOP/sender/test/fake-sendmail -t -i" 2>&1 | sed 's/^/   /'
# the message as its reader sees it: the main headers, then the body
# decoded (on the wire it is quoted-printable, which wraps the link with =)
for f in "$maildir"/*.eml; do
    say "   --- $(basename "$f"), as the guest reads it"
    python3 - "$f" <<'PY' | sed 's/^/   | /'
import email
import email.policy
import sys

with open(sys.argv[1], 'rb') as fh:
    msg = email.message_from_binary_file(fh, policy=email.policy.default)
for name in ('From', 'To', 'Subject', 'Message-ID'):
    if msg[name]:
        print(f'{name}: {msg[name]}')
print()
print(msg.get_body(preferencelist=('plain',)).get_content().rstrip())
PY
done
rm -rf "$maildir"
q -c "SELECT message_id, state, attempts, sent_at IS NOT NULL AS sent FROM invitetomedia.email_messages"
q -c "SELECT message_id, body IS NULL AS body_scrubbed FROM invitetomedia.outbox"

step "8. The guest opens the link: the lobby page checks it"
q -c "SELECT * FROM invitetomedia.invite_check('$token')"

step "9. The guest types her email (any case, stray spaces): ok"
say "   typed: '  zoe.guest@outside.EXAMPLE ' (invited: zoe.guest@outside.example)"
q -c "SELECT * FROM invitetomedia.invite_consume('$token', '  zoe.guest@outside.EXAMPLE ', 'zoes-laptop')"

step "10. The same link again from another device: exhausted (single use)"
q -c "SELECT * FROM invitetomedia.invite_consume('$token', 'zoe.guest@outside.example', 'other-pc')"

step "11. Her laptop comes back after a network drop: rejoin, no use taken"
q -c "SELECT status, user_id, role, uses_left FROM invitetomedia.invite_consume('$token', 'zoe.guest@outside.example', 'zoes-laptop')"

step "12. Someone else who got hold of the link: email_mismatch"
q -c "SELECT status FROM invitetomedia.invite_consume('$token', 'mallory@outside.example')"

step "13. What was recorded, and the user created on first use"
q <<'SQL'
SELECT redemption_id, status, device_id, user_id FROM invitetomedia.redemptions ORDER BY redemption_id;
SELECT user_id, email, first_name, last_name, role FROM invitetomedia.users WHERE role = 'anonymous';
SQL

step "14. Refusals are clear errors, and write nothing"
for sql in \
  "SELECT * FROM invitetomedia.invite_create('0_launch', 'vic', 'a@outside.example', 'A', 'B')" \
  "SELECT * FROM invitetomedia.invite_create('0_intro', 'olivia', 'a@outside.example', 'A', 'B', 'moderator')" \
  "SELECT * FROM invitetomedia.invite_create('0_launch', 'olivia', 'new.hire@sso.corp.example', 'N', 'H')" \
  "SELECT * FROM invitetomedia.invite_create('0_launch', 'olivia', 'a@outside.example', E'Eve\r\nBcc: all@x.example', 'B')"
do
  say "   $sql"
  q -c "$sql" 2>&1 | sed 's/^/      /' || true
done

step "15. The lobby: the invitee's side, in a browser (examples/lobby)"
# The reference lobby, connected as its own role of the README ("The
# lobby": EXECUTE on the three functions it calls, nothing else), over TCP
# with a password.  Links point at it: link_base_url = <lobby>/i/, for
# invite and guest links alike.
lobby_pw=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
q <<SQL
CREATE ROLE media_lobby LOGIN PASSWORD '$lobby_pw';
GRANT USAGE ON SCHEMA invitetomedia TO media_lobby;
GRANT EXECUTE ON FUNCTION
    invitetomedia.invite_check(text),
    invitetomedia.invite_consume(text, text, text),
    invitetomedia.guest_link_join(text, text, text, text, text)
TO media_lobby;
SQL
say "   role media_lobby: the lobby's GRANTs of the README (The lobby): three functions"
lobby_log=$(mktemp)
lobby=""
# 127.0.0.1:8080 unless ITM_DEMO_LOBBY_LISTEN says otherwise; a free port
# when that one is taken (another demo, say)
for listen in "${ITM_DEMO_LOBBY_LISTEN:-127.0.0.1:8080}" 127.0.0.1:0; do
    : >"$lobby_log"
    PGUSER=media_lobby PGPASSWORD=$lobby_pw LOBBY_LISTEN=$listen \
        "$ITM_TOP/examples/lobby/serve" >"$lobby_log" 2>&1 </dev/null &
    lobby=$!
    for _ in $(seq 100); do
        grep -q 'listening on' "$lobby_log" && break
        kill -0 "$lobby" 2>/dev/null || break
        sleep 0.1
    done
    grep -q 'listening on' "$lobby_log" && break
    wait "$lobby" 2>/dev/null || true
    lobby=""
    say "   (could not listen on $listen: $(tail -n 1 "$lobby_log" | sed 's/^.* ERROR //'))"
done
if [ -z "$lobby" ]; then
    sed 's/^/   | /' "$lobby_log"
    exit 1
fi
base=$(sed -n 's/.* listening on \(http:[^ ]*\)$/\1/p' "$lobby_log")
say "   the lobby listens on $base (log: $lobby_log)"
q -v base="${base}i/" <<'SQL'
UPDATE invitetomedia.settings SET link_base_url = :'base';
SQL
# a fresh invite for a newcomer, and a guest link for the audience
linkfile=$(mktemp)
q -v linkfile="$linkfile" <<'SQL'
SELECT url AS invite_url
  FROM invitetomedia.invite_create('0_launch', 'olivia', 'newcomer@outside.example',
                                   'Nia', 'Newcomer', 'viewer') \gset
SELECT url AS guest_url
  FROM invitetomedia.guest_link_create('0_launch', 'olivia', 'Launch audience') \gset
\o :linkfile
\qecho :invite_url
\qecho :guest_url
\o
SQL
invite_url=$(sed -n 1p "$linkfile" | tr -d '[:space:]')
guest_url=$(sed -n 2p "$linkfile" | tr -d '[:space:]')
rm -f "$linkfile"
# what a mail scanner does: a GET, which uses nothing
answer=$(python3 - "$invite_url" <<'PY'
import re
import sys
import urllib.request

with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    m = re.search(r'<main data-status="([^"]*)"', r.read().decode())
    print(f"{r.status}, data-status {m.group(1) if m else '-'}")
PY
) || answer="nothing"
say "   the lobby answers: $answer"
say ""
say "   Open $invite_url"
say "   in a browser and type the invited email: newcomer@outside.example"
say "   (or a wrong one first). Guests: $guest_url"
case "${ITM_DEMO_LOBBY_SECONDS:-}" in
    "")
        if [ -t 0 ]; then
            port=${base##*:}
            port=${port%/}
            say "   (a browser on another machine: ssh -L $port:127.0.0.1:$port to this one first)"
            say ""
            say "   Press Enter to stop the lobby and end the demo."
            read -r _ || true
        fi ;;
    *[!0-9]*) say "   (ITM_DEMO_LOBBY_SECONDS is not a number: not waiting)" ;;
    *) sleep "$ITM_DEMO_LOBBY_SECONDS" ;;
esac
kill -TERM "$lobby"
wait "$lobby" && say "   the lobby stopped" || say "   the lobby stopped with status $?"
q -c "SELECT invite_id, email, state, use_count FROM invitetomedia.invite_status WHERE email = 'newcomer@outside.example'"

say ""
say "Done. The cluster was temporary and is dropped now."
