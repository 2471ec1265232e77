#!/usr/bin/env python3
"""invitetomedia benchmark driver (called by bench/run; see bench/README.md).

Starts nothing by itself: bench/run hands it a running throwaway cluster
(socket directory and port).  It loads the site, runs the pgbench scenarios
in two modes (loaded site, fresh install), the scale probe and the memory
check, and writes CSV, Markdown and a gnuplot PNG.
"""
import argparse
import base64
import hashlib
import os
import re
import subprocess
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import scenarios as S  # noqa: E402

# the server's programs: bench/run sets PGBIN (scripts/pg_major.sh)
BIN = os.environ.get("PGBIN") or subprocess.check_output(
    ["pg_config", "--bindir"], text=True).strip()
MULTI_LINKS = 500          # 1000-use links (n = -1 .. -500)


def log(*a):
    print(*a, flush=True)


class PG:
    def __init__(self, sock, port, tcp_host="127.0.0.1"):
        self.sock, self.port, self.tcp_host = sock, str(port), tcp_host

    def base(self, prog, tcp=False, user="postgres"):
        """A client program's command line: the Unix socket, or with tcp
        the server's TCP address (127.0.0.1, the same port); as user."""
        return [os.path.join(BIN, prog), "-h", self.tcp_host if tcp else self.sock,
                "-p", self.port, "-U", user]

    def psql(self, sql, db="site", check=True, stdin=None):
        cmd = self.base("psql") + ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db]
        if stdin is None:
            cmd += ["-c", sql]
        r = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError("psql failed: %s\n%s" % (sql[:300] if sql else "<stdin>", r.stderr))
        return r.stdout.strip()

    def psql_file(self, path, db):
        cmd = self.base("psql") + ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db, "-f", path]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("psql -f %s failed:\n%s" % (path, r.stderr))
        return r.stdout


# --- tokens -----------------------------------------------------------------

def make_token():
    """A token in the extension's format: itm_ + base64url(32 random bytes + CRC-32)."""
    rnd = os.urandom(32)
    payload = rnd + zlib.crc32(rnd).to_bytes(4, "big")
    tok = "itm_" + base64.urlsafe_b64encode(payload).decode()
    return tok, hashlib.sha256(tok.encode()).hexdigest()


SETUP_SQL = """
CREATE EXTENSION pgcrypto SCHEMA public;
CREATE EXTENSION invitetomedia;
INSERT INTO invitetomedia.email_templates VALUES
  ('t', 'Invite to {MEDIA_TITLE}', 'Hi {FIRST_NAME}, {INVITER_NAME} invites you to {MEDIA_TITLE} as {ROLE} until {EXPIRES_AT}: {URL}');
UPDATE invitetomedia.settings SET enabled = true, link_reusability = 1, link_duration = 525600,
       invite_email_template = 't', link_base_url = 'https://media.example.com/invitetomedia/';
INSERT INTO invitetomedia.users (user_id, email, first_name, last_name, role) VALUES
  ('inviter', 'inviter@example.com', 'Ivy', 'Inviter', 'admin'),
  ('guest', 'guest@example.com', 'Guest', 'User', 'viewer');
INSERT INTO invitetomedia.media VALUES ('m1', 'webcast', 'Town hall', 'inviter');
CREATE SCHEMA bench;
CREATE TABLE bench.tokens (n bigint PRIMARY KEY, token text NOT NULL, email text NOT NULL);
CREATE SEQUENCE bench.distinct_seq;
CREATE SEQUENCE bench.multi_seq;
-- the hot guest link (1.1): one unlimited link, joined with a new email each time
CREATE SEQUENCE bench.guest_seq;
CREATE TABLE bench.guest (k integer PRIMARY KEY, token text NOT NULL, guest_link_id bigint NOT NULL);
INSERT INTO bench.guest
SELECT 0, token, guest_link_id FROM invitetomedia.guest_link_create('m1', 'inviter', 'Town hall audience');
"""


# A loaded site has guest joins behind it too: rows joins of last week's
# webcast (a revoked guest link), so that guest_link_joins is no empty
# table (its statistics as on a site in use).
HISTORY_SQL = """
INSERT INTO bench.guest
SELECT 1, token, guest_link_id FROM invitetomedia.guest_link_create('m1', 'inviter', 'Last week''s webcast');
SELECT invitetomedia.guest_link_revoke((SELECT guest_link_id FROM bench.guest WHERE k = 1), 'inviter');
INSERT INTO invitetomedia.guest_link_joins (guest_link_id, joined_at, status, email, first_name, last_name, user_id)
SELECT (SELECT guest_link_id FROM bench.guest WHERE k = 1), now() - interval '7 days', 'ok',
       'u' || n || '@example.com', 'F' || n, 'L' || n, 'u' || n
  FROM generate_series(1, %d) AS n;
"""


def load(pg, db, rows, workdir, minimal=False):
    """Creates db with the extension and rows single-use links (n = 1..rows),
    plus the hot unlimited link (n = 0) and MULTI_LINKS 1000-use links (n < 0),
    every invitee an existing user; the hot guest link, and rows past joins
    of another (revoked) guest link.  minimal: also the minimal schema of
    the minfloor peer, holding the same links (bench/minimal_schema.sql).
    Returns seconds taken."""
    t0 = time.time()
    pg.psql("CREATE DATABASE %s" % db, db="postgres")
    pg.psql(SETUP_SQL, db=db)
    pg.psql_file(os.path.join(HERE, "plpgsql_reference.sql"), db)
    d = os.path.join(workdir, "load_" + db)
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    fi = open(os.path.join(d, "invites.tsv"), "w")
    fu = open(os.path.join(d, "users.tsv"), "w")
    ft = open(os.path.join(d, "tokens.tsv"), "w")
    exp = "2099-01-01 00:00:00+00"

    def put(n, email, max_uses):
        tok, h = make_token()
        fi.write("\\\\x%s\tm1\tviewer\t%s\tF%d\tL%d\tinviter\t%s\t%d\n" % (h, email, n, n, exp, max_uses))
        fu.write("u%d\t%s\tF%d\tL%d\tviewer\n" % (n, email, n, n))
        ft.write("%d\t%s\t%s\n" % (n, tok, email))

    put(0, "hot@example.com", -1)
    for k in range(1, MULTI_LINKS + 1):
        put(-k, "multi%d@example.com" % k, 1000)
    for n in range(1, rows + 1):
        put(n, "u%d@example.com" % n, 1)
    for f in (fi, fu, ft):
        f.close()
        os.chmod(f.name, 0o644)
    tgen = time.time() - t0
    cols = "(token_hash, media_id, role, email, first_name, last_name, invited_by, expires_at, max_uses)"
    procs = []
    for sql in ("COPY invitetomedia.invites %s FROM '%s/invites.tsv'" % (cols, d),
                "COPY invitetomedia.users (user_id, email, first_name, last_name, role) FROM '%s/users.tsv'" % d,
                "COPY bench.tokens FROM '%s/tokens.tsv'" % d):
        procs.append(subprocess.Popen(pg.base("psql") + ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql]))
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("COPY failed")
    pg.psql(HISTORY_SQL % rows, db=db)
    if minimal:
        pg.psql_file(os.path.join(HERE, "minimal_schema.sql"), db)
    pg.psql("VACUUM (FREEZE, ANALYZE)", db=db)
    for f in ("invites.tsv", "users.tsv", "tokens.tsv"):
        os.unlink(os.path.join(d, f))
    took = time.time() - t0
    log("  loaded %s: %d single-use links + %d others in %.0f s (generation %.0f s)"
        % (db, rows, MULTI_LINKS + 1, took, tgen))
    return took


# --- 2.0: tenants and sites (issue 22) ---------------------------------------

# The role the measured calls run as (SET ROLE, or pgbench connecting as
# it): mapped in tenant_roles to the measured tenant, as a pool's role is.
MEASURED_ROLE = "bench_app"


def measured_tenant(tenants):
    """The number (1..tenants) of the tenant the calls act for: the middle
    one, so that its keys sit inside the indexes' ranges, not at an end."""
    return (tenants + 1) // 2


def site_name(k, j):
    """Site j (1..sites) of tenant number k; site 1 is the tenant's default."""
    return "t%d-s%d" % (k, j)


TENANT_SETUP_SQL = """
CREATE EXTENSION pgcrypto SCHEMA public;
CREATE EXTENSION invitetomedia VERSION '2.0' CASCADE;
CREATE SCHEMA bench;
-- the bench's tenants: number k (1..N), the id the table gave, its role
CREATE TABLE bench.tenants (k integer PRIMARY KEY, tenant_id integer NOT NULL UNIQUE, role name NOT NULL);
INSERT INTO invitetomedia.tenants (name) SELECT 'tenant' || k FROM generate_series(1, %(n)d) AS k;
INSERT INTO bench.tenants
SELECT k, t.tenant_id, 'bench_t' || k
  FROM generate_series(1, %(n)d) AS k JOIN invitetomedia.tenants t ON t.name = 'tenant' || k;
INSERT INTO invitetomedia.sites (site_id, tenant_id, enabled, link_reusability, link_duration, link_base_url)
SELECT 't' || b.k || '-s' || j, b.tenant_id, true, 1, 525600,
       'https://t' || b.k || '-s' || j || '.example.com/invitetomedia/'
  FROM bench.tenants b, generate_series(1, %(s)d) AS j;
INSERT INTO invitetomedia.email_templates (tenant_id, site_id, name, subject, body)
SELECT s.tenant_id, s.site_id, 't', 'Invite to {MEDIA_TITLE}',
       'Hi {FIRST_NAME}, {INVITER_NAME} invites you to {MEDIA_TITLE} as {ROLE} until {EXPIRES_AT}: {URL}'
  FROM invitetomedia.sites s WHERE s.tenant_id IN (SELECT tenant_id FROM bench.tenants);
UPDATE invitetomedia.sites SET invite_email_template = 't'
 WHERE tenant_id IN (SELECT tenant_id FROM bench.tenants);
UPDATE invitetomedia.tenants t SET default_site_id = 't' || b.k || '-s1'
  FROM bench.tenants b WHERE b.tenant_id = t.tenant_id;
INSERT INTO invitetomedia.users (tenant_id, user_id, email, first_name, last_name, role)
SELECT b.tenant_id, x.user_id, x.email, x.first_name, x.last_name, x.role
  FROM bench.tenants b,
       (VALUES ('inviter', 'inviter@example.com', 'Ivy', 'Inviter', 'admin'),
               ('guest', 'guest@example.com', 'Guest', 'User', 'viewer'))
         AS x (user_id, email, first_name, last_name, role);
INSERT INTO invitetomedia.media (tenant_id, media_id, media_type, title, owner_id)
SELECT b.tenant_id, 'm1', 'webcast', 'Town hall', 'inviter' FROM bench.tenants b;
-- a role per tenant (roles are the cluster's: kept if a load made them
-- before), all members of bench_tenants, which holds the grants
DO $$
DECLARE r name;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench_tenants') THEN
        CREATE ROLE bench_tenants NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%(measured_role)s') THEN
        CREATE ROLE %(measured_role)s LOGIN IN ROLE bench_tenants;
    END IF;
    FOR r IN SELECT b.role FROM bench.tenants b
              WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = b.role) LOOP
        EXECUTE format('CREATE ROLE %%I LOGIN IN ROLE bench_tenants', r);
    END LOOP;
END
$$;
INSERT INTO invitetomedia.tenant_roles (role_name, tenant_id)
SELECT role, tenant_id FROM bench.tenants
UNION ALL
SELECT '%(measured_role)s', tenant_id FROM bench.tenants WHERE k = %(m)d;
GRANT USAGE ON SCHEMA invitetomedia TO bench_tenants;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA invitetomedia TO bench_tenants;
CREATE TABLE bench.tokens (n bigint PRIMARY KEY, token text NOT NULL, email text NOT NULL, site_id text NOT NULL);
CREATE SEQUENCE bench.distinct_seq;
CREATE SEQUENCE bench.multi_seq;
CREATE SEQUENCE bench.guest_seq;
CREATE TABLE bench.guest (k integer PRIMARY KEY, token text NOT NULL, guest_link_id bigint NOT NULL);
"""

# privileges of the tenants' roles on the bench's own objects (again after
# a caller adds some, say callgrind.py's sequence)
TENANT_GRANTS_SQL = """
GRANT USAGE ON SCHEMA bench TO bench_tenants;
GRANT SELECT ON ALL TABLES IN SCHEMA bench TO bench_tenants;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA bench TO bench_tenants;
"""


def load_tenants(pg, db, rows, tenants, sites, workdir, pool=0):
    """A 2.0 database (issue 22): tenants tenants of sites sites each, every
    tenant with its role (bench_t<k>), its users (inviter, guest and every
    invitee) and its media m1; rows single-use links, rows / tenants for
    each tenant, spread over its sites, written with explicit tenant_id,
    site_id and random ids (2.0's growing tables have no defaults for them;
    the other tenants' tokens are not kept: nothing presents them).  The
    measured tenant (measured_tenant()), for which the role bench_app acts,
    holds the links of bench.tokens: n = 1..P, P = max(pool, its share; all
    rows with one tenant), so that every link a run takes is there (the
    database then holds more than rows), link n at its site
    1 + (n - 1) % sites; the hot link (n = 0) and the 1000-use links
    (n < 0) at its default site (site 1); the hot guest link and rows past
    joins of a revoked one, both at its default site.  Returns seconds
    taken."""
    t0 = time.time()
    m = measured_tenant(tenants)
    pg.psql("CREATE DATABASE %s" % db, db="postgres")
    pg.psql(TENANT_SETUP_SQL % {"n": tenants, "s": sites, "m": m, "measured_role": MEASURED_ROLE}, db=db)
    ids = dict((int(k), int(t)) for k, t in (
        line.split("|") for line in pg.psql("SELECT k, tenant_id FROM bench.tenants", db=db).splitlines()))
    d = os.path.join(workdir, "load_" + db)
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    fi = open(os.path.join(d, "invites.tsv"), "w")
    fu = open(os.path.join(d, "users.tsv"), "w")
    ft = open(os.path.join(d, "tokens.tsv"), "w")
    exp = "2099-01-01 00:00:00+00"
    drawn = set()

    def draw():
        # a random positive int8, as the library draws them (no repeats here)
        while True:
            x = int.from_bytes(os.urandom(8), "big") >> 1
            if x and x not in drawn:
                drawn.add(x)
                return x

    def put(k, j, n, email, max_uses, keep):
        if keep:
            tok, h = make_token()
        else:
            tok, h = None, hashlib.sha256(os.urandom(32)).hexdigest()
        site = site_name(k, j)
        fi.write("%d\t%s\t%d\t\\\\x%s\tm1\tviewer\t%s\tF%d\tL%d\tinviter\t%s\t%d\n"
                 % (ids[k], site, draw(), h, email, n, n, exp, max_uses))
        fu.write("%d\tu%d\t%s\tF%d\tL%d\tviewer\n" % (ids[k], n, email, n, n))
        if keep:
            ft.write("%d\t%s\t%s\t%s\n" % (n, tok, email, site))

    share = rows if tenants == 1 else rows // tenants
    own = max(pool, share)
    put(m, 1, 0, "hot@example.com", -1, True)
    for x in range(1, MULTI_LINKS + 1):
        put(m, 1, -x, "multi%d@example.com" % x, 1000, True)
    for n in range(1, own + 1):
        put(m, 1 + (n - 1) % sites, n, "u%d@example.com" % n, 1, True)
    others = [k for k in range(1, tenants + 1) if k != m]
    # every other tenant its share (rows / tenants)
    rest = rows - share if others else 0
    for i in range(rest):
        # round robin over the other tenants, then over each one's sites
        k = others[i % len(others)]
        j = 1 + (i // len(others)) % sites
        n = own + 1 + i
        put(k, j, n, "u%d@example.com" % n, 1, False)
    for f in (fi, fu, ft):
        f.close()
        os.chmod(f.name, 0o644)
    tgen = time.time() - t0
    cols = ("(tenant_id, site_id, invite_id, token_hash, media_id, role, email, first_name, last_name,"
            " invited_by, expires_at, max_uses)")
    procs = []
    for sql in ("COPY invitetomedia.invites %s FROM '%s/invites.tsv'" % (cols, d),
                "COPY invitetomedia.users (tenant_id, user_id, email, first_name, last_name, role)"
                " FROM '%s/users.tsv'" % d,
                "COPY bench.tokens FROM '%s/tokens.tsv'" % d):
        procs.append(subprocess.Popen(pg.base("psql") + ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql]))
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("COPY failed")
    # the guest links, made and revoked through the API as the measured role
    home = site_name(m, 1)
    as_app = "SET ROLE %s; " % MEASURED_ROLE
    for k, name in ((0, "Town hall audience"), (1, "Last week''s webcast")):
        tok, gid = pg.psql(as_app + "SELECT token || '|' || guest_link_id FROM invitetomedia.guest_link_create_at("
                           "'%s', 'm1', 'inviter', '%s')" % (home, name), db=db).split("|")
        pg.psql("INSERT INTO bench.guest VALUES (%d, '%s', %s)" % (k, tok, gid), db=db)
    old = pg.psql("SELECT guest_link_id FROM bench.guest WHERE k = 1", db=db)
    pg.psql(as_app + "SELECT invitetomedia.guest_link_revoke_at('%s', %s, 'inviter')" % (home, old), db=db)
    # its past joins, with explicit ids (n: distinct, as drawn ids are)
    pg.psql("INSERT INTO invitetomedia.guest_link_joins (tenant_id, site_id, join_id, guest_link_id, joined_at,"
            " status, email, first_name, last_name, user_id)"
            " SELECT %d, '%s', n, %s, now() - interval '7 days', 'ok', 'u' || n || '@example.com',"
            " 'F' || n, 'L' || n, 'u' || n FROM generate_series(1, %d) AS n" % (ids[m], home, old, rows), db=db)
    pg.psql(TENANT_GRANTS_SQL, db=db)
    pg.psql("VACUUM (FREEZE, ANALYZE)", db=db)
    for f in ("invites.tsv", "users.tsv", "tokens.tsv"):
        os.unlink(os.path.join(d, f))
    took = time.time() - t0
    log("  loaded %s (2.0): %d tenants x %d sites, %d single-use links (%d of the measured tenant %d, role %s)"
        " + %d others in %.0f s (generation %.0f s)"
        % (db, tenants, sites, own + rest, own, m, MEASURED_ROLE, MULTI_LINKS + 1, took, tgen))
    return took


def make_fresh_template(pg):
    """A fresh install: the extension, settings, one media, the inviter, the
    guest, the hot and 1000-use links; never vacuumed nor analysed."""
    pg.psql("CREATE DATABASE fresh_tpl", db="postgres")
    pg.psql(SETUP_SQL, db="fresh_tpl")
    pg.psql_file(os.path.join(HERE, "plpgsql_reference.sql"), "fresh_tpl")
    lines = []
    rows = [(0, "hot@example.com", -1)] + [(-k, "multi%d@example.com" % k, 1000)
                                            for k in range(1, MULTI_LINKS + 1)]
    for n, email, mu in rows:
        tok, h = make_token()
        lines.append("INSERT INTO invitetomedia.invites (token_hash, media_id, role, email, first_name,"
                     " last_name, invited_by, expires_at, max_uses) VALUES ('\\x%s', 'm1', 'viewer', '%s',"
                     " 'F', 'L', 'inviter', '2099-01-01', %d);" % (h, email, mu))
        lines.append("INSERT INTO invitetomedia.users VALUES ('u%d', '%s', 'F', 'L', 'viewer');" % (n, email))
        lines.append("INSERT INTO bench.tokens VALUES (%d, '%s', '%s');" % (n, tok, email))
    pg.psql(None, db="fresh_tpl", stdin="BEGIN;\n" + "\n".join(lines) + "\nCOMMIT;\n")


RESET_SQL = """
UPDATE invitetomedia.invites i SET use_count = 0, used_up_at = NULL, last_used_at = NULL
  FROM (SELECT DISTINCT invite_id FROM invitetomedia.redemptions) r
 WHERE i.invite_id = r.invite_id;
DELETE FROM invitetomedia.invites WHERE invite_id > %(max_invite)s;
DELETE FROM invitetomedia.redemptions;
DELETE FROM invitetomedia.outbox;
DELETE FROM invitetomedia.guest_link_joins
 WHERE guest_link_id = (SELECT guest_link_id FROM bench.guest WHERE k = 0);
DELETE FROM invitetomedia.users WHERE user_id NOT IN ('inviter', 'guest') AND user_id !~ '^u-?[0-9]+$';
SELECT setval('bench.distinct_seq', 1, false), setval('bench.multi_seq', 1, false),
       setval('bench.guest_seq', 1, false);
"""
# the minimal schema (minfloor), when the site has it
RESET_MIN_SQL = """
UPDATE bench.min_invites m SET use_count = 0, used_up_at = NULL, last_used_at = NULL
  FROM (SELECT DISTINCT invite_id FROM bench.min_redemptions) r
 WHERE m.invite_id = r.invite_id;
DELETE FROM bench.min_redemptions;
"""


# 2.0 (--tenants): ids are drawn, so the links made by a run are those
# created after the load
RESET_TENANTS_SQL = """
UPDATE invitetomedia.invites i SET use_count = 0, used_up_at = NULL, last_used_at = NULL
  FROM (SELECT DISTINCT tenant_id, invite_id FROM invitetomedia.redemptions) r
 WHERE i.tenant_id = r.tenant_id AND i.invite_id = r.invite_id;
DELETE FROM invitetomedia.invites WHERE created_at > '%(loaded_at)s';
DELETE FROM invitetomedia.redemptions;
DELETE FROM invitetomedia.outbox;
DELETE FROM invitetomedia.guest_link_joins
 WHERE guest_link_id = (SELECT guest_link_id FROM bench.guest WHERE k = 0);
DELETE FROM invitetomedia.users WHERE user_id NOT IN ('inviter', 'guest') AND user_id !~ '^u-?[0-9]+$';
SELECT setval('bench.distinct_seq', 1, false), setval('bench.multi_seq', 1, false),
       setval('bench.guest_seq', 1, false);
"""


def reset_site(pg, max_invite, minimal=False, loaded_at=None):
    """max_invite: 1.x's last loaded invite_id; loaded_at: with --tenants,
    the time the load's links were made (later ones are the runs')."""
    if loaded_at is not None:
        pg.psql(RESET_TENANTS_SQL % {"loaded_at": loaded_at})
    else:
        pg.psql(RESET_SQL % {"max_invite": max_invite})
    tables = ("invitetomedia.invites, invitetomedia.redemptions, invitetomedia.outbox,"
              " invitetomedia.users, invitetomedia.guest_links, invitetomedia.guest_link_joins")
    if minimal:
        pg.psql(RESET_MIN_SQL)
        tables += ", bench.min_invites, bench.min_redemptions"
    pg.psql("VACUUM (ANALYZE) " + tables)
    pg.psql("CHECKPOINT")


# --- pgbench ----------------------------------------------------------------

def pgbench(pg, db, name, scripts, clients, seconds, outdir, defines, transactions=None, tcp=False,
            user="postgres"):
    files = []
    for i, (text, weight) in enumerate(scripts):
        p = os.path.join(outdir, "scripts", "%s.%d.sql" % (name, i))
        with open(p, "w") as f:
            f.write(text)
        files += ["-f", "%s@%d" % (p, weight)]
    logdir = os.path.join(outdir, "pgbench_logs")
    prefix = os.path.join(logdir, name.replace("/", "_"))
    cmd = pg.base("pgbench", tcp, user) + ["-n", "-M", "prepared", "-r", "-c", str(clients),
                                "-j", str(min(clients, 2)), "-l", "--log-prefix", prefix]
    cmd += ["-t", str(transactions)] if transactions else ["-T", str(seconds)]
    for k, v in defines.items():
        cmd += ["-D", "%s=%s" % (k, v)]
    cmd += files + [db]
    load1 = os.getloadavg()[0]
    r = subprocess.run(cmd, capture_output=True, text=True)
    with open(os.path.join(outdir, "pgbench_output.txt"), "a") as f:
        f.write("### %s\n$ %s\n%s\n%s\n" % (name, " ".join(cmd), r.stdout, r.stderr))
    out = r.stdout
    res = {"ok": r.returncode == 0, "loadavg": load1, "stderr": r.stderr.strip()[-500:]}
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    res["xacts"] = int(m.group(1)) if m else 0
    m = re.search(r"latency average = ([\d.]+) ms", out)
    res["lat_ms"] = float(m.group(1)) if m else float("nan")
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    res["tps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"number of failed transactions: (\d+)", out)
    res["failed"] = int(m.group(1)) if m else 0
    # per-statement latencies (-r): the consume statement of a composite
    # script (none for the application's transaction of several statements)
    stmts = re.findall(r"^\s+([\d.]+)\s+\d+\s+(.*)$", out, re.M)
    cons = [float(l) for l, s in stmts
            if "consume" in s or "UPDATE invitetomedia.invites" in s or "UPDATE bench.min_invites" in s
            or "guest_link" in s]
    res["consume_stmt_ms"] = cons[0] if cons and not any(s == "BEGIN;" for l, s in stmts) else None
    # p99 from the per-transaction logs (latency is the 3rd field, in us)
    lats = []
    for fn in os.listdir(logdir):
        if fn.startswith(os.path.basename(prefix) + "."):
            path = os.path.join(logdir, fn)
            with open(path) as f:
                for line in f:
                    p = line.split()
                    if len(p) >= 3 and p[2].isdigit():
                        lats.append(int(p[2]))
            os.unlink(path)
    lats.sort()
    res["p99_ms"] = lats[min(len(lats) - 1, int(len(lats) * 0.99))] / 1000.0 if lats else float("nan")
    return res


def statuses(pg, db, table="invitetomedia.redemptions"):
    """The run's records by status (table: scenarios.records(), the
    redemptions, the minimal schema's records, or for a guest scenario the
    joins of the hot guest link)."""
    s = pg.psql("SELECT string_agg(status || '=' || n, ' ' ORDER BY status) FROM"
                " (SELECT status, count(*) AS n FROM %s GROUP BY status) x" % table, db=db)
    return s or "none"


# --- memory -----------------------------------------------------------------

def memory_check(pg, calls, outdir):
    """Consumes of the hot unlimited link, one session, memory before/after."""
    mem = "SELECT 'MEM', '%s', sum(total_bytes), sum(used_bytes) FROM pg_backend_memory_contexts;\n"
    out = ["\\pset format unaligned", "\\pset tuples_only on",
           "PREPARE c AS SELECT c.status FROM bench.tokens t,"
           " LATERAL invitetomedia.invite_consume(t.token, t.email) c WHERE t.n = 0;",
           mem % "start", "\\o /dev/null"]
    out += ["EXECUTE c;"] * 1000
    out += ["\\o", mem % "warm", "\\o /dev/null"]
    out += ["EXECUTE c;"] * calls
    out += ["\\o", mem % "end"]
    t0 = time.time()
    r = pg.psql(None, stdin="\n".join(out) + "\n")
    took = time.time() - t0
    vals = {}
    for line in r.splitlines():
        p = line.split("|")
        if p[0] == "MEM":
            vals[p[1]] = (int(p[2]), int(p[3]))
    ok = pg.psql("SELECT count(*) FROM invitetomedia.redemptions WHERE status = 'ok'")
    session = {"calls": calls, "start": vals["start"][0], "warm": vals["warm"][0], "end": vals["end"][0],
               "used_warm": vals["warm"][1], "used_end": vals["end"][1], "seconds": took, "ok": int(ok)}
    pg.psql("DELETE FROM invitetomedia.redemptions; UPDATE invitetomedia.invites SET use_count = 0"
            " WHERE max_uses = -1")
    pg.psql("VACUUM invitetomedia.invites, invitetomedia.redemptions")

    # the same inside one statement: a DO block (committing every 100 calls so
    # the hot row's versions can be pruned)
    do = """
DO $$
DECLARE tok text; em text; b0 bigint; b1 bigint; u0 bigint; u1 bigint;
BEGIN
  SELECT t.token, t.email INTO tok, em FROM bench.tokens t WHERE t.n = 0;
  FOR i IN 1..1000 LOOP PERFORM invitetomedia.invite_consume(tok, em); END LOOP;
  COMMIT;
  SELECT sum(total_bytes), sum(used_bytes) INTO b0, u0 FROM pg_backend_memory_contexts;
  FOR i IN 1..%d LOOP
    PERFORM invitetomedia.invite_consume(tok, em);
    IF i %% 100 = 0 THEN COMMIT; END IF;
  END LOOP;
  COMMIT;
  SELECT sum(total_bytes), sum(used_bytes) INTO b1, u1 FROM pg_backend_memory_contexts;
  RAISE NOTICE 'MEMDO|%%|%%|%%|%%', b0, b1, u0, u1;
END
$$;
""" % calls
    t0 = time.time()
    cmd = pg.base("psql") + ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", "site", "-c", do]
    r = subprocess.run(cmd, capture_output=True, text=True)
    took = time.time() - t0
    m = re.search(r"MEMDO\|(\d+)\|(\d+)\|(\d+)\|(\d+)", r.stderr)
    doblk = None
    if m:
        doblk = {"calls": calls, "warm": int(m.group(1)), "end": int(m.group(2)),
                 "used_warm": int(m.group(3)), "used_end": int(m.group(4)), "seconds": took}
    else:
        log("  DO-block memory check failed: " + r.stderr[-500:])
    ok2 = pg.psql("SELECT count(*) FROM invitetomedia.redemptions WHERE status = 'ok'")
    if doblk:
        doblk["ok"] = int(ok2)
    pg.psql("DELETE FROM invitetomedia.redemptions; UPDATE invitetomedia.invites SET use_count = 0"
            " WHERE max_uses = -1")
    pg.psql("VACUUM invitetomedia.invites, invitetomedia.redemptions")
    return session, doblk


# --- report -----------------------------------------------------------------

def fmt(x, nd=1):
    if x is None or x != x:
        return "-"
    return "%.*f" % (nd, x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sock", required=True)
    ap.add_argument("--port", required=True)
    ap.add_argument("--tcp-host", default="127.0.0.1",
                    help="the server's TCP address, for the peers over TCP (app_tcp, c_tcp)")
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--clients", default="1,2,8")
    ap.add_argument("--scenarios", default=",".join(S.SCENARIOS))
    ap.add_argument("--impls", default=",".join(S.IMPLS),
                    help="of %s; app = app_unix,app_tcp" % ",".join(S.IMPLS))
    ap.add_argument("--modes", default="loaded,fresh")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every scenario this many times, interleaved (targets use the mean tps)")
    ap.add_argument("--memory-calls", type=int, default=1000000)
    ap.add_argument("--scale-xacts", type=int, default=5000)
    ap.add_argument("--pool", type=int, default=0,
                    help="single-use links loaded (default: max(rows, seconds * 25000))")
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--conf", required=True)
    ap.add_argument("--tag", default="",
                    help="added to the result files' names (latest<tag>.md): -sync-on")
    ap.add_argument("--tenants", type=int, default=0,
                    help="a 2.0 database of this many tenants (issue 22; see load_tenants()); 0: 1.1.1's site")
    ap.add_argument("--sites-per-tenant", type=int, default=3)
    ap.add_argument("--api", default="at", choices=S.APIS,
                    help="with --tenants: the _at functions (at) or the 1.x names (1x)")
    a = ap.parse_args()
    if a.tenants < 0 or a.sites_per_tenant < 1:
        ap.error("--tenants takes a number >= 0, --sites-per-tenant one >= 1")

    pg = PG(a.sock, a.port, a.tcp_host)
    clients = [int(c) for c in a.clients.split(",")]
    scen = a.scenarios.split(",")
    impls = []
    for i in a.impls.split(","):
        for j in S.ALIASES.get(i, (i,)):
            if j not in S.IMPLS:
                ap.error("unknown implementation %s" % j)
            if j not in impls:
                impls.append(j)
    modes = a.modes.split(",")
    tenants = a.tenants
    if tenants:
        # 2.0 (issue 22): the extension's calls on the loaded database only;
        # the floor, the PL/pgSQL reference and the application's peer are
        # written on 1.1.1's tables, and the scale probe and the memory
        # check on its site
        dropped = [i for i in impls if i not in S.V2_IMPLS]
        impls = [i for i in impls if i in S.V2_IMPLS]
        if not impls:
            ap.error("--tenants runs the implementations %s only" % ",".join(S.V2_IMPLS))
        if dropped:
            log("== --tenants: not run (written on 1.1.1's tables): %s" % ",".join(dropped))
        if modes != ["loaded"]:
            log("== --tenants: the loaded mode only")
            modes = ["loaded"]
        scen = [sc for sc in scen if sc in S.V2_SCENARIOS]
        if a.scale_xacts or a.memory_calls:
            log("== --tenants: no scale probe, no memory check (1.1.1's site only)")
        a.scale_xacts = a.memory_calls = 0
        a.tag += "-tenants%d%s" % (tenants, "-1x" if a.api == "1x" else "")
    os.makedirs(os.path.join(a.outdir, "scripts"), exist_ok=True)
    os.makedirs(os.path.join(a.outdir, "pgbench_logs"), exist_ok=True)
    os.makedirs(a.results, exist_ok=True)

    # the pool must hold every single-use link one run can take (reset between runs)
    site_rows = max(a.rows, a.pool or a.seconds * 30000)
    minimal = "minfloor" in impls and "loaded" in modes
    loaded_at = None
    if tenants:
        # the measured tenant's links: as many as one run can take (the 1.x
        # names use its default site's only, one link in sites_per_tenant)
        pool = (a.pool or a.seconds * 30000) * (a.sites_per_tenant if a.api == "1x" else 1)
        log("== loading 2.0: %d tenants x %d sites, --rows %d single-use links (an N-th per tenant), the"
            " measured tenant at least %d, calls as %s through the %s functions"
            % (tenants, a.sites_per_tenant, a.rows, pool, MEASURED_ROLE, "_at" if a.api == "at" else "1.x"))
        load_s = load_tenants(pg, "site", a.rows, tenants, a.sites_per_tenant, a.outdir, pool=pool)
        loaded_at = pg.psql("SELECT max(created_at) FROM invitetomedia.invites")
        max_invite = None
        site_rows = pool
        home = site_name(measured_tenant(tenants), 1)
    else:
        log("== loading the site: %d single-use links (--rows %d)" % (site_rows, a.rows))
        load_s = load(pg, "site", site_rows, a.outdir, minimal=minimal)
        max_invite = int(pg.psql("SELECT max(invite_id) FROM invitetomedia.invites"))
    site_invites = int(pg.psql("SELECT count(*) FROM invitetomedia.invites"))
    if "fresh" in modes:
        make_fresh_template(pg)

    results = []
    runs = [(rnd, mode, sc, cl, impl) for rnd in range(1, a.rounds + 1) for mode in modes
            for sc in scen for cl in clients for impl in impls]
    for rnd, mode, sc, cl, impl in runs:
        scripts = (S.v2_scripts(sc, impl, mode, a.api, a.sites_per_tenant, home) if tenants
                   else S.scripts(sc, impl, mode))
        if scripts is None:   # not with this implementation, or not in this mode
            continue
        name = "%s.%s.%s.c%d" % (mode, sc, impl, cl)
        if a.rounds > 1:
            name += ".r%d" % rnd
        if mode == "loaded":
            db = "site"
            defines = {"lo": 1, "hi": site_rows}
            rows = site_invites
        else:
            db = "fresh_run"
            pg.psql("DROP DATABASE IF EXISTS fresh_run", db="postgres")
            pg.psql("CREATE DATABASE fresh_run TEMPLATE fresh_tpl", db="postgres")
            defines = {"lo": -MULTI_LINKS, "hi": -1}
            rows = int(pg.psql("SELECT count(*) FROM invitetomedia.invites", db=db))
        r = pgbench(pg, db, name, scripts, cl, a.seconds, a.outdir, defines, tcp=impl in S.TCP_IMPLS,
                    user=MEASURED_ROLE if tenants else "postgres")
        st = statuses(pg, db, S.records(sc, impl)) if sc in S.CONSUMING else ""
        rows_end = int(pg.psql("SELECT count(*) FROM invitetomedia.invites", db=db)) \
            if mode == "fresh" else rows
        if mode == "loaded":
            reset_site(pg, max_invite, minimal, loaded_at)
        r.update(mode=mode, scenario=sc, impl=impl, clients=cl, rows=rows,
                 rows_end=rows_end, statuses=st, round=rnd)
        nok = int(re.search(r"ok=(\d+)", st).group(1)) if re.search(r"ok=(\d+)", st) else 0
        # every consume must have taken the ok path (mixed: about 90 % of transactions)
        need = r["xacts"] * (0.8 if sc == "mixed" else 1.0)
        bad = (not r["ok"]) or r["failed"] or (
            sc in S.CONSUMING and (nok < need or any(not p.startswith("ok=") for p in st.split())))
        r["note"] = "CHECK" if bad else ""
        results.append(r)
        log("  %-44s tps %9s  lat %7s ms  p99 %7s ms  %s %s%s" % (
            name, fmt(r["tps"]), fmt(r["lat_ms"], 3), fmt(r["p99_ms"], 3), st, r["note"],
            (" " + r["stderr"]) if not r["ok"] else ""))
    if "fresh" in modes:
        pg.psql("DROP DATABASE IF EXISTS fresh_run", db="postgres")

    # ratio to the floor (of the same round)
    idx_round = {(r["round"], r["mode"], r["scenario"], r["impl"], r["clients"]): r for r in results}
    for r in results:
        f = idx_round.get((r["round"], r["mode"], r["scenario"], "floor", r["clients"]))
        r["ratio"] = r["tps"] / f["tps"] if f and f["tps"] else None
    # one entry per run of every round: targets use the mean tps of the rounds
    idx = {}
    for r in results:
        idx.setdefault((r["mode"], r["scenario"], r["impl"], r["clients"]), []).append(r)

    # --- scale probe: consume latency, 1 client, fixed transactions ----------
    scale = {}
    if a.scale_xacts:
        log("== scale probe: %d consumes of distinct links, 1 client" % a.scale_xacts)
        small = 10000
        load(pg, "scale10k", small, a.outdir)
        for db, label in (("scale10k", small), ("site", site_invites)):
            for impl in ("c", "floor"):
                r = pgbench(pg, db, "scale.%s.%s" % (db, impl), S.scripts("consume_distinct", impl, "loaded"),
                            1, 0, a.outdir, {"lo": 1, "hi": 1}, transactions=min(a.scale_xacts, small // 2))
                st = statuses(pg, db)
                scale[(label, impl)] = r
                log("  %-10s rows %9d  %-6s lat %s ms p99 %s ms  %s" % (db, label, impl, fmt(r["lat_ms"], 3),
                                                                    fmt(r["p99_ms"], 3), st))
                if db == "site":
                    reset_site(pg, max_invite, minimal)
                else:
                    pg.psql("DELETE FROM invitetomedia.redemptions; UPDATE invitetomedia.invites SET"
                            " use_count = 0, used_up_at = NULL WHERE use_count > 0;"
                            " SELECT setval('bench.distinct_seq', 1, false)", db=db)
        pg.psql("DROP DATABASE scale10k", db="postgres")

    # --- memory ---------------------------------------------------------------
    mem_s = mem_do = None
    if a.memory_calls:
        log("== memory: %d consumes in one session (and in one DO block)" % a.memory_calls)
        mem_s, mem_do = memory_check(pg, a.memory_calls, a.outdir)
        log("  session: %s" % mem_s)
        log("  DO block: %s" % mem_do)

    # --- targets --------------------------------------------------------------
    def tps(mode, sc, impl, cl, rnd=None):
        rs = [r for r in idx.get((mode, sc, impl, cl), []) if rnd is None or r["round"] == rnd]
        return sum(r["tps"] for r in rs) / len(rs) if rs else None

    targets = []

    def target(desc, value, need, cmp=">="):
        if value is None:
            targets.append((desc, "-", "%s %.2f" % (cmp, need), "NOT RUN"))
            return
        ok = {">=": value >= need, "<=": value <= need, "<": value < need}[cmp]
        targets.append((desc, "%.2f" % value, ("%s %.2f" % (cmp, need)), "PASS" if ok else "FAIL"))

    def ratio(x, y):
        return x / y if x and y else None

    def checked(*keys):
        """True if a run behind these (mode, scenario, impl, clients) was
        marked CHECK: its ratio is not to be trusted."""
        return any(r["note"] for k in keys for r in idx.get(k, []))

    def ratio_target(desc, num, den, need=None):
        """A ratio of two runs' tps; with rounds, of their means, each
        round's ratio shown too.  need None: shown for information (and
        left out when not run)."""
        v = ratio(tps(*num), tps(*den))
        if need is not None:
            target(desc, v, need)
        elif v is not None:
            targets.append((desc, "%.2f" % v, "-", "info"))
        else:
            return
        if v is not None and checked(num, den):
            t = targets[-1]
            targets[-1] = (t[0], t[1], t[2], "CHECK (a run's records were not all ok)")
        if a.rounds > 1 and targets[-1][1] != "-":
            per = [ratio(tps(*num, rnd=k), tps(*den, rnd=k)) for k in range(1, a.rounds + 1)]
            t = targets[-1]
            targets[-1] = (t[0], "%s (rounds: %s)" % (t[1], ", ".join(fmt(p, 2) for p in per)), t[2], t[3])

    # issue 13's targets, in its order; "loaded" is the site of --rows links,
    # "fresh" a new install (consume_distinct there creates and consumes)
    for mode in modes:
        cd = lambda impl, cl=2: (mode, "consume_distinct", impl, cl)  # noqa: E731
        ratio_target("%s: consume distinct, 2 clients, C / PL/pgSQL" % mode, cd("c"), cd("plpgsql"), 1.5)
        ratio_target("%s: consume distinct, 2 clients, C / floor" % mode, cd("c"), cd("floor"), 1.0)
        if mode == "loaded":
            ratio_target("loaded: consume distinct, 2 clients, C / minimal-schema floor",
                         cd("c"), cd("minfloor"), 0.85)
        ratio_target("%s: hot unlimited invite link / distinct links, 8 clients, C" % mode,
                     (mode, "consume_hot", "c", 8), cd("c", 8), 0.8)
        # 1.1: joins of one unlimited guest link by 8 clients (each a new
        # email of an existing user) against consumes of distinct invite links;
        # 1.1.1 reads no user, so guest_hot_new (emails nobody has, whose
        # every join created its user in 1.1) does the same work (info)
        if mode == "loaded":
            ratio_target("loaded: hot guest link (existing users) / distinct invite links, 8 clients, C",
                         ("loaded", "guest_hot", "c", 8), cd("c", 8), 0.8)
            ratio_target("loaded: hot guest link (emails nobody has; 1.1 created their users) /"
                         " distinct invite links, 8 clients, C", ("loaded", "guest_hot_new", "c", 8), cd("c", 8))
        ratio_target("%s: invite_check, 2 clients, C / floor" % mode,
                     (mode, "check", "c", 2), (mode, "check", "floor", 2), 1.0)
    if mem_s:
        grow = (mem_s["end"] - mem_s["warm"]) / 1048576.0
        target("memory: %d consumes in one session, growth after warm-up (MB)" % mem_s["calls"], grow, 1.0, "<")
        grow0 = (mem_s["end"] - mem_s["start"]) / 1048576.0
        targets.append(("memory: same, growth from the session's first call (MB, info)", "%.2f" % grow0, "-", "info"))
    if mem_do:
        grow = (mem_do["end"] - mem_do["warm"]) / 1048576.0
        target("memory: %d consumes in one DO block, growth (MB)" % mem_do["calls"], grow, 1.0, "<")
    if scale:
        big = site_invites
        v = ratio(scale[(big, "c")]["lat_ms"], scale[(10000, "c")]["lat_ms"])
        if big >= 10000000:
            target("scale: consume latency at %d rows / at 10k rows, C" % big, v, 1.3, "<=")
        else:
            targets.append(("scale: consume latency at %d rows / at 10k rows, C (the target is for 10M:"
                            " run --rows 10000000)" % big, "%.2f" % v if v else "-", "<= 1.30", "n/a"))
    for mode in modes:
        cr = lambda impl: (mode, "create", impl, 2)  # noqa: E731
        ratio_target("%s: create without email, 2 clients, C / floor" % mode, cr("c"), cr("floor"), 0.95)
        # retired as a target (issue 13): both call the same policy functions
        ratio_target("%s: create without email, 2 clients, C / PL/pgSQL (info)" % mode, cr("c"), cr("plpgsql"))
    # the peer users would actually pick (issue 13): the application's
    # statements; over TCP against C over TCP when that ran
    if "loaded" in modes:
        cd = lambda impl, cl=2: ("loaded", "consume_distinct", impl, cl)  # noqa: E731
        ratio_target("loaded: consume distinct, 2 clients, C / application over the Unix socket",
                     cd("c"), cd("app_unix"))
        if tps(*cd("c_tcp")):
            ratio_target("loaded: consume distinct, 2 clients, C / application, both over TCP",
                         cd("c_tcp"), cd("app_tcp"))
        ratio_target("loaded: consume distinct, 2 clients, C (Unix socket) / application over TCP",
                     cd("c"), cd("app_tcp"))
        ratio_target("loaded: hot unlimited invite link, 8 clients, C / application over the Unix socket",
                     ("loaded", "consume_hot", "c", 8), ("loaded", "consume_hot", "app_unix", 8))

    # the headline: consume on distinct links of the loaded site, every
    # implementation at every client count, and C's ratio to each
    headline = []
    if "loaded" in modes and "consume_distinct" in scen:
        ran = [i for i in S.IMPLS if any(tps("loaded", "consume_distinct", i, cl) for cl in clients)]
        if ran:
            headline.append("| consume, distinct links (loaded, %d links) | %s | %s |" % (
                site_invites, " | ".join("%d client%s tps" % (cl, "" if cl == 1 else "s") for cl in clients),
                " | ".join("C / this, %d" % cl for cl in clients)))
            headline.append("|---|%s|" % "|".join(["---:"] * (2 * len(clients))))
            for i in ran:
                base = "c_tcp" if i in S.TCP_IMPLS and i != "c_tcp" and tps("loaded", "consume_distinct",
                                                                           "c_tcp", 2) else "c"
                cells = [fmt(tps("loaded", "consume_distinct", i, cl), 0) for cl in clients]
                rats = [fmt(ratio(tps("loaded", "consume_distinct", base, cl),
                                  tps("loaded", "consume_distinct", i, cl)), 2)
                        + (" (C over TCP)" if base == "c_tcp" else "") for cl in clients]
                note = " **CHECK**" if any(checked(("loaded", "consume_distinct", i, cl)) for cl in clients) else ""
                headline.append("| %s%s | %s | %s |" % (S.LABELS[i], note, " | ".join(cells), " | ".join(rats)))

    # --- output ---------------------------------------------------------------
    hdr = ["mode", "operation", "impl", "clients", "rows", "rows_end", "tps", "lat_ms", "p99_ms",
           "ratio_to_floor", "consume_stmt_ms", "statuses", "loadavg", "note", "round"]
    csvp = os.path.join(a.results, "latest%s.csv" % a.tag)
    with open(csvp, "w") as f:
        f.write(",".join(hdr) + "\n")
        for r in results:
            f.write(",".join(str(x) for x in [
                r["mode"], r["scenario"], r["impl"], r["clients"], r["rows"], r["rows_end"],
                fmt(r["tps"]), fmt(r["lat_ms"], 3), fmt(r["p99_ms"], 3), fmt(r["ratio"], 2),
                fmt(r["consume_stmt_ms"], 3), r["statuses"], fmt(r["loadavg"], 2), r["note"],
                r["round"]]) + "\n")

    md = []
    md.append("Run %s on %s (%d cores), PostgreSQL %s; %d s per run, `-M prepared`; site %d invites (loaded in %.0f s)%s."
              % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.uname().nodename, os.cpu_count(),
                 pg.psql("SHOW server_version", db="postgres"), a.seconds, site_invites, load_s,
                 "; %d rounds, interleaved (targets: mean tps of the rounds)" % a.rounds if a.rounds > 1 else ""))
    if tenants:
        md.append("")
        md.append("Extension 2.0: %d tenants x %d sites; the calls run as %s (tenant %d's role) through the %s"
                  " functions; %d of the links are that tenant's (the rows column counts every tenant's)."
                  % (tenants, a.sites_per_tenant, MEASURED_ROLE, measured_tenant(tenants),
                     "_at" if a.api == "at" else "1.x", site_rows))
    md.append("")
    md.append("Configuration: `" + "`, `".join(open(a.conf).read().split("\n")[:-1]) + "`")
    md.append("")
    rcol = a.rounds > 1
    md.append("| mode | operation | impl | clients | %srows | tps | mean ms | p99 ms | x floor | statuses |"
              % ("round | " if rcol else ""))
    md.append("|---|---|---|---:|%s---:|---:|---:|---:|---:|---|" % ("---:|" if rcol else ""))
    for r in results:
        rows = str(r["rows"]) if r["mode"] == "loaded" else "%d→%d" % (r["rows"], r["rows_end"])
        md.append("| %s | %s | %s | %d | %s%s | %s | %s | %s | %s | %s |" % (
            r["mode"], r["scenario"], r["impl"], r["clients"], ("%d | " % r["round"]) if rcol else "",
            rows, fmt(r["tps"], 0), fmt(r["lat_ms"], 3),
            fmt(r["p99_ms"], 3), fmt(r["ratio"], 2), r["statuses"] + (" **" + r["note"] + "**" if r["note"] else "")))
    if scale:
        md.append("")
        md.append("Scale probe (1 client, %d consumes of distinct links, fixed count):" % min(a.scale_xacts, 5000))
        md.append("")
        md.append("| rows | impl | mean ms | p99 ms |")
        md.append("|---:|---|---:|---:|")
        for (rows, impl), r in sorted(scale.items()):
            md.append("| %d | %s | %s | %s |" % (rows, impl, fmt(r["lat_ms"], 3), fmt(r["p99_ms"], 3)))
    if mem_s:
        md.append("")
        md.append("Memory (sum of pg_backend_memory_contexts.total_bytes): session of %d consumes: %d → %d (after 1000-call warm-up) → %d bytes in %.0f s, %d ok"
                  % (mem_s["calls"], mem_s["start"], mem_s["warm"], mem_s["end"], mem_s["seconds"], mem_s["ok"]))
        if mem_do:
            md.append("; one DO block of %d consumes: %d → %d bytes in %.0f s." % (
                mem_do["calls"], mem_do["warm"], mem_do["end"], mem_do["seconds"]))
    if headline:
        md.append("")
        md.append("Headline (consume on distinct links; C / this: C's tps over this implementation's,"
                  " the peers over TCP against C over TCP when that ran):")
        md.append("")
        md += headline
    md.append("")
    md.append("| target | measured | needed | result |")
    md.append("|---|---:|---:|---|")
    for t in targets:
        md.append("| %s | %s | %s | %s |" % t)
    mdp = os.path.join(a.results, "latest%s.md" % a.tag)
    with open(mdp, "w") as f:
        f.write("\n".join(md) + "\n")

    # --- plot -----------------------------------------------------------------
    # one bar per implementation that ran (the peers of issue 13 only in
    # the scenarios they run: zero elsewhere)
    bars = [i for i in S.IMPLS if any(r["impl"] == i for r in results)]
    looks = {"c": ("C", "#1f77b4"), "floor": ("floor (one SQL statement)", "#7f7f7f"),
             "minfloor": ("minimal-schema floor", "#bcbd22"), "plpgsql": ("PL/pgSQL", "#ff7f0e"),
             "app_unix": ("application (Unix socket)", "#2ca02c"),
             "app_tcp": ("application (TCP)", "#98df8a"), "c_tcp": ("C (TCP)", "#aec7e8")}
    panels = []
    for mode in modes:
        for cl in sorted(set([c for c in clients if c == 2] or clients[:1]) | {max(clients)}):
            dp = os.path.join(a.outdir, "plot_%s_%d.dat" % (mode, cl))
            with open(dp, "w") as f:
                f.write("# op %s\n" % " ".join(bars))
                for sc in scen:
                    f.write("%s %s\n" % (sc, " ".join(fmt(tps(mode, sc, i, cl) or 0, 0) for i in bars)))
            panels.append((mode, cl, dp))
    gp = ["set terminal png size 1400,%d" % (440 * ((len(panels) + 1) // 2)),
          "set termoption noenhanced",   # scenario names hold underscores
          "set output '%s'" % os.path.join(a.results, "latest%s.png" % a.tag),
          "set multiplot layout %d,2 title 'invitetomedia: transactions per second (higher is better)'"
          % ((len(panels) + 1) // 2),
          "set style data histograms", "set style histogram clustered gap 1",
          "set style fill solid 0.8 border -1", "set xtics rotate by -25 scale 0",
          "set key below horizontal width -3 font ',9'", "set grid ytics", "set yrange [0:*]"]
    for mode, cl, dp in panels:
        gp.append("set title '%s, %d clients'" % (mode, cl))
        gp.append("plot " + ", ".join(
            "%s using %d%s title '%s' lc rgb '%s'" % ("'%s'" % dp if k == 0 else "''", k + 2,
                                                     ":xtic(1)" if k == 0 else "", looks[i][0], looks[i][1])
            for k, i in enumerate(bars)))
    gp.append("unset multiplot")
    gpp = os.path.join(a.outdir, "plot.gp")
    with open(gpp, "w") as f:
        f.write("\n".join(gp) + "\n")
    subprocess.run(["gnuplot", gpp], check=False)

    log("")
    log(open(mdp).read())
    log("wrote %s, %s, %s" % (csvp, mdp, os.path.join(a.results, "latest%s.png" % a.tag)))


if __name__ == "__main__":
    main()
