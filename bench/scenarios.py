"""pgbench scripts of the benchmark, by scenario and implementation.

Every consume-like script picks its link with the same look-up in
bench.tokens (a primary-key probe, numbered n):
  n >= 1   the single-use links of the pool, taken in order of a sequence
  n = 0    the hot unlimited link
  n <= -1  the 1000-use links (link -(1 + k / 1000) for the k-th use)
so that look-up costs every implementation, the floor included, the same.

Implementations: "c" (the extension), "floor" (one hand-written statement
with the minimum the job needs) and "plpgsql" (bench/plpgsql_reference.sql).

Guest links (1.1): the site has one unlimited guest link (its token in
bench.guest, k = 0; the loaded site also holds as many past joins of a
revoked link as it has single-use links) and every join of the hot link
gives a new email, no device_id:
  guest_hot      the invitees of the pool's single-use links (bench.tokens,
                 n >= 1, from bench.guest_seq): every email has a user
                 (loaded mode only: a fresh install has no users to pick);
  guest_hot_new  emails nobody has ('guest' || nextval || '@example.com'),
                 both modes (in fresh mode guest_link_joins starts empty).
Under 1.1 the two differed: a join found the joiner's user by email, and
guest_hot_new created it.  1.1.1 (issue 18) reads and writes no user (a
guest is not a user: user_id NULL, the join's join_id is the identity), so
the two now do the same work and differ only in the emails given; both are
kept, so that 1.1's figures of each have a successor.
With "c" and "floor" (there is no PL/pgSQL reference of guest_link_join).

Issue 13 adds, for the consume scenarios of the loaded site:
  minfloor   the floor's statement on a minimal schema (bench.min_invites,
             bench.min_redemptions: bench/minimal_schema.sql), consume_distinct;
  app_unix   the application-side peer: the same logic from the client as
  app_tcp    separate statements of one transaction (app_consume), over the
             Unix socket and over TCP on 127.0.0.1; consume_distinct and
             consume_hot;
  c_tcp      the extension over TCP, so that C / app_tcp compares the two
             over the same transport; consume_distinct.
"""

# --- where the token and email come from -------------------------------------

PICK = {
    "distinct": ("bench.tokens t", "t.n = (SELECT nextval('bench.distinct_seq'))"),
    "hot": ("bench.tokens t", "t.n = 0"),
    "multi": ("bench.tokens t", "t.n = -1 - (SELECT nextval('bench.multi_seq')) / 1000"),
    "random": ("bench.tokens t", "t.n = :n"),
    # fresh install: the token just created by the same script (\gset)
    "created": ("(SELECT :tok::text AS token, 'guest@example.com'::text AS email) t", "true"),
}


def consume(impl, pick):
    frm, where = PICK[pick]
    if impl in ("c", "c_tcp"):
        return ("SELECT c.status FROM %s, LATERAL invitetomedia.invite_consume(t.token, t.email) c"
                " WHERE %s;\n" % (frm, where))
    if impl == "plpgsql":
        return ("SELECT c.status FROM %s, LATERAL bench.plpgsql_invite_consume(t.token, t.email) c"
                " WHERE %s;\n" % (frm, where))
    if impl in ("app_unix", "app_tcp"):
        return app_consume(pick)
    # the floor: the statement invite_consume runs on its ok path, written
    # by hand (hash, the UPDATE with every 1.1 condition, the user look-up,
    # the redemption record) and the accepted event 1.1 sends on every ok;
    # minfloor: the same on the minimal schema (no redemption_id to return)
    minimal = impl == "minfloor"
    sql = """WITH t AS (SELECT t.token, t.email FROM %s WHERE %s),
upd AS (
  UPDATE %s i
     SET use_count = i.use_count + 1,
         used_up_at = CASE WHEN i.max_uses <> -1 AND i.use_count + 1 >= i.max_uses THEN now() END,
         last_used_at = now()
    FROM t
   WHERE i.token_hash = public.digest(t.token, 'sha256')
     AND i.revoked_at IS NULL
     AND i.expires_at > now()
     AND (i.not_before IS NULL OR i.not_before <= now())
     AND lower(i.email COLLATE "C") = lower(btrim(t.email) COLLATE "C")
     AND (i.max_uses = -1 OR i.use_count < i.max_uses)
     AND (SELECT s.enabled FROM invitetomedia.settings s)
     AND i.failed_attempts < (SELECT CASE WHEN s.lockout_attempts > 0 THEN s.lockout_attempts
                                          ELSE 2147483647 END FROM invitetomedia.settings s)
  RETURNING i.invite_id, i.media_id, i.role, i.email, i.first_name, i.last_name,
            i.max_uses, i.use_count, i.expires_at),
who AS (SELECT u.user_id FROM invitetomedia.users u, upd WHERE lower(u.email COLLATE "C") = lower(upd.email COLLATE "C")),
rec AS (INSERT INTO %s (invite_id, status, user_id)
        SELECT upd.invite_id, 'ok', (SELECT user_id FROM who) FROM upd%s)
SELECT 'ok' AS status, upd.invite_id, upd.media_id, upd.role, (SELECT user_id FROM who) AS user_id,
       upd.first_name, upd.last_name,
       CASE WHEN upd.max_uses = -1 THEN NULL ELSE upd.max_uses - upd.use_count END AS uses_left,
       upd.expires_at,%s
       pg_notify('invitetomedia_accepted', '{"kind":"invite","id":' || upd.invite_id || '}')
  FROM upd;
""" % (frm, where,
       "bench.min_invites" if minimal else "invitetomedia.invites",
       "bench.min_redemptions" if minimal else "invitetomedia.redemptions",
       "" if minimal else " RETURNING redemption_id",
       "" if minimal else " (SELECT redemption_id FROM rec),")
    return sql.replace("\n", " ") + "\n"


# The application-side peer (issue 13): what a platform runs today, the
# consume written in the application as separate statements of one
# transaction, each a round trip: BEGIN; the invite by token hash under
# FOR UPDATE; then on ok the UPDATE of the invite, the user look-up, the
# redemption record (its RETURNING sends the accepted event, as 1.1 does,
# without one more round trip); COMMIT.  Refusals record their status (and
# count a wrong email towards the lockout), a token replaced by a resend
# answers revoked, a first use by a new email creates the user: the rules of
# bench/plpgsql_reference.sql, one statement per step.
#
# The application knows the token and the email from the request; here the
# first statement takes them from bench.tokens in the same statement (as
# every other implementation does) and hands them back with \gset.  The
# SHA-256 is pgcrypto's digest() in the statement, as in the floor and the
# PL/pgSQL reference.  pgbench cannot compare strings or times, so the
# status the application would work out from the row (the conditions in the
# documented order) is computed in that SELECT's target list and read back
# as numbers; it is a few comparisons either way.
APP_FIND = """SELECT t.token AS token, lower(btrim(t.email) COLLATE "C") AS email_key,
       (i.invite_id IS NOT NULL)::int AS found, coalesce(i.invite_id, 0) AS invite_id,
       coalesce(i.status, 'not_found') AS status,
       coalesce(i.status = 'ok', false)::int AS ok,
       coalesce(i.status = 'email_mismatch', false)::int AS mismatch
  FROM %s
  LEFT JOIN LATERAL (
    SELECT i.invite_id,
           CASE WHEN NOT s.enabled THEN 'disabled'
                WHEN i.revoked_at IS NOT NULL THEN 'revoked'
                WHEN i.expires_at <= now() THEN 'expired'
                WHEN i.not_before > now() THEN 'not_yet'
                WHEN s.lockout_attempts > 0 AND i.failed_attempts >= s.lockout_attempts THEN 'locked'
                WHEN lower(i.email COLLATE "C") <> lower(btrim(t.email) COLLATE "C") THEN 'email_mismatch'
                WHEN i.max_uses <> -1 AND i.use_count >= i.max_uses THEN 'exhausted'
                ELSE 'ok' END AS status
      FROM invitetomedia.invites i, invitetomedia.settings s
     WHERE i.token_hash = public.digest(t.token, 'sha256')
       FOR UPDATE OF i) i ON true
 WHERE %s \\gset"""

# the rest of the transaction: SQL statements end with ";" or \gset, the
# pgbench meta-commands (\if, \elif, \else, \endif) stand on lines of their own
APP_REST = """\\if :ok = 1
UPDATE invitetomedia.invites
   SET use_count = use_count + 1,
       used_up_at = CASE WHEN max_uses <> -1 AND use_count + 1 >= max_uses THEN now() END,
       last_used_at = now()
 WHERE invite_id = :invite_id;
SELECT coalesce(max(u.user_id), '') AS user_id, count(*) AS known FROM invitetomedia.users u
 WHERE lower(u.email COLLATE "C") = :email_key \\gset
\\if :known = 0
INSERT INTO invitetomedia.users (user_id, email, first_name, last_name, role)
SELECT :email_key, i.email, i.first_name, i.last_name, 'anonymous' FROM invitetomedia.invites i
 WHERE i.invite_id = :invite_id ON CONFLICT DO NOTHING;
SELECT u.user_id FROM invitetomedia.users u WHERE lower(u.email COLLATE "C") = :email_key \\gset
\\endif
INSERT INTO invitetomedia.redemptions (invite_id, status, user_id) VALUES (:invite_id, 'ok', :user_id)
RETURNING pg_notify('invitetomedia_accepted', '{"kind":"invite","id":' || invite_id || '}');
\\elif :found = 1
\\if :mismatch = 1
UPDATE invitetomedia.invites SET failed_attempts = failed_attempts + 1 WHERE invite_id = :invite_id;
\\endif
INSERT INTO invitetomedia.redemptions (invite_id, status) VALUES (:invite_id, :status);
\\else
INSERT INTO invitetomedia.redemptions (invite_id, status)
SELECT r.invite_id, CASE WHEN s.enabled THEN 'revoked' ELSE 'disabled' END
  FROM invitetomedia.retired_tokens r, invitetomedia.settings s
 WHERE r.token_hash = public.digest(:token::text, 'sha256');
\\endif
COMMIT;"""


def app_consume(pick):
    """One consume as the application would run it: a pgbench script of
    one line per SQL statement (-r reports each), meta-commands between."""
    frm, where = PICK[pick]
    out, stmt = ["BEGIN;"], []
    for line in (APP_FIND % (frm, where) + "\n" + APP_REST).splitlines():
        if line.startswith("\\"):
            out.append(line)
            continue
        stmt.append(line.strip())
        if line.endswith(";") or line.endswith("\\gset"):
            out.append(" ".join(stmt))
            stmt = []
    assert not stmt
    return "\n".join(out) + "\n"


def check(impl, pick):
    frm, where = PICK[pick]
    if impl == "c":
        return ("SELECT c.status FROM %s, LATERAL invitetomedia.invite_check(t.token) c"
                " WHERE %s;\n" % (frm, where))
    if impl == "plpgsql":
        return ("SELECT c.status FROM %s, LATERAL bench.plpgsql_invite_check(t.token) c"
                " WHERE %s;\n" % (frm, where))
    if impl != "floor":
        return None
    # the floor: the link by hash with the media title, when it would work
    # (1.1: open, not locked), what invite_check returns on ok
    return ("SELECT i.media_id, m.title, i.role, i.expires_at,"
            " CASE WHEN i.max_uses = -1 THEN NULL ELSE i.max_uses - i.use_count END, i.not_before"
            " FROM %s JOIN invitetomedia.invites i ON i.token_hash = public.digest(t.token, 'sha256')"
            " CROSS JOIN invitetomedia.settings s"
            " LEFT JOIN invitetomedia.media m ON m.media_id = i.media_id"
            " WHERE %s AND s.enabled AND i.revoked_at IS NULL AND i.expires_at > now()"
            " AND (i.not_before IS NULL OR i.not_before <= now())"
            " AND (s.lockout_attempts = 0 OR i.failed_attempts < s.lockout_attempts)"
            " AND (i.max_uses = -1 OR i.use_count < i.max_uses);\n" % (frm, where))


def create(impl, email, send_email, gset=False):
    """email is an SQL expression; with gset the token lands in :tok."""
    tail = " \\gset\n" if gset else ";\n"
    if impl == "c":
        return ("SELECT token AS tok FROM invitetomedia.invite_create('m1', 'inviter', %s,"
                " 'Ann', 'Lee', 'viewer', %s)%s" % (email, "true" if send_email else "false", tail))
    if impl == "plpgsql":
        return ("SELECT token AS tok FROM bench.plpgsql_invite_create('m1', 'inviter', %s,"
                " 'Ann', 'Lee', 'viewer', %s)%s" % (email, "true" if send_email else "false", tail))
    # the floor: the policies, the token, its hash, the INSERT (and the outbox)
    sql = """WITH a AS (SELECT %s::text AS email,
                  'itm_' || translate(encode(public.gen_random_bytes(36), 'base64'), '+/', '-_') AS token),
s AS (SELECT link_duration, link_reusability, link_base_url FROM invitetomedia.settings),
ins AS (
  INSERT INTO invitetomedia.invites
         (token_hash, media_id, role, email, first_name, last_name, invited_by, expires_at, max_uses)
  SELECT public.digest(a.token, 'sha256'), 'm1', 'viewer', a.email, 'Ann', 'Lee', 'inviter',
         now() + make_interval(mins => s.link_duration), s.link_reusability
    FROM a, s
   WHERE invitetomedia.may_invite('inviter', 'm1') AND invitetomedia.domain_allowed(a.email)
  RETURNING invite_id, expires_at, max_uses)""" % email
    if send_email:
        sql += """,
ob AS (
  INSERT INTO invitetomedia.outbox (invite_id, to_email, to_name, subject, body)
  SELECT ins.invite_id, a.email, 'Ann Lee',
         replace(tp.subject, '{MEDIA_TITLE}', 'Town hall'),
         replace(replace(tp.body, '{FIRST_NAME}', 'Ann'), '{URL}', s.link_base_url || a.token)
    FROM ins, a, s, invitetomedia.email_templates tp WHERE tp.name = 't'
  RETURNING message_id)
SELECT ins.invite_id, a.token AS tok, s.link_base_url || a.token AS url, ins.expires_at, ins.max_uses,
       pg_notify('invitetomedia_email', (SELECT message_id FROM ob)::text)
  FROM ins, a, s"""
    else:
        sql += """
SELECT ins.invite_id, a.token AS tok, s.link_base_url || a.token AS url, ins.expires_at, ins.max_uses
  FROM ins, a, s"""
    return sql.replace("\n", " ") + tail


GUEST_TOKEN = "(SELECT bg.token FROM bench.guest bg WHERE bg.k = 0)"
GUEST_SEQ = "(SELECT nextval('bench.guest_seq'))"


def guest_join(impl, new_users):
    """One join of the hot unlimited guest link with an email never used
    on it; new_users: an email no user has (1.1.1: the same work, see the
    module's docstring)."""
    if new_users:
        frm = "(SELECT 'guest' || %s || '@example.com' AS email) t" % GUEST_SEQ
        where = "true"
    else:
        frm, where = "bench.tokens t", "t.n = %s" % GUEST_SEQ
    if impl == "c":
        return ("SELECT c.status FROM %s, LATERAL invitetomedia.guest_link_join(%s, t.email,"
                " 'Gina', 'Guest') c WHERE %s;\n" % (frm, GUEST_TOKEN, where))
    if impl != "floor":
        return None
    # the floor: what guest_link_join (1.1.1) does on its ok path without a
    # device, by hand: the hash; the link by hash with every condition the
    # function's shared lock tests (not revoked, not expired, unlimited,
    # settings.enabled) under FOR KEY SHARE, as the function locks an
    # unlimited link; the guest rule, invitetomedia.guest_allowed(email),
    # which the C function calls too (the DBA's rule is the rule: part of
    # the contract, not a cost to skip); the join record with user_id NULL
    # (1.1.1: no user is looked up or created), RETURNING join_id, the
    # guest's identity; and the accepted NOTIFY sent on every ok.  It
    # skips what the floor does not need: the token's form and checksum,
    # the email and names checks, the refusal statuses and their records.
    sql = """WITH t AS (SELECT btrim(t.email) AS email FROM %s WHERE %s),
g AS (
  SELECT g.guest_link_id, g.media_id, g.expires_at FROM invitetomedia.guest_links g, t
   WHERE g.token_hash = public.digest(%s, 'sha256')
     AND g.revoked_at IS NULL
     AND (g.expires_at IS NULL OR g.expires_at > now())
     AND g.click_limit IS NULL
     AND (SELECT s.enabled FROM invitetomedia.settings s)
     AND invitetomedia.guest_allowed(t.email)
     FOR KEY SHARE OF g),
rec AS (INSERT INTO invitetomedia.guest_link_joins (guest_link_id, status, email, first_name, last_name, user_id)
        SELECT g.guest_link_id, 'ok', t.email, 'Gina', 'Guest', NULL FROM g, t
        RETURNING join_id)
SELECT 'ok' AS status, g.guest_link_id, g.media_id, 'viewer' AS role, NULL::text AS user_id,
       NULL::integer AS clicks_left, g.expires_at, (SELECT join_id FROM rec) AS join_id,
       pg_notify('invitetomedia_accepted', '{"kind":"guest_link","id":' || g.guest_link_id || '}')
  FROM g;
""" % (frm, where, GUEST_TOKEN)
    return sql.replace("\n", " ") + "\n"


NEW_EMAIL = "'new' || :r || '@example.com'"
RAND = "\\set r random(1, 2000000000)\n"

# the implementations, in the order of the tables and the plot
IMPLS = ("c", "floor", "minfloor", "plpgsql", "app_unix", "app_tcp", "c_tcp")
# "app" in --impls: the application-side peer over both transports
ALIASES = {"app": ("app_unix", "app_tcp")}
# the peers of issue 13 run on the loaded site, in these scenarios only
PEER_SCENARIOS = {
    "minfloor": ("consume_distinct",),
    "app_unix": ("consume_distinct", "consume_hot"),
    "app_tcp": ("consume_distinct", "consume_hot"),
    "c_tcp": ("consume_distinct",),
}
# connected over TCP to 127.0.0.1 (the others: the Unix socket)
TCP_IMPLS = ("app_tcp", "c_tcp")
LABELS = {
    "c": "C (`invite_consume`)",
    "floor": "floor: the one statement, on the extension's tables",
    "minfloor": "minimal-schema floor: the same statement, minimal tables",
    "plpgsql": "PL/pgSQL reference",
    "app_unix": "application, statements over the Unix socket",
    "app_tcp": "application, statements over TCP (127.0.0.1)",
    "c_tcp": "C over TCP (127.0.0.1)",
}


def records(scenario, impl):
    """Where a run's records are: the table (and condition) whose rows by
    status tell whether every transaction took the ok path."""
    if scenario in GUEST:
        return ("invitetomedia.guest_link_joins WHERE guest_link_id ="
                " (SELECT guest_link_id FROM bench.guest WHERE k = 0)")
    if impl == "minfloor":
        return "bench.min_redemptions"
    return "invitetomedia.redemptions"


def scripts(scenario, impl, mode):
    """The pgbench scripts (text, weight) of one run; None: the scenario
    does not run with this implementation or in this mode."""
    if impl in PEER_SCENARIOS and (mode != "loaded" or scenario not in PEER_SCENARIOS[impl]):
        return None
    if scenario == "consume_distinct":
        if mode == "loaded":
            return [(consume(impl, "distinct"), 1)]
        # fresh install: each transaction creates the link it then consumes
        return [(RAND + create(impl, "'guest@example.com'", False, gset=True)
                 + consume(impl, "created"), 1)]
    if scenario == "consume_hot":
        return [(consume(impl, "hot"), 1)]
    if scenario == "consume_1000use":
        return [(consume(impl, "multi"), 1)]
    if scenario == "check":
        return [("\\set n random(:lo, :hi)\n" + check(impl, "random"), 1)]
    if scenario == "create":
        return [(RAND + create(impl, NEW_EMAIL, False), 1)]
    if scenario == "create_email":
        return [(RAND + create(impl, NEW_EMAIL, True), 1)]
    if scenario in ("guest_hot", "guest_hot_new"):
        if mode != "loaded" and scenario == "guest_hot":
            return None
        text = guest_join(impl, scenario == "guest_hot_new")
        return [(text, 1)] if text else None
    if scenario == "mixed":
        return [
            (scripts("consume_distinct", impl, mode)[0][0], 9),
            (RAND + create(impl, NEW_EMAIL, False), 1)]
    raise ValueError(scenario)


SCENARIOS = ("consume_distinct", "consume_hot", "consume_1000use", "check",
             "create", "create_email", "mixed", "guest_hot", "guest_hot_new")
CONSUMING = ("consume_distinct", "consume_hot", "consume_1000use", "mixed",
             "guest_hot", "guest_hot_new")
# scenarios whose records are guest joins (invitetomedia.guest_link_joins)
GUEST = ("guest_hot", "guest_hot_new")


# --- 2.0 (issue 22): the same calls on a database of tenants and sites -------
#
# bench.py's load_tenants(): the calls run as a role mapped to one tenant
# (bench_app), its links in bench.tokens with their sites (t.site_id), link
# n at the tenant's site 1 + (n - 1) % sites, site 1 its default.  Two forms
# of every call (api):
#   at   the _at functions, naming the link's site (a create, a join: the
#        default site, where the hot guest link is);
#   1x   the 1.x names, which act on the tenant's default site: the links
#        picked are those of site 1 (n = sites * k - (sites - 1)).
# Only the extension runs here ("c", "c_tcp"): the floor and the PL/pgSQL
# reference are written on 1.1.1's tables.
APIS = ("at", "1x")
V2_IMPLS = ("c", "c_tcp")
V2_SCENARIOS = ("consume_distinct", "consume_hot", "consume_1000use", "check",
                "create", "create_email", "mixed", "guest_hot", "guest_hot_new")


def v2_pick(pick, api, sites):
    frm, where = PICK[pick]
    if api == "1x" and pick == "distinct":
        # the k-th link of the default site
        where = "t.n = %d * (SELECT nextval('bench.distinct_seq')) - %d" % (sites, sites - 1)
    return frm, where


def v2_consume(api, pick, sites):
    frm, where = v2_pick(pick, api, sites)
    call = ("invitetomedia.invite_consume_at(t.site_id, t.token, t.email)" if api == "at"
            else "invitetomedia.invite_consume(t.token, t.email)")
    return "SELECT c.status FROM %s, LATERAL %s c WHERE %s;\n" % (frm, call, where)


def v2_check(api, pick, sites):
    frm, where = v2_pick(pick, api, sites)
    call = ("invitetomedia.invite_check_at(t.site_id, t.token)" if api == "at"
            else "invitetomedia.invite_check(t.token)")
    return "SELECT c.status FROM %s, LATERAL %s c WHERE %s;\n" % (frm, call, where)


def v2_create(api, home, email, send_email, gset=False):
    tail = " \\gset\n" if gset else ";\n"
    args = "'m1', 'inviter', %s, 'Ann', 'Lee', 'viewer', %s" % (email, "true" if send_email else "false")
    call = ("invitetomedia.invite_create_at('%s', %s)" % (home, args) if api == "at"
            else "invitetomedia.invite_create(%s)" % args)
    return "SELECT token AS tok FROM %s%s" % (call, tail)


def v2_guest_join(api, home, new_users):
    if new_users:
        frm = "(SELECT 'guest' || %s || '@example.com' AS email) t" % GUEST_SEQ
        where = "true"
    else:
        frm, where = "bench.tokens t", "t.n = %s" % GUEST_SEQ
    args = "%s, t.email, 'Gina', 'Guest'" % GUEST_TOKEN
    call = ("invitetomedia.guest_link_join_at('%s', %s)" % (home, args) if api == "at"
            else "invitetomedia.guest_link_join(%s)" % args)
    return "SELECT c.status FROM %s, LATERAL %s c WHERE %s;\n" % (frm, call, where)


def v2_scripts(scenario, impl, mode, api, sites, home):
    """scripts() for a 2.0 database of tenants (loaded mode, the extension
    only): None where the scenario does not run."""
    if impl not in V2_IMPLS or mode != "loaded":
        return None
    if impl == "c_tcp" and scenario != "consume_distinct":
        return None
    if scenario == "consume_distinct":
        return [(v2_consume(api, "distinct", sites), 1)]
    if scenario == "consume_hot":
        return [(v2_consume(api, "hot", sites), 1)]
    if scenario == "consume_1000use":
        return [(v2_consume(api, "multi", sites), 1)]
    if scenario == "check":
        # at: any link of the tenant; 1x: a link of its default site
        pick = ("\\set n random(:lo, :hi)\n" if api == "at"
                else "\\set n %d * random(:lo, :hi / %d) - %d\n" % (sites, sites, sites - 1))
        return [(pick + v2_check(api, "random", sites), 1)]
    if scenario == "create":
        return [(RAND + v2_create(api, home, NEW_EMAIL, False), 1)]
    if scenario == "create_email":
        return [(RAND + v2_create(api, home, NEW_EMAIL, True), 1)]
    if scenario in ("guest_hot", "guest_hot_new"):
        return [(v2_guest_join(api, home, scenario == "guest_hot_new"), 1)]
    if scenario == "mixed":
        return [(v2_consume(api, "distinct", sites), 9),
                (RAND + v2_create(api, home, NEW_EMAIL, False), 1)]
    raise ValueError(scenario)
