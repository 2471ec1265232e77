#!/usr/bin/env bash
# bench/notify_levers.sh [SECONDS] [CLIENTS]: the levers of issue 21
# (commits that do not queue behind NOTIFY), measured on the shape of a
# use without the extension: one UPDATE of a row and one INSERT of a record
# per transaction (pgbench, prepared), and what announcing the use costs in
# each design:
#
#   none      nothing announced (the ceiling)
#   notify    pg_notify in the transaction (1.1's accepted event): the
#             commit takes the cluster-wide notify lock through its flush
#   queue     an INSERT into a queue table instead (a relay announces later)
#   relayed   queue, with a relay running beside the clients: every 20 ms
#             one transaction deletes what is queued (up to 5000 rows) and
#             sends one pg_notify per row, so that the cost of announcing
#             is paid by the cluster, not by the users' commits
#   records   nothing written beyond the use (the transaction of "none"),
#             with a relay that reads the records themselves: every 20 ms
#             one transaction announces the records whose inserting
#             transaction ended since its last round (xmin in [H', H),
#             H its snapshot's xmin: commit order, whatever the ids),
#             reading only ids above a bound every earlier round has
#             passed (a PL/pgSQL sketch of the C relay issue 21 proposes;
#             its cursor is not kept across a crash here)
#
# at synchronous_commit on and off, for each client count (default 2,8,32).
# Run as root; the cluster is a throwaway one (pg_virtualenv, as postgres).
# Prints a table (tps, and the ratio to "none" of the same row) and writes
# it to bench/results/notify_levers.md.
set -euo pipefail
{
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../scripts/pg_major.sh"
seconds=${1:-10}
clients=${2:-2,8,32}
work=$(mktemp -d /tmp/itm_levers.XXXXXX)
chmod 755 "$work"
chown postgres: "$work"
trap 'rm -rf "$work"' EXIT

cat >"$work/run.sh" <<'EOF'
set -euo pipefail
seconds=$1 clients=$2 out=$3
psql -qX <<'SQL'
CREATE TABLE links (id int PRIMARY KEY, use_count int NOT NULL DEFAULT 0, pad text);
INSERT INTO links SELECT g, 0, repeat('x', 100) FROM generate_series(1, 1000000) g;
CREATE TABLE records (id bigserial PRIMARY KEY, link_id int NOT NULL, at timestamptz NOT NULL DEFAULT now(), status text NOT NULL);
CREATE TABLE queue (id bigserial PRIMARY KEY, channel text NOT NULL, payload text NOT NULL);
ALTER TABLE queue SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
VACUUM ANALYZE;
SQL
common='\set id random(1, 1000000)
UPDATE links SET use_count = use_count + 1 WHERE id = :id;
INSERT INTO records (link_id, status) VALUES (:id, '"'ok'"');'
printf 'BEGIN;\n%s\nCOMMIT;\n' "$common" >none.sql
printf 'BEGIN;\n%s\nSELECT pg_notify('"'itm_levers'"', '"'{\"kind\":\"invite\",\"id\":'"' || :id);\nCOMMIT;\n' "$common" >notify.sql
printf 'BEGIN;\n%s\nINSERT INTO queue (channel, payload) VALUES ('"'itm_levers'"', '"'{\"kind\":\"invite\",\"id\":'"' || :id);\nCOMMIT;\n' "$common" >queue.sql
# the relay: one session, one transaction per round
psql -qX <<'SQL'
CREATE PROCEDURE relay() LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    LOOP
        FOR r IN DELETE FROM queue WHERE id IN (SELECT id FROM queue ORDER BY id LIMIT 5000)
                 RETURNING channel, payload
        LOOP
            PERFORM pg_notify(r.channel, r.payload);
        END LOOP;
        COMMIT;
        PERFORM pg_sleep(0.02);
    END LOOP;
END $$;
SQL
# the records relay: H' and H are xids (epoch 0 on this fresh cluster);
# the bound: the sequence's value q read after a round's snapshot, usable
# once every xid assigned before it (below the xid x the relay takes after
# reading q) has ended, as every use has its xid (the UPDATE) before it
# draws its id
psql -qX <<'SQL'
CREATE SEQUENCE announced MINVALUE 0 START 0;
CREATE PROCEDURE relay_records() LANGUAGE plpgsql AS $$
DECLARE
    h bigint;
    -- from the start: every record of the (just truncated) table
    hprev bigint := 0;
    l bigint := 0;
    qs bigint[] := '{}';
    xs bigint[] := '{}';
    r record;
    n bigint;
BEGIN
    LOOP
        h := pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
        qs := qs || (SELECT last_value FROM records_id_seq);
        -- the next xid, after reading the sequence (the snapshot's xmax
        -- would not do: it is the last completed xid + 1, and a running
        -- transaction may hold a later one)
        xs := xs || pg_current_xact_id()::text::bigint;
        n := 0;
        FOR r IN SELECT id, link_id FROM records
                  WHERE id > l AND xmin::text::bigint >= hprev AND xmin::text::bigint < h
        LOOP
            PERFORM pg_notify('itm_levers', '{"kind":"invite","id":' || r.link_id || ',"record":' || r.id || '}');
            n := n + 1;
        END LOOP;
        IF n > 0 THEN
            PERFORM setval('announced', (SELECT last_value FROM announced) + n);
        END IF;
        WHILE array_length(xs, 1) > 0 AND xs[1] <= h LOOP
            l := qs[1];
            qs := qs[2:];
            xs := xs[2:];
        END LOOP;
        hprev := h;
        COMMIT;
        PERFORM pg_sleep(0.02);
    END LOOP;
END $$;
SQL
echo "| synchronous_commit | clients | none | notify | queue | relayed | records |" >"$out"
echo "|---|---:|---:|---:|---:|---:|---:|" >>"$out"
for sync in on off; do
    for c in ${clients//,/ }; do
        row="| $sync | $c"
        declare -A tps=()
        for v in none notify queue relayed records; do
            psql -qX -c "TRUNCATE records, queue" -c "CHECKPOINT" >/dev/null
            script=$v.sql
            relay_pid=""
            if [ "$v" = relayed ]; then
                script=queue.sql
                PGAPPNAME=relay psql -qXc "CALL relay()" >/dev/null 2>&1 &
                relay_pid=$!
            elif [ "$v" = records ]; then
                script=none.sql
                PGAPPNAME=relay psql -qXc "CALL relay_records()" >/dev/null 2>&1 &
                relay_pid=$!
            fi
            t=$(PGOPTIONS="-c synchronous_commit=$sync" pgbench -n -M prepared -c "$c" -j "$c" \
                    -T "$seconds" -f "$script" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
            if [ -n "$relay_pid" ]; then
                sleep 0.5   # the relay's last round
                psql -qXAtc "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'relay'" >/dev/null
                wait "$relay_pid" 2>/dev/null || true
            fi
            left=$(psql -qXAtc "SELECT count(*) FROM queue")
            if [ "$v" = records ]; then
                # every record announced once: the relay's count against the table
                left="$left; records $(psql -qXAtc "SELECT count(*) FROM records"), announced $(psql -qXAtc "SELECT last_value FROM announced")"
                psql -qXAtc "SELECT setval('announced', 0)" >/dev/null
            fi
            tps[$v]=${t%.*}
            echo "  sync=$sync clients=$c $v: ${tps[$v]} tps (queue left: $left)" >&2
        done
        for v in none notify queue relayed records; do
            r=$(awk -v a="${tps[$v]}" -v b="${tps[none]}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
            row="$row | ${tps[$v]} ($r)"
        done
        echo "$row |" >>"$out"
        unset tps
    done
done
EOF
runuser -u postgres -- env -C "$work" PATH="/usr/lib/postgresql/$PG_MAJOR/bin:$PATH" \
    pg_virtualenv -v "$PG_MAJOR" -o "fsync=on" -o "max_wal_size=4GB" \
    -o "shared_buffers=1GB" -o "max_connections=60" \
    bash "$work/run.sh" "$seconds" "$clients" "$work/levers.md"
mkdir -p "$here/results"
{
    echo "# bench/notify_levers.sh: $(date -u +%F), PostgreSQL $PG_MAJOR, $(nproc) cores, $seconds s per cell"
    echo
    echo "tps of UPDATE + INSERT per transaction (pgbench, prepared) and how it is announced; in"
    echo "parentheses the ratio to \"none\" of the same row."
    echo
    cat "$work/levers.md"
} >"$here/results/notify_levers.md"
cat "$here/results/notify_levers.md"
exit
}
