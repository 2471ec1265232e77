#!/usr/bin/env bash
# test/package/run.sh WORK [dpkg-buildpackage option...]: the Debian
# package test, the last stage of scripts/test.sh, as root, in WORK (a
# scratch directory of scripts/throwaway.sh's itm_scratch).
#
#   0. checks that make builds the extension without the sender's
#      libraries (pkg-config is never called);
#   1. builds the three packages from the source tree with
#      dpkg-buildpackage -us -uc -b (as postgres: no root needed) and runs
#      lintian on them (no error allowed; warnings are printed);
#   2. installs them with apt-get (as a DBA would), checks that the files
#      the extension loads are the package's, the system users and the
#      units (sandboxed, not enabled), the lobby's files and its secret;
#   3. on a throwaway cluster: CREATE EXTENSION invitetomedia CASCADE and
#      the regression and isolation suites against the installed files
#      (test/package/session.sh), then queues one invite email;
#   4. starts the sender with the installed unit's command line and
#      environment (ExecStart=, Environment=, EnvironmentFile= read by
#      test/package/unit-command.py), after editing
#      /etc/invitetomedia/sender.conf as an admin would: that cluster, a
#      fake sendmail; sees the one mail delivered, stops the sender with
#      SIGTERM (KillMode=mixed: the sender alone);
#   4b. starts the lobby the same way with its unit's command line and
#      environment, its LoadCredential= copied as systemd would, after
#      editing /etc/invitetomedia/lobby.conf (that cluster as the README's
#      lobby role, media_lobby, with a password file; a free port): its
#      link page answers 200, bad input is refused (CSRF, NUL, a wrong
#      email, malformed HTTP, a body over the limit, all with the security
#      headers), the right email is admitted with a result that verifies
#      with the installed secret's key (test/package/lobby-check.py), the
#      use is recorded once (session.sh), and it stops on SIGTERM;
#   5. runs debian/tests/installcheck (the autopkgtest) as autopkgtest
#      would without needs-root: as a user, in the unpacked source;
#   6. purges the packages and puts the development install
#      (scripts/setup.sh's make install) back, so that the machine is as
#      before.
# Prints one line per check, "name ... ok" or "name ... FAILED (why)", and
# pg_regress's lines: scripts/test.sh counts them like pg_regress files.
# Exits non-zero if a check failed.
#
# The packages are installed system-wide: from installation to removal
# this holds the build lock of scripts/setup.sh exclusively, so that no
# other run builds, installs or copies the tree meanwhile.  Packages that
# were installed before and not by this test are left alone (the stage
# fails instead).
set -uo pipefail
{

work=${1:?usage: run.sh WORK [dpkg-buildpackage option...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/scripts/throwaway.sh"

pkg_ext=postgresql-$PG_MAJOR-invitetomedia
pkg_sender=invitetomedia-sender
pkg_lobby=invitetomedia-lobby
unit=/lib/systemd/system/invitetomedia-sender.service
conf=/etc/invitetomedia/sender.conf
lobby_unit=/lib/systemd/system/invitetomedia-lobby.service
lobby_conf=/etc/invitetomedia/lobby.conf
lobby_secret=/etc/invitetomedia/lobby.secret
lobby_dir=/usr/share/invitetomedia-lobby
lobby_pgpass=/etc/invitetomedia/lobby.pgpass
extdir=/usr/share/postgresql/$PG_MAJOR/extension
libdir=/usr/lib/postgresql/$PG_MAJOR/lib
# set while the packages are installed by this test (a killed run leaves
# it: the next run removes what it left)
marker=/var/lib/invitetomedia-package-test

failed=0
ok() { echo "$1 ... ok"; }
bad() { echo "$1 ... FAILED ($2)"; failed=1; }
detail() { sed 's/^/   | /'; }

d=$work/package
rm -rf "$d"
mkdir -p "$d/build" "$d/shared" "$d/mail" "$d/bin"
chown -R postgres: "$d"
chmod 755 "$d"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
apt() {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -y -q "$@"
}

# The development install (setup.sh), under the lock held
dev_install() {
    make -C "$top" -s PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" \
        COPT=-Werror install_bin='/usr/bin/install -C' install >/dev/null
}

purge() {
    rm -f "$lobby_pgpass"
    apt purge "$pkg_ext" "$pkg_sender" "$pkg_lobby" >"$d/purge.log" 2>&1
}

# -- 1. build and lintian --------------------------------------------------

# The source: the files git knows (tracked and not ignored), else the tree
# without its build products; read under the shared lock, as test.sh does
# (another run may be building in it).
version=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)
upstream=${version%-*}
src=$d/build/invitetomedia-$upstream
copy_source() {
    local to=$1
    mkdir -p "$to"
    (
        flock -s 9
        if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
            git -C "$top" ls-files -z -co --exclude-standard |
                (cd "$top" && tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -C "$to" -xf -
        else
            (cd "$top" && tar --exclude=.git -cf - .) | tar -C "$to" -xf -
            make -C "$to" -s clean >/dev/null 2>&1
            make -C "$to/sender" -s clean >/dev/null 2>&1
        fi
    ) 9>>"$ITM_BUILD_LOCK"
    chown -R postgres: "$to"
}
# (all copies now: from installation on, this script holds the lock
# exclusively)
copy_source "$src"
copy_source "$d/src"
copy_source "$d/autopkgtest"
# this test's own helpers, from the same copy (the tree may change meanwhile)
here=$d/src/test/package

# make builds the extension alone, with the server's build files only: a
# pkg-config that fails (as where GMime and libpq-dev are not installed)
# must not be called
copy_source "$d/plain"
mkdir -p "$d/nopkg"
printf '#!/bin/sh\necho "pkg-config called: $*" >&2\nexit 1\n' >"$d/nopkg/pkg-config"
chmod 755 "$d/nopkg/pkg-config"
itm_as_postgres "$d/plain" env PATH="$d/nopkg:/usr/lib/postgresql/$PG_MAJOR/bin:$PATH" \
    make -s COPT=-Werror >"$d/plain.log" 2>&1
rc=$?
if [ $rc -eq 0 ] && [ -f "$d/plain/invitetomedia.so" ] && ! grep -q 'pkg-config called' "$d/plain.log"; then
    ok make_extension_alone
else
    bad make_extension_alone "make exited with status $rc$(grep -m1 'pkg-config called' "$d/plain.log" | sed 's/^/; /')"
    tail -n 20 "$d/plain.log" | detail
fi

itm_as_postgres "$src" dpkg-buildpackage -us -uc -b "$@" >"$d/build.log" 2>&1
rc=$?
debs=("$d/build/${pkg_ext}_${version}_"*.deb "$d/build/${pkg_sender}_${version}_"*.deb
      "$d/build/${pkg_lobby}_${version}_all.deb")
if [ $rc -eq 0 ] && [ -f "${debs[0]}" ] && [ -f "${debs[1]}" ] && [ -f "${debs[2]}" ]; then
    ok pkg_build
else
    bad pkg_build "dpkg-buildpackage exited with status $rc"
    tail -n 40 "$d/build.log" | detail
    exit 1
fi

default_version=$(sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" "$d/src/invitetomedia.control")
if [ "$upstream" = "$default_version" ]; then
    ok pkg_version
else
    bad pkg_version "debian/changelog has $version, the control file's default_version is $default_version"
fi

itm_as_postgres "$d/build" lintian --fail-on error --info \
    "$d/build/invitetomedia_${version}_"*.changes >"$d/lintian.log" 2>&1
rc=$?
grep -E '^[EWX]: ' "$d/lintian.log" | detail
errors=$(grep -c '^E: ' "$d/lintian.log")
if [ $rc -eq 0 ] && [ "$errors" -eq 0 ]; then
    ok lintian
else
    bad lintian "$errors error(s), exit status $rc"
    tail -n 20 "$d/lintian.log" | detail
fi

# -- 2. install ------------------------------------------------------------

exec 8>>"$ITM_BUILD_LOCK"
flock 8
if [ -e "$marker" ]; then
    echo "(removing the packages a killed run of this test left installed)"
    purge || true
    rm -f "$marker"
fi
if installed "$pkg_ext" || installed "$pkg_sender" || installed "$pkg_lobby"; then
    bad pkg_install "$pkg_ext, $pkg_sender or $pkg_lobby is installed already, not by this test: left alone"
    exit 1
fi
touch "$marker"
if apt install --no-install-recommends "${debs[@]}" >"$d/install.log" 2>&1 &&
   installed "$pkg_ext" && installed "$pkg_sender" && installed "$pkg_lobby"; then
    ok pkg_install
else
    bad pkg_install "apt-get install failed"
    tail -n 30 "$d/install.log" | detail
fi

# what the server loads comes from the package, unmodified
why=""
for f in "$extdir"/invitetomedia.control "$extdir"/invitetomedia--*.sql "$libdir"/invitetomedia.so; do
    owner=$(dpkg -S "$f" 2>/dev/null | cut -d: -f1)
    [ "$owner" = "$pkg_ext" ] || why="$why ${f##*/} (owner: ${owner:-none})"
done
# every install and update script of the tree, and the control file
for f in "$d/src"/invitetomedia--*.sql "$d/src"/invitetomedia.control; do
    dpkg -L "$pkg_ext" | grep -qx "$extdir/${f##*/}" || why="$why ${f##*/} not in the package"
done
verify=$(dpkg --verify "$pkg_ext" "$pkg_sender" "$pkg_lobby" 2>&1)
[ -z "$verify" ] || why="$why dpkg --verify: $verify"
if [ -z "$why" ]; then
    ok pkg_files
else
    bad pkg_files "$why"
fi

# the unit: its settings, its user
get() { python3 "$here/unit-command.py" "$unit" get "$1"; }
user=$(get User)
group=$(get Group)
why=""
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd "$user")
[ -n "${uid:-}" ] || why="$why no system user '$user'"
[ -n "${uid:-}" ] && [ "$uid" -ge 1000 ] && why="$why $user is not a system user (uid $uid)"
[ "${shell:-}" = /usr/sbin/nologin ] || why="$why $user's shell is '${shell:-}'"
getent group "$group" >/dev/null || why="$why no group '$group'"
[ "$(get KillMode)" = mixed ] || why="$why KillMode"
[ "$(get Restart)" = on-failure ] || why="$why Restart"
for s in 64 78; do
    [[ " $(get RestartPreventExitStatus) " == *" $s "* ]] || why="$why RestartPreventExitStatus lacks $s"
done
[ "$(get EnvironmentFile)" = "$conf" ] || why="$why EnvironmentFile"
for kv in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes; do
    [ "$(get "${kv%%=*}")" = "${kv#*=}" ] || why="$why ${kv%%=*}"
done
dpkg-query -W -f='${Conffiles}\n' "$pkg_sender" | grep -q " $conf " || why="$why $conf is not a conffile"
if ! out=$(systemd-analyze verify "$unit" 2>&1); then
    why="$why systemd-analyze verify: $out"
fi
[ -e "/etc/systemd/system/multi-user.target.wants/${unit##*/}" ] && why="$why enabled on installation"
if [ -z "$why" ]; then
    ok sender_unit
else
    bad sender_unit "$why"
fi

# the lobby's files: every file of examples/lobby, as it is, the package's
lget() { python3 "$here/unit-command.py" "$lobby_unit" get "$1"; }
why=""
n=0
while IFS= read -r -d '' f; do
    rel=${f#"$d/src/examples/lobby/"}
    n=$((n + 1))
    if ! cmp -s "$f" "$lobby_dir/$rel"; then
        why="$why $rel (not installed as it is)"
    elif [ "$(dpkg -S "$lobby_dir/$rel" 2>/dev/null | cut -d: -f1)" != "$pkg_lobby" ]; then
        why="$why $rel (not the package's)"
    fi
done < <(find "$d/src/examples/lobby" -type f ! -path '*/__pycache__/*' -print0)
[ "$n" -ge 5 ] || why="$why only $n files in examples/lobby"
[ -x "$lobby_dir/serve" ] || why="$why serve is not executable"
doc=$(sed -n 's/^Documentation=//p' "$lobby_unit")
[[ "$doc" == file:/* ]] && [ -f "${doc#file:}" ] || why="$why Documentation=$doc does not exist"
if [ -z "$why" ]; then
    ok lobby_files
else
    bad lobby_files "$why"
fi

# the lobby's unit: its user, its sandbox, its settings and its secret
luser=$(lget User)
lgroup=$(lget Group)
why=""
IFS=: read -r _ _ uid _ _ _ shell < <(getent passwd "$luser")
[ -n "${uid:-}" ] || why="$why no system user '$luser'"
[ -n "${uid:-}" ] && [ "$uid" -ge 1000 ] && why="$why $luser is not a system user (uid $uid)"
[ "${shell:-}" = /usr/sbin/nologin ] || why="$why $luser's shell is '${shell:-}'"
getent group "$lgroup" >/dev/null || why="$why no group '$lgroup'"
[ "$(lget ExecStart)" = "$lobby_dir/serve" ] || why="$why ExecStart"
[ "$(lget EnvironmentFile)" = "$lobby_conf" ] || why="$why EnvironmentFile"
[ "$(lget LoadCredential)" = "lobby-secret:$lobby_secret" ] || why="$why LoadCredential"
[ "$(lget Restart)" = on-failure ] || why="$why Restart"
[ "$(lget RestartPreventExitStatus)" = 2 ] || why="$why RestartPreventExitStatus"
for kv in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
          PrivateDevices=yes ProtectKernelTunables=yes RestrictSUIDSGID=yes \
          SystemCallFilter=@system-service UMask=0077; do
    [ "$(lget "${kv%%=*}")" = "${kv#*=}" ] || why="$why ${kv%%=*}"
done
grep -qx 'CapabilityBoundingSet=' "$lobby_unit" || why="$why CapabilityBoundingSet (not empty)"
dpkg-query -W -f='${Conffiles}\n' "$pkg_lobby" | grep -q " $lobby_conf " || why="$why $lobby_conf is not a conffile"
[ "$(stat -c %a "$lobby_conf")" = 644 ] || why="$why $lobby_conf mode $(stat -c %a "$lobby_conf")"
grep -q '^LOBBY_SECRET' "$lobby_conf" && why="$why $lobby_conf sets a secret"
# the secret: made at installation, root's alone, long enough
[ "$(stat -c '%a %U %G' "$lobby_secret" 2>/dev/null)" = "600 root root" ] ||
    why="$why $lobby_secret is '$(stat -c '%a %U %G' "$lobby_secret" 2>&1)', not 600 root root"
[ "$(tr -d '\n' <"$lobby_secret" 2>/dev/null | wc -c)" -ge 32 ] || why="$why $lobby_secret is short"
if ! out=$(systemd-analyze verify "$lobby_unit" 2>&1); then
    why="$why systemd-analyze verify: $out"
fi
[ -e "/etc/systemd/system/multi-user.target.wants/${lobby_unit##*/}" ] && why="$why enabled on installation"
if [ -z "$why" ]; then
    ok lobby_unit
else
    bad lobby_unit "$why"
fi

# -- 3. the database, in the background: it waits for the sender ----------

# (in a bash of its own that dies with this script, taking the cluster's
# namespace with it, as scripts/test.sh runs the demos)
setpriv --pdeathsig KILL -- bash -c '. "$1"; shift; itm_virtualenv "$@"' _ \
    "$top/scripts/throwaway.sh" "$d/src" bash "$here/session.sh" "$d/shared" \
    >"$d/session.log" 2>&1 &
session=$!

# -- 4. the sender from the installed unit -----------------------------------

for _ in $(seq 1 1500); do
    [ -e "$d/shared/ready" ] && break
    kill -0 "$session" 2>/dev/null || break
    sleep 0.2
done
if [ -e "$d/shared/ready" ]; then
    # sender.conf edited as an admin would: the database, the mailer, From
    cp "$d/src/sender/test/fake-sendmail" "$d/bin/"
    chmod 755 "$d/bin/fake-sendmail"
    chown "$user:$group" "$d/mail"
    conninfo=$(cat "$d/shared/ready")
    sed -i -e "s|^SENDER_CONNINFO=.*|SENDER_CONNINFO=\"$conninfo\"|" \
        -e "s|^SENDER_SENDMAIL=.*|SENDER_SENDMAIL=\"FAKE_MAIL_DIR=$d/mail $d/bin/fake-sendmail -t -i\"|" \
        -e "s|^SENDER_FROM=.*|SENDER_FROM=\"Media Portal <invites@media.example.com>\"|" "$conf"
    mapfile -d '' argv < <(python3 "$here/unit-command.py" "$unit" argv)
    mapfile -d '' envv < <(python3 "$here/unit-command.py" "$unit" env)
    echo "   the unit's command line, as root would read it from the unit:"
    printf '   | %q\n' "${argv[@]}"
    if [ "${#argv[@]}" -lt 2 ] || [ "${argv[0]}" != /usr/bin/invitetomedia-sender ]; then
        bad sender_delivers "ExecStart does not run /usr/bin/invitetomedia-sender"
    else
        # as systemd starts it: User=, Group=, no new privileges, working
        # directory /, only the unit's environment; in a PID namespace that
        # dies with this script (scripts/throwaway.sh)
        (cd / && exec "${ITM_KILLSAFE[@]}" setpriv --reuid="$user" --regid="$group" \
            --init-groups --no-new-privs -- env -i "${envv[@]}" "${argv[@]}") \
            >"$d/sender.out" 2>"$d/sender.log" &
        killsafe=$!
        # the sender itself: the first process of the namespace, or the
        # same process where there is no namespace
        sender=$killsafe
        if [[ " ${ITM_KILLSAFE[*]} " == *" unshare "* ]]; then
            sender=""
            for _ in $(seq 1 50); do
                sender=$(pgrep -P "$killsafe" | head -n 1)
                [ -n "$sender" ] && break
                sleep 0.1
            done
        fi
        trap 'kill -KILL "$killsafe" 2>/dev/null' EXIT
        for _ in $(seq 1 150); do
            [ -n "$(ls "$d/mail"/*.eml 2>/dev/null)" ] && break
            kill -0 "$sender" 2>/dev/null || break
            sleep 0.2
        done
        sleep 1   # a second message would show by now
        # KillMode=mixed: SIGTERM to the sender alone
        kill -TERM "$sender" 2>/dev/null
        wait "$killsafe"
        rc=$?
        trap - EXIT
        mails=("$d/mail"/*.eml)
        why=""
        if [ ! -f "${mails[0]}" ]; then
            why="no mail delivered"
        elif [ ${#mails[@]} -ne 1 ]; then
            why="${#mails[@]} mails delivered, expected 1"
        elif ! check=$(python3 - "${mails[0]}" "$(hostname)" <<'PY' 2>&1
import email, email.policy, re, sys
with open(sys.argv[1], 'rb') as f:
    msg = email.message_from_binary_file(f, policy=email.policy.default)
problems = []
if [a.addr_spec for a in msg['To'].addresses] != ['guest@outside.example']:
    problems.append('To: %s' % msg['To'])
if msg['From'].addresses[0].addr_spec != 'invites@media.example.com':
    problems.append('From: %s' % msg['From'])
if msg['Subject'] != 'You are invited to Spring launch webcast':
    problems.append('Subject: %s' % msg['Subject'])
if not re.fullmatch(r'<itm-[0-9a-f-]+@%s>' % re.escape(sys.argv[2]), msg['Message-ID'] or ''):
    problems.append('Message-ID: %s (the domain is the host name, %%H)' % msg['Message-ID'])
body = msg.get_body(preferencelist=('plain',)).get_content()
if not re.search(r'open https://media\.example\.com/invitetomedia/itm_[A-Za-z0-9_-]{48}\n', body):
    problems.append('no link in the body: %r' % body)
print('; '.join(problems))
sys.exit(1 if problems else 0)
PY
        ); then
            why="the message: $check"
        elif ! grep -qE '^invitetomedia-sender: message [0-9]+ to g\*\*\*@outside\.example: sent$' "$d/sender.log"; then
            why="the log does not say it was sent"
        fi
        if [ -z "$why" ]; then
            ok sender_delivers
        else
            bad sender_delivers "$why"
            detail <"$d/sender.log"
        fi
        if [ $rc -eq 0 ]; then
            ok sender_stops_on_sigterm
        else
            bad sender_stops_on_sigterm "exit status $rc after SIGTERM"
            detail <"$d/sender.log"
        fi
    fi
else
    bad sender_delivers "the throwaway cluster never got ready"
fi

# -- 4b. the lobby from the installed unit -----------------------------------

lobby_value() { sed -n "s/^$1=//p" "$d/shared/lobby" 2>/dev/null; }
if [ -e "$d/shared/ready" ] && [ -f "$d/shared/lobby" ]; then
    lport=$(lobby_value port)
    # lobby.conf edited as an admin would: the database over TCP as the
    # lobby's role, its password in a password file the lobby's user alone
    # reads; a free port (the lobby logs the one it took)
    (umask 077 && echo "127.0.0.1:$lport:$(lobby_value db):media_lobby:$(lobby_value password)" \
        >"$lobby_pgpass")
    chown "$luser:$lgroup" "$lobby_pgpass"
    sed -i -e "s|^LOBBY_DSN=.*|LOBBY_DSN=\"host=127.0.0.1 port=$lport dbname=$(lobby_value db) user=media_lobby\"|" \
        -e "s|^#PGPASSFILE=.*|PGPASSFILE=\"$lobby_pgpass\"|" \
        -e "s|^LOBBY_LISTEN=.*|LOBBY_LISTEN=\"127.0.0.1:0\"|" "$lobby_conf"
    # LoadCredential=, as systemd does it: a copy of each file in a
    # directory of the unit's own, which only the unit's user can read
    creds=$d/credentials/${lobby_unit##*/}
    mkdir -p "$creds"
    while IFS= read -r -d '' cid && IFS= read -r -d '' cpath; do
        install -m 0400 -o "$luser" -g "$lgroup" "$cpath" "$creds/$cid"
    done < <(python3 "$here/unit-command.py" "$lobby_unit" credentials)
    chown "$luser:$lgroup" "$creds"
    chmod 0500 "$creds"
    mapfile -d '' argv < <(python3 "$here/unit-command.py" "$lobby_unit" argv)
    mapfile -d '' envv < <(ITM_CREDENTIALS_DIRECTORY=$creds python3 "$here/unit-command.py" "$lobby_unit" env)
    echo "   the lobby unit's command line and environment, as root would read them:"
    printf '   | %q\n' "${argv[@]}"
    printf '   | %q\n' "${envv[@]}" | grep -E '^   \| (LOBBY|PG|CREDENTIALS)'
    if [ "${#argv[@]}" -ne 1 ] || [ "${argv[0]}" != "$lobby_dir/serve" ]; then
        bad lobby_starts "ExecStart does not run $lobby_dir/serve"
    else
        # as systemd starts it (as the sender above)
        (cd / && exec "${ITM_KILLSAFE[@]}" setpriv --reuid="$luser" --regid="$lgroup" \
            --init-groups --no-new-privs -- env -i "${envv[@]}" "${argv[@]}") \
            >"$d/lobby.out" 2>"$d/lobby.log" &
        killsafe=$!
        lobby=$killsafe
        if [[ " ${ITM_KILLSAFE[*]} " == *" unshare "* ]]; then
            lobby=""
            for _ in $(seq 1 50); do
                lobby=$(pgrep -P "$killsafe" | head -n 1)
                [ -n "$lobby" ] && break
                sleep 0.1
            done
        fi
        trap 'kill -KILL "$killsafe" 2>/dev/null' EXIT
        base=""
        for _ in $(seq 1 300); do
            base=$(sed -n 's|.*lobby listening on \(http://127\.0\.0\.1:[0-9]*/\).*|\1|p' "$d/lobby.log")
            [ -n "$base" ] && break
            kill -0 "$killsafe" 2>/dev/null || break
            sleep 0.1
        done
        if [ -n "$base" ] && grep -q 'database itm_pkg as role media_lobby' "$d/lobby.log" &&
           ! grep -q 'can do more than the lobby needs' "$d/lobby.log"; then
            ok lobby_starts
        else
            bad lobby_starts "not listening, or not as the lobby's role (see its log)"
            detail <"$d/lobby.log"
        fi
        if [ -n "$base" ]; then
            /usr/bin/python3 "$here/lobby-check.py" "$base" "$(lobby_value invite)" \
                "$(lobby_value token)" "$lobby_secret" "$d/shared/lobby.device" || failed=1
        fi
        kill -TERM "$lobby" 2>/dev/null
        wait "$killsafe"
        rc=$?
        trap - EXIT
        if [ $rc -eq 0 ] && grep -q 'SIGTERM: stopping' "$d/lobby.log" &&
           grep -q 'INFO stopped$' "$d/lobby.log"; then
            ok lobby_stops_on_sigterm
        else
            bad lobby_stops_on_sigterm "exit status $rc after SIGTERM"
            tail -n 20 "$d/lobby.log" | detail
        fi
        why=""
        grep -q "$(lobby_value token)" "$d/lobby.log" && why="$why the token is in the log"
        grep -qE 'Traceback|unexpected error' "$d/lobby.log" && why="$why an error in the log"
        grep -qE 'GET /i/<token> 200$' "$d/lobby.log" || why="$why no request logged"
        if [ -z "$why" ]; then
            ok lobby_log
        else
            bad lobby_log "$why"
            tail -n 30 "$d/lobby.log" | detail
        fi
    fi
    rm -f "$lobby_pgpass"
else
    bad lobby_starts "no cluster or no lobby role to run the lobby against"
fi
touch "$d/shared/sender.done"
wait "$session"
rc=$?
cat "$d/session.log"
if [ $rc -ne 0 ] && ! grep -q 'FAILED' "$d/session.log"; then
    bad session "session.sh exited with status $rc"
fi
# (its FAILED lines are counted by scripts/test.sh; the status says so too)
grep -q ' \.\.\. FAILED' "$d/session.log" && failed=1

# debian/tests (autopkgtest) as autopkgtest runs it without needs-root: as
# a user, in the unpacked source, against the installed package
port=$((20000 + RANDOM % 12000))
itm_as_postgres "$d/autopkgtest" env PGPORT=$port sh debian/tests/installcheck \
    >"$d/autopkgtest.log" 2>&1
rc=$?
n_ok=$(grep -cE '^(test +| +)?[a-z0-9_]+ +\.\.\. ok' "$d/autopkgtest.log")
if [ $rc -eq 0 ] && [ "$n_ok" -gt 0 ]; then
    echo "autopkgtest_installcheck ... ok ($n_ok test files passed)"
else
    bad autopkgtest_installcheck "debian/tests/installcheck exited with status $rc, $n_ok test files passed"
    tail -n 40 "$d/autopkgtest.log" | detail
fi

# -- 6. remove, and put the development install back ------------------------

if purge && ! installed "$pkg_ext" && ! installed "$pkg_sender" && ! installed "$pkg_lobby"; then
    why=""
    for f in "$extdir/invitetomedia.control" "$libdir/invitetomedia.so" \
             /usr/bin/invitetomedia-sender "$unit" "$conf" \
             "$lobby_dir" "$lobby_unit" "$lobby_conf" "$lobby_secret"; do
        [ -e "$f" ] && why="$why $f is left"
    done
    [ -z "$why" ] && ok pkg_purge || bad pkg_purge "$why"
else
    bad pkg_purge "apt-get purge failed"
    tail -n 20 "$d/purge.log" | detail
fi
rm -f "$marker"
if dev_install && [ -f "$extdir/invitetomedia.control" ] && ! dpkg -S "$extdir/invitetomedia.control" >/dev/null 2>&1; then
    ok dev_install_restored
else
    bad dev_install_restored "make install did not put the extension back"
fi
flock -u 8

exit $failed
}
