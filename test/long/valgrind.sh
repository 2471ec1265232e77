#!/bin/sh
# test/long/valgrind.sh: runs the regression suite (pg_regress REGRESS and the
# isolation specs, as `make installcheck` runs them) once against a
# throwaway server whose every process runs under valgrind memcheck, then
# scans valgrind's reports.  Fails if any report's stack passes through the
# extension (invitetomedia.so, or a function of src/itm_text.c), or if the
# suite itself fails.
#
# The Debian server is not built with USE_VALGRIND, so palloc'd chunks are
# not tracked one by one: what memcheck sees is reads of uninitialised
# memory, invalid reads and writes outside malloc'd blocks, and bad frees.
# The libFuzzer harnesses (ASan/UBSan) cover the pure C at byte precision.
#
# Usage (not as root: the server refuses): test/long/valgrind.sh [workdir]
set -eu

srcdir=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$srcdir/tmp_check/valgrind}
PG_CONFIG=${PG_CONFIG:-pg_config}
bindir=$($PG_CONFIG --bindir)
port=${VALGRIND_PGPORT:-55439}

rm -rf "$work"
mkdir -p "$work/bin" "$work/vg" "$work/sock"

# a postgres "binary" that is valgrind running the real one; backends are
# forked, not exec'd, so valgrind follows them, one log file per process
cat > "$work/bin/postgres" <<WRAP
#!/bin/sh
exec valgrind --quiet --tool=memcheck --error-limit=no --num-callers=40 \\
  --track-origins=yes --leak-check=no --read-var-info=no \\
  --log-file=$work/vg/vg.%p.log \\
  $bindir/postgres "\$@"
WRAP
chmod +x "$work/bin/postgres"

"$bindir/initdb" -D "$work/data" -A trust -U postgres --no-sync >"$work/initdb.log" 2>&1
cat >> "$work/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$work/sock'
fsync = off
max_connections = 20
max_prepared_transactions = 5
statement_timeout = 0
log_min_messages = warning
CONF

"$work/bin/postgres" -D "$work/data" >"$work/server.log" 2>&1 &
pid=$!
stop_server() {
	kill -INT "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
trap stop_server EXIT

i=0
until "$bindir/pg_isready" -q -h "$work/sock" -p "$port"; do
	i=$((i + 1))
	if [ $i -gt 300 ]; then
		echo "valgrind: the server did not start"; cat "$work/server.log"; exit 1
	fi
	sleep 1
done
echo "valgrind: server under valgrind is up (pid $pid)"

status=0
PGHOST="$work/sock" PGPORT=$port PGUSER=postgres \
	make -C "$srcdir" installcheck TAP_TESTS= \
	  EXTRA_REGRESS_OPTS="--outputdir=$work/regress" >"$work/installcheck.log" 2>&1 || status=$?
grep -E '^(test |     |ok |not ok |# |  *[0-9]+ of |All |=+$)' "$work/installcheck.log" | grep -v '^=*$' || true

stop_server
trap - EXIT

# One valgrind report: lines from "==PID== <what>" up to the blank "==PID== ".
reports=$(cat "$work"/vg/vg.*.log 2>/dev/null | grep -c '^==[0-9]*== [A-Z]' || true)
awk '
	/^==[0-9]+== $/ { if (block != "" && (block ~ /invitetomedia\.so/ || block ~ /itm_[a-z_]+ \(/)) { print block; n++ } block = ""; next }
	/^==[0-9]+== / { block = block $0 "\n" }
	END { if (block != "" && (block ~ /invitetomedia\.so/ || block ~ /itm_[a-z_]+ \(/)) { print block; n++ } exit n > 0 }
' "$work"/vg/vg.*.log >"$work/extension-reports.txt" 2>/dev/null && ext=0 || ext=1
nproc=$(ls "$work"/vg | wc -l)

echo "valgrind: $nproc server processes checked, $reports report lines in all, from the extension: $(grep -c '^==[0-9]*== [A-Z]' "$work/extension-reports.txt" || true)"
if [ $status -ne 0 ]; then
	echo "valgrind: the regression suite failed under valgrind (see $work/installcheck.log, $work/regress)"
	exit 1
fi
if [ $ext -ne 0 ]; then
	echo "valgrind: reports from the extension's code:"
	head -n 80 "$work/extension-reports.txt"
	exit 1
fi
echo "valgrind: no report from the extension's code"
