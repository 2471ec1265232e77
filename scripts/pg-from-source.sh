#!/usr/bin/env bash
# scripts/pg-from-source.sh MAJOR: builds PostgreSQL MAJOR (for example 18)
# from Debian's own source package and makes it look like Debian's package
# of that major, so that pg_config, pg_virtualenv and everything in
# test.sh work with PG_MAJOR=MAJOR unchanged.  Run as root:
#   bash scripts/pg-from-source.sh 18
#
# Debian 12 carries only PostgreSQL 15; sid carries postgresql-18.  The
# script adds a deb-src entry for sid (sources only: nothing from sid is
# installed), downloads the source package, and builds the upstream
# tarball in it (Debian's patches move directories to Debian's layout,
# which a build under one prefix does not need) with OpenSSL, ICU, zlib and
# TAP support, then pgcrypto, amcheck, the isolation tester, pg_regress and
# the TAP modules, which the extension's test suites use.
#
# The build goes to a cache directory keyed by the source version,
#   ${ITM_PG_CACHE:-/var/cache/invitetomedia}/pg-VERSION
# and is reused when it is complete (a file "complete" in it), without
# asking the archive again, so that a second run costs a symbolic link.  /usr/lib/postgresql/MAJOR links to it:
# that is where postgresql-common (pg_virtualenv, pg_createcluster) looks
# for a major's binaries.  A Debian package of that major, where one is
# installed, is left alone and used instead.
#
# Prints the log's tail and exits non-zero when something fails; test.sh
# counts that as a failed suite.
set -euo pipefail
{
major=${1:?usage: pg-from-source.sh MAJOR}
case $major in
    1[5-9]) ;;
    *) echo "pg-from-source.sh: major $major: expected 15 to 19" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
    echo "run this as root (or with sudo)" >&2
    exit 1
fi
cache=${ITM_PG_CACHE:-/var/cache/invitetomedia}
link=/usr/lib/postgresql/$major
apt_opts=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)

if dpkg-query -W -f='${Status}' "postgresql-$major" 2>/dev/null | grep -q "install ok installed" &&
   [ ! -L "$link" ]; then
    echo "== PostgreSQL $major is installed from Debian's package; nothing to build"
    exit 0
fi

# What a build holds; a cached build made with another recipe (an older
# version of this script) is built again.
configure_opts="--with-openssl --with-icu --with-zlib --without-readline --enable-tap-tests"
components="contrib/pgcrypto contrib/amcheck src/test/isolation src/test/regress src/test/perl"
recipe="configure $configure_opts; install $components"
complete() { [ -f "$1/complete" ] && [ "$(cat "$1/complete")" = "$recipe" ]; }

mkdir -p "$cache"
# one build at a time: two runs would share the cache directory
exec 8>>"$cache/.lock"
flock 8

# link LINK to the build PREFIX and say so
use() {
    if [ -L "$link" ] || [ ! -e "$link" ]; then
        ln -sfn "$1" "$link"
    else
        echo "pg-from-source.sh: $link exists and is not this script's link" >&2
        exit 1
    fi
    echo "== PostgreSQL $("$link/bin/pg_config" --version | sed 's/^PostgreSQL //') at $link -> $1"
    exit 0
}

# A complete build in the cache is used as it is, without asking the
# archive (to build a newer source version: remove the link and the build).
if [ -L "$link" ] && complete "$link"; then
    use "$(readlink "$link")"
fi
prev=$(ls -d "$cache/pg-$major".* 2>/dev/null | sort -V | tail -1 || true)
if [ -n "$prev" ] && complete "$prev"; then
    use "$prev"
fi

# the source version that sid carries now
src_list=/etc/apt/sources.list.d/invitetomedia-sid-src.sources
if [ ! -f "$src_list" ]; then
    cat >"$src_list" <<'EOF'
# added by invitetomedia's scripts/pg-from-source.sh: source packages only
# (apt-get source), never installed packages
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi
apt-get "${apt_opts[@]}" update -qq >/dev/null 2>&1 || true
version=$(apt-cache showsrc "postgresql-$major" 2>/dev/null |
          sed -n 's/^Version: //p' | sort -V | tail -1)
if [ -z "$version" ]; then
    echo "pg-from-source.sh: no source package postgresql-$major in the archive" \
         "(apt-cache showsrc, after adding $src_list)" >&2
    exit 1
fi
prefix=$cache/pg-$version

if ! complete "$prefix"; then
    echo "== building PostgreSQL $version from Debian's source package into $prefix"
    log=$cache/build-$version.log
    : >"$log"
    trap 'echo "pg-from-source.sh: the build of $version failed; the end of $log:" >&2; tail -n 30 "$log" >&2' ERR
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq \
        --no-install-recommends gcc make bison flex perl pkg-config \
        libssl-dev libicu-dev zlib1g-dev libipc-run-perl xz-utils bzip2 dpkg-dev >>"$log" 2>&1
    work=$cache/src-$version
    rm -rf "$work" "$prefix"
    mkdir -p "$work"
    (cd "$work" && apt-get "${apt_opts[@]}" source --download-only "postgresql-$major=$version") >>"$log" 2>&1
    orig=$(ls "$work"/postgresql-"$major"_*.orig.tar.* | head -1)
    tar -C "$work" -xf "$orig"
    srcdir=$(ls -d "$work"/postgresql-*/ | head -1)
    (
        cd "$srcdir"
        ./configure --prefix="$prefix" $configure_opts
        make -j"$(nproc)"
        make install
        for d in $components; do
            make -C "$d" -j"$(nproc)" install
        done
    ) >>"$log" 2>&1
    rm -rf "$work"
    trap - ERR
    echo "$recipe" >"$prefix/complete"
fi

use "$prefix"
exit
}
