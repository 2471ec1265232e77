#!/usr/bin/python3
"""difffuzz: the direct path (itm_direct.c) against the SQL statements.

Each case takes one or more DBA alterations from the catalogue below, makes
two identical databases from a prepared template (the extension, pgcrypto,
a small media site, settings enabled), applies the alterations to both, and
runs the same random sequence of API calls on both: in database "on" with
invitetomedia.direct_use = on, in database "off" with it off.  Calls run in
transactions (autocommit, READ COMMITTED, REPEATABLE READ, SERIALIZABLE),
with savepoints, several calls in one statement, DBA actions and calls from a
second connection between them (also while a transaction is open), and DDL
held in an open transaction while a call waits for its lock.  Every answer
(rows, status, SQLSTATE and message, notifications) is compared after
normalisation (tokens and ids symbolic, timestamps reduced to past/now/future
and whole-second-ness), and the tables after each sequence.  A difference or
a lost connection fails the alteration family, with the seed, the case, a
minimised sequence and both answers.

Run by test/difffuzz/run.sh inside pg_virtualenv (libpq's PG* variables name
the cluster; the role must be a superuser).  See test/difffuzz/README.md.

Environment: DIFFFUZZ_SECONDS (budget, default 180), DIFFFUZZ_SEED (the
run's seed), DIFFFUZZ_CASE (replay one case: "SEED" or "SEED alter=a+b
keep=0,3:1+2"), DIFFFUZZ_ALTER (comma-separated families to draw from),
DIFFFUZZ_SEQUENCES (stop after that many), DIFFFUZZ_MINIMIZE_SECONDS (per
failure, default 40; 0 = no minimising), DIFFFUZZ_VERBOSE=1.
"""
import base64
import collections
import datetime
import hashlib
import json
import os
import random
import re
import sys
import threading
import time
import traceback
import zlib

try:
    import psycopg
except Exception as e:  # pragma: no cover - reported as a failure to start
    print(f"difffuzz_setup ... FAILED (could not start: python3-psycopg: {e})")
    print("# difffuzz: 0 sequences, 0 alterations, 0 calls, seed -, 1 differences")
    sys.exit(2)

EXT = "invitetomedia"
TEMPLATE = "dfz_template"
DBS = {"off": "dfz_off", "on": "dfz_on"}
VERBOSE = os.environ.get("DIFFFUZZ_VERBOSE") == "1"
TRACE = os.environ.get("DIFFFUZZ_TRACE") == "1"


def log(*a):
    if VERBOSE:
        print("    ..", *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# tokens (src/itm_text.c): prefix + URL-safe base64 of 32 random bytes and
# their CRC-32, big-endian; 52 characters
# ---------------------------------------------------------------------------
def make_token(rng, prefix="itm_"):
    raw = bytes(rng.getrandbits(8) for _ in range(32))
    payload = raw + (zlib.crc32(raw) & 0xFFFFFFFF).to_bytes(4, "big")
    return prefix + base64.urlsafe_b64encode(payload).decode()


TOKEN_RE = re.compile(r"it[mg]_[A-Za-z0-9_-]{48}")
FORGED = make_token(random.Random(4242))          # valid checksum, no such link
FORGED_GUEST = make_token(random.Random(4343), "itg_")
MALFORMED = "itm_thisisnotatoken"

# ---------------------------------------------------------------------------
# the fixture (sql/include/fixture.psql) and the settings of every case
# ---------------------------------------------------------------------------
FIXTURE = r"""
SET client_min_messages = warning;
INSERT INTO {s}.users (user_id, email, first_name, last_name, role) VALUES
    ('owner',       'owner@media.example',       'Olivia', 'Owner',       'private_only'),
    ('coowner',     'coowner@media.example',     'Colin',  'Coowner',     'private_only'),
    ('coeditor',    'coeditor@media.example',    'Cora',   'Coeditor',    'private_only'),
    ('copublisher', 'copublisher@media.example', 'Cyril',  'Copublisher', 'private_only'),
    ('coviewer',    'coviewer@media.example',    'Cleo',   'Coviewer',    'private_only'),
    ('stranger',    'stranger@media.example',    'Sam',    'Stranger',    'private_only'),
    ('viewer',      'viewer@media.example',      'Vera',   'Viewer',      'viewer'),
    ('admin',       'admin@media.example',       'Ada',    'Admin',       'admin'),
    ('uadmin',      'uadmin@media.example',      'Uma',    'Uadmin',      'unmoderated_admin'),
    ('existing',    'Existing.Person@University.edu', 'Erin', 'Existing', 'viewer');
INSERT INTO {s}.media (media_id, media_type, title, owner_id) VALUES
    ('vid',  'video',    'Intro video',    'owner'),
    ('doc',  'document', 'Handbook',       'owner'),
    ('live', 'webcast',  'Launch webcast', 'owner'),
    ('room', 'room',     'Team room',      'owner'),
    ('vvid', 'video',    'Viewer upload',  'viewer'),
    ('alive','webcast',  'Admin event',    'admin');
INSERT INTO {s}.media_collaborators (media_id, user_id, permission) VALUES
    ('live', 'coowner', 'co_owner'), ('live', 'coeditor', 'co_editor'),
    ('live', 'copublisher', 'co_publisher'), ('live', 'coviewer', 'co_viewer'),
    ('live', 'uadmin', 'co_owner'), ('live', 'admin', 'co_viewer'),
    ('doc', 'coeditor', 'co_editor');
INSERT INTO {s}.group_members (group_id, user_id) VALUES
    ('speakers', 'coeditor'), ('speakers', 'stranger');
INSERT INTO {s}.email_templates (name, subject, body) VALUES
    ('welcome', 'Invitation to {MEDIA_TITLE}',
     'Hello {FIRST_NAME} {LAST_NAME}, join {MEDIA_TITLE} as {ROLE}: {URL} (until {EXPIRES_AT})');
UPDATE {s}.settings
   SET enabled = true, link_duration = 1440, link_reusability = 2,
       invite_email_template = 'welcome', restrict_new_user_domains = '{university.edu}',
       link_base_url = 'https://media.example/join?t=', lockout_attempts = 3,
       invites_per_hour = 0;
-- what the DBA's triggers and rules of the catalogue write
CREATE TABLE public.dfz_audit (n bigserial PRIMARY KEY, tag text, info text);
GRANT ALL ON public.dfz_audit TO PUBLIC;
GRANT ALL ON SEQUENCE public.dfz_audit_n_seq TO PUBLIC;
CREATE FUNCTION public.dfz_audit_trig() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE
    r jsonb;
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        r := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
    END IF;
    INSERT INTO public.dfz_audit (tag, info)
    VALUES (TG_NAME, concat_ws(' ', TG_WHEN, TG_LEVEL, TG_OP, TG_TABLE_NAME,
                               r ->> 'status', r ->> 'device_id', r ->> 'use_count',
                               r ->> 'email', r ->> 'first_name'));
    IF TG_LEVEL = 'ROW' THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    RETURN NULL;
END
$f$;
CREATE SEQUENCE public.dfz_seq;
GRANT ALL ON SEQUENCE public.dfz_seq TO PUBLIC;
GRANT USAGE ON SCHEMA {s} TO dfz_app;
GRANT EXECUTE ON FUNCTION
    {s}.invite_create(text, text, text, text, text, text, boolean, timestamptz),
    {s}.invite_consume(text, text, text), {s}.invite_check(text),
    {s}.invite_revoke(bigint, text), {s}.invite_resend(bigint, text, boolean),
    {s}.invite_revoke_all(text, text), {s}.invite_purge(interval),
    {s}.guest_link_create(text, text, text, integer, integer),
    {s}.guest_link_join(text, text, text, text, text),
    {s}.guest_link_revoke(bigint, text)
  TO dfz_app;
"""

# ---------------------------------------------------------------------------
# 2.0 databases: tenants and sites.  The fixture above is the default
# tenant's (tenant 1, its default site 'default'); this one adds a second
# site of it ('second', enabled, lockout 1, 3 uses), a third ('third',
# disabled by the prologue once it has links), a second tenant 'globex'
# (tenant 2) with its own directory (the same user and media ids, other
# rows), its default site 'globex-main' (enabled, lockout 2) and
# 'globex-off' (disabled by the prologue), and the role dfz_tenant2 mapped
# to tenant 2 in tenant_roles.  The fuzzer reads the extension's version:
# on 1.x none of this is made and the 2.0 families are skipped.
# ---------------------------------------------------------------------------
V2 = False          # set by Fuzzer.prepare: the template's extension is 2.0 or later
# site -> tenant; the sites every 2.0 case has
SITES = {"default": 1, "second": 1, "third": 1, "globex-main": 2, "globex-off": 2}
TENANT_ROLE = {2: "t2"}     # the "as" of a call made for tenant 2 (SET ROLE dfz_tenant2)
ROLES = {"t2": "dfz_tenant2", "app": "dfz_app"}
FIXTURE_V2 = r"""
SET client_min_messages = warning;
SELECT {s}.site_create(1, 'second', 'https://second.example/j/');
SELECT {s}.site_configure('second', '{"enabled": true, "lockout_attempts": 1, "link_reusability": 3,
                                       "link_duration": 600}');
SELECT {s}.site_create(1, 'third', 'https://third.example/j/');
SELECT {s}.site_configure('third', '{"enabled": true, "lockout_attempts": 0}');
SELECT {s}.tenant_create('globex');
SELECT {s}.site_create((SELECT tenant_id FROM {s}.tenants WHERE name = 'globex'), 'globex-main',
                       'https://globex.example/j/');
SELECT {s}.site_configure('globex-main', '{"enabled": true, "lockout_attempts": 2, "link_reusability": 2,
                                            "restrict_new_user_domains": ["globex.example"]}');
SELECT {s}.site_create((SELECT tenant_id FROM {s}.tenants WHERE name = 'globex'), 'globex-off',
                       'https://off.globex.example/j/');
SELECT {s}.site_configure('globex-off', '{"enabled": true, "lockout_attempts": 5}');
INSERT INTO {s}.users (tenant_id, user_id, email, first_name, last_name, role)
SELECT t.tenant_id, u.* FROM {s}.tenants t, (VALUES
    ('owner',    'owner@globex.example',           'Gus',   'Globex',   'private_only'),
    ('existing', 'existing.person@university.edu', 'Gert',  'Existing', 'admin'),
    ('gviewer',  'Viewer@media.example',           'Gwen',  'Viewer',   'viewer')) u
 WHERE t.name = 'globex';
INSERT INTO {s}.media (tenant_id, media_id, media_type, title, owner_id)
SELECT t.tenant_id, m.* FROM {s}.tenants t, (VALUES
    ('live',  'video',   'Globex live',   'owner'),
    ('vid',   'webcast', 'Globex video',  'owner'),
    ('gonly', 'room',    'Globex room',   'owner')) m
 WHERE t.name = 'globex';
INSERT INTO {s}.tenant_roles (role_name, tenant_id)
SELECT 'dfz_tenant2', tenant_id FROM {s}.tenants WHERE name = 'globex';
GRANT USAGE ON SCHEMA {s} TO dfz_tenant2;
GRANT EXECUTE ON FUNCTION
    {s}.invite_create(text, text, text, text, text, text, boolean, timestamptz),
    {s}.invite_consume(text, text, text), {s}.invite_check(text),
    {s}.invite_revoke(bigint, text), {s}.invite_resend(bigint, text, boolean),
    {s}.invite_revoke_all(text, text), {s}.invite_purge(interval),
    {s}.guest_link_create(text, text, text, integer, integer),
    {s}.guest_link_join(text, text, text, text, text),
    {s}.guest_link_revoke(bigint, text)
  TO dfz_tenant2;
GRANT EXECUTE ON FUNCTION
    {s}.invite_create_at(text, text, text, text, text, text, text, boolean, timestamptz),
    {s}.invite_consume_at(text, text, text, text), {s}.invite_check_at(text, text)
  TO dfz_app, dfz_tenant2;
"""

# ---------------------------------------------------------------------------
# SQL helpers for the catalogue
# ---------------------------------------------------------------------------
# the non-superuser owner: every table, view and function of the schema
# (and the DBA's dfz objects) handed to dfz_owner, so that privileges and
# row-level security bite on the SECURITY DEFINER functions
OWNER_SQL = r"""
DO $dfz$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.oid::regclass AS t FROM pg_class c
            WHERE c.relnamespace IN ('{s}'::regnamespace, 'public'::regnamespace)
              AND c.relkind IN ('r', 'p', 'v')
              AND (c.relnamespace = '{s}'::regnamespace OR c.relname LIKE 'dfz%')
              AND pg_get_userbyid(c.relowner) <> 'dfz_owner'
  LOOP EXECUTE format('ALTER TABLE %s OWNER TO dfz_owner', r.t); END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p
            WHERE (p.pronamespace = '{s}'::regnamespace
                   OR (p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'dfz%'))
              AND pg_get_userbyid(p.proowner) <> 'dfz_owner'
  LOOP EXECUTE format('ALTER ROUTINE %s OWNER TO dfz_owner', r.f); END LOOP;
END $dfz$;
ALTER SCHEMA {s} OWNER TO dfz_owner;
"""


def retype(table, column_types, before="", after=""):
    """ALTER COLUMN ... TYPE on {s}.table, the views that read it dropped
    (out of the extension) and made again around it."""
    alters = ", ".join(f"ALTER COLUMN {c} TYPE {t}" for c, t in column_types)
    return r"""
DO $dfz$
DECLARE v record; names text[] := '{}'; defs text[] := '{}'; i int;
BEGIN
  FOR v IN SELECT DISTINCT c.oid::regclass::text AS name, pg_get_viewdef(c.oid) AS def
             FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
             JOIN pg_class c ON c.oid = r.ev_class
            WHERE d.classid = 'pg_rewrite'::regclass
              AND d.refobjid = '{s}.%(t)s'::regclass AND c.relkind = 'v'
  LOOP
    names := names || v.name; defs := defs || v.def;
    BEGIN
      EXECUTE format('ALTER EXTENSION invitetomedia DROP VIEW %%s', v.name);
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    EXECUTE format('DROP VIEW %%s CASCADE', v.name);
  END LOOP;
  %(before)s
  EXECUTE $a$ALTER TABLE {s}.%(t)s %(alters)s$a$;
  %(after)s
  FOR i IN 1 .. coalesce(array_length(names, 1), 0) LOOP
    BEGIN
      EXECUTE format('CREATE VIEW %%s AS %%s', names[i], defs[i]);
    EXCEPTION WHEN OTHERS THEN NULL;   -- a view that no longer fits stays dropped
    END;
  END LOOP;
END $dfz$;
""" % dict(t=table, alters=alters, before=before, after=after)


def trig(table, name, when, level, ops, func="public.dfz_audit_trig()", extra=""):
    return (f"CREATE TRIGGER {name} {when} {ops} ON {{s}}.{table} {extra} "
            f"FOR EACH {level} EXECUTE FUNCTION {func}")


def rebuild_partitioned(table, by, parts, pk=None, extra=()):
    """{s}.table renamed away; a partitioned table with the same columns
    made under the name; the rows copied."""
    sql = [f"ALTER TABLE {{s}}.{table} RENAME TO {table}_old",
           f"CREATE TABLE {{s}}.{table} (LIKE {{s}}.{table}_old INCLUDING DEFAULTS "
           f"INCLUDING CONSTRAINTS) PARTITION BY {by}"]
    for i, bound in enumerate(parts):
        sql.append(f"CREATE TABLE {{s}}.{table}_p{i} PARTITION OF {{s}}.{table} {bound}")
    if pk:
        sql.append(f"ALTER TABLE {{s}}.{table} ADD PRIMARY KEY ({pk})")
    sql.extend(extra)
    sql.append(f"INSERT INTO {{s}}.{table} SELECT * FROM {{s}}.{table}_old")
    return sql


RLS_POLICY = {
    "invites": "USING (media_id <> 'doc') WITH CHECK (true)",
    "redemptions": "USING (true) WITH CHECK (device_id IS DISTINCT FROM 'dev-blocked')",
    "guest_links": "USING (media_id <> 'doc') WITH CHECK (true)",
    "guest_link_joins": "USING (true) WITH CHECK (first_name <> 'Blocked')",
    "users": "USING (role <> 'admin') WITH CHECK (true)",
    "settings": "USING (true) WITH CHECK (true)",
    "media": "USING (media_type <> 'document') WITH CHECK (true)",
    "outbox": "USING (true) WITH CHECK (to_name <> 'Blocked Guest')",
    "retired_tokens": "USING (true) WITH CHECK (true)",
}


def rls_setup(table):
    def setup(rng):
        forced = rng.random() < 0.8
        sql = [f"ALTER TABLE {{s}}.{table} ENABLE ROW LEVEL SECURITY",
               f"CREATE POLICY dfz_owner_policy ON {{s}}.{table} TO dfz_owner {RLS_POLICY[table]}"]
        if forced:
            sql.append(f"ALTER TABLE {{s}}.{table} FORCE ROW LEVEL SECURITY")
        return sql
    return setup


# ---------------------------------------------------------------------------
# DBA actions (between calls, also while a transaction is open)
# ---------------------------------------------------------------------------
def dba(sql, desc, **kw):
    item = {"t": "dba", "sql": sql if isinstance(sql, list) else [sql], "desc": desc}
    item.update(kw)
    return item


def act_expire(rng, g):
    k = g.k()
    return dba(f"UPDATE {{s}}.invites SET expires_at = now() - interval '1 hour' WHERE invite_id = {{inv:{k}}}",
               f"expire invite of T{k}")


def act_unexpire(rng, g):
    k = g.k()
    return dba(f"UPDATE {{s}}.invites SET expires_at = now() + interval '2 days' WHERE invite_id = {{inv:{k}}}",
               f"extend invite of T{k}")


def act_schedule(rng, g):
    k = g.k()
    when = rng.choice(["now() + interval '1 hour'", "now() - interval '1 hour'", "NULL"])
    return dba(f"UPDATE {{s}}.invites SET not_before = {when} WHERE invite_id = {{inv:{k}}}",
               f"not_before of T{k} = {when}")


def act_failed_attempts(rng, g):
    k = g.k()
    n = rng.choice([0, 2, 3, 5])
    return dba(f"UPDATE {{s}}.invites SET failed_attempts = {n} WHERE invite_id = {{inv:{k}}}",
               f"failed_attempts of T{k} = {n}")


def act_settings(rng, g):
    choice = rng.choice([
        "enabled = false", "enabled = true", "enabled = true",
        "lockout_attempts = 0", "lockout_attempts = 1", "lockout_attempts = 3",
        "link_reusability = 1", "link_reusability = 3", "link_reusability = -1",
        "invites_per_hour = 2", "invites_per_hour = 0",
        "link_duration = 60", "link_duration = 1440",
        "restrict_new_user_domains = '{}'", "restrict_new_user_domains = '{university.edu,outside.example}'",
        "restrict_new_user_domains = '{university.edu}'",
        "invite_email_template = NULL", "invite_email_template = 'welcome'",
        "allowed_users_roles = 'admin'", "allowed_users_roles = 'private_only'",
    ])
    return dba(f"UPDATE {{s}}.settings SET {choice}", f"settings: {choice}")


def act_expire_guest(rng, g):
    k = g.k()
    when = rng.choice(["now() - interval '1 hour'", "now() + interval '1 day'", "NULL"])
    return dba(f"UPDATE {{s}}.guest_links SET expires_at = {when} WHERE guest_link_id = {{gl:{k}}}",
               f"guest link G{k} expires_at = {when}")


def act_add_user(rng, g):
    email = g.email_pool_pick()
    n = g.counter("user")
    if V2 and rng.random() < 0.35:
        # the second tenant's directory sync (the superuser names the tenant)
        return dba(f"INSERT INTO {{s}}.users (tenant_id, user_id, email, first_name, last_name, role) "
                   f"VALUES (2, 'synced{n}', '{email}', 'Syn', 'Globex', 'viewer') ON CONFLICT DO NOTHING",
                   f"directory sync adds a user of tenant 2 for {email}")
    return dba(f"INSERT INTO {{s}}.users (user_id, email, first_name, last_name, role) "
               f"VALUES ('synced{n}', '{email}', 'Syn', 'Ced', 'viewer') ON CONFLICT DO NOTHING",
               f"directory sync adds a user for {email}")


def act_site(rng, g):
    """2.0: the DBA changes a site between calls (enabled, lockout_attempts),
    by site_configure, site_disable or UPDATE sites"""
    site = rng.choice(list(SITES))
    how = rng.choice(["configure", "configure", "update", "update", "disable"])
    if how == "disable":
        return dba(f"SELECT {{s}}.site_disable('{site}')", f"site_disable('{site}')")
    col, val = rng.choice([("enabled", "true"), ("enabled", "true"), ("enabled", "false"),
                           ("lockout_attempts", "0"), ("lockout_attempts", "1"), ("lockout_attempts", "2"),
                           ("lockout_attempts", "5"), ("link_reusability", "1"), ("link_reusability", "-1")])
    if how == "configure":
        return dba(f"SELECT {{s}}.site_configure('{site}', '{{\"{col}\": {val}}}')",
                   f"site_configure('{site}', {col}: {val})")
    return dba(f"UPDATE {{s}}.sites SET {col} = {val} WHERE site_id = '{site}'",
               f"UPDATE sites SET {col} = {val} WHERE site_id = '{site}'")


def act_media_title(rng, g):
    t = rng.choice(["New title", "Title\twith tab", "Webcast 2"])
    m = rng.choice(["live", "vid", "doc"])
    return dba(f"UPDATE {{s}}.media SET title = '{t}' WHERE media_id = '{m}'", f"media {m} title")


def plant(table="invites", target=None):
    """a DBA's own invite with a token of ours (the same in both databases)"""
    def act(rng, g):
        tok = make_token(rng)
        email = g.new_email()
        mu = rng.choice([1, 2, -1])
        tgt = target or table
        if V2:
            # 2.0: the DBA names the tenant, the site and an id (no defaults)
            site = rng.choice(list(SITES))
            iid = rng.randrange(1, 2 ** 62)
            return dba(
                f"INSERT INTO {{s}}.{tgt} (tenant_id, site_id, invite_id, token_hash, media_id, role, email, "
                f"first_name, last_name, invited_by, expires_at, max_uses) VALUES ({SITES[site]}, '{site}', "
                f"{iid}, public.digest('{tok}', 'sha256'), 'live', 'viewer', '{email}', 'Pat', 'Planted', "
                f"'owner', now() + interval '1 day', {mu})",
                f"DBA inserts an invite of site {site} into {tgt} for {email}",
                plant={"kind": "inv", "token": tok, "email": email, "site": site})
        return dba(
            f"INSERT INTO {{s}}.{tgt} (token_hash, media_id, role, email, first_name, last_name, "
            f"invited_by, expires_at, max_uses) VALUES (public.digest('{tok}', 'sha256'), "
            f"'live', 'viewer', '{email}', 'Pat', 'Planted', 'owner', now() + interval '1 day', {mu})",
            f"DBA inserts an invite into {tgt} for {email}",
            plant={"kind": "inv", "token": tok, "email": email})
    return act


def plant_guest(target):
    def act(rng, g):
        tok = make_token(rng, "itg_")
        limit = rng.choice(["NULL", "2"])
        if V2:
            gid = rng.randrange(1, 2 ** 62)
            return dba(
                f"INSERT INTO {{s}}.{target} (tenant_id, site_id, guest_link_id, token_hash, media_id, name, "
                f"created_by, expires_at, click_limit) VALUES (1, 'default', {gid}, "
                f"public.digest('{tok}', 'sha256'), 'live', 'Planted link', 'owner', NULL, {limit})",
                f"DBA inserts a guest link into {target}",
                plant={"kind": "gl", "token": tok})
        return dba(
            f"INSERT INTO {{s}}.{target} (token_hash, media_id, name, created_by, expires_at, click_limit) "
            f"VALUES (public.digest('{tok}', 'sha256'), 'live', 'Planted link', 'owner', NULL, {limit})",
            f"DBA inserts a guest link into {target}",
            plant={"kind": "gl", "token": tok})
    return act


GENERIC_ACTIONS = [
    (3, act_expire), (1, act_unexpire), (2, act_schedule), (2, act_failed_attempts),
    (4, act_settings), (2, act_expire_guest), (2, act_add_user), (1, act_media_title),
    (1, plant()),
]


# ---------------------------------------------------------------------------
# the catalogue
# ---------------------------------------------------------------------------
class Alt:
    def __init__(self, name, what, stresses, setup=(), owner=False, actions=(),
                 scenario=None, bias=None, combine=True, min_server=0, v2=False):
        self.name = name
        # v2: the family alters 2.0's tables (sites, tenant keys): skipped
        # on a 1.x database
        self.v2 = v2
        # the oldest server_version_num whose SQL the setup needs
        self.min_server = min_server
        self.what = what
        self.stresses = stresses
        self.setup = setup
        self.owner = owner
        self.actions = list(actions)
        self.scenario = scenario
        self.bias = bias or {}
        self.combine = combine

    def setup_sql(self, rng):
        out = []
        for s in (self.setup(rng) if callable(self.setup) else self.setup):
            out.append(s)
        return out


def once(*items_fn):
    """a scenario: the given item makers, in one transaction (autocommit)"""
    def scen(rng, g):
        return [{"iso": "auto", "items": [f(rng, g) for f in items_fn], "end": "commit"}]
    return scen


def sc_stmt(fn, **kw):
    return lambda rng, g: g.stmt([g.call(fn, **kw)])


CAT = []


def A(*a, **kw):
    CAT.append(Alt(*a, **kw))


A("none", "no alteration: the extension as installed", "every path, baseline", combine=False)
A("owner_not_superuser",
  "every table, view and function of the schema owned by a non-superuser role",
  "per-call privilege and RLS checks (GetUserId is the function's owner)", owner=True, combine=False)

# -- review items ----------------------------------------------------------
A("media_partitioned",
  "media renamed away, a hash-partitioned media with the same columns made under the name, rows copied",
  "invite_check: FindMediaTitle / FetchByKey on a partitioned table",
  setup=rebuild_partitioned("media", "HASH (media_id)",
                            ["FOR VALUES WITH (MODULUS 2, REMAINDER 0)",
                             "FOR VALUES WITH (MODULUS 2, REMAINDER 1)"], pk="media_id"),
  bias={"check": 4})
A("settings_partitioned",
  "settings renamed away, a list-partitioned settings with the same columns made under the name, row copied",
  "ReadSettings (every direct call) on a partitioned table",
  setup=rebuild_partitioned("settings", "LIST (singleton)", ["FOR VALUES IN (true)"]),
  bias={"check": 3})
A("domain_allowed_text",
  "domain_allowed() dropped and made again returning text ('false' for a new address on a restricted domain)",
  "guest_link_join: the policy's result read as a boolean",
  setup=[
      "ALTER EXTENSION invitetomedia DROP FUNCTION {s}.domain_allowed(text)",
      "DROP FUNCTION {s}.domain_allowed(text)",
      """CREATE FUNCTION {s}.domain_allowed(email text) RETURNS text LANGUAGE sql STABLE AS $f$
         SELECT CASE WHEN lower(split_part($1, '@', 2)) LIKE '%university.edu'
                      AND NOT EXISTS (SELECT 1 FROM {s}.users u
                                       WHERE lower(u.email COLLATE "C") = lower(btrim($1) COLLATE "C"))
                     THEN 'false' ELSE 'true' END $f$""",
  ], bias={"guest_join": 4, "restricted": 3})
A("check_tableoid",
  "CHECK (tableoid <> 0) on invites, redemptions and guest_link_joins",
  "the direct writes' constraint checks (the slot's table OID)",
  setup=[f"ALTER TABLE {{s}}.{t} ADD CONSTRAINT dfz_tableoid CHECK (tableoid <> 0)"
         for t in ("invites", "redemptions", "guest_link_joins")])
A("notnull_domain_column",
  "a column of a NOT NULL domain without a default on redemptions, guest_link_joins and invites",
  "direct inserts: domain constraints of columns no call gives",
  setup=["CREATE DOMAIN public.dfz_nn_text AS text NOT NULL"] +
  [s for t in ("redemptions", "guest_link_joins", "invites") for s in (
      f"ALTER TABLE {{s}}.{t} ADD COLUMN dfz_nn public.dfz_nn_text DEFAULT 'x'",
      f"ALTER TABLE {{s}}.{t} ALTER COLUMN dfz_nn DROP DEFAULT")])
A("domain_check_column",
  "redemptions.device_id and guest_link_joins.first_name retyped to domains over text with a CHECK "
  "(VALUE <> 'banned' / 'Blocked')",
  "domain-typed columns the path writes (the domain's CHECK on a given value)",
  setup=["CREATE DOMAIN public.dfz_device AS text CHECK (VALUE <> 'banned')",
         "CREATE DOMAIN public.dfz_name AS text CHECK (VALUE <> 'Blocked')",
         retype("redemptions", [("device_id", "public.dfz_device")]),
         retype("guest_link_joins", [("first_name", "public.dfz_name")])],
  bias={"device": 3, "guest_join": 2})
A("typmod_timestamptz0",
  "invites.expires_at and last_used_at retyped timestamptz(0)",
  "the use's UPDATE and the create's INSERT: typmod coercion of written values",
  setup=[retype("invites", [("expires_at", "timestamptz(0)"), ("last_used_at", "timestamptz(0)")])])


def _domain_default_setup(rng):
    return ["CREATE DOMAIN public.dfz_src AS text DEFAULT 'web'"] + [
        f"ALTER TABLE {{s}}.{t} ADD COLUMN dfz_src public.dfz_src" for t in
        ("redemptions", "guest_link_joins", "invites")]


def act_domain_default(rng, g):
    v = f"app{g.counter('dom')}"
    return dba(f"ALTER DOMAIN public.dfz_src SET DEFAULT '{v}'", f"ALTER DOMAIN dfz_src SET DEFAULT '{v}'")


A("domain_set_default_after_use",
  "a column of a domain with a DEFAULT on redemptions, guest_link_joins, invites; ALTER DOMAIN ... SET DEFAULT between calls",
  "direct inserts: the planned defaults' invalidation",
  setup=_domain_default_setup, actions=[(8, act_domain_default)],
  scenario=lambda rng, g: [
      {"iso": "auto", "items": [g.stmt([g.call("consume", right=True)]), act_domain_default(rng, g),
                                g.stmt([g.call("consume", right=True)]), g.stmt([g.call("guest_join")]),
                                g.stmt([g.call("create")])], "end": "commit"}])
A("inherit_invites_child",
  "an inheritance child of invites; the DBA's invites inserted into the child",
  "token look-up by the parent's index only (FetchByKey), row locks in the child",
  setup=["CREATE TABLE {s}.invites_child () INHERITS ({s}.invites)"],
  actions=[(8, plant(target="invites_child"))],
  scenario=lambda rng, g: [{"iso": "auto", "items": [plant(target="invites_child")(rng, g)], "end": "commit"},
                           {"iso": "auto", "items": [g.stmt([g.call("check", k=-1)]),
                                                     g.stmt([g.call("consume", k=-1, right=True)])],
                            "end": "commit"}])
A("inherit_users_child",
  "an inheritance child of users holding users (a directory sync into the child)",
  "the invitee's user look-up by the parent's unique index",
  setup=["CREATE TABLE {s}.users_child () INHERITS ({s}.users)"],
  actions=[(8, lambda rng, g: dba(
      f"INSERT INTO {{s}}.users_child (user_id, email, first_name, last_name, role) "
      f"VALUES ('child{g.counter('child')}', '{g.email_pool_pick()}', 'Chi', 'Ld', 'viewer')",
      "a user inserted into users_child"))],
  scenario=lambda rng, g: g.child_user_scenario())


def _guard_setup(rng):
    return [
        "DROP TRIGGER invites_write_guard ON {s}.invites",
        "CREATE TRIGGER invites_write_guard BEFORE INSERT OR UPDATE OR DELETE ON {s}.invites "
        "FOR EACH STATEMENT EXECUTE FUNCTION public.dfz_audit_trig()",
    ]


A("write_guard_named_trigger",
  "the extension's invites_write_guard dropped, a DBA trigger of that name with another function made",
  "the trigger check by name (OnlyTheGuard / NoInsertTriggers)", setup=_guard_setup)
A("invites_renamed",
  "invites renamed to invites_renamed between calls (and back later)",
  "the cached OIDs: the table looked up by name",
  actions=[(4, lambda rng, g: dba("ALTER TABLE {s}.invites RENAME TO invites_renamed", "rename invites away")),
           (4, lambda rng, g: dba("ALTER TABLE {s}.invites_renamed RENAME TO invites", "rename invites back"))],
  scenario=once(lambda rng, g: dba("ALTER TABLE {s}.invites RENAME TO invites_renamed", "rename invites away"),
                sc_stmt("consume", right=True), sc_stmt("check"), sc_stmt("create"),
                lambda rng, g: dba("ALTER TABLE {s}.invites_renamed RENAME TO invites", "rename invites back"),
                sc_stmt("consume", right=True)))


def swap_sql(copy_rows=True):
    sql = ["ALTER TABLE {s}.invites RENAME TO invites_prev",
           "CREATE TABLE {s}.invites (LIKE {s}.invites_prev INCLUDING ALL)"]
    if copy_rows:
        sql.append("INSERT INTO {s}.invites SELECT * FROM {s}.invites_prev")
    return sql


def locked(sql, desc, stmt):
    return {"t": "locked", "sql": sql, "desc": desc, "stmt": stmt}


A("invites_swapped_during_wait",
  "invites swapped for a copy (renamed away, LIKE ... INCLUDING ALL, rows copied) in a transaction a call waits for",
  "name re-check after the lock wait (RangeVarGetRelidExtended's retry)",
  scenario=lambda rng, g: [
      {"iso": "auto", "items": [g.stmt([g.call("consume", right=True)]),
                                locked(swap_sql(rng.random() < 0.7), "swap invites (held in an open transaction)",
                                       g.stmt([g.call(rng.choice(["consume", "check", "create"]), right=True)])),
                                g.stmt([g.call("consume", right=True)])], "end": "commit"}])
A("schema_renamed",
  "the schema renamed (invitetomedia -> itm_renamed) between calls; the calls go to the new name",
  "cached OIDs across a schema rename; the SQL statements' qualified names",
  scenario=lambda rng, g: [
      {"iso": "auto", "items": [g.stmt([g.call("consume", right=True)]), g.stmt([g.call("check")]),
                                dba("ALTER SCHEMA {s} RENAME TO itm_renamed", "rename the schema",
                                    schema_to="itm_renamed"),
                                g.stmt([g.call("consume", right=True)]), g.stmt([g.call("check")]),
                                g.stmt([g.call("guest_join")]), g.stmt([g.call("create")])], "end": "commit"}],
  combine=False)
def _revoke_join(rng, g):
    create = g.call("guest_create")
    create.update(media="room", actor="owner", limit=None, days=None)
    join = g.call("guest_join", k=-1)
    join.update(device=None, tok=("gl", -1))
    revoke = g.call("guest_revoke", k=-1)
    revoke.update(actor="owner")
    inv = g.call("create")
    inv.update(media="live", actor="owner", role="viewer", first="Ann", not_before=None)
    use = g.call("consume", k=-1, right=True)
    use.update(tok=("inv", -1), device=None)
    irevoke = g.call("revoke", k=-1)
    irevoke.update(actor="owner")
    shape = rng.choice(["multi", "tlist", "cte"])
    return [{"iso": "auto", "items": [g.stmt([create]), g.stmt([revoke, join], shape=shape),
                                      g.stmt([inv]), g.stmt([irevoke, use], shape=shape)], "end": "commit"}]


A("same_statement_revoke_join",
  "no DBA change: a guest join in the same statement as the link's revoke, and a consume with the invite's "
  "revoke (target list, sub-selects, CTE)",
  "guest_link_join's fresh snapshot after a write of the same statement",
  bias={"combo": 6}, scenario=_revoke_join)


def _checkxmin_setup(rng):
    return ["ALTER TABLE {s}.invites DROP CONSTRAINT invites_token_hash_key"]


def _owner_resend(g, k):
    c = g.call("resend", k=k)
    c.update(actor="owner", send=False)
    return c


A("unique_index_checkxmin",
  "invites' token_hash unique index dropped; resends (HOT updates) then CREATE UNIQUE INDEX while a "
  "REPEATABLE READ transaction is open (indcheckxmin)",
  "FindKeyIndex: an index not yet usable by the snapshot",
  setup=_checkxmin_setup,
  scenario=lambda rng, g: [
      {"iso": "repeatable read", "items": [
          g.stmt([g.call("check", k=0)]),
          g.conc(_owner_resend(g, 0)),
          dba("CREATE UNIQUE INDEX IF NOT EXISTS dfz_token_hash_key ON {s}.invites (token_hash)",
              "CREATE UNIQUE INDEX on token_hash"),
          g.stmt([g.call("check", k=0)]), g.stmt([g.call("consume", k=0, right=True)])],
       "end": "commit"}])
A("null_expires_at",
  "invites.expires_at NOT NULL dropped and a link's expires_at set to NULL",
  "CheckUse / ItmDirectReadInvite on a NULL the schema forbade",
  setup=["ALTER TABLE {s}.invites ALTER COLUMN expires_at DROP NOT NULL"],
  actions=[(8, lambda rng, g: dba(f"UPDATE {{s}}.invites SET expires_at = NULL WHERE invite_id = {{inv:{g.k()}}}",
                                  "expires_at := NULL"))],
  scenario=lambda rng, g: g.null_scenario("expires_at"))
A("redemptions_insert_without_select",
  "non-superuser owner; SELECT on redemptions and guest_link_joins revoked from it (INSERT kept)",
  "the records' privilege check (the statement's RETURNING needs SELECT)", owner=True,
  setup=["REVOKE SELECT ON {s}.redemptions FROM dfz_owner",
         "REVOKE SELECT ON {s}.guest_link_joins FROM dfz_owner"])
A("lockout_max_int",
  "settings.lockout_attempts = 2147483647 and a link with that many wrong emails",
  "the lockout threshold's 'never locks' sentinel",
  setup=["UPDATE {s}.settings SET lockout_attempts = 2147483647"],
  actions=[(8, lambda rng, g: dba(
      f"UPDATE {{s}}.invites SET failed_attempts = 2147483647 WHERE invite_id = {{inv:{g.k()}}}",
      "failed_attempts := 2147483647"))],
  scenario=lambda rng, g: g.null_scenario("failed_attempts", "2147483647"))

# -- row-level security, each table in turn (a non-superuser owner) --------
for _t in RLS_POLICY:
    A(f"rls_{_t}", f"row-level security on {_t} (forced in 4 cases of 5) with a policy for the owner: "
      f"{RLS_POLICY[_t]}", "the RLS check per table the path reads or writes",
      owner=True, setup=rls_setup(_t))

# -- privileges --------------------------------------------------------------
PRIV_VARIANTS = [
    "REVOKE UPDATE ON {s}.invites FROM dfz_owner",
    "REVOKE SELECT ON {s}.users FROM dfz_owner",
    "REVOKE SELECT ON {s}.media FROM dfz_owner",
    "REVOKE SELECT ON {s}.settings FROM dfz_owner",
    "REVOKE INSERT ON {s}.redemptions FROM dfz_owner",
    "REVOKE INSERT ON {s}.guest_link_joins FROM dfz_owner",
    "REVOKE UPDATE ON {s}.guest_links FROM dfz_owner",
    "REVOKE INSERT ON {s}.invites FROM dfz_owner",
    "REVOKE USAGE ON SEQUENCE {s}.redemptions_redemption_id_seq FROM dfz_owner",
    "REVOKE USAGE ON SEQUENCE {s}.guest_link_joins_join_id_seq FROM dfz_owner",
    "REVOKE EXECUTE ON FUNCTION {s}.domain_allowed(text) FROM dfz_owner, PUBLIC",
]
A("privilege_revoked", "non-superuser owner; one privilege revoked from it: " + "; ".join(PRIV_VARIANTS),
  "the privilege checks of the path (OpenByName, pg_proc_aclcheck)", owner=True,
  setup=lambda rng: [rng.choice(PRIV_VARIANTS)])
A("column_privileges",
  "non-superuser owner; UPDATE on invites revoked, granted on use_count, used_up_at, last_used_at, failed_attempts only",
  "table-level vs column-level UPDATE privilege", owner=True,
  setup=["REVOKE UPDATE ON {s}.invites FROM dfz_owner",
         "GRANT UPDATE (use_count, used_up_at, last_used_at, failed_attempts) ON {s}.invites TO dfz_owner"])

# -- retyped columns -----------------------------------------------------------
A("retype_max_uses_bigint", "invites.max_uses and use_count retyped bigint", "FindColumns' type check",
  setup=[retype("invites", [("max_uses", "bigint"), ("use_count", "bigint")])])
A("retype_email_varchar", "invites.email and users.email retyped varchar(254)", "FindColumns; the users' email index",
  setup=[retype("invites", [("email", "varchar(254)")]), retype("users", [("email", "varchar(254)")])])
A("retype_role_enum", "invites.role and users.role retyped to enums", "FindColumns; the returned role",
  setup=["CREATE TYPE public.dfz_invite_role AS ENUM ('viewer', 'moderator', 'speaker')",
         "CREATE TYPE public.dfz_user_role AS ENUM ('anonymous', 'viewer', 'private_only', 'admin', 'unmoderated_admin')",
         "ALTER TABLE {s}.invites DROP CONSTRAINT invites_role_valid",
         "ALTER TABLE {s}.users DROP CONSTRAINT users_role_valid",
         "ALTER TABLE {s}.users ALTER COLUMN role DROP DEFAULT",
         retype("invites", [("role", "public.dfz_invite_role USING role::public.dfz_invite_role")]),
         retype("users", [("role", "public.dfz_user_role USING role::public.dfz_user_role")]),
         "ALTER TABLE {s}.users ALTER COLUMN role SET DEFAULT 'viewer'"])
A("retype_media_enum", "media.media_type an enum, media.title varchar(200)", "invite_check's media look-up",
  setup=["CREATE TYPE public.dfz_media_type AS ENUM ('video', 'audio', 'image', 'document', 'quiz', "
         "'webcast', 'simulive', 'diy_live', 'room')",
         "ALTER TABLE {s}.media DROP CONSTRAINT media_media_type_valid",
         retype("media", [("media_type", "public.dfz_media_type USING media_type::public.dfz_media_type"),
                          ("title", "varchar(200)")])])
A("retype_guest_clicks_bigint", "guest_links.click_limit and clicks retyped bigint", "guest join's link read",
  setup=[retype("guest_links", [("click_limit", "bigint"), ("clicks", "bigint")])], bias={"guest_join": 3})
A("retype_device_varchar", "redemptions.device_id and guest_link_joins.device_id varchar(12)",
  "the record inserts' column types",
  setup=[retype("redemptions", [("device_id", "varchar(12)")]),
         retype("guest_link_joins", [("device_id", "varchar(12)")])])

# -- generated columns, rules ----------------------------------------------------
A("generated_columns", "a stored generated column on invites, redemptions, guest_link_joins, users",
  "has_generated_stored check; the SQL INSERT/UPDATE compute them",
  setup=lambda rng: [f"ALTER TABLE {{s}}.{t} ADD COLUMN dfz_gen text GENERATED ALWAYS AS ({e}) STORED"
                     for t, e in rng.sample([("invites", "upper(email) || use_count"),
                                             ("redemptions", "status || coalesce(device_id, '-')"),
                                             ("guest_link_joins", "upper(first_name)"),
                                             ("users", "lower(email)")], rng.randint(1, 4))])
# PostgreSQL 18: virtual generated columns (computed when read, never
# stored) and CHECK constraints that are NOT ENFORCED (the executor skips
# them).  The path must send such tables to the statement or do as it does.
A("generated_virtual", "a virtual generated column on invites, redemptions, guest_link_joins, users (18)",
  "the shape check's generated columns (18's attgenerated 'v'); the SQL statements compute them",
  setup=lambda rng: [f"ALTER TABLE {{s}}.{t} ADD COLUMN dfz_vgen text GENERATED ALWAYS AS ({e}) VIRTUAL"
                     for t, e in rng.sample([("invites", "upper(email) || use_count"),
                                             ("redemptions", "status || coalesce(device_id, '-')"),
                                             ("guest_link_joins", "upper(first_name)"),
                                             ("users", "lower(email)")], rng.randint(1, 4))]
  + (["ALTER TABLE {s}.invites ADD COLUMN dfz_vuses int GENERATED ALWAYS AS (use_count + 1) VIRTUAL",
      "ALTER TABLE {s}.invites ADD CONSTRAINT dfz_vcheck CHECK (dfz_vuses <= 2) NOT VALID"]
     if rng.random() < 0.5 else []),
  min_server=180000)
A("check_not_enforced", "CHECK constraints NOT ENFORCED that every write breaks, on invites, redemptions, "
  "guest_link_joins (18)", "the shape check's NOT ENFORCED CHECKs: the statement writes anyway",
  setup=lambda rng: [f"ALTER TABLE {{s}}.{t} ADD CONSTRAINT dfz_ne CHECK ({e}) NOT ENFORCED"
                     for t, e in rng.sample([("invites", "use_count < 0"),
                                             ("redemptions", "status = ''"),
                                             ("guest_link_joins", "length(email) < 0")], rng.randint(1, 3))]
  + (["ALTER TABLE {s}.invites ADD CONSTRAINT dfz_enforced CHECK (use_count <= 1) NOT VALID"]
     if rng.random() < 0.5 else []),
  min_server=180000)
A("rule_do_also", "ON INSERT DO ALSO rules on redemptions and guest_link_joins (an audit row)",
  "rules check of the insert targets",
  setup=["CREATE RULE dfz_rule AS ON INSERT TO {s}.redemptions DO ALSO "
         "INSERT INTO public.dfz_audit (tag, info) VALUES ('rule', NEW.status)",
         "CREATE RULE dfz_rule AS ON INSERT TO {s}.guest_link_joins DO ALSO "
         "INSERT INTO public.dfz_audit (tag, info) VALUES ('rule', NEW.status)"])
A("rule_do_instead", "ON INSERT DO INSTEAD rules on redemptions / guest_link_joins (the row goes to the audit)",
  "rules check of the insert targets",
  setup=lambda rng: [f"CREATE RULE dfz_rule AS ON INSERT TO {{s}}.{t} DO INSTEAD "
                     f"INSERT INTO public.dfz_audit (tag, info) VALUES ('instead', NEW.status)"
                     for t in rng.sample(["redemptions", "guest_link_joins"], rng.randint(1, 2))])
A("rule_invites_update", "an ON UPDATE DO ALSO rule on invites", "rules check of invites",
  setup=["CREATE RULE dfz_rule AS ON UPDATE TO {s}.invites DO ALSO "
         "INSERT INTO public.dfz_audit (tag, info) VALUES ('rule', NEW.use_count::text)"])

# -- triggers of each kind ----------------------------------------------------------
TRIGGERS = [
    ("trig_invites_before_update_row", "invites", "BEFORE", "ROW", "UPDATE"),
    ("trig_invites_after_update_row", "invites", "AFTER", "ROW", "UPDATE"),
    ("trig_invites_after_update_stmt", "invites", "AFTER", "STATEMENT", "UPDATE"),
    ("trig_invites_before_insert_row", "invites", "BEFORE", "ROW", "INSERT"),
    ("trig_invites_after_insert_stmt", "invites", "AFTER", "STATEMENT", "INSERT"),
    ("trig_redemptions_before_insert_row", "redemptions", "BEFORE", "ROW", "INSERT"),
    ("trig_redemptions_after_insert_row", "redemptions", "AFTER", "ROW", "INSERT"),
    ("trig_redemptions_after_insert_stmt", "redemptions", "AFTER", "STATEMENT", "INSERT"),
    ("trig_joins_before_insert_row", "guest_link_joins", "BEFORE", "ROW", "INSERT"),
    ("trig_joins_after_insert_stmt", "guest_link_joins", "AFTER", "STATEMENT", "INSERT"),
    ("trig_guest_links_before_update_row", "guest_links", "BEFORE", "ROW", "UPDATE"),
    ("trig_users_after_insert_row", "users", "AFTER", "ROW", "INSERT"),
]
for _n, _t, _w, _l, _o in TRIGGERS:
    A(_n, f"a DBA's {_w} {_o} FOR EACH {_l} trigger on {_t} writing an audit row",
      "the trigger checks; the SQL statement fires it", setup=[trig(_t, "dfz_trig", _w, _l, _o)])
A("trig_modifies_row",
  "BEFORE ROW triggers that change the row: invites' first_name upper-cased on UPDATE, redemptions' device_id "
  "defaulted on INSERT",
  "the path's answers come from the row it wrote, not the one the trigger made",
  setup=["""CREATE FUNCTION public.dfz_change_row() RETURNS trigger LANGUAGE plpgsql AS $f$
            BEGIN
              IF TG_TABLE_NAME = 'invites' THEN NEW.first_name := upper(NEW.first_name); END IF;
              IF TG_TABLE_NAME = 'redemptions' THEN NEW.device_id := coalesce(NEW.device_id, 'trig-dev'); END IF;
              RETURN NEW;
            END $f$""",
         trig("invites", "dfz_change", "BEFORE", "ROW", "UPDATE", "public.dfz_change_row()"),
         trig("redemptions", "dfz_change", "BEFORE", "ROW", "INSERT", "public.dfz_change_row()")])
A("trig_constraint_deferred",
  "a DEFERRABLE INITIALLY DEFERRED constraint trigger AFTER UPDATE on invites and AFTER INSERT on redemptions",
  "deferred trigger events of the path's writes",
  setup=["CREATE CONSTRAINT TRIGGER dfz_ctrig AFTER UPDATE ON {s}.invites DEFERRABLE INITIALLY DEFERRED "
         "FOR EACH ROW EXECUTE FUNCTION public.dfz_audit_trig()",
         "CREATE CONSTRAINT TRIGGER dfz_ctrig AFTER INSERT ON {s}.redemptions DEFERRABLE INITIALLY DEFERRED "
         "FOR EACH ROW EXECUTE FUNCTION public.dfz_audit_trig()"])
A("trig_disabled",
  "DBA triggers on invites and redemptions created DISABLED, one ENABLE REPLICA",
  "trigdesc with triggers that do not fire",
  setup=[trig("invites", "dfz_off_trig", "AFTER", "ROW", "UPDATE"),
         "ALTER TABLE {s}.invites DISABLE TRIGGER dfz_off_trig",
         trig("redemptions", "dfz_rep_trig", "AFTER", "ROW", "INSERT"),
         "ALTER TABLE {s}.redemptions ENABLE REPLICA TRIGGER dfz_rep_trig"])

# -- indexes and constraints ------------------------------------------------------
A("index_extra", "extra plain, partial and expression indexes on invites, redemptions, guest_link_joins, users",
  "index maintenance of the path's writes (non-HOT updates, partial predicates)",
  setup=lambda rng: rng.sample([
      "CREATE INDEX dfz_i1 ON {s}.invites (use_count)",
      "CREATE INDEX dfz_i2 ON {s}.invites (email) WHERE used_up_at IS NULL",
      "CREATE INDEX dfz_i3 ON {s}.invites (lower(first_name), last_used_at)",
      "CREATE INDEX dfz_i4 ON {s}.redemptions (status, device_id) WHERE status = 'ok'",
      "CREATE INDEX dfz_i5 ON {s}.guest_link_joins (lower(email))",
      "CREATE INDEX dfz_i6 ON {s}.users (lower(email))",
      "CREATE INDEX dfz_i7 ON {s}.invites USING brin (expires_at)",
      "CREATE INDEX dfz_i8 ON {s}.invites USING hash (token_hash)",
  ], rng.randint(2, 6)))
A("index_unique_extra",
  "unique indexes a DBA added: redemptions (invite_id, device_id), guest_link_joins (guest_link_id, lower(email))",
  "unique checks of the direct inserts",
  setup=["CREATE UNIQUE INDEX dfz_u1 ON {s}.redemptions (invite_id, device_id)",
         "CREATE UNIQUE INDEX dfz_u2 ON {s}.guest_link_joins (guest_link_id, lower(email)) WHERE status = 'ok'"],
  bias={"device": 3})
A("index_token_hash_replaced",
  "invites' token_hash unique constraint replaced by a unique index on (token_hash) INCLUDE (email), or a "
  "non-unique one",
  "FindKeyIndex's choice of index",
  setup=lambda rng: ["ALTER TABLE {s}.invites DROP CONSTRAINT invites_token_hash_key",
                     rng.choice(["CREATE UNIQUE INDEX dfz_th ON {s}.invites (token_hash) INCLUDE (email)",
                                 "CREATE INDEX dfz_th ON {s}.invites (token_hash)",
                                 "CREATE UNIQUE INDEX dfz_th ON {s}.invites (token_hash) WHERE revoked_at IS NULL"])])
A("users_email_index_replaced",
  "users' unique lower(email COLLATE \"C\") index replaced by one in the default collation",
  "FindKeyIndex on users",
  setup=["DROP INDEX {s}.users_email_lower_key",
         "CREATE UNIQUE INDEX users_email_lower_key ON {s}.users (lower(email))"])
A("media_collation", "media.media_id in collation \"C\"", "invite_check's join collation",
  setup=[retype("media", [("media_id", 'text COLLATE "C"')])])
A("exclusion_constraint", "an exclusion constraint on redemptions (invite_id, device_id) for devices 'dev1'",
  "exclusion checks of the direct insert",
  setup=["ALTER TABLE {s}.redemptions ADD CONSTRAINT dfz_excl EXCLUDE USING btree "
         "(invite_id WITH =, device_id WITH =) WHERE (device_id = 'dev1')"], bias={"device": 3})
A("deferred_unique", "a DEFERRABLE INITIALLY DEFERRED unique constraint on redemptions (invite_id, device_id, status)",
  "deferred uniqueness (its internal trigger)",
  setup=["ALTER TABLE {s}.redemptions ADD CONSTRAINT dfz_du UNIQUE (invite_id, device_id, status) "
         "DEFERRABLE INITIALLY DEFERRED"], bias={"device": 3})
A("foreign_keys_added", "DBA foreign keys: redemptions.invite_id -> invites, guest_link_joins.guest_link_id -> guest_links",
  "RI triggers on both sides of the path's writes",
  setup=["ALTER TABLE {s}.redemptions ADD CONSTRAINT dfz_fk FOREIGN KEY (invite_id) REFERENCES {s}.invites",
         "ALTER TABLE {s}.guest_link_joins ADD CONSTRAINT dfz_fk FOREIGN KEY (guest_link_id) "
         "REFERENCES {s}.guest_links"])
A("check_passing", "CHECK constraints that hold: invites (use_count >= 0), redemptions (status <> ''), "
  "guest_link_joins (length(email) > 3)", "the planned CHECKs of the path",
  setup=["ALTER TABLE {s}.invites ADD CONSTRAINT dfz_c1 CHECK (use_count >= 0)",
         "ALTER TABLE {s}.redemptions ADD CONSTRAINT dfz_c2 CHECK (status <> '')",
         "ALTER TABLE {s}.guest_link_joins ADD CONSTRAINT dfz_c3 CHECK (length(email) > 3)"])
A("check_failing", "CHECK constraints that fail: invites (use_count <= 1) NOT VALID, redemptions "
  "(device_id <> 'banned'), guest_link_joins (first_name <> 'Blocked'), invites (email NOT LIKE 'blocked%')",
  "the planned CHECKs' errors; nothing written",
  setup=["ALTER TABLE {s}.invites ADD CONSTRAINT dfz_c1 CHECK (use_count <= 1) NOT VALID",
         "ALTER TABLE {s}.redemptions ADD CONSTRAINT dfz_c2 CHECK (device_id <> 'banned') NOT VALID",
         "ALTER TABLE {s}.guest_link_joins ADD CONSTRAINT dfz_c3 CHECK (first_name <> 'Blocked') NOT VALID",
         "ALTER TABLE {s}.invites ADD CONSTRAINT dfz_c4 CHECK (email NOT LIKE 'blocked%') NOT VALID"],
  bias={"device": 2, "blocked": 3})
A("check_reads_table",
  "CHECKs calling functions that read tables: an ok record needs its invite's use_count > 0 (STABLE), at most 3 "
  "records per invite, at most 2 joins per link and email",
  "snapshot of the path's CHECK evaluation (a fresh one per statement)",
  setup=["""CREATE FUNCTION public.dfz_used(bigint) RETURNS integer LANGUAGE sql STABLE AS
            $f$ SELECT use_count FROM {s}.invites WHERE invite_id = $1 $f$""",
         "ALTER TABLE {s}.redemptions ADD CONSTRAINT dfz_used CHECK (status <> 'ok' OR public.dfz_used(invite_id) > 0) "
         "NOT VALID",
         """CREATE FUNCTION public.dfz_records(bigint) RETURNS bigint LANGUAGE sql AS
            $f$ SELECT count(*) FROM {s}.redemptions WHERE invite_id = $1 $f$""",
         """CREATE FUNCTION public.dfz_joins(bigint, text) RETURNS bigint LANGUAGE sql AS
            $f$ SELECT count(*) FROM {s}.guest_link_joins WHERE guest_link_id = $1 AND email = $2 $f$""",
         "ALTER TABLE {s}.redemptions ADD CONSTRAINT dfz_max3 CHECK (public.dfz_records(invite_id) <= 3) NOT VALID",
         "ALTER TABLE {s}.guest_link_joins ADD CONSTRAINT dfz_max2 CHECK (public.dfz_joins(guest_link_id, email) <= 2) "
         "NOT VALID"], bias={"lateral": 4})
A("default_reads_table",
  "columns whose DEFAULT reads tables: the row count of the table itself (PL/pgSQL), the uses of all invites and "
  "the number of joins (STABLE SQL)",
  "snapshot of the path's default evaluation",
  setup=["""CREATE FUNCTION public.dfz_count(t text) RETURNS bigint LANGUAGE plpgsql AS
            $f$ DECLARE n bigint; BEGIN EXECUTE format('SELECT count(*) FROM %s', t) INTO n; RETURN n; END $f$"""] +
  [f"ALTER TABLE {{s}}.{t} ADD COLUMN dfz_nth bigint DEFAULT public.dfz_count('{{s}}.{t}')"
   for t in ("redemptions", "guest_link_joins", "invites")] +
  ["""CREATE FUNCTION public.dfz_uses() RETURNS bigint LANGUAGE sql STABLE AS
      $f$ SELECT coalesce(sum(use_count), 0) FROM {s}.invites $f$""",
   """CREATE FUNCTION public.dfz_joined() RETURNS bigint LANGUAGE sql STABLE AS
      $f$ SELECT count(*) FROM {s}.guest_link_joins $f$""",
   "ALTER TABLE {s}.redemptions ADD COLUMN dfz_uses bigint DEFAULT public.dfz_uses()",
   "ALTER TABLE {s}.guest_link_joins ADD COLUMN dfz_joined bigint DEFAULT public.dfz_joined()",
   "ALTER TABLE {s}.invites ADD COLUMN dfz_uses bigint DEFAULT public.dfz_uses()"], bias={"lateral": 4})
A("column_defaults",
  "extra columns with defaults: constant, stable (now()), volatile (a DBA sequence, clock-independent)",
  "the path's planned defaults",
  setup=lambda rng: [f"ALTER TABLE {{s}}.{t} ADD COLUMN dfz_{i} {d}" for i, (t, d) in enumerate(rng.sample([
      ("redemptions", "text DEFAULT 'web'"), ("redemptions", "bigint DEFAULT nextval('public.dfz_seq')"),
      ("guest_link_joins", "bigint NOT NULL DEFAULT nextval('public.dfz_seq')"),
      ("guest_link_joins", "timestamptz DEFAULT now()"), ("invites", "text NOT NULL DEFAULT 'x'"),
      ("invites", "bigint DEFAULT nextval('public.dfz_seq')"), ("redemptions", "int DEFAULT 7"),
  ], rng.randint(2, 5)))])
A("identity_column", "redemptions.redemption_id and guest_link_joins.join_id made identity columns",
  "defaults of identity columns",
  setup=["ALTER TABLE {s}.redemptions ALTER COLUMN redemption_id DROP DEFAULT",
         "ALTER TABLE {s}.redemptions ALTER COLUMN redemption_id ADD GENERATED BY DEFAULT AS IDENTITY (START 1000)",
         "ALTER TABLE {s}.guest_link_joins ALTER COLUMN join_id DROP DEFAULT",
         "ALTER TABLE {s}.guest_link_joins ALTER COLUMN join_id ADD GENERATED ALWAYS AS IDENTITY (START 1000)"])
A("default_dropped", "redemptions.redemption_id's default dropped (NOT NULL kept)",
  "the record's id: NOT NULL error text", setup=["ALTER TABLE {s}.redemptions ALTER COLUMN redemption_id DROP DEFAULT"])
A("sequence_exhausted", "redemptions' and guest_link_joins' sequences end after a few more values",
  "nextval errors in the path's defaults",
  setup=["SELECT setval('{s}.redemptions_redemption_id_seq', 100)",
         "ALTER SEQUENCE {s}.redemptions_redemption_id_seq MAXVALUE 104",
         "SELECT setval('{s}.guest_link_joins_join_id_seq', 100)",
         "ALTER SEQUENCE {s}.guest_link_joins_join_id_seq MAXVALUE 103"])
A("null_columns",
  "NOT NULL dropped on invites (max_uses, failed_attempts, email, media_id), guest_links.clicks; rows set to NULL",
  "the path's NULL checks (23502 from the statement)",
  setup=["ALTER TABLE {s}.invites ALTER COLUMN max_uses DROP NOT NULL, ALTER COLUMN failed_attempts DROP NOT NULL, "
         "ALTER COLUMN email DROP NOT NULL, ALTER COLUMN media_id DROP NOT NULL, ALTER COLUMN use_count DROP NOT NULL",
         "ALTER TABLE {s}.guest_links ALTER COLUMN clicks DROP NOT NULL, ALTER COLUMN media_id DROP NOT NULL"],
  actions=[(6, lambda rng, g: dba(
      f"UPDATE {{s}}.invites SET {rng.choice(['max_uses', 'failed_attempts', 'email', 'media_id', 'use_count'])} "
      f"= NULL WHERE invite_id = {{inv:{g.k()}}}", "an invite column := NULL")),
      (3, lambda rng, g: dba(
          f"UPDATE {{s}}.guest_links SET {rng.choice(['clicks', 'media_id'])} = NULL "
          f"WHERE guest_link_id = {{gl:{g.k()}}}", "a guest link column := NULL"))],
  scenario=lambda rng, g: g.null_scenario(rng.choice(["max_uses", "failed_attempts", "email", "media_id"])))
A("renamed_column",
  "a column the path uses renamed: invites.first_name, redemptions.device_id, guest_link_joins.email or users.email",
  "FindColumns by name; the statements fail the same way",
  setup=lambda rng: [rng.choice([
      "ALTER TABLE {s}.invites RENAME COLUMN first_name TO given_name",
      "ALTER TABLE {s}.redemptions RENAME COLUMN device_id TO device",
      "ALTER TABLE {s}.guest_link_joins RENAME COLUMN email TO mail",
      "ALTER TABLE {s}.users RENAME COLUMN email TO mail",
      "ALTER TABLE {s}.media RENAME COLUMN title TO name"])])
A("dropped_columns",
  "columns added and dropped on invites, redemptions, guest_link_joins, guest_links (attisdropped), "
  "and a fast default (attmissingval) on invites",
  "attribute numbers and missing attributes in the path's slots",
  setup=[f"ALTER TABLE {{s}}.{t} ADD COLUMN dfz_gone text, ADD COLUMN dfz_gone2 int" for t in
         ("invites", "redemptions", "guest_link_joins", "guest_links")] +
  [f"ALTER TABLE {{s}}.{t} DROP COLUMN dfz_gone" for t in ("invites", "redemptions", "guest_link_joins", "guest_links")] +
  ["ALTER TABLE {s}.invites ADD COLUMN dfz_fast text NOT NULL DEFAULT 'fast'"])
A("unlogged_tables", "redemptions, guest_link_joins and invites made UNLOGGED", "writes to unlogged tables",
  setup=["ALTER TABLE {s}.redemptions SET UNLOGGED", "ALTER TABLE {s}.guest_link_joins SET UNLOGGED",
         "ALTER TABLE {s}.invites SET UNLOGGED"])
A("storage_params", "invites with fillfactor 10 and rewritten (VACUUM FULL); redemptions with fillfactor 20",
  "non-HOT updates, tuples on new pages",
  setup=["ALTER TABLE {s}.invites SET (fillfactor = 10)", "VACUUM FULL {s}.invites",
         "ALTER TABLE {s}.redemptions SET (fillfactor = 20)"])
A("publication_replica_identity",
  "a publication of invites, redemptions, guest_link_joins; invites with REPLICA IDENTITY NOTHING",
  "CheckCmdReplicaIdentity of the use's update",
  setup=["CREATE PUBLICATION dfz_pub FOR TABLE {s}.invites, {s}.redemptions, {s}.guest_link_joins",
         "ALTER TABLE {s}.invites REPLICA IDENTITY NOTHING"], combine=False)
A("may_invite_replaced",
  "may_invite() replaced: the owner only, or anyone listed in a DBA table",
  "invite_create's policy call",
  setup=["CREATE TABLE public.dfz_inviters (user_id text PRIMARY KEY)",
         "INSERT INTO public.dfz_inviters VALUES ('stranger'), ('viewer')",
         "GRANT SELECT ON public.dfz_inviters TO PUBLIC",
         """CREATE OR REPLACE FUNCTION {s}.may_invite(actor_id text, media_id text) RETURNS boolean
            LANGUAGE sql STABLE AS $f$
            SELECT EXISTS (SELECT 1 FROM {s}.media m WHERE m.media_id = $2 AND m.owner_id = $1)
                OR EXISTS (SELECT 1 FROM public.dfz_inviters d WHERE d.user_id = $1) $f$"""],
  bias={"create": 3})
A("domain_allowed_replaced",
  "domain_allowed() replaced by a boolean rule of the DBA (SQL, or PL/pgSQL returning NULL for some)",
  "the guest join's policy call and its NULL", bias={"guest_join": 4, "restricted": 3},
  setup=lambda rng: [rng.choice([
      """CREATE OR REPLACE FUNCTION {s}.domain_allowed(email text) RETURNS boolean LANGUAGE sql STABLE AS
         $f$ SELECT email NOT LIKE '%@cs.university.edu' $f$""",
      """CREATE OR REPLACE FUNCTION {s}.domain_allowed(email text) RETURNS boolean LANGUAGE plpgsql STABLE AS
         $f$ BEGIN IF email LIKE 'r%' THEN RETURN NULL; END IF;
             RETURN (SELECT count(*) FROM {s}.users) < 25; END $f$""",
      """CREATE OR REPLACE FUNCTION {s}.domain_allowed(email text) RETURNS boolean LANGUAGE sql VOLATILE AS
         $f$ SELECT (SELECT count(*) FROM {s}.guest_link_joins) % 2 = 0 $f$"""])])
A("settings_extra", "settings with an extra column and a CHECK; lockout_attempts retyped bigint in 1 case of 2",
  "ReadSettings' column check",
  setup=lambda rng: ["ALTER TABLE {s}.settings ADD COLUMN dfz_note text DEFAULT 'n'",
                     "ALTER TABLE {s}.settings ADD CONSTRAINT dfz_c CHECK (link_duration > 0)"] +
  ([retype("settings", [("lockout_attempts", "bigint")])] if rng.random() < 0.5 else []))
A("settings_two_rows", "settings' single-row rules dropped and a second row inserted between calls",
  "ReadSettings' row count",
  setup=["ALTER TABLE {s}.settings DROP CONSTRAINT settings_pkey",
         "ALTER TABLE {s}.settings DROP CONSTRAINT settings_single_row"],
  scenario=once(lambda rng, g: dba(["ALTER TABLE {s}.settings DISABLE TRIGGER USER",
                                    "INSERT INTO {s}.settings (singleton, enabled) VALUES (false, true)",
                                    "ALTER TABLE {s}.settings ENABLE TRIGGER USER"],
                                   "a second settings row"),
                sc_stmt("consume", right=True), sc_stmt("check"), sc_stmt("guest_join")))
A("invites_partitioned",
  "invites renamed away, a list-partitioned invites (by media_id) with the same columns made under the name, rows copied",
  "relkind checks of invites",
  setup=rebuild_partitioned("invites", "LIST (media_id)", ["FOR VALUES IN ('live')", "DEFAULT"],
                            extra=["CREATE UNIQUE INDEX ON {s}.invites (token_hash, media_id)",
                                   "CREATE UNIQUE INDEX ON {s}.invites (invite_id, media_id)"]))
A("records_partitioned",
  "redemptions and guest_link_joins rebuilt as partitioned tables (by status)",
  "relkind checks of the insert targets",
  setup=rebuild_partitioned("redemptions", "LIST (status)", ["FOR VALUES IN ('ok')", "DEFAULT"]) +
  rebuild_partitioned("guest_link_joins", "LIST (status)", ["FOR VALUES IN ('ok')", "DEFAULT"]))
A("users_partitioned", "users rebuilt as a hash-partitioned table (user_id), its email index per partition",
  "the users look-up on a partitioned table",
  setup=rebuild_partitioned("users", "HASH (user_id)",
                            ["FOR VALUES WITH (MODULUS 2, REMAINDER 0)", "FOR VALUES WITH (MODULUS 2, REMAINDER 1)"],
                            pk="user_id", extra=["CREATE INDEX ON {s}.users (lower(email COLLATE \"C\"))"]))
A("guest_links_child", "an inheritance child of guest_links holding links the DBA inserted",
  "the guest link look-up by the parent's index",
  setup=["CREATE TABLE {s}.guest_links_child () INHERITS ({s}.guest_links)"],
  actions=[(8, plant_guest("guest_links_child"))],
  scenario=lambda rng, g: [{"iso": "auto", "items": [plant_guest("guest_links_child")(rng, g)], "end": "commit"},
                           {"iso": "auto", "items": [g.stmt([g.call("guest_join", k=-1)]),
                                                     g.stmt([g.call("guest_join", k=-1)])], "end": "commit"}])


# concurrent DDL: between calls, from the second connection, also inside an
# open transaction of the first (then with lock_timeout: a DDL that would
# wait fails the same way in both databases)
DDL_POOL = [
    "ALTER TABLE {s}.redemptions ADD CONSTRAINT dfz_cc CHECK (device_id IS DISTINCT FROM 'banned') NOT VALID",
    "ALTER TABLE {s}.redemptions DROP CONSTRAINT IF EXISTS dfz_cc",
    "CREATE INDEX IF NOT EXISTS dfz_ci ON {s}.invites (use_count)",
    "DROP INDEX IF EXISTS {s}.dfz_ci",
    trig("redemptions", "dfz_ct", "AFTER", "ROW", "INSERT"),
    "DROP TRIGGER IF EXISTS dfz_ct ON {s}.redemptions",
    trig("invites", "dfz_ct2", "BEFORE", "ROW", "UPDATE"),
    "DROP TRIGGER IF EXISTS dfz_ct2 ON {s}.invites",
    "ALTER TABLE {s}.invites RENAME COLUMN first_name TO dfz_first",
    "ALTER TABLE {s}.invites RENAME COLUMN dfz_first TO first_name",
    "ALTER TABLE {s}.redemptions ADD COLUMN IF NOT EXISTS dfz_cd text DEFAULT 'a'",
    "ALTER TABLE {s}.redemptions ALTER COLUMN dfz_cd SET DEFAULT 'b'",
    "ALTER TABLE {s}.redemptions DROP COLUMN IF EXISTS dfz_cd",
    "ANALYZE {s}.invites", "VACUUM {s}.invites", "REINDEX TABLE {s}.invites",
    "ALTER TABLE {s}.invites SET (fillfactor = 30)",
    "CREATE OR REPLACE RULE dfz_cr AS ON INSERT TO {s}.guest_link_joins DO ALSO "
    "INSERT INTO public.dfz_audit (tag, info) VALUES ('crule', NEW.status)",
    "DROP RULE IF EXISTS dfz_cr ON {s}.guest_link_joins",
    "ALTER TABLE {s}.guest_link_joins ALTER COLUMN device_id TYPE varchar(40)",
    "ALTER TABLE {s}.guest_link_joins ALTER COLUMN device_id TYPE text",
    "ALTER TABLE {s}.invites ADD CONSTRAINT dfz_cc2 CHECK (use_count < 3) NOT VALID",
    "ALTER TABLE {s}.invites DROP CONSTRAINT IF EXISTS dfz_cc2",
    "ALTER TABLE {s}.media ADD COLUMN IF NOT EXISTS dfz_x int",
    "ALTER TABLE {s}.settings ADD COLUMN IF NOT EXISTS dfz_x int",
]


def act_ddl(rng, g):
    s = rng.choice(DDL_POOL)
    return dba(s, "concurrent DDL: " + s.replace("{s}.", "")[:70])


def act_locked_ddl(rng, g):
    s = rng.choice([
        "ALTER TABLE {s}.invites ADD COLUMN IF NOT EXISTS dfz_l int",
        "ALTER TABLE {s}.redemptions ADD COLUMN IF NOT EXISTS dfz_l int DEFAULT 3",
        "CREATE INDEX IF NOT EXISTS dfz_li ON {s}.invites (last_used_at)",
        "ALTER TABLE {s}.settings ADD COLUMN IF NOT EXISTS dfz_l int",
        "ALTER TABLE {s}.guest_links ADD COLUMN IF NOT EXISTS dfz_l int",
        "LOCK TABLE {s}.invites IN ACCESS EXCLUSIVE MODE",
    ])
    return locked([s], "held in an open transaction: " + s.replace("{s}.", ""),
                  g.stmt([g.call(rng.choice(["consume", "check", "guest_join", "create"]), right=True)]))


A("concurrent_ddl", "DDL from a second connection between calls (CHECKs, indexes, triggers, column renames, "
  "defaults, rules, retypes, VACUUM, REINDEX), also inside an open transaction, and DDL held in an open "
  "transaction while a call waits", "relcache invalidation of the path's caches mid-session",
  actions=[(10, act_ddl), (3, act_locked_ddl)],
  scenario=lambda rng, g: [{"iso": "auto", "items": [g.stmt([g.call("consume", right=True)]), act_ddl(rng, g),
                                                     g.stmt([g.call("consume", right=True)]),
                                                     act_locked_ddl(rng, g)], "end": "commit"}])

# ---------------------------------------------------------------------------
# 2.0 families (tenants and sites): skipped on 1.x databases.  Each case of
# a 2.0 database has the two tenants and five sites of FIXTURE_V2, and its
# calls name sites (invite_consume_at, invite_check_at) with tokens of the
# same site, another site of the tenant and another tenant's, as the
# second tenant's role too (SET ROLE); the 1.x calls take tokens of any
# site.  The direct path for 2.0 reads the site's row by sites_pkey, the
# invite by the unique (tenant_id, token_hash), users by (tenant_id,
# lower(email COLLATE "C")), media by (tenant_id, media_id), and writes
# redemptions with tenant_id, site_id, a drawn id and event_seq given; it
# must decline on anything else, and on row-level security that applies.
# ---------------------------------------------------------------------------
V2_BIAS = {"consume_at": 3, "check_at": 2}


def site_of_token_scenario(rng, g, dba_items):
    """links made on two sites, the DBA's change, then uses and checks of
    them at their site, another site of the tenant and another tenant's"""
    items = []
    for site in ("second", "globex-main"):
        c = g.call("create_at")
        c.update(site=site, actor="owner", role="viewer", first="Ann", not_before=None, send=False,
                 media="live", email=f"s{g.counter('email')}@outside.example")
        c["as"] = TENANT_ROLE.get(SITES[site])
        items.append(g.stmt([c]))
    items += dba_items
    for site, tsite in (("second", "second"), ("default", "second"), ("globex-main", "globex-main"),
                        ("globex-main", "second"), ("second", "globex-main")):
        for fn in ("check_at", "consume_at"):
            c = g.call(fn, right=True)
            c.update(site=site, tok=("invs", tsite, -1))
            if fn == "consume_at":
                c["email"] = ("right", 0)
            c["as"] = TENANT_ROLE.get(SITES[site])
            items.append(g.stmt([c]))
    # wrong emails up to the site's lockout (second: 1, globex-main: 2), then the right one
    for site in ("second", "globex-main"):
        for email in (("lit", "wrong@outside.example"), ("lit", "wrong@outside.example"), ("right", 0)):
            c = g.call("consume_at", right=True)
            c.update(site=site, tok=("invs", site, -1), email=email)
            c["as"] = TENANT_ROLE.get(SITES[site])
            items.append(g.stmt([c]))
    # the 1.x signatures, for each tenant
    for who in (None, "t2"):
        c = g.call("consume", right=True)
        c.update(tok=("invs", "globex-main" if who else "second", -1), email=("right", 0))
        c.pop("as", None)
        if who:
            c["as"] = who
        items.append(g.stmt([c]))
    return [{"iso": "auto", "items": items, "end": "commit"}]


def force_rls(table):
    return [f"ALTER TABLE {{s}}.{table} FORCE ROW LEVEL SECURITY"]


for _t in ("sites", "invites", "users", "media", "redemptions"):
    A(f"v2_force_rls_{_t}",
      f"2.0: {_t} with FORCE ROW LEVEL SECURITY (the extension's tenant policies, tenant_id = tenant(), then "
      f"hold the table's owner, a non-superuser)",
      "the 2.0 path's relforcerowsecurity check: RLS that applies to the owner sends the call to the statement",
      owner=True, setup=force_rls(_t), v2=True, bias=V2_BIAS,
      scenario=lambda rng, g: site_of_token_scenario(rng, g, []))

DBA_POLICIES = [
    ("sites", "AS RESTRICTIVE FOR SELECT TO dfz_owner USING (site_id <> 'second')"),
    ("sites", "AS RESTRICTIVE FOR SELECT TO dfz_owner USING (lockout_attempts <> 1)"),
    ("invites", "AS RESTRICTIVE FOR ALL TO dfz_owner USING (site_id <> 'second')"),
    ("invites", "AS RESTRICTIVE FOR UPDATE TO dfz_owner USING (true) WITH CHECK (use_count < 2)"),
    ("users", "AS RESTRICTIVE FOR SELECT TO dfz_owner USING (role <> 'admin')"),
    ("media", "AS RESTRICTIVE FOR SELECT TO dfz_owner USING (media_type <> 'webcast')"),
    ("redemptions", "AS RESTRICTIVE FOR INSERT TO dfz_owner WITH CHECK (site_id <> 'globex-main' "
                    "OR device_id IS DISTINCT FROM 'dev2')"),
    ("redemptions", "FOR INSERT TO dfz_owner WITH CHECK (tenant_id = 1)"),
]


def _dba_policy_setup(rng):
    out = []
    for t, pol in rng.sample(DBA_POLICIES, rng.randint(1, 2)):
        out.append(f"CREATE POLICY dfz_policy_{len(out)} ON {{s}}.{t} {pol}")
        if rng.random() < 0.8:
            out.append(f"ALTER TABLE {{s}}.{t} FORCE ROW LEVEL SECURITY")
    return out


A("v2_dba_policy",
  "2.0: a DBA's own policy (restrictive or permissive, for the owner dfz_owner) on sites, invites, users, media "
  "or redemptions, forced in 4 cases of 5: " + "; ".join(f"{t}: {p}" for t, p in DBA_POLICIES),
  "the RLS check of each table the 2.0 path reads or writes (a policy of the DBA's among the tenant ones)",
  owner=True, setup=_dba_policy_setup, v2=True, bias=dict(V2_BIAS, device=2),
  scenario=lambda rng, g: site_of_token_scenario(rng, g, []))

RECORD_DEFAULTS = [
    "ALTER TABLE {s}.redemptions ALTER COLUMN tenant_id SET DEFAULT 1",
    "ALTER TABLE {s}.redemptions ALTER COLUMN tenant_id SET DEFAULT {s}.tenant()",
    "ALTER TABLE {s}.redemptions ALTER COLUMN site_id SET DEFAULT 'default'",
    "ALTER TABLE {s}.redemptions ALTER COLUMN site_id SET DEFAULT {s}.default_site()",
    "ALTER TABLE {s}.redemptions ALTER COLUMN redemption_id SET DEFAULT nextval('public.dfz_seq')",
    "ALTER TABLE {s}.redemptions ALTER COLUMN event_seq SET DEFAULT nextval('public.dfz_seq')",
]
A("v2_records_default",
  "2.0: DEFAULTs a DBA gave redemptions' columns the path writes itself (1 to 3 of: "
  + "; ".join(x.replace("{s}.", "") for x in RECORD_DEFAULTS) + ")",
  "the 2.0 record insert: tenant_id, site_id, the drawn id and event_seq given, never defaulted "
  "(a default there sends the call to the statement or changes nothing)",
  setup=lambda rng: rng.sample(RECORD_DEFAULTS, rng.randint(1, 3)), v2=True, bias=V2_BIAS)


def _sites_retype_setup(rng):
    v = rng.choice(["lockout bigint", "lockout smallint", "lockout numeric", "enabled domain", "both"])
    out = []
    if v in ("enabled domain", "both"):
        out.append("CREATE DOMAIN public.dfz_bool AS boolean")
        out.append(retype("sites", [("enabled", "public.dfz_bool")]))
    if v.startswith("lockout") or v == "both":
        t = {"lockout bigint": "bigint", "lockout smallint": "smallint", "lockout numeric": "numeric",
             "both": "bigint"}[v]
        out.append(retype("sites", [("lockout_attempts", t)]))
    return out


A("v2_sites_retyped",
  "2.0: sites.lockout_attempts retyped bigint, smallint or numeric, or sites.enabled a domain over boolean "
  "(the settings view made again around it)",
  "the sites shape check: the types of the columns the 2.0 path reads",
  setup=_sites_retype_setup, v2=True, bias=V2_BIAS, actions=[(6, act_site)],
  scenario=lambda rng, g: site_of_token_scenario(rng, g, [act_site(rng, g)]))


def act_site_null(rng, g):
    site = rng.choice(list(SITES))
    col = rng.choice(["enabled", "lockout_attempts"])
    return dba(["ALTER TABLE {s}.sites DISABLE TRIGGER sites_validate",
                f"UPDATE {{s}}.sites SET {col} = NULL WHERE site_id = '{site}'",
                "ALTER TABLE {s}.sites ENABLE TRIGGER sites_validate"],
               f"sites.{col} := NULL on {site} (its validation trigger off meanwhile)")


A("v2_sites_null",
  "2.0: NOT NULL dropped on sites.enabled and lockout_attempts; NULL set on a site between calls",
  "the 2.0 path's NULL checks of the site's row (the statement's answer to a NULL enabled or lockout)",
  setup=["ALTER TABLE {s}.sites ALTER COLUMN enabled DROP NOT NULL, ALTER COLUMN lockout_attempts DROP NOT NULL"],
  actions=[(8, act_site_null), (3, act_site)], v2=True, bias=V2_BIAS,
  scenario=lambda rng, g: site_of_token_scenario(rng, g, [
      dba(["ALTER TABLE {s}.sites DISABLE TRIGGER sites_validate",
           "UPDATE {s}.sites SET lockout_attempts = NULL WHERE site_id IN ('second', 'globex-main')",
           "UPDATE {s}.invites SET failed_attempts = 3",
           "ALTER TABLE {s}.sites ENABLE TRIGGER sites_validate"],
          "lockout_attempts := NULL on second and globex-main, every link with 3 wrong emails")]))


def _sites_pkey_setup(rng):
    return ["ALTER TABLE {s}.sites DROP CONSTRAINT sites_pkey CASCADE",
            rng.choice(["CREATE INDEX dfz_sites_id ON {s}.sites (site_id)",
                        "CREATE UNIQUE INDEX dfz_sites_id ON {s}.sites (site_id, tenant_id)",
                        "CREATE UNIQUE INDEX dfz_sites_id ON {s}.sites (site_id) WHERE enabled",
                        "CREATE UNIQUE INDEX dfz_sites_id ON {s}.sites (lower(site_id))"])]


def act_site_twin(rng, g):
    """a row 'second' of tenant 2 too (possible once site_id is no longer unique)"""
    return dba("INSERT INTO {s}.sites (site_id, tenant_id, enabled, lockout_attempts, link_base_url) "
               "VALUES ('second', 2, true, 4, 'https://twin.globex.example/j/')",
               "a site 'second' of tenant 2 as well")


A("v2_sites_pkey_replaced",
  "2.0: sites_pkey dropped (CASCADE: site_hosts' foreign key) and replaced by a non-unique index on site_id, "
  "a unique one on (site_id, tenant_id), a partial or an expression one; a second 'second' of tenant 2 between calls",
  "the 2.0 site look-up by the unique index on site_id alone",
  setup=_sites_pkey_setup, actions=[(4, act_site_twin), (2, act_site)], v2=True, bias=V2_BIAS,
  scenario=lambda rng, g: site_of_token_scenario(rng, g, [act_site_twin(rng, g)]))

A("v2_invites_token_index",
  "2.0: invites' unique (tenant_id, token_hash) constraint replaced by a unique index on (token_hash, tenant_id), "
  "one on token_hash alone, a non-unique (tenant_id, token_hash), a partial one or one with INCLUDE (site_id)",
  "the 2.0 token look-up: the two-key scan of exactly the unique (tenant_id, token_hash) index",
  setup=lambda rng: ["ALTER TABLE {s}.invites DROP CONSTRAINT invites_token_hash_key",
                     rng.choice(["CREATE UNIQUE INDEX dfz_th ON {s}.invites (token_hash, tenant_id)",
                                 "CREATE UNIQUE INDEX dfz_th ON {s}.invites (token_hash)",
                                 "CREATE INDEX dfz_th ON {s}.invites (tenant_id, token_hash)",
                                 "CREATE UNIQUE INDEX dfz_th ON {s}.invites (tenant_id, token_hash) "
                                 "WHERE revoked_at IS NULL",
                                 "CREATE UNIQUE INDEX dfz_th ON {s}.invites (tenant_id, token_hash) INCLUDE (site_id)"])],
  v2=True, bias=V2_BIAS, scenario=lambda rng, g: site_of_token_scenario(rng, g, []))
A("v2_users_email_index",
  "2.0: users' unique (tenant_id, lower(email COLLATE \"C\")) index replaced by (lower(email COLLATE \"C\"), "
  "tenant_id), a non-unique one, one in the default collation, or a partial one",
  "the 2.0 invitee look-up by the users index of the tenant",
  setup=lambda rng: ["DROP INDEX {s}.users_email_lower_key",
                     rng.choice(["CREATE UNIQUE INDEX users_email_lower_key ON {s}.users "
                                 "(lower(email COLLATE \"C\"), tenant_id)",
                                 "CREATE INDEX users_email_lower_key ON {s}.users (tenant_id, lower(email COLLATE \"C\"))",
                                 "CREATE UNIQUE INDEX users_email_lower_key ON {s}.users (tenant_id, lower(email))",
                                 "CREATE UNIQUE INDEX users_email_lower_key ON {s}.users "
                                 "(tenant_id, lower(email COLLATE \"C\")) WHERE role <> 'anonymous'"])],
  v2=True, bias=dict(V2_BIAS, restricted=1), actions=[(6, act_add_user)],
  scenario=lambda rng, g: site_of_token_scenario(rng, g, []))
A("v2_media_pkey_swapped",
  "2.0: media_pkey (tenant_id, media_id) replaced by a primary key on (media_id, tenant_id), or by a "
  "non-unique index on (tenant_id, media_id)",
  "invite_check's 2.0 media look-up by (tenant_id, media_id)",
  setup=lambda rng: ["ALTER TABLE {s}.media DROP CONSTRAINT media_pkey CASCADE",
                     rng.choice(["ALTER TABLE {s}.media ADD PRIMARY KEY (media_id, tenant_id)",
                                 "CREATE INDEX dfz_media ON {s}.media (tenant_id, media_id)"])],
  v2=True, bias={"check_at": 4, "check": 2}, scenario=lambda rng, g: site_of_token_scenario(rng, g, []))


def _trig_sites_setup(rng):
    out = ["""CREATE FUNCTION public.dfz_site_trig() RETURNS trigger LANGUAGE plpgsql AS $f$
              BEGIN
                INSERT INTO public.dfz_audit (tag, info) VALUES (TG_NAME, NEW.site_id || ' ' || NEW.enabled
                                                                 || ' ' || NEW.lockout_attempts);
                IF NEW.lockout_attempts = 4 THEN NEW.lockout_attempts := 1; END IF;
                RETURN NEW;
              END $f$"""]
    out += rng.sample([
        "CREATE TRIGGER dfz_site_bu BEFORE UPDATE ON {s}.sites FOR EACH ROW EXECUTE FUNCTION public.dfz_site_trig()",
        trig("sites", "dfz_site_au", "AFTER", "ROW", "UPDATE"),
        trig("sites", "dfz_site_as", "AFTER", "STATEMENT", "UPDATE OR INSERT"),
    ], rng.randint(1, 3))
    return out


A("v2_trig_sites",
  "2.0: a DBA's triggers on sites (BEFORE UPDATE FOR EACH ROW that rewrites lockout_attempts 4 as 1, AFTER "
  "ROW / STATEMENT writing an audit row), fired by the site changes between calls",
  "the sites shape check on a table the 2.0 path only reads; site_configure and UPDATE sites through them",
  setup=_trig_sites_setup, v2=True, bias=V2_BIAS,
  actions=[(6, act_site), (2, lambda rng, g: dba(
      f"UPDATE {{s}}.sites SET lockout_attempts = 4 WHERE site_id = '{rng.choice(list(SITES))}'",
      "UPDATE sites SET lockout_attempts = 4 (the trigger makes it 1)"))],
  scenario=lambda rng, g: site_of_token_scenario(rng, g, [act_site(rng, g)]))

A("v2_sites_child",
  "2.0: an inheritance child of sites; the sites 'second' and 'globex-off' moved into it (DELETE FROM ONLY "
  "sites ... INSERT INTO the child)",
  "the 2.0 site look-up by the parent's index only (a site whose row is in a child)",
  setup=["CREATE TABLE {s}.sites_child () INHERITS ({s}.sites)",
         "CREATE TRIGGER sites_child_cache_invalidate AFTER INSERT OR UPDATE OR DELETE ON {s}.sites_child "
         "FOR EACH STATEMENT EXECUTE FUNCTION {s}.tenant_cache_invalidate()",
         "WITH m AS (DELETE FROM ONLY {s}.sites WHERE site_id IN ('second', 'globex-off') RETURNING *) "
         "INSERT INTO {s}.sites_child SELECT * FROM m"],
  v2=True, bias=V2_BIAS, actions=[(6, act_site)],
  scenario=lambda rng, g: site_of_token_scenario(rng, g, []))


def _sites_partitioned_setup(rng):
    return [
        "ALTER TABLE {s}.sites RENAME TO sites_old",
        "CREATE TABLE {s}.sites (LIKE {s}.sites_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
        "PARTITION BY HASH (site_id)",
        "ALTER TABLE {s}.sites ADD CONSTRAINT dfz_sites_pkey PRIMARY KEY (site_id), "
        "ADD CONSTRAINT dfz_sites_tenant_site_key UNIQUE (tenant_id, site_id)",
        "CREATE TABLE {s}.sites_p0 PARTITION OF {s}.sites FOR VALUES WITH (MODULUS 2, REMAINDER 0)",
        "CREATE TABLE {s}.sites_p1 PARTITION OF {s}.sites FOR VALUES WITH (MODULUS 2, REMAINDER 1)",
        "INSERT INTO {s}.sites SELECT * FROM {s}.sites_old",
        "CREATE TRIGGER sites_validate BEFORE INSERT OR UPDATE ON {s}.sites FOR EACH ROW "
        "EXECUTE FUNCTION {s}.sites_validate()",
        "CREATE TRIGGER sites_cache_invalidate AFTER INSERT OR UPDATE OR DELETE ON {s}.sites "
        "FOR EACH STATEMENT EXECUTE FUNCTION {s}.tenant_cache_invalidate()",
        # the settings view (and its updates) on the new table
        """DO $dfz$ BEGIN
             EXECUTE format('CREATE OR REPLACE VIEW {s}.settings AS %s',
                            replace(pg_get_viewdef('{s}.settings'::regclass), 'sites_old', 'sites'));
           END $dfz$""",
    ]


A("v2_sites_partitioned",
  "2.0: sites renamed away and made again as a hash-partitioned table (site_id) with the same rows, its "
  "validation and cache triggers, the settings view on it",
  "the relkind check of sites in the 2.0 path",
  setup=_sites_partitioned_setup, v2=True, bias=V2_BIAS, actions=[(6, act_site)],
  scenario=lambda rng, g: site_of_token_scenario(rng, g, [act_site(rng, g)]))

REDEMPTION_CHECKS = [
    "CHECK (tenant_id = 1 OR status <> 'ok') NOT VALID",
    "CHECK (site_id <> 'second' OR device_id IS DISTINCT FROM 'dev2') NOT VALID",
    "CHECK (site_id IN ('default', 'globex-main', 'third')) NOT VALID",
    "CHECK (public.dfz_site_tenant(site_id) = tenant_id) NOT VALID",
]
A("v2_redemptions_check",
  "2.0: a DBA's CHECK constraints on redemptions reading tenant_id and site_id (1 or 2 of: "
  + "; ".join(REDEMPTION_CHECKS) + "; dfz_site_tenant reads sites)",
  "the values the 2.0 path writes in tenant_id and site_id, seen by the planned CHECKs",
  setup=lambda rng: ["""CREATE FUNCTION public.dfz_site_tenant(text) RETURNS integer LANGUAGE sql STABLE AS
                        $f$ SELECT tenant_id FROM {s}.sites WHERE site_id = $1 $f$"""] +
  [f"ALTER TABLE {{s}}.redemptions ADD CONSTRAINT dfz_rc{i} {c}"
   for i, c in enumerate(rng.sample(REDEMPTION_CHECKS, rng.randint(1, 2)))],
  v2=True, bias=dict(V2_BIAS, device=2), scenario=lambda rng, g: site_of_token_scenario(rng, g, []))


CATALOGUE = {a.name: a for a in CAT}
assert len(CATALOGUE) == len(CAT)


# ---------------------------------------------------------------------------
# the sequence generator
# ---------------------------------------------------------------------------
MEDIA = ["live"] * 4 + ["vid"] * 2 + ["doc", "room", "vvid", "alive", "nomedia"]
ACTORS = ["owner"] * 6 + ["coeditor", "coowner", "coviewer", "admin", "uadmin", "stranger", "viewer", "nobody"]
EXISTING = ["existing.person@university.edu", "viewer@media.example", "Admin@media.example",
            "owner@media.example", "EXISTING.PERSON@University.EDU"]
CALL_WEIGHTS = {"consume": 30, "check": 14, "create": 14, "guest_join": 16, "resend": 5, "revoke": 4,
                "guest_revoke": 4, "guest_create": 6, "revoke_all": 1, "purge": 1}
# 2.0 databases: the calls naming their site too
CALL_WEIGHTS_V2 = {"consume_at": 26, "check_at": 12, "create_at": 8}
MEDIA_T2 = ["live", "live", "vid", "gonly", "doc"]
ISO = {"auto": 3, "read committed": 4, "repeatable read": 2, "serializable": 2}


def weighted(rng, weights):
    items = list(weights.items())
    total = sum(w for _, w in items)
    x = rng.random() * total
    for k, w in items:
        x -= w
        if x < 0:
            return k
    return items[-1][0]


class Gen:
    def __init__(self, rng, alts):
        self.rng = rng
        self.alts = alts
        self.counters = collections.Counter()
        self.emails = []          # new addresses used so far
        self.bias = collections.Counter()
        for a in alts:
            self.bias.update(a.bias)
        self.weights = dict(CALL_WEIGHTS)
        if V2:
            self.weights.update(CALL_WEIGHTS_V2)
        for fn in self.weights:
            if self.bias[fn]:
                self.weights[fn] *= self.bias[fn]
        self.actions = list(GENERIC_ACTIONS)
        if V2:
            self.actions.append((4, act_site))
        for a in alts:
            self.actions += a.actions

    def counter(self, name):
        self.counters[name] += 1
        return self.counters[name]

    def k(self):
        # recent links more often
        r = self.rng.random()
        if r < 0.5:
            return -1 - self.rng.randrange(3)
        return self.rng.randrange(8)

    def new_email(self):
        r = self.rng.random()
        n = self.counter("email")
        if r < 0.2 + 0.1 * self.bias["restricted"]:
            e = self.rng.choice([f"r{n}@cs.university.edu", f"r{n}@university.edu"])
        elif r < 0.3 + 0.1 * self.bias["blocked"]:
            e = f"blocked{n}@outside.example"
        else:
            e = f"p{n}@outside.example"
        self.emails.append(e)
        return e

    def email_pool_pick(self):
        if self.emails and self.rng.random() < 0.7:
            return self.rng.choice(self.emails)
        return self.new_email()

    def device(self):
        r = self.rng.random()
        if r < 0.5 - 0.1 * self.bias["device"]:
            return None
        return self.rng.choice(["dev1", "dev1", "dev2", "dev3", "dev-blocked", "banned", "x" * 300
                                if self.rng.random() < 0.1 else "dev2"])

    def tok(self, k, kind="inv"):
        r = self.rng.random()
        if r < 0.03:
            return ("forged",)
        if r < 0.05:
            return ("malformed",)
        if r < 0.07:
            return ("gl" if kind == "inv" else "inv", k)
        return (kind, k)

    # -- 2.0: sites, tenants, the role a call is made as ----------------------
    def site(self, enabled_bias=True):
        return self.rng.choice(["default", "default", "second", "second", "third", "globex-main",
                                "globex-main", "globex-off"])

    def as_for(self, site):
        """the role a call at site is made as: mostly one of the site's
        tenant (None: the connection's own role, which acts for tenant 1),
        in 1 case of 5 one of the other tenant (the site does not exist
        for it)"""
        own = TENANT_ROLE.get(SITES.get(site, 1))
        if self.rng.random() < 0.2:
            return None if own else "t2"
        return own

    def site_tok(self, site, k):
        """a token of the call's site, of another site of its tenant, of
        another tenant's site, or of any site; sometimes forged or malformed"""
        rng = self.rng
        r = rng.random()
        if r < 0.03:
            return ("forged",)
        if r < 0.05:
            return ("malformed",)
        tenant = SITES.get(site, 1)
        r = rng.random()
        if r < 0.5:
            s = site
        elif r < 0.7:
            s = rng.choice([x for x in SITES if SITES[x] == tenant and x != site] or list(SITES))
        elif r < 0.9:
            s = rng.choice([x for x in SITES if SITES[x] != tenant])
        else:
            return ("inv", k)
        return ("invs", s, k)

    def call(self, fn, k=None, right=False):
        rng = self.rng
        k = self.k() if k is None else k
        if fn in ("consume_at", "check_at", "create_at"):
            site = self.site()
            if rng.random() < 0.03:
                site = "nosite"
            base = {"consume_at": "consume", "check_at": "check", "create_at": "create"}[fn]
            c = self.call(base, k=k, right=right)
            c.update(fn=fn, site=site)
            c["as"] = self.as_for(site)
            if fn != "create_at":
                c["tok"] = self.site_tok(site, k)
            elif SITES.get(site) == 2:
                c["media"] = rng.choice(MEDIA_T2)
                c["actor"] = rng.choice(["owner"] * 6 + ["existing", "gviewer", "nobody"])
            return c
        if fn == "consume":
            email = ("right", 0)
            r = rng.random()
            if not right:
                if r < 0.15:
                    email = ("right", rng.choice([1, 2]))
                elif r < 0.35:
                    email = ("lit", f"wrong{self.counter('wrong')}@outside.example")
                elif r < 0.42:
                    email = ("lit", rng.choice(EXISTING))
            c = {"fn": fn, "tok": self.tok(k), "email": email, "device": self.device()}
            self.v2_any_site(c, k)
            return c
        if fn == "check":
            c = {"fn": fn, "tok": self.tok(k)}
            self.v2_any_site(c, k)
            return c
        if fn == "create":
            media = rng.choice(MEDIA)
            r = rng.random()
            email = (rng.choice(EXISTING) if r < 0.15 else
                     rng.choice(self.emails) if r < 0.3 and self.emails else self.new_email())
            role = rng.choice(["viewer"] * 6 + ["moderator", "speaker", "bogus"])
            first = rng.choice(["Ann"] * 8 + ["", "Blocked", "Tab\tName"])
            nb = rng.choice([None] * 8 + ["future", "past"])
            return {"fn": fn, "media": media, "actor": rng.choice(ACTORS), "email": email, "first": first,
                    "last": "Invitee", "role": role, "send": rng.random() < 0.4, "not_before": nb}
        if fn == "guest_join":
            r = rng.random()
            email = (rng.choice(EXISTING) if r < 0.15 else
                     rng.choice(self.emails) if r < 0.4 and self.emails else self.new_email())
            first = rng.choice(["Gina"] * 8 + ["Blocked", ""]) if rng.random() < 0.95 else "x" * 120
            return {"fn": fn, "tok": self.tok(k, "gl"), "email": email, "first": first, "last": "Guest",
                    "device": self.device()}
        if fn == "resend":
            return {"fn": fn, "inv": ("inv", k), "actor": rng.choice(ACTORS), "send": rng.random() < 0.5}
        if fn == "revoke":
            return {"fn": fn, "inv": ("inv", k), "actor": rng.choice(ACTORS)}
        if fn == "guest_revoke":
            return {"fn": fn, "gl": ("gl", k), "actor": rng.choice(ACTORS)}
        if fn == "guest_create":
            return {"fn": fn, "media": rng.choice(MEDIA), "actor": rng.choice(ACTORS),
                    "name": f"Audience {self.counter('audience')}",
                    "limit": rng.choice([None, None, 1, 2, 3, 0]), "days": rng.choice([None, None, 1, 30])}
        if fn == "revoke_all":
            return {"fn": fn, "media": rng.choice(["live", "vid", "doc"]), "actor": rng.choice(ACTORS)}
        if fn == "purge":
            return {"fn": fn, "keep": rng.choice(["0", "1 hour", "30 days"])}
        raise ValueError(fn)

    def v2_any_site(self, c, k):
        """2.0: a 1.x consume or check on a token of any site, made as
        the second tenant's role in 1 case of 4 (its default site is
        globex-main)"""
        if not V2:
            return
        if self.rng.random() < 0.4 and c["tok"][0] == "inv":
            c["tok"] = ("invs", self.rng.choice(list(SITES)), k)
        if self.rng.random() < 0.25:
            c["as"] = "t2"

    def stmt(self, calls, shape=None, sp=None, reps=1):
        if shape is None:
            shape = "single" if len(calls) == 1 else self.rng.choice(["multi", "tlist", "cte"])
        st = {"t": "stmt", "shape": shape, "calls": calls, "sp": sp, "reps": reps}
        # one role per statement: the first call's
        if calls and calls[0].get("as"):
            st["as"] = calls[0]["as"]
        return st

    def conc(self, call):
        return {"t": "conc", "call": call}

    def random_stmt(self, in_tx):
        rng = self.rng
        r = rng.random()
        combo = 0.12 + 0.08 * self.bias["combo"]
        lateral = 0.06 + 0.04 * self.bias["lateral"]
        if r < combo:
            k = self.k()
            pair = rng.choice([("guest_revoke", "guest_join"), ("guest_join", "guest_revoke"),
                               ("revoke", "consume"), ("consume", "consume"), ("resend", "consume"),
                               ("consume", "check"), ("create", "create"), ("guest_join", "guest_join"),
                               ("consume", "revoke"), ("check", "resend", "check")]
                              + [("guest_revoke", "guest_join")] * self.bias["combo"]
                              + ([("consume_at", "consume_at"), ("consume_at", "check_at"),
                                  ("consume", "consume_at"), ("check_at", "consume_at", "check")] if V2 else []))
            calls = [self.call(fn, k=k, right=True) for fn in pair]
            st = self.stmt(calls)
        elif r < combo + lateral:
            fn = rng.choice(["consume", "consume", "guest_join", "create", "check"]
                            + (["consume_at", "consume_at", "check_at"] if V2 else []))
            st = self.stmt([self.call(fn, right=True)], shape="lateral", reps=rng.randint(2, 3))
        else:
            st = self.stmt([self.call(weighted(rng, self.weights))])
        if in_tx:
            st["sp"] = rng.choice([None] * 5 + ["release", "rollback", "guard"])
        return st

    def random_action(self):
        return weighted(self.rng, {i: w for i, (w, _) in enumerate(self.actions)})

    def random_tx(self):
        rng = self.rng
        iso = weighted(rng, ISO)
        items = []
        for _ in range(rng.randint(1, 4 if iso != "auto" else 3)):
            r = rng.random()
            if r < 0.72:
                items.append(self.random_stmt(iso != "auto"))
            elif r < 0.88:
                items.append(self.actions[self.random_action()][1](rng, self))
            else:
                fn = rng.choice(["consume", "revoke", "resend", "guest_join", "guest_revoke", "check", "create"]
                                + (["consume_at", "check_at", "create_at"] if V2 else []))
                items.append(self.conc(self.call(fn, right=True)))
        end = "rollback" if iso != "auto" and rng.random() < 0.12 else "commit"
        return {"iso": iso, "items": items, "end": end}

    def prologue(self):
        rng = self.rng
        items = [self.stmt([self.call("create")]) for _ in range(rng.randint(2, 4))]
        items.append(self.stmt([self.call("guest_create")]))
        items.append(self.stmt([self.call("guest_create")]))
        for it in items:
            c = it["calls"][0]
            if c["fn"] == "create":
                c.update(media=rng.choice(["live", "live", "vid", "room"]), actor="owner",
                         role="viewer", first="Ann", not_before=None)
            else:
                c.update(media="live", actor="owner", limit=rng.choice([None, None, 3]), days=None)
        items.append(self.stmt([self.call("guest_create")]))
        if V2:
            for site in SITES:
                for _ in range(rng.randint(1, 2)):
                    c = self.call("create_at")
                    c.update(site=site, actor="owner", role="viewer", first="Ann", not_before=None,
                             media=rng.choice(["live", "vid"]), send=False,
                             email=f"p{self.counter('email')}@outside.example")
                    self.emails.append(c["email"])
                    c["as"] = TENANT_ROLE.get(SITES[site])
                    items.append(self.stmt([c]))
            items.append(dba("SELECT {s}.site_disable('third')", "site_disable('third')"))
            items.append(dba("SELECT {s}.site_configure('globex-off', '{\"enabled\": false}')",
                             "site_configure('globex-off', enabled: false)"))
        return {"iso": "auto", "items": items, "end": "commit"}

    # scenario helpers used by the catalogue
    def null_scenario(self, column, value="NULL"):
        k = -1
        return [{"iso": "auto", "items": [
            self.stmt([self.call("create")]),
            dba(f"UPDATE {{s}}.invites SET {column} = {value} WHERE invite_id = {{inv:{k}}}",
                f"{column} := {value} on the last link"),
            self.stmt([self.call("check", k=k)]), self.stmt([self.call("consume", k=k, right=True)]),
            self.stmt([self.call("consume", k=k)])], "end": "commit"}]

    def child_user_scenario(self):
        email = self.new_email()
        create = self.call("create")
        create.update(media="live", actor="owner", role="viewer", first="Ann", email=email, not_before=None)
        return [{"iso": "auto", "items": [
            self.stmt([create]),
            dba(f"INSERT INTO {{s}}.users_child (user_id, email, first_name, last_name, role) "
                f"VALUES ('child0', '{email.upper()}', 'Chi', 'Ld', 'viewer')", "a user for the invitee in users_child"),
            self.stmt([self.call("consume", k=-1, right=True)]),
            self.stmt([self.call("guest_join", k=-1)])], "end": "commit"}]

    def sequence(self, ntx):
        txs = [self.prologue()]
        for _ in range(ntx):
            txs.append(self.random_tx())
        for a in self.alts:
            if a.scenario:
                pos = self.rng.randint(2, len(txs))
                txs[pos:pos] = a.scenario(self.rng, self)
        return txs


# ---------------------------------------------------------------------------
# normalisation
# ---------------------------------------------------------------------------
ID_KEYS = {"invite_id": "I", "guest_link_id": "G", "join_id": "J", "redemption_id": "R", "message_id": "M"}
DROP_KEYS = {"message_key", "n"}
TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}(:?\d{2})?| UTC)?")
HASH_RE = re.compile(r"^\\x[0-9a-f]{64}$")


class Crash(Exception):
    pass


def parse_ts(v):
    if isinstance(v, datetime.datetime):
        return v
    try:
        return datetime.datetime.fromisoformat(v)
    except Exception:
        return None


def ts_cat(v):
    if v is None:
        return None
    t = parse_ts(v)
    if t is None:
        return "ts?" + str(v)
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    d = (t - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    cat = "past" if d < -600 else "future" if d > 600 else "now"
    if t.microsecond == 0:
        cat += ",whole-second"
    return "<" + cat + ">"


def connect_retry(dbname, seconds=60):
    """a connection; retried while the server restarts after a crash"""
    deadline = time.time() + seconds
    while True:
        try:
            return psycopg.connect(dbname=dbname, autocommit=True)
        except psycopg.OperationalError as e:
            if time.time() > deadline or "does not exist" in str(e):
                raise
            time.sleep(0.5)


class Side:
    """one of the two databases: its connections and what the sequence made"""

    def __init__(self, fz, label):
        self.fz = fz
        self.label = label
        self.db = DBS[label]
        # DIFFFUZZ_CONTROL=1: both databases with the path off, a check of
        # the fuzzer itself (any difference is then the fuzzer's artefact)
        self.direct = label == "on" and os.environ.get("DIFFFUZZ_CONTROL") != "1"
        self.main = None
        self.dba = None
        self.reset_state()

    def reset_state(self):
        self.schema = EXT
        self.invites = []     # {"token", "invite_id", "email"} in order of appearance
        self.glinks = []      # {"token", "guest_link_id"}
        self.tokens = {}      # token -> symbol
        self.hashes = {}      # sha256 hex -> symbol
        self.ids = {k: {} for k in ID_KEYS}
        self.aborted = False
        self.in_tx = False
        self.notices = []
        self.notifies = []
        self.fallbacks = 0

    # -- connections -------------------------------------------------------
    def connect(self, role):
        self.close()
        self.dba = connect_retry(self.db)
        self.dba.execute("SET lock_timeout = '300ms'")
        self.dba.execute("SET statement_timeout = '20s'")
        self.dba.execute("SET TimeZone = 'UTC'")
        self.dba.execute("SET invitetomedia.direct_use = " + ("on" if self.direct else "off"))
        self.main = connect_retry(self.db)
        m = self.main
        m.execute("SET TimeZone = 'UTC'")
        m.execute("SET statement_timeout = '20s'")
        m.execute("SET lock_timeout = '10s'")
        m.execute("SET invitetomedia.direct_use = " + ("on" if self.direct else "off"))
        if self.direct:
            m.execute("SET client_min_messages = debug1")
        m.add_notice_handler(self._notice)
        m.add_notify_handler(lambda n: self.notifies.append((n.channel, n.payload)))
        m.execute("LISTEN invitetomedia_accepted")
        m.execute("LISTEN invitetomedia_email")
        self.role = role
        if role == "app":
            m.execute("SET ROLE dfz_app")

    def base_role_sql(self):
        return "SET ROLE dfz_app" if self.role == "app" else "RESET ROLE"

    def _notice(self, diag):
        msg = diag.message_primary or ""
        if "with the SQL statement" in msg:
            self.notices.append(msg)

    def close(self):
        for c in (self.main, self.dba):
            if c is not None:
                try:
                    c.close()
                except Exception:
                    pass
        self.main = self.dba = None

    def lost(self, conn):
        return conn.closed or conn.broken

    # -- symbols -----------------------------------------------------------
    def tok_symbol(self, tok, kind):
        if tok not in self.tokens:
            n = sum(1 for s in self.tokens.values() if s[0] == kind[0].upper())
            sym = f"{kind[0].upper()}{n}"
            self.tokens[tok] = sym
            self.hashes[hashlib.sha256(tok.encode()).hexdigest()] = sym
        return self.tokens[tok]

    def idsym(self, key, v):
        m = self.ids[key]
        if v not in m:
            m[v] = f"{ID_KEYS[key]}{len(m)}"
        return m[v]

    def text_norm(self, s):
        s = TOKEN_RE.sub(lambda m: self.tokens.get(m.group(0), "TOK?"), s)
        s = TS_RE.sub("<ts>", s)
        s = s.replace("dfz_on", "dfz_DB").replace("dfz_off", "dfz_DB")
        return s

    def msg_norm(self, s):
        s = self.text_norm(s)
        keys = {"invite": "invite_id", "guest link": "guest_link_id", "message": "message_id"}

        def named(m):
            v = int(m.group(2))
            return m.group(1) + " " + self.ids[keys[m.group(1)]].get(v, "<n>" if v >= 10000 else m.group(2))
        # the numbers that name a link or a message; other large ones (OIDs)
        s = re.sub(r"\b(invite|guest link|message) (\d+)\b", named, s)
        return re.sub(r"(?<![\w.])\d{5,}(?![\w.])", "<n>", s)

    def norm(self, v, key=None):
        if isinstance(v, dict):
            return {k: self.norm(x, k) for k, x in sorted(v.items()) if k not in DROP_KEYS}
        if isinstance(v, (list, tuple)):
            return [self.norm(x, key) for x in v]
        if v is None:
            return None
        if key in ID_KEYS and isinstance(v, int):
            return self.idsym(key, v)
        if key and (key.endswith("_at") or key == "at"):
            return ts_cat(v)
        if isinstance(v, str):
            if HASH_RE.match(v):
                return self.hashes.get(v[2:], "<hash?>")
            return self.text_norm(v)
        if isinstance(v, datetime.datetime):
            return ts_cat(v)
        return v

    # -- resolving a call ----------------------------------------------------
    def resolve_tok(self, ref):
        if ref[0] == "forged":
            return FORGED
        if ref[0] == "malformed":
            return MALFORMED
        if ref[0] == "invs":
            lst = [x for x in self.invites if x.get("site") == ref[1]]
            return lst[ref[2] % len(lst)]["token"] if lst else FORGED
        lst = self.invites if ref[0] == "inv" else self.glinks
        if not lst:
            return FORGED if ref[0] == "inv" else FORGED_GUEST
        return lst[ref[1] % len(lst)]["token"]

    def resolve_inv(self, ref, key="invite_id"):
        lst = self.invites if ref[0] == "inv" else self.glinks
        live = [x for x in lst if x.get(key) is not None]
        if not live:
            return 999999
        return live[ref[1] % len(live)][key]

    def invite_email(self, ref):
        if ref[0] == "invs":
            lst = [x for x in self.invites if x.get("site") == ref[1]]
            return (lst[ref[2] % len(lst)]["email"] if lst else None) or "nobody@outside.example"
        if ref[0] != "inv" or not self.invites:
            return "nobody@outside.example"
        return self.invites[ref[1] % len(self.invites)]["email"] or "nobody@outside.example"

    def call_sql(self, c, lateral=False):
        """(function call text, params); lateral: the first text argument
        depends on the row number g, so that the call runs once per row"""
        s = self.schema
        fn = c["fn"]
        g = " || left('', g)" if lateral else ""
        if fn in ("consume", "consume_at"):
            e = c["email"]
            if e[0] == "right":
                email = self.invite_email(c["tok"])
                email = [email, "  " + email.upper() + " ", email.swapcase()][e[1]]
            else:
                email = e[1]
            if fn == "consume_at":
                return (f"{s}.invite_consume_at(%s::text{g}, %s::text, %s::text, %s::text)",
                        [c["site"], self.resolve_tok(c["tok"]), email, c["device"]])
            return (f"{s}.invite_consume(%s::text{g}, %s::text, %s::text)",
                    [self.resolve_tok(c["tok"]), email, c["device"]])
        if fn == "check":
            return f"{s}.invite_check(%s::text{g})", [self.resolve_tok(c["tok"])]
        if fn == "check_at":
            return f"{s}.invite_check_at(%s::text{g}, %s::text)", [c["site"], self.resolve_tok(c["tok"])]
        if fn == "create_at":
            nb = {None: "NULL", "future": "(now() + interval '1 hour')", "past": "(now() - interval '1 hour')"}[
                c["not_before"]]
            return (f"{s}.invite_create_at(%s::text{g}, %s::text, %s::text, %s::text, %s::text, %s::text, "
                    f"%s::text, %s::boolean, {nb}::timestamptz)",
                    [c["site"], c["media"], c["actor"], c["email"], c["first"], c["last"], c["role"], c["send"]])
        if fn == "create":
            nb = {None: "NULL", "future": "(now() + interval '1 hour')", "past": "(now() - interval '1 hour')"}[
                c["not_before"]]
            return (f"{s}.invite_create(%s::text{g}, %s::text, %s::text, %s::text, %s::text, %s::text, "
                    f"%s::boolean, {nb}::timestamptz)",
                    [c["media"], c["actor"], c["email"], c["first"], c["last"], c["role"], c["send"]])
        if fn == "guest_join":
            return (f"{s}.guest_link_join(%s::text{g}, %s::text, %s::text, %s::text, %s::text)",
                    [self.resolve_tok(c["tok"]), c["email"], c["first"], c["last"], c["device"]])
        if fn == "resend":
            return (f"{s}.invite_resend(%s::bigint, %s::text{g}, %s::boolean)",
                    [self.resolve_inv(c["inv"]), c["actor"], c["send"]])
        if fn == "revoke":
            return f"{s}.invite_revoke(%s::bigint, %s::text{g})", [self.resolve_inv(c["inv"]), c["actor"]]
        if fn == "guest_revoke":
            return (f"{s}.guest_link_revoke(%s::bigint, %s::text{g})",
                    [self.resolve_inv(c["gl"], "guest_link_id"), c["actor"]])
        if fn == "guest_create":
            return (f"{s}.guest_link_create(%s::text{g}, %s::text, %s::text, %s::integer, %s::integer)",
                    [c["media"], c["actor"], c["name"], c["limit"], c["days"]])
        if fn == "revoke_all":
            return f"{s}.invite_revoke_all(%s::text{g}, %s::text)", [c["media"], c["actor"]]
        if fn == "purge":
            return f"{s}.invite_purge(%s::interval)", [c["keep"]]
        raise ValueError(fn)

    def build(self, st):
        calls = st["calls"]
        parts = [self.call_sql(c, st["shape"] == "lateral") for c in calls]
        params = [p for _, ps in parts for p in ps]
        srf = [c["fn"] in SRF for c in calls]
        shape = st["shape"]
        if shape == "single":
            f = parts[0][0]
            sql = f"SELECT to_jsonb(x) FROM {f} x" if srf[0] else f"SELECT to_jsonb({f})"
        elif shape == "lateral":
            f = parts[0][0]
            sql = (f"SELECT to_jsonb(x) FROM generate_series(1, {st['reps']}) g, LATERAL {f} x ORDER BY g"
                   if srf[0] else
                   f"SELECT to_jsonb({f}) FROM generate_series(1, {st['reps']}) g ORDER BY g")
        elif shape == "multi":
            cols = [f"(SELECT coalesce(jsonb_agg(to_jsonb(x)), '[]') FROM {f} x)" if r else f"to_jsonb({f})"
                    for (f, _), r in zip(parts, srf)]
            sql = "SELECT " + ", ".join(cols)
        elif shape == "tlist":
            sql = "SELECT " + ", ".join(f"to_jsonb({f})" for f, _ in parts)
        elif shape == "cte":
            ctes = [f"c{i} AS (SELECT to_jsonb(x) AS j FROM {f} x)" if r else f"c{i} AS (SELECT to_jsonb({f}) AS j)"
                    for i, ((f, _), r) in enumerate(zip(parts, srf))]
            sql = ("WITH " + ", ".join(ctes) + " SELECT " +
                   ", ".join(f"(SELECT jsonb_agg(j) FROM c{i})" for i in range(len(parts))))
        else:
            raise ValueError(shape)
        return sql, params

    def register(self, st, rows):
        """the tokens and ids that creating calls returned, per call"""
        calls = st["calls"]
        per_call = [[] for _ in calls]
        if st["shape"] in ("single", "lateral"):
            per_call[0] = [r[0] for r in rows]
        else:
            for r in rows:
                for i, v in enumerate(r):
                    if isinstance(v, list):
                        per_call[i].extend(v)
                    else:
                        per_call[i].append(v)
        for c, vals in zip(calls, per_call):
            for v in vals:
                if not isinstance(v, dict) or not isinstance(v.get("token"), str):
                    continue
                if c["fn"] in ("create", "create_at"):
                    # the site: the named one, or the default site of the
                    # tenant the statement ran for
                    site = c.get("site") or ("globex-main" if st.get("as") == "t2" else "default")
                    self.invites.append({"token": v["token"], "invite_id": v.get("invite_id"), "email": c["email"],
                                         "site": site})
                    self.tok_symbol(v["token"], "T")
                elif c["fn"] == "resend":
                    iid = self.resolve_inv(c["inv"])
                    old = next((x for x in self.invites if x.get("invite_id") == iid), {})
                    self.invites.append({"token": v["token"], "invite_id": iid, "email": old.get("email"),
                                         "site": old.get("site", "default")})
                    self.tok_symbol(v["token"], "T")
                elif c["fn"] == "guest_create":
                    self.glinks.append({"token": v["token"], "guest_link_id": v.get("guest_link_id")})
                    self.tok_symbol(v["token"], "G")

    # -- running -----------------------------------------------------------
    def err(self, e, conn):
        if self.lost(conn):
            raise Crash(f"{self.label}: connection lost ({type(e).__name__}: {str(e).strip()[:200]})")
        msg = e.diag.message_primary if e.diag and e.diag.message_primary else str(e)
        return {"error": [e.sqlstate, self.msg_norm(msg)]}

    def exec_main(self, sql, params=None):
        try:
            cur = self.main.execute(sql, params)
            return cur.fetchall() if cur.description else [], None
        except psycopg.Error as e:
            return None, self.err(e, self.main)

    def begin(self, tx):
        self.aborted = False
        self.in_tx = tx["iso"] != "auto"
        if self.in_tx:
            _, e = self.exec_main("BEGIN ISOLATION LEVEL " + tx["iso"].upper())
            if e:
                return e
        return None

    def end(self, tx):
        ans = None
        if self.in_tx:
            _, e = self.exec_main("COMMIT" if tx["end"] == "commit" and not self.aborted else "ROLLBACK")
            ans = e
            self.in_tx = False
        self.exec_main("SELECT 1")  # takes in the notifications
        n = [(ch, self.norm_payload(ch, p)) for ch, p in self.notifies]
        self.notifies = []
        return {"end": ans, "notify": n}

    def norm_payload(self, ch, p):
        try:
            d = json.loads(p)
        except Exception:
            return self.text_norm(p)
        if isinstance(d, dict):
            key = {"invite": "invite_id", "guest_link": "guest_link_id"}.get(d.get("kind"))
            if key is None and ch == "invitetomedia_email" and "kind" not in d:
                key = "message_id"      # 2.0: {"tenant": T, "id": N}
            return {k: (self.idsym(key, v) if k == "id" and key and isinstance(v, int) else v) for k, v in d.items()}
        if isinstance(d, int) and ch == "invitetomedia_email":
            return self.idsym("message_id", d)
        return d

    def run_stmt(self, st):
        if self.aborted:
            return {"skipped": "transaction aborted"}
        sql, params = self.build(st)
        sp = st.get("sp") if self.in_tx else None
        before = len(self.notices)
        if sp:
            self.exec_main("SAVEPOINT dfz_sp")
        if st.get("as"):
            # 2.0: the statement made as another role (a pool's SET ROLE);
            # the session's role comes back after it (in an aborted
            # transaction, its ROLLBACK brings it back)
            _, e = self.exec_main(f"SET ROLE {ROLES[st['as']]}")
            if e:
                return e
        rows, e = self.exec_main(sql, params)
        if st.get("as") and not (e and self.in_tx and not sp):
            self.exec_main(self.base_role_sql())
        if self.direct and any(c["fn"] in DIRECT_FNS for c in st["calls"]):
            for c in st["calls"]:
                if c["fn"] in DIRECT_FNS:
                    self.fz.stats["direct_eligible:" + c["fn"]] += 1
                    if len(self.notices) > before:
                        self.fz.stats["direct_fallback:" + c["fn"]] += 1
            self.fz.stats["direct_eligible"] += 1
            if len(self.notices) > before:
                self.fz.stats["direct_fallback"] += 1
        if sp:
            if e or sp == "rollback":
                self.exec_main("ROLLBACK TO SAVEPOINT dfz_sp")
            if not e and sp in ("release", "guard"):
                self.exec_main("RELEASE SAVEPOINT dfz_sp")
        elif e and self.in_tx:
            self.aborted = True
        if self.label == "off" and V2:
            self.tally(st, rows, e)
        if e:
            return e
        self.register(st, rows)
        return {"rows": self.norm(rows)}

    def tally(self, st, rows, e):
        """2.0: what the site-naming calls answered (the reference side),
        for the run's summary: which outcomes the sequences reached"""
        fns = [c["fn"] for c in st["calls"] if c["fn"] in ("consume_at", "check_at")]
        if not fns:
            return
        if e:
            self.fz.stats[f"answer:{fns[0]}:{e['error'][0]}"] += 1
            return
        for r in rows or []:
            for v in r:
                for x in (v if isinstance(v, list) else [v]):
                    if isinstance(x, dict) and "status" in x and len(fns) == len(st["calls"]):
                        self.fz.stats[f"answer:{fns[0]}:{x['status']}"] += 1

    def resolve_sql(self, sql):
        def sub(m):
            name, _, arg = m.group(1).partition(":")
            if name == "s":
                return self.schema
            if name == "inv":
                return str(self.resolve_inv(("inv", int(arg))))
            if name == "gl":
                return str(self.resolve_inv(("gl", int(arg)), "guest_link_id"))
            return m.group(0)
        return re.sub(r"\{(s|inv:-?\d+|gl:-?\d+)\}", sub, sql)

    def run_dba(self, item):
        out = []
        for s in item["sql"]:
            try:
                self.dba.execute(self.resolve_sql(s))
                out.append("ok")
            except psycopg.Error as e:
                out.append(self.err(e, self.dba))
                break
        if all(x == "ok" for x in out):
            if item.get("plant"):
                p = item["plant"]
                if p["kind"] == "inv":
                    self.invites.append({"token": p["token"], "invite_id": None, "email": p["email"],
                                         "site": p.get("site", "default")})
                    self.tok_symbol(p["token"], "T")
                else:
                    self.glinks.append({"token": p["token"], "guest_link_id": None})
                    self.tok_symbol(p["token"], "G")
            if item.get("schema_to"):
                self.schema = item["schema_to"]
        return {"dba": out}

    def run_conc(self, item):
        st = {"calls": [item["call"]], "shape": "single", "as": item["call"].get("as")}
        sql, params = self.build(st)
        try:
            if st["as"]:
                self.dba.execute(f"SET ROLE {ROLES[st['as']]}")
            try:
                cur = self.dba.execute(sql, params)
                rows = cur.fetchall()
            finally:
                if st["as"] and not self.lost(self.dba):
                    self.dba.execute("RESET ROLE")
        except psycopg.Error as e:
            return {"conc": self.err(e, self.dba)}
        self.register(st, rows)
        return {"conc": {"rows": self.norm(rows)}}

    def run_locked(self, item):
        """DDL held in an open transaction of the second connection while the
        first's call waits for it; then committed"""
        d = self.dba
        try:
            d.execute("BEGIN")
            for s in item["sql"]:
                d.execute(self.resolve_sql(s))
        except psycopg.Error as e:
            ans = self.err(e, d)
            try:
                d.execute("ROLLBACK")
            except psycopg.Error:
                pass
            return {"locked": ans, "stmt": self.run_stmt(item["stmt"])}
        box = {}

        def work():
            try:
                box["ans"] = self.run_stmt(item["stmt"])
            except Crash as c:
                box["crash"] = c
        pid = self.main.info.backend_pid
        t = threading.Thread(target=work)
        t.start()
        blocked = False
        deadline = time.time() + 3
        while t.is_alive() and time.time() < deadline:
            try:
                d.execute("SELECT pg_stat_clear_snapshot()")
                r = d.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
            except psycopg.Error as e:
                raise Crash(f"{self.label}: second connection lost ({e})")
            if r and r[0] == "Lock":
                blocked = True
                break
            time.sleep(0.02)
        time.sleep(0.05)
        try:
            d.execute("COMMIT")
        except psycopg.Error as e:
            self.err(e, d)
        t.join(60)
        if t.is_alive():
            raise Crash(f"{self.label}: the call did not return within 60 s after the DDL committed")
        if "crash" in box:
            raise box["crash"]
        self.fz.stats["lock_waits"] += blocked
        return {"locked": "ok", "stmt": box["ans"]}

    def run_item(self, item):
        t = item["t"]
        if t == "stmt":
            return self.run_stmt(item)
        if t == "dba":
            return self.run_dba(item)
        if t == "conc":
            return self.run_conc(item)
        if t == "locked":
            return self.run_locked(item)
        raise ValueError(t)

    # -- the tables ------------------------------------------------------------
    def dump(self):
        cur = self.dba.execute(r"""
            SELECT n.nspname, c.relname, format('%I.%I', n.nspname, c.relname)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2""")
        tables = cur.fetchall()
        raw = {}
        for nsp, rel, q in tables:
            name = rel if nsp != "public" else "public." + rel
            rows = self.dba.execute(f"SELECT to_jsonb(t) FROM ONLY {q} t").fetchall()
            raw[name] = [r[0] for r in rows]
        # ids ranked over the whole database: gaps in sequences do not matter
        ranks = {}
        id_keys = ID_KEYS
        if V2:
            # 2.0 draws ids at random: their order says nothing
            id_keys = DUMP_ID_KEYS_V2
            ranks = self.drawn_id_ranks(raw)
        else:
            for key in ID_KEYS:
                vals = sorted({r[key] for rows in raw.values() for r in rows
                               if isinstance(r.get(key), int)})
                ranks[key] = {v: f"{ID_KEYS[key]}#{i}" for i, v in enumerate(vals)}
        out = {}
        for name, rows in raw.items():
            lst = []
            for r in rows:
                d = {}
                tsvals = {}
                for k, v in sorted(r.items()):
                    if k in DROP_KEYS:
                        continue
                    if k in id_keys and isinstance(v, int):
                        d[k] = ranks[k][v]
                    elif k.endswith("_at") or k == "at" or (isinstance(v, str) and TS_RE.fullmatch(v)):
                        d[k] = ts_cat(v)
                        if v is not None:
                            tsvals.setdefault(v, []).append(k)
                    else:
                        d[k] = self.norm(v, None)
                same = sorted("=".join(sorted(ks)) for ks in tsvals.values() if len(ks) > 1)
                if same:
                    d["(equal times)"] = same
                lst.append(json.dumps(d, sort_keys=True, default=str))
            out[name] = collections.Counter(lst)
        return out


    def drawn_id_ranks(self, raw):
        """2.0: each drawn id as the symbol the answers gave it (I3: the
        fourth invite id the sequence saw), else ranked by the rows that
        hold it (ids masked), which are the same in both databases when the
        tables are"""
        ranks = {}
        for key, prefix in DUMP_ID_KEYS_V2.items():
            known = dict(self.ids.get(key, {}))
            holders = collections.defaultdict(list)
            for name, rows in raw.items():
                for r in rows:
                    v = r.get(key)
                    if isinstance(v, int) and v not in known:
                        masked = {k: ("?" if k in DUMP_ID_KEYS_V2 and isinstance(x, int) else
                                      ts_cat(x) if (k.endswith("_at") or k == "at") else self.norm(x, None))
                                  for k, x in sorted(r.items()) if k not in DROP_KEYS}
                        holders[v].append(name + json.dumps(masked, sort_keys=True, default=str))
            order = sorted(holders, key=lambda v: sorted(holders[v]))
            ranks[key] = {v: f"{prefix}#{i}" for i, v in enumerate(order)}
            ranks[key].update(known)
        return ranks


# the drawn ids of a 2.0 database's tables
DUMP_ID_KEYS_V2 = dict(ID_KEYS, resend_id="S")
SRF = {"consume", "check", "create", "resend", "guest_create", "guest_join", "consume_at", "check_at", "create_at"}
DIRECT_FNS = {"consume", "check", "create", "guest_join", "consume_at", "check_at"}


# ---------------------------------------------------------------------------
# describing cases
# ---------------------------------------------------------------------------
def ref_text(r):
    if r[0] in ("forged", "malformed"):
        return "<" + r[0] + ">"
    if r[0] == "invs":
        return f"T@{r[1]}[{r[2]}]"
    return f"{'T' if r[0] == 'inv' else 'G'}[{r[1]}]"


def call_text(c):
    fn = c["fn"]
    if fn in ("consume_at", "check_at", "create_at"):
        t = call_text(dict(c, fn=fn[:-3], site=None))
        return t.replace("(", f"_at({c['site']}, ", 1)
    if fn == "consume":
        e = c["email"]
        email = ["right email", "RIGHT EMAIL (spaces)", "rIGHT eMAIL"][e[1]] if e[0] == "right" else e[1]
        return f"invite_consume({ref_text(c['tok'])}, {email}, {c['device']!r})"
    if fn == "check":
        return f"invite_check({ref_text(c['tok'])})"
    if fn == "create":
        return (f"invite_create({c['media']}, {c['actor']}, {c['email']}, {c['first']!r}, {c['last']}, "
                f"{c['role']}, send={c['send']}, not_before={c['not_before']})")
    if fn == "guest_join":
        dev = c["device"] if c["device"] is None or len(c["device"]) < 20 else "x*300"
        first = c["first"] if len(c["first"]) < 20 else "x*120"
        return f"guest_link_join({ref_text(c['tok'])}, {c['email']}, {first!r}, {c['last']}, {dev!r})"
    if fn == "resend":
        return f"invite_resend(id of {ref_text(c['inv'])}, {c['actor']}, send={c['send']})"
    if fn == "revoke":
        return f"invite_revoke(id of {ref_text(c['inv'])}, {c['actor']})"
    if fn == "guest_revoke":
        return f"guest_link_revoke(id of {ref_text(c['gl'])}, {c['actor']})"
    if fn == "guest_create":
        return f"guest_link_create({c['media']}, {c['actor']}, {c['name']!r}, {c['limit']}, {c['days']})"
    if fn == "revoke_all":
        return f"invite_revoke_all({c['media']}, {c['actor']})"
    if fn == "purge":
        return f"invite_purge({c['keep']!r})"
    return fn


def item_text(it):
    t = it["t"]
    if t == "stmt":
        calls = "; ".join(call_text(c) for c in it["calls"])
        shape = it["shape"]
        extra = f" x{it['reps']}" if shape == "lateral" else ""
        sp = f" [savepoint: {it['sp']}]" if it.get("sp") else ""
        who = f" [as {ROLES[it['as']]}]" if it.get("as") else ""
        return f"{'SELECT' if shape == 'single' else shape + extra + ':'} {calls}{sp}{who}"
    if t == "dba":
        return "DBA: " + it["desc"]
    if t == "conc":
        who = f" [as {ROLES[it['call']['as']]}]" if it["call"].get("as") else ""
        return "2nd connection: " + call_text(it["call"]) + who
    if t == "locked":
        return f"DBA {it['desc']}, while: {item_text(it['stmt'])}"
    return t


def answer_text(a):
    s = json.dumps(a, sort_keys=True, default=str)
    return s if len(s) < 700 else s[:700] + "..."


# ---------------------------------------------------------------------------
# the fuzzer
# ---------------------------------------------------------------------------
class Case:
    def __init__(self, seed, primary, alters, keep=None, gen=None):
        self.seed = seed
        self.primary = primary
        self.alters = alters  # applied
        self.gen = list(alters) if gen is None else gen  # what the sequence was drawn for
        self.keep = keep      # None, or {tx index: None (whole) or set of item indexes}

    def spec(self):
        s = f"{self.seed} alter={'+'.join(self.alters) or '-'}"
        if self.gen != self.alters:
            s += f" gen={'+'.join(self.gen) or '-'}"
        if self.keep is not None:
            parts = []
            for t in sorted(self.keep):
                items = self.keep[t]
                parts.append(str(t) if items is None else f"{t}:" + "+".join(str(i) for i in sorted(items)))
            s += " keep=" + (",".join(parts) or "-")
        return s

    @staticmethod
    def parse(text):
        fields = text.split()
        seed = int(fields[0])
        alters, keep, gen = None, None, None
        for f in fields[1:]:
            k, _, v = f.partition("=")
            if k == "alter":
                alters = [] if v == "-" else v.split("+")
            elif k == "gen":
                gen = [] if v == "-" else v.split("+")
            elif k == "keep":
                keep = {}
                for p in ([] if v == "-" else v.split(",")):
                    t, _, its = p.partition(":")
                    keep[int(t)] = None if not its else {int(i) for i in its.split("+")}
        if alters is None:
            alters = Case.draw_alters(random.Random(seed), list(CATALOGUE))
        for n in alters + (gen or []):
            if n not in CATALOGUE:
                raise ValueError(f"unknown alteration {n}")
        return Case(seed, alters[0] if alters else "none", alters, keep, gen)

    @staticmethod
    def draw_alters(rng, families, primary=None):
        primary = primary or rng.choice(families)
        alters = [primary]
        if CATALOGUE[primary].combine and rng.random() < 0.35:
            pool = [n for n in families if CATALOGUE[n].combine and n != primary]
            alters += rng.sample(pool, min(len(pool), rng.randint(1, 2)))
        return alters

    def sequence(self):
        rng = random.Random(self.seed * 7919 + 1)
        g = Gen(rng, [CATALOGUE[n] for n in self.gen])
        alts = [CATALOGUE[n] for n in self.alters]
        ntx = rng.randint(8, 16)
        txs = g.sequence(ntx)
        setup_rng = random.Random(self.seed * 104729 + 3)
        setup = []
        if any(a.owner for a in alts):
            setup.append(("owner_not_superuser", OWNER_SQL))
        for a in alts:
            for s in a.setup_sql(setup_rng):
                setup.append((a.name, s))
        if any(a.owner for a in alts):
            setup.append(("owner_not_superuser", OWNER_SQL))
        role = "app" if rng.random() < 0.3 else "superuser"
        if self.keep is not None:
            kept = []
            for ti, tx in enumerate(txs):
                if ti in self.keep:
                    sel = self.keep[ti]
                    if sel is not None:
                        tx = dict(tx, items=[it for i, it in enumerate(tx["items"]) if i in sel])
                    kept.append((ti, tx))
        else:
            kept = list(enumerate(txs))
        return setup, kept, role, txs


class Fuzzer:
    def __init__(self):
        self.stats = collections.Counter()
        self.counting = True    # off while a difference is confirmed and minimised
        self.sides = {k: Side(self, k) for k in ("off", "on")}
        self.admin = None

    # -- cluster ---------------------------------------------------------------
    def admin_conn(self):
        if self.admin is None or self.admin.closed or self.admin.broken:
            self.admin = connect_retry("postgres")
        return self.admin

    def wait_for_server(self, seconds=90):
        """after a crash: the postmaster kills every backend and recovers;
        wait until a new connection can work again"""
        time.sleep(2)
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                self.admin = None
                self.admin = psycopg.connect(dbname="postgres", autocommit=True)
                self.admin.execute("SELECT 1")
                return True
            except psycopg.Error:
                time.sleep(0.5)
        return False

    def safe_run(self, case, counting=True):
        """run_case; an error of the fuzzer itself is a failure too"""
        saved = self.stats.copy()
        try:
            return self.run_case(case)
        except Exception as e:
            self.wait_for_server(30)
            return {"where": "fuzzer", "item": f"{type(e).__name__}: {str(e).strip()[:300]}",
                    "detail": traceback.format_exc().splitlines()[-6:], "sig": ("fuzzer", type(e).__name__)}
        finally:
            if not counting:
                crashes = self.stats["crashes"]
                self.stats = saved
                self.stats["crashes"] = crashes

    def prepare(self, fast):
        a = self.admin_conn()
        if not a.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
            raise RuntimeError("the fuzzer needs a superuser")
        r = a.execute("SELECT default_version FROM pg_available_extensions WHERE name = %s", [EXT]).fetchone()
        if r is None:
            raise RuntimeError(f"extension {EXT} is not installed in this PostgreSQL")
        self.default_version = r[0]
        if fast:
            # a throwaway cluster: no autovacuum (its locks would make DDL
            # time out in one database and not the other), no fsync
            a.execute("ALTER SYSTEM SET autovacuum = off")
            a.execute("ALTER SYSTEM SET fsync = off")
            a.execute("ALTER SYSTEM SET synchronous_commit = off")
            a.execute("SELECT pg_reload_conf()")
        for db in list(DBS.values()) + [TEMPLATE]:
            a.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        for role in ("dfz_owner", "dfz_app", "dfz_tenant2"):
            if not a.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                a.execute(f"CREATE ROLE {role} NOLOGIN")
        a.execute(f"CREATE DATABASE {TEMPLATE}")
        with psycopg.connect(dbname=TEMPLATE, autocommit=True) as c:
            # DIFFFUZZ_EXT_VERSION: another version than the default (1.1.1
            # on a 2.0 build: the 1.x schema, the 2.0 families skipped)
            want = os.environ.get("DIFFFUZZ_EXT_VERSION")
            if want and not re.fullmatch(r"[0-9.]+", want):
                raise RuntimeError(f"DIFFFUZZ_EXT_VERSION={want!r} is not a version")
            c.execute(f"CREATE EXTENSION {EXT} " + (f"VERSION '{want}' " if want else "") + "CASCADE")
            self.version = c.execute("SELECT extversion FROM pg_extension WHERE extname = %s", [EXT]).fetchone()[0]
            self.server_version = int(c.execute("SHOW server_version_num").fetchone()[0])
            c.execute(FIXTURE.replace("{s}", EXT))
            global V2
            V2 = version_tuple(self.version) >= (2, 0)
            if V2:
                c.execute(FIXTURE_V2.replace("{s}", EXT))
            self.api = c.execute(r"""
                SELECT string_agg(p.proname || '(' || pg_get_function_result(p.oid) || ')', E'\n' ORDER BY p.proname)
                  FROM pg_proc p WHERE p.pronamespace = %s::regnamespace
                   AND p.proname IN ('invite_consume', 'invite_check', 'guest_link_join', 'invite_create')""",
                                 [EXT]).fetchone()[0]

    def make_dbs(self):
        a = self.admin_conn()
        for label, side in self.sides.items():
            side.close()
            a.execute(f"DROP DATABASE IF EXISTS {side.db} WITH (FORCE)")
            a.execute(f"CREATE DATABASE {side.db} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY")
            side.reset_state()

    # -- one case --------------------------------------------------------------
    def run_case(self, case):
        """None, or the first difference: {"where", "item", "on", "off", "sig"}"""
        setup, txs, role, _ = case.sequence()
        self.make_dbs()
        sides = self.sides
        off, on = sides["off"], sides["on"]
        for side in (off, on):
            side.connect(role)
        self.stats["sequences"] += 1
        self.stats["alterations"] += len([n for n in case.alters if n != "none"])
        self.setup_notes = []
        self.current = "setup"
        try:
            # the alterations, the same statements on both
            for name, sql in setup:
                answers = {}
                for label in ("off", "on"):
                    answers[label] = sides[label].run_dba({"sql": [sql]})
                if answers["off"] != answers["on"]:
                    return self.diff("setup", f"alteration {name}: {sql.strip()[:200]}", answers, ("setup", name))
                if answers["off"]["dba"] != ["ok"]:
                    self.setup_notes.append(f"{name}: {answers['off']['dba'][0]['error']}")
            for side in (off, on):
                side.connect(role)   # a new session: the path looks at the altered tables afresh
            for ti, tx in txs:
                answers = {label: sides[label].begin(tx) for label in ("off", "on")}
                if answers["off"] != answers["on"]:
                    return self.diff(f"tx {ti} BEGIN", tx["iso"], answers, ("begin",))
                for ii, item in enumerate(tx["items"]):
                    self.current = f"tx {ti} ({tx['iso']}) item {ii}: {item_text(item)}"
                    answers = {}
                    for label in ("off", "on"):
                        answers[label] = sides[label].run_item(item)
                    if item["t"] == "stmt":
                        self.stats["calls"] += len(item["calls"]) * item.get("reps", 1)
                    elif item["t"] == "conc":
                        self.stats["calls"] += 1
                    elif item["t"] == "locked":
                        self.stats["calls"] += len(item["stmt"]["calls"])
                    if TRACE:
                        print(f"    .. tx {ti} {tx['iso']} | {item_text(item)}\n         on : {answer_text(answers['on'])}"
                              f"\n         off: {answer_text(answers['off'])}", file=sys.stderr)
                    if answers["off"] != answers["on"]:
                        return self.diff(f"tx {ti} ({tx['iso']}) item {ii}", item_text(item), answers,
                                         signature(item, answers))
                self.current = f"tx {ti} ({tx['iso']}) {tx['end'].upper()}"
                answers = {label: sides[label].end(tx) for label in ("off", "on")}
                if answers["off"] != answers["on"]:
                    return self.diff(f"tx {ti} ({tx['iso']}) {tx['end'].upper()}", "end of transaction",
                                     answers, ("end",))
            self.current = "reading the tables"
            dumps = {label: sides[label].dump() for label in ("off", "on")}
            if dumps["off"] != dumps["on"]:
                lines, names = table_diff(dumps)
                return {"where": "tables after the sequence", "item": "table contents",
                        "detail": lines, "sig": ("tables",) + tuple(names)}
            return None
        except Crash as c:
            self.stats["crashes"] += 1
            recovered = self.wait_for_server()
            return {"where": "crash", "item": f"{self.current}: {c}", "detail":
                    ([] if recovered else ["the server did not come back within 90 s"]),
                    "sig": ("crash", str(c).split(":")[0]), "crash": True}
        finally:
            for side in (off, on):
                side.close()

    def diff(self, where, item, answers, sig):
        return {"where": where, "item": item, "on": answers["on"], "off": answers["off"], "sig": sig}

    # -- minimising -------------------------------------------------------------
    def minimise(self, case, found, budget):
        deadline = time.time() + budget
        sig = found["sig"]

        def still(c):
            if time.time() > deadline:
                return None
            d = self.safe_run(c, counting=False)
            return d if d and d["sig"] == sig else None

        best, best_found = case, found
        # 1. the alterations: each alone, then none
        if len(case.alters) > 1:
            for n in case.alters:
                c = Case(case.seed, n, [n], case.keep, case.gen)
                d = still(c)
                if d:
                    best, best_found = c, d
                    break
        # 2. transactions and items
        _, txs, _, _ = best.sequence()
        keep = {ti: None for ti, _ in txs}
        stop = parse_where(best_found["where"])
        if stop is not None:
            keep = {ti: v for ti, v in keep.items() if ti <= stop}
            c = Case(best.seed, best.primary, best.alters, keep, best.gen)
            d = still(c)
            if d:
                best, best_found = c, d
            else:
                keep = best.keep if best.keep is not None else {ti: None for ti, _ in txs}
        full = {ti: len(tx["items"]) for ti, tx in enumerate(best.sequence()[3])}
        for ti in sorted(keep, reverse=True):
            if time.time() > deadline:
                break
            trial = {k: v for k, v in keep.items() if k != ti}
            c = Case(best.seed, best.primary, best.alters, trial, best.gen)
            d = still(c)
            if d:
                best, best_found, keep = c, d, trial
        for ti in sorted(keep):
            n = full.get(ti, 0)
            cur = set(range(n)) if keep[ti] is None else set(keep[ti])
            for ii in sorted(cur, reverse=True):
                if time.time() > deadline or len(cur) <= 1:
                    break
                trial = dict(keep)
                trial[ti] = cur - {ii}
                c = Case(best.seed, best.primary, best.alters, trial, best.gen)
                d = still(c)
                if d:
                    best, best_found, keep, cur = c, d, trial, cur - {ii}
        # 3. without the alterations at all (a difference of the plain
        # extension), when what the families do is all in their setup
        if best.alters and best.alters != ["none"] and \
                not any(CATALOGUE[n].scenario or CATALOGUE[n].actions for n in best.gen):
            c = Case(best.seed, "none", [], best.keep, best.gen)
            d = still(c)
            if d:
                best, best_found = c, d
        return best, best_found

    def describe(self, case, found):
        _, txs, role, _ = case.sequence()
        out = [f"case: DIFFFUZZ_CASE='{case.spec()}'",
               "alterations: " + (", ".join(case.alters) or "none"),
               ]
        for n in case.alters:
            out.append(f"  {n}: {CATALOGUE[n].what}")
        out.append(f"caller: {role}")
        out.append("sequence:")
        for ti, tx in txs:
            out.append(f"  tx {ti} ({tx['iso']}, {tx['end']}):")
            for it in tx["items"]:
                out.append("    " + item_text(it))
        out.append(f"difference at {found['where']}: {found['item']}")
        if "on" in found:
            out.append("  on : " + answer_text(found["on"]))
            out.append("  off: " + answer_text(found["off"]))
        for line in found.get("detail", []):
            out.append("  " + line)
        return out


def version_tuple(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def parse_where(w):
    m = re.match(r"tx (\d+)", w)
    return int(m.group(1)) if m else None


def signature(item, answers):
    def head(a):
        if isinstance(a, dict):
            if "error" in a:
                return "error " + a["error"][0]
            if "rows" in a:
                st = []
                for r in a["rows"]:
                    for v in r:
                        for x in (v if isinstance(v, list) else [v]):
                            if isinstance(x, dict) and "status" in x:
                                st.append(x["status"])
                return "rows " + ",".join(st)
            for k in ("conc", "stmt", "dba", "locked"):
                if k in a:
                    return k + ":" + head(a[k])
        if isinstance(a, list):
            return ",".join(head(x) for x in a)
        return str(a)[:40]
    kind = item["t"]
    fns = ()
    if kind == "stmt":
        fns = tuple(c["fn"] for c in item["calls"])
    elif kind == "conc":
        fns = (item["call"]["fn"],)
    elif kind == "locked":
        fns = tuple(c["fn"] for c in item["stmt"]["calls"])
    return (kind, fns, head(answers["on"]), head(answers["off"]))


def table_diff(dumps):
    lines, names = [], []
    on, off = dumps["on"], dumps["off"]
    for name in sorted(set(on) | set(off)):
        a, b = on.get(name), off.get(name)
        if a == b:
            continue
        names.append(name)
        if a is None or b is None:
            lines.append(f"table {name} only {'off' if a is None else 'on'}")
            continue
        only_on = list((a - b).elements())
        only_off = list((b - a).elements())
        lines.append(f"table {name}: {len(only_on)} rows only on, {len(only_off)} only off")
        for r in only_on[:4]:
            lines.append("  on : " + (r if len(r) < 600 else r[:600] + "..."))
        for r in only_off[:4]:
            lines.append("  off: " + (r if len(r) < 600 else r[:600] + "..."))
    return lines, names


def catalogue_markdown():
    """the README's table (python3 difffuzz.py --catalogue)"""
    out = ["| # | name | what the DBA did | what it stresses |", "|---|---|---|---|"]
    for i, a in enumerate(CAT, 1):
        what = a.what.replace("|", "\\|")
        if a.owner and "non-superuser" not in what:
            what += " (with a non-superuser owner)"
        out.append(f"| {i} | `{a.name}` | {what} | {a.stresses.replace('|', '/')} |")
    return "\n".join(out)


def main():
    if "--catalogue" in sys.argv:
        print(catalogue_markdown())
        return 0
    seconds = float(os.environ.get("DIFFFUZZ_SECONDS", "180"))
    seed_env = os.environ.get("DIFFFUZZ_SEED")
    seed = int(seed_env) if seed_env else random.SystemRandom().randrange(1, 10**9)
    only = os.environ.get("DIFFFUZZ_CASE")
    families = [n for n in CATALOGUE]
    if os.environ.get("DIFFFUZZ_ALTER"):
        wanted = os.environ["DIFFFUZZ_ALTER"].split(",")
        bad = [n for n in wanted if n not in CATALOGUE]
        if bad:
            print(f"difffuzz_setup ... FAILED (unknown alterations: {', '.join(bad)})")
            return 2
        families = wanted
    max_seq = int(os.environ.get("DIFFFUZZ_SEQUENCES", "0")) or None
    min_budget = float(os.environ.get("DIFFFUZZ_MINIMIZE_SECONDS", "40"))
    fast = "--fast" in sys.argv

    fz = Fuzzer()
    start = time.time()
    try:
        fz.prepare(fast)
    except Exception as e:
        print(f"difffuzz_setup ... FAILED (could not start: {type(e).__name__}: {' '.join(str(e).split())})")
        print(f"# difffuzz: 0 sequences, 0 alterations, 0 calls, seed {seed}, 1 differences")
        return 2
    print(f"# difffuzz: extension {EXT} {fz.version}, catalogue of {len(CATALOGUE)} alterations, "
          f"seed {seed}, budget {seconds:g} s", flush=True)
    log("API:", fz.api.replace("\n", "; "))

    # families whose SQL this server does not have (18's virtual columns on 15)
    too_new = [n for n in families if CATALOGUE[n].min_server > fz.server_version]
    families = [n for n in families if n not in too_new]
    # families of 2.0's tables on a 1.x database
    not_v2 = [n for n in families if CATALOGUE[n].v2 and not V2]
    families = [n for n in families if n not in not_v2]
    for n in not_v2:
        print(f"difffuzz_{n} ... skipped (alters 2.0's tables: the extension here is {fz.version})")
    for n in too_new:
        print(f"difffuzz_{n} ... skipped (needs server_version_num {CATALOGUE[n].min_server}, "
              f"this is {fz.server_version})")
    results = collections.OrderedDict((n, {"runs": 0, "fail": [], "notes": set()}) for n in families)
    failures = 0
    unconfirmed = []
    rng = random.Random(seed)
    cases = 0

    def record(case, found, minimise=True):
        nonlocal failures
        failures += 1
        if minimise and min_budget > 0:
            case, found = fz.minimise(case, found, min_budget)
        fam = case.primary if case.alters else "none"
        results.setdefault(fam, {"runs": 0, "fail": [], "notes": set()})
        results[fam]["fail"].append(fz.describe(case, found))
        return fam

    if only:
        case = Case.parse(only)
        found = fz.safe_run(case)
        for n in case.alters or ["none"]:
            results.setdefault(n, {"runs": 0, "fail": [], "notes": set()})["runs"] += 1
        if found:
            record(case, found, minimise=os.environ.get("DIFFFUZZ_MINIMIZE_SECONDS") not in (None, "0"))
    else:
        order = []
        failed_families = set()
        while True:
            if max_seq is not None and cases >= max_seq:
                break
            if time.time() - start > seconds:
                break
            if not order:
                order = [n for n in families if n not in failed_families] or list(families)
                rng.shuffle(order)
            primary = order.pop()
            case_seed = rng.randrange(1, 10**9)
            crng = random.Random(case_seed)
            pool = [n for n in families if n not in failed_families]
            alters = Case.draw_alters(crng, pool or families, primary)
            case = Case(case_seed, primary, alters)
            cases += 1
            t0 = time.time()
            found = fz.safe_run(case)
            log(f"case {case.spec()} {time.time() - t0:.2f}s {'DIFF' if found else 'same'}")
            for n in alters:
                results[n]["runs"] += 1
                for note in fz.setup_notes:
                    if note.startswith(n + ":"):
                        results[n]["notes"].add(note)
            if found and not found.get("crash"):
                # a difference must come again from the same case: one that
                # does not (a timestamp that fell on a whole second, say) is
                # noted, not counted
                again = fz.safe_run(case, counting=False)
                if not again or again["sig"] != found["sig"]:
                    unconfirmed.append(f"{case.spec()}: {found['where']}: {found['item'][:120]}")
                    found = None
            if found:
                fam = record(case, found, minimise=primary not in failed_families)
                failed_families.add(fam)
                failed_families.add(primary)

    elapsed = time.time() - start
    for n, r in results.items():
        if r["fail"]:
            print(f"difffuzz_{n} ... FAILED ({len(r['fail'])} difference{'s' if len(r['fail']) > 1 else ''} "
                  f"in {r['runs']} sequences)")
            for d in r["fail"][:2]:
                print(f"    seed {seed}")
                for line in d:
                    print("    " + line)
        elif r["runs"]:
            note = f"; setup refused: {'; '.join(sorted(r['notes']))[:200]}" if r["notes"] else ""
            print(f"difffuzz_{n} ... ok ({r['runs']} sequences{note})")
        elif not only:
            print(f"difffuzz_{n} ... skipped (not reached within the budget)")
    for u in unconfirmed:
        print(f"# difffuzz: a difference that did not come again (not counted): {u}")
    st = fz.stats
    elig = st["direct_eligible"]
    print(f"# difffuzz: {elapsed:.0f} s, {elapsed / max(st['sequences'], 1):.2f} s per sequence; "
          f"direct path taken by {elig - st['direct_fallback']} of {elig} statements with direct-capable calls "
          f"(the rest took the SQL statement); {st['lock_waits']} calls waited for DDL")
    if V2:
        for fn in ("consume_at", "check_at"):
            got = sorted(((k.split(":")[2], n) for k, n in st.items() if k.startswith(f"answer:{fn}:")),
                         key=lambda x: -x[1])
            print(f"# difffuzz: {fn} answered (SQL side): " + (", ".join(f"{a} {n}" for a, n in got) or "nothing"))
        per = []
        for fn in sorted(DIRECT_FNS):
            n = st[f"direct_eligible:{fn}"]
            if n:
                per.append(f"{fn} {n - st['direct_fallback:' + fn]}/{n}")
        print("# difffuzz: calls with no 'with the SQL statement' DEBUG line, per function: " + ", ".join(per))
    print(f"# difffuzz: {st['sequences']} sequences, {st['alterations']} alterations, {st['calls']} calls, "
          f"seed {seed}, {failures} differences", flush=True)
    for side in fz.sides.values():
        side.close()
    try:
        a = fz.admin_conn()
        # DIFFFUZZ_KEEP=1: the template and the last case's databases stay
        for db in ([] if os.environ.get("DIFFFUZZ_KEEP") == "1" else list(DBS.values()) + [TEMPLATE]):
            a.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    except psycopg.Error:
        pass
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("difffuzz_runner ... FAILED (interrupted)")
        sys.exit(3)
    except Exception as e:
        traceback.print_exc()
        print(f"difffuzz_runner ... FAILED (the fuzzer stopped: {type(e).__name__}: {str(e).strip()[:200]})")
        sys.exit(3)
