#!/usr/bin/python3
"""The event relay measured (issue 21); called by bench/events.sh, which
starts the throwaway cluster (see its header and bench/README.md, "Issue
21", "The relay, measured").

Two databases made from one template: bench (in invitetomedia.relay_databases:
writers send no NOTIFY, the relay announces after commit) and bench_tx (not
listed: 1.1's NOTIFY in the writing transaction).  Per round, for each
synchronous_commit, client count and workload, the three modes:

  none         bench, invitetomedia.relay_paused = on: no event at all
  relay        bench, the relay running
  transaction  bench_tx

each after a reset of the database (records deleted, links unused, VACUUM,
CHECKPOINT), with a listener process (psycopg2) LISTENing on both channels
of the database throughout: it records each notification's receive time,
and afterwards each is matched to its record (redemptions by invite_id,
outbox by message_id): count, lost, twice, and the latency receive time -
pg_xact_commit_timestamp(record's xmin).  Rounds after the first run the
modes in reverse order.
"""
import argparse
import base64
import csv
import hashlib
import io
import multiprocessing as mp
import os
import re
import resource
import select
import subprocess
import sys
import time
import zlib

import psycopg2

BIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
MODES = ("none", "relay", "transaction")
DBS = {"none": "bench", "relay": "bench", "transaction": "bench_tx"}
CHANNELS = ("invitetomedia_accepted", "invitetomedia_email")

WORKLOADS = {
    # a single-use link each, in the order of a sequence: never one twice
    "consume": {
        "label": "consume on distinct single-use links",
        "channel": "invitetomedia_accepted",
        "script": "SELECT c.status FROM bench.tokens t,"
                  " LATERAL invitetomedia.invite_consume(t.token, t.email) c"
                  " WHERE t.n = (SELECT nextval('bench.distinct_seq'));\n",
    },
    # a new invitee each (a sequence: no resend of an earlier invite)
    "create_email": {
        "label": "invite_create with send_email = true",
        "channel": "invitetomedia_email",
        "script": "SELECT c.invite_id FROM invitetomedia.invite_create('m1', 'inviter',"
                  " 'new' || nextval('bench.create_seq') || '@example.com',"
                  " 'Ann', 'Lee', 'viewer', true) c;\n",
    },
}

SETUP_SQL = """
CREATE EXTENSION pgcrypto SCHEMA public;
CREATE EXTENSION invitetomedia;
INSERT INTO invitetomedia.email_templates VALUES
  ('t', 'Invite to {MEDIA_TITLE}', 'Hi {FIRST_NAME}, {INVITER_NAME} invites you to {MEDIA_TITLE} as {ROLE} until {EXPIRES_AT}: {URL}');
UPDATE invitetomedia.settings SET enabled = true, link_reusability = 1, link_duration = 525600,
       invite_email_template = 't', link_base_url = 'https://media.example.com/invitetomedia/';
INSERT INTO invitetomedia.users (user_id, email, first_name, last_name, role) VALUES
  ('inviter', 'inviter@example.com', 'Ivy', 'Inviter', 'admin');
INSERT INTO invitetomedia.media VALUES ('m1', 'webcast', 'Town hall', 'inviter');
CREATE SCHEMA bench;
CREATE TABLE bench.tokens (n bigint PRIMARY KEY, token text NOT NULL, email text NOT NULL);
CREATE SEQUENCE bench.distinct_seq;
CREATE SEQUENCE bench.create_seq;
"""

# A site in use: last week's links, used and mailed (history): their
# records are below the relay's start and never announced; they give the
# record tables a size and statistics (see bench/README.md, "The relay,
# measured", for what the relay does on empty tables).
HISTORY_SQL = """
WITH h AS (
  INSERT INTO invitetomedia.invites (token_hash, media_id, role, email, first_name, last_name, invited_by,
                                     created_at, expires_at, max_uses, use_count, used_up_at, last_used_at)
  SELECT public.digest('history' || g, 'sha256'), 'm1', 'viewer', 'h' || g || '@example.com', 'H' || g, 'L',
         'inviter', now() - interval '8 days', now() + interval '1 year', 1, 1,
         now() - interval '7 days', now() - interval '7 days'
    FROM generate_series(1, %(n)d) g
  RETURNING invite_id, email, first_name),
r AS (
  INSERT INTO invitetomedia.redemptions (invite_id, at, status, user_id)
  SELECT invite_id, now() - interval '7 days', 'ok', NULL FROM h)
INSERT INTO invitetomedia.outbox (invite_id, to_email, to_name, subject, body, created_at, attempts,
                                  next_attempt_at, sent_at)
SELECT invite_id, email, first_name || ' L', 'Invite to Town hall', NULL, now() - interval '8 days', 1,
       now() - interval '8 days', now() - interval '8 days'
  FROM h;
"""

# back to the site as loaded: the run's records and created links deleted,
# the links it used unused again
RESET_SQL = """
UPDATE invitetomedia.invites i SET use_count = 0, used_up_at = NULL, last_used_at = NULL
  FROM (SELECT DISTINCT invite_id FROM invitetomedia.redemptions
         WHERE redemption_id > %(max_redemption)d) r
 WHERE i.invite_id = r.invite_id;
DELETE FROM invitetomedia.redemptions WHERE redemption_id > %(max_redemption)d;
DELETE FROM invitetomedia.outbox WHERE message_id > %(max_message)d;
DELETE FROM invitetomedia.invites WHERE invite_id > %(max_invite)d;
DELETE FROM invitetomedia.users WHERE user_id <> 'inviter' AND user_id !~ '^u[0-9]+$';
SELECT setval('bench.distinct_seq', 1, false);
"""


def log(*a):
    print(*a, flush=True)


def connect(args, db):
    c = psycopg2.connect(host=args.sock, port=args.port, user="postgres", dbname=db)
    c.autocommit = True
    return c


def q(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


def q1(conn, sql, params=None):
    return q(conn, sql, params)[0][0]


def make_token():
    """A token in the extension's format: itm_ + base64url(32 random bytes + CRC-32)."""
    rnd = os.urandom(32)
    tok = "itm_" + base64.urlsafe_b64encode(rnd + zlib.crc32(rnd).to_bytes(4, "big")).decode()
    return tok, hashlib.sha256(tok.encode()).hexdigest()


def copy_in(conn, sql, lines):
    with conn.cursor() as cur:
        cur.copy_expert(sql, io.StringIO("".join(lines)))


def load(args):
    """bench_tpl with args.links single-use links (n = 1..links, every
    invitee a user), then bench and bench_tx as file copies of it."""
    t0 = time.time()
    admin = connect(args, "postgres")
    q(admin, "CREATE DATABASE bench_tpl")
    c = connect(args, "bench_tpl")
    q(c, SETUP_SQL)
    exp = "2099-01-01 00:00:00+00"
    cols = "(token_hash, media_id, role, email, first_name, last_name, invited_by, expires_at, max_uses)"
    chunk = 100000
    for lo in range(1, args.links + 1, chunk):
        inv, usr, tks = [], [], []
        for n in range(lo, min(lo + chunk, args.links + 1)):
            tok, h = make_token()
            email = "u%d@example.com" % n
            inv.append("\\\\x%s\tm1\tviewer\t%s\tF%d\tL%d\tinviter\t%s\t1\n" % (h, email, n, n, exp))
            usr.append("u%d\t%s\tF%d\tL%d\tviewer\n" % (n, email, n, n))
            tks.append("%d\t%s\t%s\n" % (n, tok, email))
        copy_in(c, "COPY invitetomedia.invites %s FROM STDIN" % cols, inv)
        copy_in(c, "COPY invitetomedia.users (user_id, email, first_name, last_name, role) FROM STDIN", usr)
        copy_in(c, "COPY bench.tokens FROM STDIN", tks)
    if args.history:
        q(c, HISTORY_SQL % {"n": args.history})
    q(c, "VACUUM (FREEZE, ANALYZE)")
    c.close()
    q(admin, "CHECKPOINT")
    for db in ("bench", "bench_tx"):
        q(admin, "CREATE DATABASE %s TEMPLATE bench_tpl STRATEGY file_copy" % db)
    q(admin, "DROP DATABASE bench_tpl")
    admin.close()
    log("  loaded bench and bench_tx: %d single-use links and %d used ones with their records each in %.0f s"
        % (args.links, args.history, time.time() - t0))


def origins(admin):
    return q1(admin, "SELECT count(*) FROM pg_replication_origin o, pg_database d"
                     " WHERE d.datname = 'bench' AND o.roname LIKE 'invitetomedia\\_' || d.oid || '\\_%%'")


def wait_relay_ready(admin):
    """The relay's first start creates its origins (itm_relay.c, "The
    start"); until then a writer of bench would announce its own events."""
    deadline = time.time() + 60
    while origins(admin) < 3:
        if time.time() > deadline:
            raise RuntimeError("the relay of database bench did not start in 60 s (no origins); see the server log")
        time.sleep(0.5)
    time.sleep(0.2)


def set_conf(admin, name, value):
    q(admin, "ALTER SYSTEM SET %s = %s" % (name, value))
    q(admin, "SELECT pg_reload_conf()")
    time.sleep(0.5)   # the relay reloads at its next wake-up (every naptime)


# --- the listener --------------------------------------------------------------

def proc_cpu(pid):
    """CPU seconds (user + system) of a process so far, from /proc."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def listener(dsn, ready, stop, count, cpu, outpath):
    """LISTENs on both channels; each notification with the time its batch
    was read off the socket (before parsing).  Ends once stop is set and
    nothing came for 50 ms; writes time, channel, payload, sender pid, and
    into cpu the CPU seconds of itself and of its backend."""
    conn = psycopg2.connect(**dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        for ch in CHANNELS:
            cur.execute("LISTEN %s" % ch)
    got = []
    ready.set()
    fd = conn.fileno()
    while True:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            t = time.time()
            conn.poll()
            if conn.notifies:
                for n in conn.notifies:
                    got.append((t, n.channel, n.payload, n.pid))
                del conn.notifies[:]
                count.value = len(got)
        elif stop.is_set():
            break
    cpu[1] = proc_cpu(conn.get_backend_pid())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu[0] = ru.ru_utime + ru.ru_stime
    conn.close()
    with open(outpath, "w") as f:
        for t, ch, p, pid in got:
            f.write("%.6f\t%s\t%s\t%d\n" % (t, ch, p, pid))


# --- pgbench ---------------------------------------------------------------------

def pgbench(args, db, name, script, clients, seconds):
    path = os.path.join(args.outdir, "scripts", name + ".sql")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(script)
    cmd = [os.path.join(BIN, "pgbench"), "-h", args.sock, "-p", str(args.port), "-U", "postgres",
           "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)),
           "-T", str(seconds), "-f", path, db]
    r = subprocess.run(cmd, capture_output=True, text=True)
    with open(os.path.join(args.outdir, "pgbench_output.txt"), "a") as f:
        f.write("### %s\n$ %s\n%s\n%s\n" % (name, " ".join(cmd), r.stdout, r.stderr))
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", r.stdout)
    x = re.search(r"number of transactions actually processed: (\d+)", r.stdout)
    fl = re.search(r"number of failed transactions: (\d+)", r.stdout)
    return {"ok": r.returncode == 0, "tps": float(m.group(1)) if m else 0.0,
            "xacts": int(x.group(1)) if x else 0, "failed": int(fl.group(1)) if fl else 0,
            "stderr": r.stderr.strip()[-300:]}


def foreign_postgres(pidfile):
    """postgres processes of user postgres that are not this cluster's."""
    try:
        with open(pidfile) as f:
            pm = int(f.readline())
    except (OSError, ValueError):
        pm = -1
    out = subprocess.run(["ps", "-u", "postgres", "-o", "pid=,ppid=,comm="],
                         capture_output=True, text=True).stdout
    n = 0
    for line in out.splitlines():
        p = line.split()
        if len(p) == 3 and p[2] == "postgres" and int(p[0]) != pm and int(p[1]) != pm:
            n += 1
    return n


# --- one cell --------------------------------------------------------------------

# the notifications received, matched to the records (the listener's
# database); per workload: the records, their key in the payload
MATCH_SQL = {
    "consume": """
WITH rcv AS (SELECT t, pid, (payload::json->>'id')::bigint AS id FROM pg_temp.rcv
              WHERE channel = 'invitetomedia_accepted'),
rec AS (SELECT invite_id AS id,
               extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 AS ct
          FROM invitetomedia.redemptions WHERE status = 'ok' AND redemption_id > %(max_redemption)d)""",
    "create_email": """
WITH rcv AS (SELECT t, pid, payload::bigint AS id FROM pg_temp.rcv
              WHERE channel = 'invitetomedia_email'),
rec AS (SELECT message_id AS id,
               extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 AS ct
          FROM invitetomedia.outbox WHERE message_id > %(max_message)d)""",
}
STATS_SQL = """
SELECT (SELECT count(*) FROM pg_temp.rcv) AS received,
       (SELECT count(*) FROM pg_temp.rcv) - (SELECT count(*) FROM rcv) AS other_channel,
       (SELECT count(*) FROM rcv) - (SELECT count(DISTINCT id) FROM rcv) AS twice,
       (SELECT count(*) FROM rec WHERE id NOT IN (SELECT id FROM rcv)) AS lost,
       (SELECT count(*) FROM rcv WHERE id NOT IN (SELECT id FROM rec)) AS unknown,
       (SELECT count(DISTINCT pid) FROM rcv) AS senders,
       (SELECT count(*) FROM rec WHERE ct IS NULL) AS no_ts,
       l.p50, l.p99, l.max
  FROM (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
               max(ms) AS max
          FROM (SELECT (rcv.t - rec.ct) * 1000 AS ms FROM rcv JOIN rec USING (id)) x) l
"""


class Bench:
    def __init__(self, args):
        self.args = args
        self.admin = connect(args, "postgres")
        self.conns = {db: connect(args, db) for db in ("bench", "bench_tx")}
        self.max = {db: {"max_invite": q1(c, "SELECT max(invite_id) FROM invitetomedia.invites"),
                         "max_redemption": q1(c, "SELECT coalesce(max(redemption_id), 0)"
                                                 " FROM invitetomedia.redemptions"),
                         "max_message": q1(c, "SELECT coalesce(max(message_id), 0) FROM invitetomedia.outbox")}
                    for db, c in self.conns.items()}
        self.paused = None
        self.sync = None
        self.rows = []

    def reset(self, db):
        c = self.conns[db]
        q(c, RESET_SQL % self.max[db])
        q(c, "VACUUM (ANALYZE) invitetomedia.invites, invitetomedia.redemptions,"
             " invitetomedia.outbox, invitetomedia.users")
        q(c, "CHECKPOINT")

    def set_paused(self, paused):
        if self.paused != paused:
            set_conf(self.admin, "invitetomedia.relay_paused", "on" if paused else "off")
            self.paused = paused

    def set_sync(self, sync):
        if self.sync != sync:
            set_conf(self.admin, "synchronous_commit", sync)
            self.sync = sync
            got = q1(connect(self.args, "postgres"), "SHOW synchronous_commit")
            if got != sync:
                raise RuntimeError("synchronous_commit is %s, not %s" % (got, sync))

    def records(self, db, wl):
        c = self.conns[db]
        if wl == "consume":
            ok, other = q(c, "SELECT count(*) FILTER (WHERE status = 'ok'),"
                             " count(*) FILTER (WHERE status <> 'ok') FROM invitetomedia.redemptions"
                             " WHERE redemption_id > %s", (self.max[db]["max_redemption"],))[0]
            return ok, other
        ok = q1(c, "SELECT count(*) FROM invitetomedia.outbox WHERE message_id > %s",
                (self.max[db]["max_message"],))
        created = q1(c, "SELECT count(*) FROM invitetomedia.invites WHERE invite_id > %s",
                     (self.max[db]["max_invite"],))
        return ok, created - ok

    def cell(self, rnd, sync, clients, wl, mode, seconds=None, keep=True):
        args = self.args
        seconds = seconds or args.seconds
        db = DBS[mode]
        self.reset(db)
        self.set_sync(sync)
        if db == "bench":
            self.set_paused(mode == "none")
        name = "r%d_%s_c%d_%s_%s" % (rnd, sync, clients, wl, mode)
        outpath = os.path.join(args.outdir, "received", name + ".tsv")
        os.makedirs(os.path.dirname(outpath), exist_ok=True)
        ready, stop = mp.Event(), mp.Event()
        count = mp.Value("q", 0, lock=False)
        cpu = mp.Array("d", 2, lock=False)
        dsn = dict(host=args.sock, port=args.port, user="postgres", dbname=db)
        lp = mp.Process(target=listener, args=(dsn, ready, stop, count, cpu, outpath))
        lp.start()
        if not ready.wait(10):
            raise RuntimeError("the listener did not start")
        load1 = os.getloadavg()[0]
        foreign = foreign_postgres(args.pidfile)
        relay_pid = q1(self.admin, "SELECT coalesce(max(pid), 0) FROM pg_stat_activity"
                                   " WHERE backend_type = 'invitetomedia relay' AND datname = 'bench'")
        relay_cpu0 = proc_cpu(relay_pid)
        res = pgbench(args, db, name, WORKLOADS[wl]["script"], clients, seconds)
        t_end = time.time()
        recs, others = self.records(db, wl)
        expect = 0 if mode == "none" else recs
        deadline = t_end + (1.0 if mode == "none" else 60.0)
        while count.value < expect and time.time() < deadline:
            time.sleep(0.01)
        drain = time.time() - t_end
        if mode == "none":
            time.sleep(max(0.0, deadline - time.time()))
        time.sleep(0.5)       # fifty relay rounds: anything announced twice
        relay_cpu = proc_cpu(relay_pid) - relay_cpu0
        stop.set()
        lp.join(30)
        if lp.is_alive():
            lp.terminate()
            raise RuntimeError("the listener did not stop")
        c = self.conns[db]
        q(c, "DROP TABLE IF EXISTS pg_temp.rcv")
        q(c, "CREATE TEMP TABLE rcv (t float8, channel text, payload text, pid int)")
        with open(outpath) as f, c.cursor() as cur:
            cur.copy_expert("COPY pg_temp.rcv FROM STDIN", f)
        st = q(c, MATCH_SQL[wl] % self.max[db] + STATS_SQL)[0]
        keys = ("received", "other_channel", "twice", "lost", "unknown", "senders", "no_ts",
                "lat_p50_ms", "lat_p99_ms", "lat_max_ms")
        row = {"round": rnd, "sync": sync, "clients": clients, "workload": wl, "mode": mode,
               "seconds": seconds, "tps": round(res["tps"], 1), "xacts": res["xacts"],
               "pgbench_ok": res["ok"], "failed": res["failed"],
               "records": recs, "records_other": others,
               "drain_s": round(drain, 2) if mode != "none" else None,
               "load1": round(load1, 2), "foreign_postgres": foreign,
               # CPU seconds during the run (and the drain), as a share of
               # one core over the run's seconds
               "cpu_relay": round(relay_cpu / seconds, 3),
               "cpu_listener": round(cpu[0] / seconds, 3),
               "cpu_listener_backend": round(cpu[1] / seconds, 3)}
        for k, v in zip(keys, st):
            row[k] = round(float(v), 2) if k.startswith("lat") and v is not None else v
        # what must hold: every transaction an ok record (never a reused
        # link), every record announced once in the modes that announce,
        # nothing in "none"
        problems = []
        if not res["ok"] or res["failed"]:
            problems.append("pgbench: %s" % (res["stderr"] or "failed %d" % res["failed"]))
        if recs != res["xacts"]:
            problems.append("records %d != transactions %d" % (recs, res["xacts"]))
        if others:
            problems.append("%d records not ok" % others)
        if mode == "none":
            if row["received"]:
                problems.append("%d notifications with the relay paused" % row["received"])
        else:
            for k in ("lost", "twice", "unknown", "other_channel", "no_ts"):
                if row[k]:
                    problems.append("%s %d" % (k, row[k]))
            if mode == "relay" and row["senders"] != 1:
                problems.append("%d senders (the relay alone should send)" % row["senders"])
        row["check"] = "; ".join(problems) or "ok"
        lat = ("" if mode == "none" or row["lat_p99_ms"] is None else
               " latency p50 %.1f p99 %.1f max %.1f ms, drained %.2f s after"
               % (row["lat_p50_ms"], row["lat_p99_ms"], row["lat_max_ms"], drain))
        log("  r%d sync=%-3s c=%-2d %-12s %-11s %8.0f tps  records %d received %d%s  [%s]"
            " cpu relay %.2f listener %.2f+%.2f, load %.2f%s"
            % (rnd, sync, clients, wl, mode, res["tps"], recs, row["received"], lat,
               row["check"], row["cpu_relay"], row["cpu_listener"], row["cpu_listener_backend"],
               load1, " other-pg %d" % foreign if foreign else ""))
        if keep:
            self.rows.append(row)
        return row


# --- the report ----------------------------------------------------------------

def library(args):
    """Which build ran: the installed library (sha256, time), and whether it
    is the one built in the tree (and the tree's commit)."""
    import hashlib as h
    try:
        with open(args.lib, "rb") as f:
            lib = f.read()
    except OSError:
        return "not found (%s)" % args.lib
    digest = h.sha256(lib).hexdigest()[:16]
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(os.path.getmtime(args.lib)))
    tree = ""
    if args.root:
        built = os.path.join(args.root, "invitetomedia.so")
        same = os.path.exists(built) and open(built, "rb").read() == lib
        head = subprocess.run(["git", "-C", args.root, "log", "-1", "--format=%h %s"],
                              capture_output=True, text=True).stdout.strip()[:80]
        dirty = subprocess.run(["git", "-C", args.root, "status", "--porcelain", "--", "*.c", "*.h"],
                               capture_output=True, text=True).stdout.strip()
        tree = "; %s the tree's invitetomedia.so; the tree at %s%s" % (
            "identical to" if same else "NOT identical to", head,
            " (C sources modified: %s)" % " ".join(l.split()[-1] for l in dirty.splitlines()) if dirty
            else " (C sources as committed)")
    return "`%s` sha256 %s, installed %s%s" % (args.lib, digest, when, tree)


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def fnum(x, nd=0):
    if x is None:
        return "-"
    return "{:,.{}f}".format(x, nd)


def report(args, rows, meta):
    by = {}
    for r in rows:
        by.setdefault((r["sync"], r["clients"], r["workload"], r["mode"]), []).append(r)

    def tps(s, c, w, m):
        return mean([r["tps"] for r in by.get((s, c, w, m), [])])

    def per_round(s, c, w, m, base):
        a = {r["round"]: r["tps"] for r in by.get((s, c, w, m), [])}
        b = {r["round"]: r["tps"] for r in by.get((s, c, w, base), [])}
        return [a[k] / b[k] for k in sorted(a) if k in b and b[k]]

    def ratio(s, c, w, m, base="none"):
        x, y = tps(s, c, w, m), tps(s, c, w, base)
        return x / y if x is not None and y else None

    def rcell(s, c, w, m, base="none"):
        r = ratio(s, c, w, m, base)
        rr = per_round(s, c, w, m, base)
        if r is None:
            return "-"
        extra = " [%s]" % ", ".join("%.2f" % x for x in rr) if len(rr) > 1 else ""
        return "%s (**%.2f**%s)" % (fnum(tps(s, c, w, m)), r, extra)

    L = []
    L.append("# Issue 21: the event relay, measured (`bench/events.sh`)")
    L.append("")
    L.append("%s; PostgreSQL %s, %d cores; %d s per run, %d round(s) interleaved (the modes in"
             " reverse order in even rounds); %d single-use links per database, and %d used ones"
             " with their records and sent mail (last week's: a site in use)."
             % (meta["date"], meta["server"], os.cpu_count(), args.seconds, args.rounds, args.links,
                args.history))
    L.append("")
    L.append("- Machine: %s. At the start: load %s; at the end: load %s, %s postgres processes"
             " of other clusters during the runs (max)."
             % (meta["quiet"], meta["load_start"], meta["load_end"], meta["foreign_max"]))
    L.append("- Stage took %s (loading %s)." % (meta["took"], meta["load_took"]))
    L.append("- Library: %s (at the start; %s at the end)." % (meta["lib_start"], meta["lib_end"]))
    L.append("- Modes: **none** = database `bench`, `invitetomedia.relay_paused = on` (writers"
             " send nothing, nothing is announced); **relay** = `bench`, the relay running"
             " (`relay_naptime` %s ms); **transaction** = `bench_tx`, not in `relay_databases`"
             " (1.1's NOTIFY in the writing transaction). A listener (psycopg2) LISTENs on both"
             " channels of the database in every run." % meta["naptime"])
    L.append("- pgbench -M prepared, -j 2 (1 at 1 client), Unix socket. consume: `invite_consume` of"
             " the next single-use link of a sequence (every measured use is an `ok` one: checked"
             " against `redemptions`); create_email: `invite_create(..., send_email => true)` for a"
             " new invitee (one outbox row each).")
    L.append("- Ratios: mean tps of the rounds over mean tps of **none**; each round's ratio in brackets.")
    L.append("")
    L.append("Configuration:")
    L.append("")
    L.append("```")
    L.extend(meta["conf"].rstrip().splitlines())
    L.append("```")
    L.append("")
    syncs = [s for s in args.sync.split(",")]
    clients = [int(c) for c in args.clients.split(",")]
    wls = [w for w in args.workloads.split(",")]
    for w in wls:
        L.append("## %s: tps (ratio to none)" % WORKLOADS[w]["label"])
        L.append("")
        L.append("| synchronous_commit | clients | none | relay | transaction |")
        L.append("|---|---:|---:|---:|---:|")
        for s in syncs:
            for c in clients:
                L.append("| %s | %d | %s | %s | %s |" % (s, c, fnum(tps(s, c, w, "none")),
                                                     rcell(s, c, w, "relay"), rcell(s, c, w, "transaction")))
        L.append("")
    if "on" in syncs and len(clients) > 1:
        c0 = clients[0]
        L.append("## Group commit: tps at more clients over tps at %d clients, synchronous_commit = on" % c0)
        L.append("")
        L.append("| workload | mode | %s |" % " | ".join("%d clients" % c for c in clients))
        L.append("|---|---|%s" % ("---:|" * len(clients)))
        for w in wls:
            for m in MODES:
                base = tps("on", c0, w, m)
                cells = [fnum(base)]
                for c in clients[1:]:
                    t = tps("on", c, w, m)
                    cells.append("%s (%s)" % (fnum(t), "%.2f" % (t / base) if t and base else "-"))
                L.append("| %s | %s | %s |" % (w, m, " | ".join(cells)))
        L.append("")
    L.append("## Delivery and latency (receive time - commit timestamp of the record)")
    L.append("")
    L.append("Per run: records written (ok uses; outbox rows), notifications received, lost"
             " (a record never announced), twice (a payload received more than once), senders"
             " (distinct backend pids that sent them: the relay alone in relay mode), latency in"
             " ms, how long after pgbench ended the last one arrived, and CPU: the relay"
             " worker's, the listener's (the Python client + its backend), in cores (CPU seconds"
             " over the run's seconds; 2 cores in all).")
    L.append("")
    L.append("| workload | sync | clients | mode | round | tps | records | received | lost | twice | senders"
             " | p50 ms | p99 ms | max ms | drained s | CPU relay | CPU listener | check |")
    L.append("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for w in wls:
        for s in syncs:
            for c in clients:
                for m in MODES:
                    for r in sorted(by.get((s, c, w, m), []), key=lambda r: r["round"]):
                        L.append("| %s | %s | %d | %s | %d | %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                            w, s, c, m, r["round"], fnum(r["tps"]), r["records"], r["received"],
                            "-" if m == "none" else r["lost"], "-" if m == "none" else r["twice"],
                            r["senders"], fnum(r["lat_p50_ms"], 1), fnum(r["lat_p99_ms"], 1),
                            fnum(r["lat_max_ms"], 1),
                            fnum(r["drain_s"], 2),
                            "-" if m != "relay" else "%.2f" % r["cpu_relay"],
                            "%.2f + %.2f" % (r["cpu_listener"], r["cpu_listener_backend"]),
                            r["check"]))
    L.append("")
    # the targets of issue 21
    T = []

    def target(desc, val, need, ok):
        T.append("| %s | %s | %s | %s |" % (desc, need, val, "met" if ok else "**NOT MET**"))

    for w in wls:
        for s in syncs:
            for c in clients[1:]:
                r = ratio(s, c, w, "relay")
                rr = per_round(s, c, w, "relay", "none")
                val = "-" if r is None else "%.3f%s" % (r, " [%s]" % ", ".join("%.2f" % x for x in rr)
                                                         if len(rr) > 1 else "")
                target("%s, relay / none, sync %s, %d clients" % (w, s, c), val, ">= 0.9",
                       r is not None and r >= 0.9)
        if "on" in syncs:
            for c in clients[1:]:
                a, b = tps("on", c, w, "relay"), tps("on", clients[0], w, "relay")
                r = a / b if a and b else None
                target("%s, relay, sync on: %d clients / %d clients" % (w, c, clients[0]),
                       "-" if r is None else "%.3f" % r, ">= 1.0", r is not None and r >= 1.0)
        for s in syncs:
            c = max(clients)
            rs = by.get((s, c, w, "relay"), [])
            p99 = [r["lat_p99_ms"] for r in rs if r["lat_p99_ms"] is not None]
            worst = max(p99) if p99 else None
            target("%s, relay, sync %s, %d clients: latency p99 (worst round)" % (w, s, c),
                   "-" if worst is None else "%.1f ms (%s)" % (worst, ", ".join("%.1f" % x for x in p99)),
                   "<= 100 ms", worst is not None and worst <= 100)
    bad = [r for r in rows if r["check"] != "ok"]
    target("every run: each use ok, every record announced once (relay and transaction), none in none",
           "%d of %d runs fail%s" % (len(bad), len(rows), (": " + "; ".join(
               "%s/%s/%d/%s r%d: %s" % (r["workload"], r["sync"], r["clients"], r["mode"], r["round"], r["check"])
               for r in bad)) if bad else ""),
           "all", not bad)
    L.append("## Targets (issue 21)")
    L.append("")
    L.append("| target | needed | measured | |")
    L.append("|---|---:|---:|---|")
    L.extend(T)
    L.append("")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sock", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--conf", required=True)
    ap.add_argument("--quiet", default="not waited for")
    ap.add_argument("--server-log")
    ap.add_argument("--pidfile", default="")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clients", default="2,8,32")
    ap.add_argument("--sync", default="on,off")
    ap.add_argument("--workloads", default="consume,create_email")
    ap.add_argument("--links", type=int, default=800000)
    ap.add_argument("--naptime", type=int, default=None)
    ap.add_argument("--history", type=int, default=100000)
    ap.add_argument("--lib", default="/usr/lib/postgresql/15/lib/invitetomedia.so")
    ap.add_argument("--root", default="")
    args = ap.parse_args()
    for w in args.workloads.split(","):
        if w not in WORKLOADS:
            sys.exit("events.py: unknown workload %s" % w)
    t0 = time.time()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_start": "%.2f" % os.getloadavg()[0], "quiet": args.quiet,
            "lib_start": library(args)}
    admin = connect(args, "postgres")
    meta["server"] = q1(admin, "SHOW server_version")
    if args.naptime:
        set_conf(admin, "invitetomedia.relay_naptime", str(args.naptime))
    meta["naptime"] = q1(admin, "SHOW invitetomedia.relay_naptime").replace("ms", "")
    load(args)
    wait_relay_ready(admin)
    meta["load_took"] = "%.0f s" % (time.time() - t0)
    b = Bench(args)
    # warm-up: each database's tables and indexes read once, plans made
    for mode in ("relay", "transaction"):
        for wl in args.workloads.split(","):
            b.cell(0, "off", 8, wl, mode, seconds=3, keep=False)
    syncs = args.sync.split(",")
    clients = [int(c) for c in args.clients.split(",")]
    for rnd in range(1, args.rounds + 1):
        modes = MODES if rnd % 2 else tuple(reversed(MODES))
        log("== round %d (%s)" % (rnd, ", ".join(modes)))
        for sync in syncs:
            for c in clients:
                for wl in args.workloads.split(","):
                    for mode in modes:
                        b.cell(rnd, sync, c, wl, mode)
    meta["load_end"] = "%.2f" % os.getloadavg()[0]
    end = library(args)
    meta["lib_end"] = "the same" if end == meta["lib_start"] else "CHANGED (the cluster kept the one it" \
        " loaded at its start, shared_preload_libraries): " + end
    meta["foreign_max"] = max([r["foreign_postgres"] for r in b.rows] or [0])
    took = time.time() - t0
    meta["took"] = "%d min %02d s" % (took // 60, took % 60)
    with open(args.conf) as f:
        meta["conf"] = f.read()
    if args.server_log and os.path.exists(args.server_log):
        with open(args.server_log) as f:
            errs = [l.rstrip() for l in f if " ERROR: " in l or " FATAL: " in l or "PANIC" in l]
        # the relay's worker starts with the cluster, before the database
        # exists: it fails to connect and is restarted every 2 s until then
        meta["server_early"] = len([l for l in errs if 'database "bench" does not exist' in l])
        meta["server_errors"] = [l for l in errs if 'database "bench" does not exist' not in l]
    os.makedirs(args.results, exist_ok=True)
    fields = list(b.rows[0].keys()) if b.rows else []
    with open(os.path.join(args.results, "events.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(b.rows)
    md = report(args, b.rows, meta)
    errs = meta.get("server_errors") or []
    early = meta.get("server_early", 0)
    md += "\n## Server log\n\n%s%s\n" % (
        "The relay's worker, started with the cluster, failed %d time(s) to connect to `bench`"
        " before it was created (FATAL: database \"bench\" does not exist; restarted every 2 s),"
        " as expected. " % early if early else "",
        "No other ERROR or FATAL in the server log." if not errs else
        "%d ERROR/FATAL lines in the server log, the first ones:\n\n```\n%s\n```" % (
            len(errs), "\n".join(errs[:20])))
    with open(os.path.join(args.results, "events.md"), "w") as f:
        f.write(md)
    log("")
    log(md)
    log("events: took %s; bench/results/events.md, events.csv" % meta["took"])


if __name__ == "__main__":
    main()
