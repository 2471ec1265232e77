#!/usr/bin/python3
"""The reference lobby serving many sites (LOBBY_SITES), in headless
Chromium: run by test/lobby/run.sh after lobby_test.py, with the same PG*
variables (a throwaway cluster, as its superuser), as an unprivileged user:

    multisite_test.py --work DIR

Makes a 2.0 database (CREATE EXTENSION invitetomedia VERSION '2.0') with
three tenants: acme (sites acme-kms and acme-canvas) and globex (site
globex-kms), whose lobby roles and host names come from the README's
recipe (<!-- lobby-test: many-sites -->), and initech (site initech-kms),
which has a host name but no lobby role.  Starts examples/lobby/serve with
LOBBY_SITES=host on 127.0.0.1 with one pooled connection (so that one
session serves every tenant in turn), and reaches it as
kms.acme.localhost, canvas.acme.localhost, kms.globex.localhost, ...
(Chromium maps *.localhost to 127.0.0.1: --host-resolver-rules); then a
second lobby with LOBBY_SITES=path.  Prints one line per check, "name ...
ok" or "name ... FAILED (why)"; exits non-zero if a check failed.  A
check that cannot run fails: nothing is skipped.
"""

import argparse
import os
import re
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request

import psycopg
from psycopg import sql as pg_sql
from selenium.webdriver.common.by import By

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import lobby_test  # noqa: E402
from lobby_test import HEADERS, TOP, Fail, Test, data_status, expect, import_lobby  # noqa: E402

DB = "lobby_sites"
LOGIN = "media_lobby_sites"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **kw):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    shots = os.path.join(a.work, "multisite-shots")
    os.makedirs(shots, exist_ok=True)
    t = Test(a.work, shots)
    t.browser_args = ["--host-resolver-rules=MAP *.localhost 127.0.0.1"]
    try:
        run(t)
    finally:
        t.stop()
    print(f"# lobby, many sites: {t.passed} passed, {t.failed} failed", flush=True)
    return 1 if t.failed else 0


def run(t):
    st = {"secret": os.urandom(24).hex()}
    lobby = import_lobby()

    def as_role(role, query, params=()):
        with t.db.transaction():
            t.db.execute(pg_sql.SQL("SET LOCAL ROLE {}").format(pg_sql.Identifier(role)))
            with t.db.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchone()

    def invite(site, email):
        role = "app_" + site.split("-")[0]
        iid, token, url = as_role(role, "SELECT invite_id, token, url FROM invitetomedia.invite_create_at("
                                  "%s, 'vid', 'owner', %s, 'Ina', 'Vitee', 'speaker')", (site, email))
        t.tokens.append(token)
        return iid, token

    def guest_link(site, name):
        role = "app_" + site.split("-")[0]
        gid, token, url = as_role(role, "SELECT guest_link_id, token, url FROM invitetomedia.guest_link_create_at("
                                  "%s, 'vid', 'owner', %s)", (site, name))
        t.tokens.append(token)
        return gid, token

    def uses(tenant, iid):
        return t.one("SELECT i.use_count, (SELECT count(*) FROM invitetomedia.redemptions r"
                     "  WHERE r.tenant_id = i.tenant_id AND r.invite_id = i.invite_id)"
                     " FROM invitetomedia.invites i WHERE i.tenant_id = %s AND i.invite_id = %s",
                     (st[tenant], iid))

    def joins(tenant, gid):
        return t.one("SELECT count(*) FROM invitetomedia.guest_link_joins j"
                     " WHERE j.tenant_id = %s AND j.guest_link_id = %s", (st[tenant], gid))[0]

    def users():
        return t.sql("SELECT tenant_id, user_id, email FROM invitetomedia.users ORDER BY 1, 2")

    def url(host, path, port=None):
        return f"http://{host}:{port or st['port']}/{path}"

    def get(host, path, port=None, data=None, headers=None):
        """(status, headers, body) of one request to 127.0.0.1 with HOST as
        its Host header; redirects are not followed."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{port or st['port']}/{path}", data=body,
                                     headers=dict(headers or {}, Host=host))
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=20) as r:
                status, h, content = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, h, content = e.code, e.headers, e.read()
        t.responses.append((f"http://{host}/{path}", status, {k.lower(): v for k, v in h.items()}))
        return status, h, content.decode("utf-8", "replace")

    def result_of(d):
        """The signed result of the welcome page the browser is at."""
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(d.current_url).query)
        expect("itm_result" in q, f"no result in {d.current_url}")
        r = lobby.verify_result(lobby.Signer(st["secret"]), q["itm_result"][0], max_age=60)
        expect(r is not None, "the result does not verify")
        return r

    # -- the database: three tenants, four sites, the README's roles -----------

    def setup():
        t.sql(f"DROP DATABASE IF EXISTS {DB}")
        t.sql(f"CREATE DATABASE {DB}")
        t.db.close()
        t.db = psycopg.connect("", dbname=DB, autocommit=True)
        t.sql("CREATE EXTENSION invitetomedia VERSION '2.0' CASCADE")
        for name in ("acme", "globex", "initech", "umbrella"):
            st[name] = t.one("INSERT INTO invitetomedia.tenants (name) VALUES (%s) RETURNING tenant_id",
                             (name,))[0]
        t.sql("""INSERT INTO invitetomedia.sites (site_id, tenant_id, enabled) VALUES
                   ('acme-kms', %(acme)s, true), ('acme-canvas', %(acme)s, true),
                   ('globex-kms', %(globex)s, true), ('initech-kms', %(initech)s, true),
                   ('umbrella-kms', %(umbrella)s, true)""", st)
        tenants = """(VALUES (%(acme)s, 'Acme'), (%(globex)s, 'Globex'), (%(initech)s, 'Initech'),
                             (%(umbrella)s, 'Umbrella')) v(t, n)"""
        t.sql("""INSERT INTO invitetomedia.users (tenant_id, user_id, email, first_name, last_name, role)
                 SELECT t, 'owner', 'owner@' || lower(n) || '.example', 'Owen', n, 'admin' FROM """
              + tenants, st)
        t.sql("""INSERT INTO invitetomedia.media (tenant_id, media_id, media_type, title, owner_id)
                 SELECT t, 'vid', 'webcast', n || ' all-hands', 'owner' FROM """ + tenants, st)
        for name in ("acme", "globex", "initech", "umbrella"):
            t.sql(f"UPDATE invitetomedia.tenants SET default_site_id = '{name}-kms' WHERE tenant_id = %s",
                  (st[name],))
        # the application roles that make the links, one per tenant
        for name in ("acme", "globex", "initech", "umbrella"):
            t.sql(f"DROP ROLE IF EXISTS app_{name}")
            t.sql(f"CREATE ROLE app_{name}")
            t.sql("INSERT INTO invitetomedia.tenant_roles (role_name, tenant_id) VALUES (%s, %s)",
                  (f"app_{name}", st[name]))
            t.sql(f"GRANT USAGE ON SCHEMA invitetomedia TO app_{name}")
            t.sql(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA invitetomedia TO app_{name}")
        # the README's recipe, as written
        readme = open(os.path.join(TOP, "README.md")).read()
        m = re.search(r"<!-- lobby-test: many-sites -->\s*\n[ \t]*```\n(.*?)\n[ \t]*```", readme, re.S)
        expect(m, "README.md has no many-sites recipe")
        for role in (LOGIN, "acme_lobby", "globex_lobby", "umbrella_lobby"):
            t.sql(f"DROP ROLE IF EXISTS {role}")
        t.sql(m.group(1))
        st["password"] = os.urandom(12).hex()
        t.sql(f"ALTER ROLE {LOGIN} PASSWORD '{st['password']}'")
        # umbrella has a lobby role that the login role is not a member of
        t.sql("CREATE ROLE umbrella_lobby NOLOGIN")
        t.sql("INSERT INTO invitetomedia.tenant_roles (role_name, tenant_id, lobby) VALUES"
              " ('umbrella_lobby', %s, true)", (st["umbrella"],))
        t.sql("GRANT USAGE ON SCHEMA invitetomedia TO umbrella_lobby")
        t.sql("GRANT EXECUTE ON FUNCTION invitetomedia.invite_check_at(text, text) TO umbrella_lobby")
        # the test's host names (the recipe's are example.com's)
        t.sql("""INSERT INTO invitetomedia.site_hosts (host, site_id) VALUES
                   ('kms.acme.localhost', 'acme-kms'), ('canvas.acme.localhost', 'acme-canvas'),
                   ('kms.globex.localhost', 'globex-kms'), ('kms.initech.localhost', 'initech-kms'),
                   ('kms.umbrella.localhost', 'umbrella-kms')""")
        st["env"] = {"PGDATABASE": DB, "PGUSER": LOGIN, "PGPASSWORD": st["password"],
                     "LOBBY_SITES": "host", "LOBBY_POOL_SIZE": "1", "LOBBY_SECRET": st["secret"]}
        p, base, log = t.start_app("lobby-sites", st["env"])
        st["proc"], st["log"], st["port"] = p, log, int(base.rsplit(":", 1)[1].strip("/"))
        t.base = base
        for host in ("kms.acme.localhost", "canvas.acme.localhost", "kms.globex.localhost",
                     "kms.initech.localhost", "nowhere.localhost"):
            t.origins.append(url(host, ""))
        t.sql("UPDATE invitetomedia.sites SET link_base_url = 'http://' || h.host || ':' || %s || '/i/'"
              " FROM invitetomedia.site_hosts h WHERE h.site_id = sites.site_id"
              " AND h.host LIKE '%%.localhost'", (str(st["port"]),))

    if not t.check("ms_start", setup):
        return

    def roles():
        # the lobby logs in as the recipe's role, which can look sites up
        # and, NOINHERIT, call nothing of the API itself
        rows = t.sql("SELECT DISTINCT usename FROM pg_stat_activity"
                     " WHERE application_name = 'invitetomedia-lobby' AND datname = %s", (DB,))
        expect(rows == [(LOGIN,)], f"the lobby's sessions run as {rows}")
        funcs = t.sql("SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'invitetomedia'::regnamespace"
                      " AND has_function_privilege(%s, p.oid, 'EXECUTE')"
                      " AND NOT has_function_privilege('public', p.oid, 'EXECUTE') ORDER BY 1", (LOGIN,))
        expect([f[0] for f in funcs] == ["lobby_site", "lobby_site_for_host"], f"{LOGIN} may call {funcs}")
        with psycopg.connect("", dbname=DB, user=LOGIN, password=st["password"], autocommit=True) as c:
            for q in ("SELECT * FROM invitetomedia.invite_check_at('acme-kms', 'itm_x')",
                      "SELECT * FROM invitetomedia.invites"):
                try:
                    c.execute(q)
                except psycopg.errors.InsufficientPrivilege:
                    pass
                else:
                    raise Fail(f"{q} as {LOGIN} was not refused")
            # as acme's lobby role: acme's site, not globex's
            c.execute("SET ROLE acme_lobby")
            try:
                c.execute("SELECT * FROM invitetomedia.invite_check_at('globex-kms', 'itm_x')")
            except psycopg.errors.UndefinedObject as e:
                expect('site "globex-kms" does not exist' in str(e), str(e))
            else:
                raise Fail("acme_lobby reached globex's site")
        text = open(st["log"]).read()
        expect("many sites: each request's from its Host header" in text, "the mode is not logged")
        expect("cannot call" not in text and "can do more" not in text, "the lobby warned about its role")

    t.check("ms_roles", roles)

    def browsers():
        st["a"] = t.browser("ms-a")
        st["b"] = t.browser("ms-b")

    if not t.check("ms_browsers_start", browsers):
        return
    a, b = st["a"], st["b"]

    # -- invites -------------------------------------------------------------------

    def invite_other_tenant_host():
        iid, token = invite("acme-kms", "ann.acme@outside.example")
        st["acme_invite"] = (iid, token)
        s = t.open(a, url("kms.globex.localhost", "i/" + token))
        expect(s == "not_found", f"acme's invite at globex's host: data-status {s}")
        expect(not a.find_elements(By.TAG_NAME, "form"), "a form on not_found")
        expect("Acme" not in a.page_source, "the page names acme's media")
        status, _, body = get("kms.globex.localhost", "i/" + token)
        expect(status == 404 and data_status(body) == "not_found", f"HTTP {status} {data_status(body)}")
        # a POST there, with the right email and a valid form of globex's
        _, gtoken = invite("globex-kms", "gil.globex@outside.example")
        expect(t.open(a, url("kms.globex.localhost", "i/" + gtoken)) == "form", "globex's invite: no form")
        a.execute_script("document.querySelector('form').action = arguments[0]", "/i/" + token)
        s = t.submit(a, email="ann.acme@outside.example")
        expect(s == "not_found", f"the POST of acme's token at globex's host: data-status {s}")
        expect(uses("acme", iid) == (0, 0), f"acme's invite was used: {uses('acme', iid)}")

    t.check("ms_invite_other_tenant_host_not_found", invite_other_tenant_host)

    def invite_other_site_same_tenant():
        iid, token = st["acme_invite"]
        s = t.open(a, url("canvas.acme.localhost", "i/" + token))
        expect(s == "not_found", f"acme-kms's invite at acme-canvas's host: data-status {s}")
        expect(uses("acme", iid) == (0, 0), f"used: {uses('acme', iid)}")

    t.check("ms_invite_other_site_not_found", invite_other_site_same_tenant)

    def invite_own_host_admits():
        iid, token = st["acme_invite"]
        s = t.open(a, url("kms.acme.localhost", "i/" + token))
        expect(s == "form", f"at its own host: data-status {s}")
        expect(t.text(a, "title") == "Acme all-hands", f"title {t.text(a, 'title')!r}")
        s = t.submit(a, email="ann.acme@outside.example")
        expect(s == "ok", f"admission: data-status {s}")
        r = result_of(a)
        want = {"kind": "invite", "status": "ok", "id": iid, "user_id": "ann.acme@outside.example",
                "site_id": "acme-kms", "tenant_id": st["acme"], "title": "Acme all-hands"}
        expect(all(r.get(k) == v for k, v in want.items()), f"result {r}")
        expect(uses("acme", iid) == (1, 1), f"uses {uses('acme', iid)}")

    t.check("ms_invite_own_host_admits", invite_own_host_admits)

    def host_normalised():
        # the same host, upper-case, with a trailing dot: the same site
        iid, token = invite("acme-kms", "nora.norm@outside.example")
        status, _, body = get(f"KMS.Acme.LocalHost.:{st['port']}", "i/" + token)
        expect(status == 200 and data_status(body) == "form", f"HTTP {status} {data_status(body)}")
        status, _, body = get("kms.acme.localhost", "i/" + token)        # no port
        expect(status == 200 and data_status(body) == "form", f"no port: HTTP {status} {data_status(body)}")

    t.check("ms_host_normalised", host_normalised)

    def globex_admits_on_the_same_session():
        # one pooled connection: it served acme's role just before
        iid, token = invite("globex-kms", "gus.globex@outside.example")
        s = t.open(b, url("kms.globex.localhost", "i/" + token))
        expect(s == "form", f"data-status {s}")
        expect(t.text(b, "title") == "Globex all-hands", f"title {t.text(b, 'title')!r}")
        s = t.submit(b, email="gus.globex@outside.example")
        expect(s == "ok", f"admission: data-status {s}")
        r = result_of(b)
        expect(r.get("site_id") == "globex-kms" and r.get("tenant_id") == st["globex"], f"result {r}")
        expect(uses("globex", iid) == (1, 1), f"uses {uses('globex', iid)}")
        n = t.one("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'invitetomedia-lobby'"
                  " AND datname = %s", (DB,))[0]
        expect(n == 1, f"{n} lobby sessions, not one")

    t.check("ms_other_tenant_admits_same_session", globex_admits_on_the_same_session)

    # -- guest links -----------------------------------------------------------------

    def guest_other_host_then_own():
        before = users()
        gid, token = guest_link("acme-kms", "All-hands guests")
        for host in ("kms.globex.localhost", "canvas.acme.localhost"):
            s = t.open(a, url(host, "g/" + token))
            expect(s == "form", f"{host}: the guest form: data-status {s}")
            s = t.submit(a, email="gwen.guest@outside.example", first_name="Gwen", last_name="Guest")
            expect(s == "not_found", f"acme's guest link joined at {host}: data-status {s}")
            expect(joins("acme", gid) == 0, f"{host}: {joins('acme', gid)} joins")
        s = t.open(a, url("kms.acme.localhost", "g/" + token))
        s = t.submit(a, email="gwen.guest@outside.example", first_name="Gwen", last_name="Guest")
        expect(s == "ok", f"at its own host: data-status {s}")
        r = result_of(a)
        expect(r.get("kind") == "guest_link" and r.get("id") == gid and r.get("site_id") == "acme-kms"
               and r.get("tenant_id") == st["acme"], f"result {r}")
        expect("user_id" not in r and r["guest"]["email_claimed"] == "gwen.guest@outside.example",
               f"the result names a user: {r}")
        expect(joins("acme", gid) == 1, f"{joins('acme', gid)} joins")
        expect(users() == before, "a guest join changed the users")

    t.check("ms_guest_link_other_host_not_found_own_host_joins", guest_other_host_then_own)

    # -- hosts that name no site --------------------------------------------------------

    def unknown_host_404():
        _, token = st["acme_invite"]
        _, gtoken = guest_link("acme-kms", "Unknown host")
        for host in ("nowhere.localhost", "acme.localhost", "kms.acme.localhost.evil",
                     "127.0.0.1", "kms.acme.localhost:80:80", "kms acme"):
            for path in ("i/" + token, "g/" + gtoken, "i/" + gtoken):
                status, _, body = get(host, path)
                expect(status == 404 and data_status(body) == "not_found",
                       f"{host} {path[:2]}: HTTP {status} {data_status(body)}")
        s = t.open(b, url("nowhere.localhost", "i/" + token))
        expect(s == "not_found", f"the browser at nowhere.localhost: data-status {s}")
        # initech's host names a site, but initech has no lobby role
        iid, itoken = invite("initech-kms", "ivy.initech@outside.example")
        status, _, body = get("kms.initech.localhost", "i/" + itoken)
        expect(status == 404 and data_status(body) == "not_found", f"initech: HTTP {status}")
        expect(re.search(r"site initech-kms of tenant \d+ has no lobby role", open(st["log"]).read()),
               "no warning about initech's missing lobby role")

    t.check("ms_unknown_host_404", unknown_host_404)

    def not_a_member_503():
        # umbrella's lobby role exists, but the login role is no member
        _, token = invite("umbrella-kms", "uma.umbrella@outside.example")
        status, h, body = get("kms.umbrella.localhost", "i/" + token)
        expect(status == 503 and data_status(body) == "unavailable", f"HTTP {status} {data_status(body)}")
        expect("umbrella_lobby" not in body and "permission" not in body, "the page shows the error")
        expect(re.search(r"database error: InsufficientPrivilege 42501", open(st["log"]).read()),
               "the error is not logged")
        # the connection survives: acme's pages still work
        _, token = invite("acme-kms", "after.error@outside.example")
        status, _, body = get("kms.acme.localhost", "i/" + token)
        expect(status == 200 and data_status(body) == "form", f"after it: HTTP {status}")

    t.check("ms_database_error_503", not_a_member_503)

    def csrf_still_required():
        iid, token = invite("acme-kms", "cal.csrf@outside.example")
        status, _, body = get("kms.acme.localhost", "i/" + token, data={"email": "cal.csrf@outside.example"})
        expect(status == 400 and data_status(body) == "csrf", f"HTTP {status} {data_status(body)}")
        expect(uses("acme", iid) == (0, 0), f"used: {uses('acme', iid)}")

    t.check("ms_csrf_required", csrf_still_required)

    # -- LOBBY_SITES=path ---------------------------------------------------------------

    def path_mode():
        env = dict(st["env"], LOBBY_SITES="path")
        p, base, log = t.start_app("lobby-sites-path", env)
        try:
            port = int(base.rsplit(":", 1)[1].strip("/"))
            iid, token = invite("acme-kms", "pat.path@outside.example")
            gid, gtoken = guest_link("acme-kms", "Path guests")
            for path in ("s/globex-kms/i/" + token, "s/acme-canvas/i/" + token, "s/nope/i/" + token,
                         "s/ACME-KMS/i/" + token, "s//i/" + token, "i/" + token, "g/" + gtoken,
                         "s/nope/g/" + gtoken, "s/nope/i/" + gtoken, "s/a%20b/i/" + token):
                status, _, body = get("127.0.0.1", path, port=port)
                expect(status == 404 and data_status(body) == "not_found",
                       f"{path.split('/itm_')[0].split('/itg_')[0]}: HTTP {status} {data_status(body)}")
            status, h, _ = get("127.0.0.1", "s/acme-kms/i/" + gtoken, port=port)
            expect(status == 308 and h["Location"].endswith("/s/acme-kms/g/" + gtoken),
                   f"the guest redirect: {status} {h.get('Location')}")
            # acme's guest link named at globex's site: the form (a guest
            # link has no check), then not_found
            s = t.open(b, base + "s/globex-kms/g/" + gtoken)
            expect(s == "form", f"at /s/globex-kms/g/: data-status {s}")
            s = t.submit(b, email="pia.path@outside.example", first_name="Pia", last_name="Path")
            expect(s == "not_found", f"acme's guest link joined at /s/globex-kms/: {s}")
            expect(joins("acme", gid) == 0, f"{joins('acme', gid)} joins")
            s = t.open(b, base + "s/acme-kms/i/" + token)
            expect(s == "form", f"at /s/acme-kms/: data-status {s}")
            css = b.execute_script("return document.querySelector('link[rel=stylesheet]').href")
            expect("/s/acme-kms/static/" in css, f"the stylesheet is at {css}")
            status, _, _ = get("127.0.0.1", "s/acme-kms/static/lobby.css", port=port)
            expect(status == 200, f"the stylesheet: {status}")
            s = t.submit(b, email="pat.path@outside.example")
            expect(s == "ok", f"admission: data-status {s}")
            r = result_of(b)
            expect(r.get("site_id") == "acme-kms" and r.get("tenant_id") == st["acme"], f"result {r}")
            expect(uses("acme", iid) == (1, 1), f"uses {uses('acme', iid)}")
            p.send_signal(signal.SIGTERM)
            expect(p.wait(timeout=15) == 0, "the lobby did not stop on SIGTERM")
            text = open(log).read()
            expect("each request's from its /s/<site_id>/ path prefix" in text, "the mode is not logged")
            leaked = [tok[:8] for tok in t.tokens if tok in text or tok[4:] in text]
            expect(not leaked, f"{len(leaked)} tokens in the log")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()

    t.check("ms_path_mode", path_mode)

    def bad_setting():
        import subprocess
        r = subprocess.run([lobby_test.SERVE], env=dict(os.environ, LOBBY_SITES="both"),
                           capture_output=True, text=True, timeout=30)
        expect(r.returncode == 2 and "LOBBY_SITES" in r.stderr, f"exit {r.returncode}: {r.stderr[-200:]}")

    t.check("ms_bad_setting_exit_2", bad_setting)

    def no_lookup_logged_503():
        # a login role that cannot look sites up: an error at start, 503s
        # (with a password: the test cluster may authenticate by password,
        # and the failure under test is the look-up, not the login)
        pw = os.urandom(12).hex()
        t.sql("DROP ROLE IF EXISTS ms_nolookup")
        t.sql(f"CREATE ROLE ms_nolookup LOGIN PASSWORD '{pw}'")
        t.sql("GRANT USAGE ON SCHEMA invitetomedia TO ms_nolookup")
        p, base, log = t.start_app("lobby-sites-nolookup",
                                   dict(st["env"], PGUSER="ms_nolookup", PGPASSWORD=pw))
        try:
            port = int(base.rsplit(":", 1)[1].strip("/"))
            _, token = st["acme_invite"]
            status, _, body = get("kms.acme.localhost", "i/" + token, port=port)
            expect(status == 503 and data_status(body) == "unavailable", f"HTTP {status} {data_status(body)}")
            p.send_signal(signal.SIGTERM)
            expect(p.wait(timeout=15) == 0, "the lobby did not stop on SIGTERM")
            expect("role ms_nolookup cannot call invitetomedia.lobby_site_for_host" in open(log).read(),
                   "no error at start")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()

    t.check("ms_no_lookup_logged_503", no_lookup_logged_503)

    # -- every response, the log ----------------------------------------------------

    def headers_every_response():
        for d in t.drivers.values():
            t.drain(d)
        bad = []
        for u, status, h in t.responses:
            for k, v in HEADERS.items():
                if h.get(k) != v:
                    short = re.sub(r"(it[mg]_)[A-Za-z0-9_-]+", r"\1...", u)
                    bad.append(f"{status} {short}: {k}")
        statuses = sorted({s for _, s, _ in t.responses})
        expect(len(t.responses) >= 40, f"only {len(t.responses)} responses seen")
        expect({200, 303, 308, 400, 404, 503} <= set(statuses), f"statuses seen: {statuses}")
        expect(not bad, f"{len(bad)} responses lack a header", "\n".join(bad[:30]))
        print(f"# headers: {len(t.responses)} responses, statuses {statuses}", flush=True)

    t.check("ms_headers_every_response", headers_every_response)

    def sigterm_and_log():
        p = st["proc"]
        p.send_signal(signal.SIGTERM)
        expect(p.wait(timeout=15) == 0, f"status {p.returncode} after SIGTERM")
        text = open(st["log"]).read()
        leaked = [tok[:8] for tok in t.tokens if tok in text or tok[4:] in text]
        expect(not leaked, f"{len(leaked)} tokens in the log")
        expect(re.search(r"invite link sha256:[0-9a-f]{8} at site acme-kms \(invite \d+\): consume ok", text),
               "no consume logged with its site")
        expect(re.search(r"host 'nowhere.localhost': no such site", text), "no unknown host logged")

    t.check("ms_sigterm_and_log", sigterm_and_log)


if __name__ == "__main__":
    sys.exit(main())
