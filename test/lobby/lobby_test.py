#!/usr/bin/python3
"""The reference lobby (examples/lobby) in headless Chromium.

Run by test/lobby/run.sh inside pg_virtualenv (PG* variables: a throwaway
cluster, as its superuser), as an unprivileged user:

    lobby_test.py --work DIR --shots DIR

Creates the extension, a small site, the application role and the
lobby's own role from the README's recipes (<!-- readme-test:
application-role -->, <!-- readme-test: lobby-role -->), starts
examples/lobby/serve as the lobby's role on a free local port, and drives
two browser profiles through every page; then test/lobby/hardening.py
sends it what an attacker would.  Prints one line per check,
"name ... ok" or "name ... FAILED (why)" followed by "   | " lines; exits
non-zero if a check failed.  A check that cannot run (no browser, no app)
fails: nothing is skipped.  Writes a PNG of each page to --shots.
"""

import argparse
import base64
import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

import psycopg
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
SERVE = os.path.join(TOP, "examples", "lobby", "serve")

# the headers of every response (README, "The lobby")
HEADERS = {
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
}

# the pages a screenshot is taken of (docs/lobby/NAME.png), each by a check
SHOTS = ["invite-form", "invite-wrong-email", "invite-admitted", "invite-used",
         "invite-exhausted", "invite-rejoin", "invite-countdown", "invite-locked",
         "invite-title-escaped", "guest-form", "guest-admitted", "guest-invalid",
         "guest-full", "form-expired", "invite-revoked", "invite-expired",
         "link-not-found", "disabled", "unavailable", "cookie-conflict", "too-many"]


class Fail(Exception):
    def __init__(self, why, detail=""):
        super().__init__(why)
        self.detail = detail


def expect(cond, why, detail=""):
    if not cond:
        raise Fail(why, detail)


class Test:
    def __init__(self, work, shots):
        self.work = work
        self.shots = shots
        self.passed = 0
        self.failed = 0
        self.tokens = []          # every token made: none may reach the log
        self.responses = []       # (url, status, headers) of every response seen
        self.procs = []
        self.drivers = {}
        self.db = psycopg.connect("", autocommit=True)
        self.base = None
        self.origins = []         # the lobbies started: their responses are checked
        self.browser_args = []    # more Chromium arguments (multisite_test.py)
        self.started = time.time() - 1

    # -- reporting -----------------------------------------------------------

    def check(self, name, fn):
        try:
            fn()
        except Exception as e:  # a check that cannot run fails
            self.failed += 1
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"{name} ... FAILED ({why})", flush=True)
            detail = e.detail if isinstance(e, Fail) else traceback.format_exc()
            for line in str(detail).rstrip().splitlines()[-30:]:
                print("   | " + line, flush=True)
            return False
        self.passed += 1
        print(f"{name} ... ok", flush=True)
        return True

    # -- the database, as the cluster's superuser ----------------------------

    def sql(self, query, params=()):
        with self.db.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else None

    def one(self, query, params=()):
        rows = self.sql(query, params)
        return rows[0] if rows else None

    def invite(self, email, media="launch", role="speaker", **kw):
        extra = ", not_before => now() + %s::interval" if "opens_in" in kw else ""
        params = [media, email, "Ina", "Vitee", role] + ([kw["opens_in"]] if extra else [])
        invite_id, token, url = self.one(
            "SELECT invite_id, token, url FROM invitetomedia.invite_create("
            "%s, 'olivia', %s, %s, %s, %s" + extra + ")", params)
        self.tokens.append(token)
        return invite_id, token, url

    def guest_link(self, name, media="talks", click_limit=None):
        gid, token, url = self.one(
            "SELECT guest_link_id, token, url FROM invitetomedia.guest_link_create("
            "%s, 'olivia', %s, %s)", (media, name, click_limit))
        self.tokens.append(token)
        return gid, token, url

    def invite_state(self, invite_id):
        return self.one(
            "SELECT s.state, s.use_count,"
            " (SELECT count(*) FROM invitetomedia.redemptions r WHERE r.invite_id = s.invite_id)"
            " FROM invitetomedia.invite_status s WHERE s.invite_id = %s", (invite_id,))

    def users(self):
        """The users table, every row: guest joins must leave it as it is."""
        return self.sql("SELECT user_id, email, first_name, last_name, role"
                        " FROM invitetomedia.users ORDER BY user_id")

    def guest_state(self, gid):
        return self.one(
            "SELECT s.state, s.clicks,"
            " (SELECT count(*) FROM invitetomedia.guest_joins j WHERE j.guest_link_id = s.guest_link_id)"
            " FROM invitetomedia.guest_link_status s WHERE s.guest_link_id = %s", (gid,))

    # -- the app ---------------------------------------------------------------

    def start_app(self, name, env):
        """Starts examples/lobby/serve on a free port; returns (process,
        base URL, log path)."""
        log = os.path.join(self.work, name + ".log")
        full = dict(os.environ, LOBBY_LISTEN="127.0.0.1:0", **env)
        fh = open(log, "w")
        p = subprocess.Popen([SERVE], env=full, stdout=fh, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        self.procs.append(p)
        deadline = time.time() + 20
        while time.time() < deadline:
            m = re.search(r"listening on (http://\S+/)", open(log).read())
            if m:
                self.origins.append(m.group(1))
                return p, m.group(1), log
            if p.poll() is not None:
                break
            time.sleep(0.1)
        raise Fail(f"{name} did not start", open(log).read())

    # -- browsers --------------------------------------------------------------

    def browser(self, name):
        if name in self.drivers:
            return self.drivers[name]
        profile = tempfile.mkdtemp(prefix=f"chromium-{name}-", dir=self.work)
        args = ["--headless=new", "--window-size=900,820", "--force-device-scale-factor=1",
                "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--lang=en-US",
                f"--user-data-dir={profile}"] + self.browser_args
        # root has no sandbox; an unprivileged user has one where the
        # kernel allows user namespaces
        tries = [["--no-sandbox"]] if os.geteuid() == 0 else [[], ["--no-sandbox"]]
        last = None
        for extra in tries:
            opts = webdriver.ChromeOptions()
            opts.binary_location = "/usr/bin/chromium"
            for a in args + extra:
                opts.add_argument(a)
            opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
            service = Service("/usr/bin/chromedriver",
                              log_path=os.path.join(self.work, f"chromedriver-{name}.log"))
            try:
                d = webdriver.Chrome(service=service, options=opts)
            except WebDriverException as e:
                last = e
                continue
            if extra:
                print(f"# browser {name}: started with {' '.join(extra)}", flush=True)
            d.set_page_load_timeout(30)
            self.drivers[name] = d
            return d
        raise Fail("Chromium did not start", str(last))

    def drain(self, d):
        """Collects the responses the browser received (performance log)."""
        for entry in d.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            resp = None
            if msg["method"] == "Network.responseReceived":
                resp = msg["params"]["response"]
            elif msg["method"] == "Network.requestWillBeSent":
                resp = msg["params"].get("redirectResponse")
            if resp and resp["url"].startswith(tuple(self.origins)):
                self.responses.append((resp["url"], resp["status"],
                                       {k.lower(): v for k, v in resp["headers"].items()}))

    def shot(self, d, name):
        assert name in SHOTS, name
        path = os.path.join(self.shots, name + ".png")
        if os.path.exists(path):
            os.unlink(path)
        # the page's card and a margin of background around it
        r = d.execute_script(
            "const r = document.querySelector('main').getBoundingClientRect();"
            "return [r.left, r.top, r.width, r.height, window.innerWidth];")
        x, y = max(0, r[0] - 40), max(0, r[1] - 40)
        clip = {"x": x, "y": y, "width": min(r[4] - x, r[2] + 80), "height": r[3] + 80, "scale": 1}
        png = d.execute_cdp_cmd("Page.captureScreenshot",
                                {"format": "png", "clip": clip, "captureBeyondViewport": True})
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(png["data"]))

    # -- page helpers ----------------------------------------------------------

    @staticmethod
    def status(d):
        return d.find_element(By.TAG_NAME, "main").get_attribute("data-status")

    def open(self, d, url):
        d.get(url)
        s = self.status(d)
        self.drain(d)
        return s

    def submit(self, d, **fields):
        for k, v in fields.items():
            el = d.find_element(By.NAME, k)
            el.clear()
            el.send_keys(v)
        # the next page is another document: the mark is gone
        d.execute_script("window.itmOldPage = true")
        d.find_element(By.ID, "join").click()
        WebDriverWait(d, 15, ignored_exceptions=(WebDriverException,)).until(
            lambda d: d.execute_script(
                "return window.itmOldPage !== true && document.readyState === 'complete'"))
        s = self.status(d)
        self.drain(d)
        return s

    @staticmethod
    def text(d, el_id):
        return d.find_element(By.ID, el_id).text

    def no_email_on_page(self, d, email):
        expect(email.lower() not in d.page_source.lower(),
               f"the page shows the invited email {email}")

    # -- plain HTTP (a mail scanner, a forged POST) -----------------------------

    def http(self, method, url, data=None, jar=None):
        """(status, headers, body) of one request; redirects followed."""
        handlers = [urllib.request.HTTPCookieProcessor(jar)] if jar is not None else []
        opener = urllib.request.build_opener(*handlers)
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(url, data=body, method=method)
        try:
            with opener.open(req, timeout=20) as r:
                status, headers, content = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, headers, content = e.code, e.headers, e.read()
        self.responses.append((url, status, {k.lower(): v for k, v in headers.items()}))
        return status, headers, content.decode("utf-8", "replace")

    def stop(self):
        for d in self.drivers.values():
            try:
                d.quit()
            except Exception:
                pass
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def import_lobby():
    """examples/lobby/lobby.py, as a platform imports it (verify_result)."""
    sys.dont_write_bytecode = True
    if os.path.join(TOP, "examples", "lobby") not in sys.path:
        sys.path.insert(0, os.path.join(TOP, "examples", "lobby"))
    import lobby
    return lobby


class Platform:
    """What LOBBY_APP_URL points at: a page at /landing that records the
    paths it was asked for (got)."""

    def __init__(self):
        import http.server
        import threading
        got = self.got = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                got.append(self.path)
                body = b'<!doctype html><title>platform</title><main data-status="platform">in</main>'
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.landing = f"http://127.0.0.1:{self.srv.server_port}/landing?from=lobby"

    def results(self):
        """The itm_result of each landing so far (not /favicon.ico)."""
        return [urllib.parse.parse_qs(urllib.parse.urlsplit(g).query)["itm_result"][0]
                for g in self.got if g.startswith("/landing") and "itm_result=" in g]

    def stop(self):
        self.srv.shutdown()


def keys_in(value):
    """Every key of a JSON value, at any depth."""
    if isinstance(value, dict):
        return set(value) | set().union(*(keys_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(keys_in(v) for v in value))
    return set()


def data_status(html):
    m = re.search(r'<main data-status="([^"]*)"', html)
    return m.group(1) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--shots", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    os.makedirs(a.shots, exist_ok=True)
    t = Test(a.work, a.shots)
    try:
        run(t)
    finally:
        t.stop()
    print(f"# lobby: {t.passed} passed, {t.failed} failed", flush=True)
    return 1 if t.failed else 0


def run(t):
    st = {}

    # -- the site, the application role, the app ---------------------------

    def setup():
        t.sql("CREATE EXTENSION invitetomedia CASCADE")
        readme = open(os.path.join(TOP, "README.md")).read()
        m = re.search(r"<!-- readme-test: application-role -->\s*\n[ \t]*```sql\n(.*?)\n[ \t]*```",
                      readme, re.S)
        expect(m, "README.md has no application-role recipe")
        t.sql(m.group(1))
        st["app_password"] = os.urandom(12).hex()
        t.sql(f"ALTER ROLE media_app PASSWORD '{st['app_password']}'")
        # the lobby's own role (README, "The lobby"): the three calls only
        m = re.search(r"<!-- readme-test: lobby-role -->\s*\n[ \t]*```sql\n(.*?)\n[ \t]*```",
                      readme, re.S)
        expect(m, "README.md has no lobby-role recipe")
        t.sql(m.group(1))
        st["lobby_password"] = os.urandom(12).hex()
        t.sql(f"ALTER ROLE media_lobby PASSWORD '{st['lobby_password']}'")
        st["lobby_env"] = {"PGUSER": "media_lobby", "PGPASSWORD": st["lobby_password"]}
        t.sql("""
            INSERT INTO invitetomedia.users (user_id, email, first_name, last_name, role) VALUES
                ('olivia', 'olivia@media.example', 'Olivia', 'Owner', 'private_only'),
                ('admin', 'admin@media.example', 'Ada', 'Admin', 'admin'),
                ('cora', 'cora@corp.example', 'Cora', 'Corp', 'viewer');
            INSERT INTO invitetomedia.media (media_id, media_type, title, owner_id) VALUES
                ('launch', 'webcast', 'Spring launch webcast', 'olivia'),
                ('talks', 'webcast', 'Tuesday talks', 'olivia'),
                ('xss', 'video', '<script>alert(1)</script>', 'olivia');
            UPDATE invitetomedia.settings
               SET enabled = true, lockout_attempts = 5,
                   restrict_new_user_domains = '{corp.example}'""")
        # as the README's role, with the libpq variables (password included)
        p, base, log = t.start_app("lobby", st["lobby_env"])
        st["proc"], st["log"] = p, log
        t.base = base
        # what a platform does: links point at the lobby (guest links too)
        t.sql("UPDATE invitetomedia.settings SET link_base_url = %s", (base + "i/",))

    if not t.check("start_lobby", setup):
        return

    def app_role():
        # the lobby's connections are the README role's, and it can do no more
        rows = t.sql("SELECT DISTINCT usename FROM pg_stat_activity"
                     " WHERE application_name = 'invitetomedia-lobby'")
        expect(rows == [("media_lobby",)], f"the lobby's sessions run as {rows}")
        r = t.one("SELECT rolsuper, has_table_privilege('media_lobby', 'invitetomedia.invites', 'SELECT'),"
                  " has_table_privilege('media_lobby', 'invitetomedia.redemptions', 'SELECT')"
                  " FROM pg_roles WHERE rolname = 'media_lobby'")
        expect(r == (False, False, False), f"media_lobby has more than the recipe: {r}")
        # what the lobby's role may call beyond what everyone may (the
        # extension's helpers): the three functions, nothing else
        funcs = t.sql("SELECT p.oid::regprocedure::text FROM pg_proc p"
                      " JOIN pg_namespace n ON n.oid = p.pronamespace"
                      " WHERE n.nspname = 'invitetomedia'"
                      " AND has_function_privilege('media_lobby', p.oid, 'EXECUTE')"
                      " AND p.proacl IS NOT NULL AND NOT EXISTS (SELECT 1 FROM aclexplode(p.proacl) a"
                      "     WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')"
                      " ORDER BY 1")
        names = sorted(f[0].split("(")[0] for f in funcs)
        expect(names == ["invitetomedia.guest_link_join", "invitetomedia.invite_check",
                         "invitetomedia.invite_consume"], f"media_lobby may call {names}")
        # whoever controls the lobby cannot create a link as anyone
        with psycopg.connect("", user="media_lobby", password=st["lobby_password"],
                             autocommit=True) as conn:
            try:
                conn.execute("SELECT * FROM invitetomedia.invite_create("
                             "'launch', 'olivia', 'mal@outside.example', 'M', 'L', 'speaker')")
            except psycopg.errors.InsufficientPrivilege:
                pass
            else:
                raise Fail("invite_create as the lobby's role was not refused")
        expect("can do more than the lobby needs" not in open(st["log"]).read(),
               "the lobby warned about its role")

    t.check("app_role", app_role)

    def browsers_start():
        st["a"] = t.browser("a")    # the invitee's browser
        st["b"] = t.browser("b")    # another profile: another device

    if not t.check("browsers_start", browsers_start):
        return
    a, b = st["a"], st["b"]

    # -- an invite: wrong email, then the right one ---------------------------

    def invite_form():
        iid, token, url = t.invite("ina.vitee@outside.example")
        st["iid"], st["url"] = iid, url
        expect(url.startswith(t.base + "i/itm_"), f"link_base_url gives {url}")
        s = t.open(a, url)
        expect(s == "form", f"data-status {s}")
        expect(t.text(a, "title") == "Spring launch webcast", f"title {t.text(a, 'title')!r}")
        expect(t.text(a, "role") == "speaker", f"role {t.text(a, 'role')!r}")
        expect(t.text(a, "expires").endswith("UTC"), "no expiry shown")
        expect(a.find_element(By.ID, "invite-form").is_displayed(), "no form")
        t.no_email_on_page(a, "ina.vitee@outside.example")
        t.shot(a, "invite-form")

    t.check("invite_form", invite_form)

    def invite_wrong_email():
        s = t.submit(a, email="someone.else@outside.example")
        expect(s == "email_mismatch", f"data-status {s}")
        expect(a.find_element(By.ID, "error").is_displayed(), "no error shown")
        expect(a.find_element(By.ID, "invite-form").is_displayed(), "the form is not shown again")
        t.no_email_on_page(a, "ina.vitee@outside.example")
        t.shot(a, "invite-wrong-email")
        expect(t.invite_state(st["iid"])[:2] == ("pending", 0), f"state {t.invite_state(st['iid'])}")

    t.check("invite_wrong_email", invite_wrong_email)

    def invite_admitted():
        s = t.submit(a, email="  Ina.Vitee@OUTSIDE.example ")
        expect(s == "ok", f"data-status {s}")
        expect(t.text(a, "title") == "Spring launch webcast", "title not shown")
        expect(t.text(a, "role") == "speaker", "role not shown")
        expect(t.invite_state(st["iid"])[:2] == ("exhausted", 1), f"state {t.invite_state(st['iid'])}")
        t.shot(a, "invite-admitted")

    t.check("invite_admitted", invite_admitted)

    def device_cookie():
        c = {c["name"]: c for c in a.get_cookies()}
        expect("itm_device" in c, f"no device cookie: {sorted(c)}")
        d = c["itm_device"]
        expect(d.get("httpOnly") is True, "the device cookie is not HttpOnly")
        expect(d.get("sameSite") == "Lax", f"the device cookie is SameSite={d.get('sameSite')}")
        expect("itm_device" not in a.execute_script("return document.cookie"),
               "page scripts can read the device cookie")
        # the device id recorded is the cookie's random part, not anything
        # the browser chose
        dev = t.one("SELECT device_id FROM invitetomedia.redemptions WHERE invite_id = %s"
                    " AND status = 'ok'", (st["iid"],))[0]
        expect(d["value"].split(".")[0] == dev, "the recorded device is not the cookie's")

    t.check("device_cookie", device_cookie)

    def second_profile_exhausted():
        s = t.open(b, st["url"])
        expect(s == "exhausted", f"GET: data-status {s}")
        expect(b.find_element(By.ID, "used").is_displayed(), "no line saying the link was used")
        expect(b.find_element(By.ID, "invite-form").is_displayed(), "no form under the line")
        t.shot(b, "invite-used")
        s = t.submit(b, email="ina.vitee@outside.example")
        expect(s == "exhausted", f"POST: data-status {s}")
        expect(not b.find_elements(By.ID, "invite-form"), "a form on the refusal")
        t.no_email_on_page(b, "ina.vitee@outside.example")
        t.shot(b, "invite-exhausted")
        expect(t.invite_state(st["iid"])[:2] == ("exhausted", 1), f"state {t.invite_state(st['iid'])}")

    t.check("second_profile_exhausted", second_profile_exhausted)

    def first_profile_rejoins():
        s = t.open(a, st["url"])
        expect(s == "exhausted", f"GET: data-status {s}")
        s = t.submit(a, email="ina.vitee@outside.example")
        expect(s == "rejoin", f"data-status {s}")
        expect(t.invite_state(st["iid"])[:2] == ("exhausted", 1), "a use was taken")
        t.shot(a, "invite-rejoin")

    t.check("first_profile_rejoins", first_profile_rejoins)

    # -- a scheduled link -----------------------------------------------------

    def scheduled_countdown():
        iid, token, url = t.invite("sam.scheduled@outside.example", opens_in="8 seconds")
        s = t.open(a, url)
        expect(s == "not_yet", f"data-status {s}")
        a.execute_script("window.itmNotReloaded = true")
        counter = a.find_element(By.ID, "countdown")
        expect(counter.is_displayed(), "no countdown")
        expect(not a.find_element(By.ID, "invite-form").is_displayed(), "the form shows before the time")
        first = counter.text
        expect(re.fullmatch(r"\d+ s", first), f"countdown reads {first!r}")
        t.shot(a, "invite-countdown")
        time.sleep(1.5)
        expect(counter.text != first, f"the countdown does not count ({first!r})")
        expect(t.status(a) == "not_yet", "opened early")
        WebDriverWait(a, 20).until(
            lambda d: d.find_element(By.TAG_NAME, "main").get_attribute("data-status") == "form")
        expect(a.execute_script("return window.itmNotReloaded === true"), "the page was reloaded")
        expect(a.find_element(By.ID, "invite-form").is_displayed(), "the form is not shown")
        expect(not a.find_element(By.ID, "waiting").is_displayed(), "the countdown still shows")
        # at once: the database agrees that the link is open
        s = t.submit(a, email="sam.scheduled@outside.example")
        expect(s == "ok", f"the form sent at the opening: data-status {s}")
        expect(t.invite_state(iid)[:2] == ("exhausted", 1), f"state {t.invite_state(iid)}")

    t.check("scheduled_countdown", scheduled_countdown)

    # -- the lockout ------------------------------------------------------------

    def five_wrong_emails_locked():
        iid, token, url = t.invite("lou.locked@outside.example")
        t.open(b, url)
        seen = []
        for i in range(5):
            seen.append(t.submit(b, email=f"guess{i}@outside.example"))
        expect(seen == ["email_mismatch"] * 4 + ["locked"], f"statuses {seen}")
        t.no_email_on_page(b, "lou.locked@outside.example")
        expect(not b.find_elements(By.ID, "invite-form"), "a form on the locked page")
        s = t.open(b, url)
        expect(s == "locked", f"GET after the lockout: data-status {s}")
        t.shot(b, "invite-locked")
        expect(t.invite_state(iid)[0] == "locked", f"state {t.invite_state(iid)}")

    t.check("five_wrong_emails_locked", five_wrong_emails_locked)

    # -- escaping -------------------------------------------------------------------

    def title_escaped():
        iid, token, url = t.invite("xavier@outside.example", media="xss", role="viewer")
        s = t.open(a, url)
        expect(s == "form", f"data-status {s}")
        try:
            alert = a.switch_to.alert
            text = alert.text
            alert.dismiss()
            raise Fail(f"an alert opened: {text!r}")
        except NoAlertPresentException:
            pass
        expect(t.text(a, "title") == "<script>alert(1)</script>",
               f"the title reads {t.text(a, 'title')!r}")
        expect(a.title == "<script>alert(1)</script>", f"the window title reads {a.title!r}")
        expect(not a.find_elements(By.TAG_NAME, "script"), "a script element on the page")
        expect("&lt;script&gt;alert(1)&lt;/script&gt;" in a.page_source, "not escaped in the HTML")
        t.shot(a, "invite-title-escaped")

    t.check("title_escaped", title_escaped)

    # -- guest links --------------------------------------------------------------------

    def guest_join_ok():
        # every guest join from here to guest_joins_leave_users leaves it so
        st["users"] = t.users()
        gid, token, url = t.guest_link("Tuesday audience")
        st["gid"], st["gurl"] = gid, url
        expect(url.startswith(t.base + "i/itg_"), f"a guest link reads {url}")
        s = t.open(a, url)
        expect(s == "form", f"data-status {s}")
        expect("/g/itg_" in a.current_url, f"/i/itg_... not sent on to /g/: {a.current_url}")
        t.shot(a, "guest-form")
        s = t.submit(a, email="gail.guest@outside.example", first_name="Gail", last_name="Guest")
        expect(s == "ok", f"data-status {s}")
        expect(t.text(a, "role") == "viewer", f"role {t.text(a, 'role')!r}")
        who, email = t.text(a, "who"), t.text(a, "email")
        expect(who == "Gail Guest (guest)", f"joined as {who!r}")
        expect(email == "gail.guest@outside.example", f"email given {email!r}")
        t.shot(a, "guest-admitted")
        r = t.sql("SELECT status, email, first_name, last_name FROM invitetomedia.guest_joins"
                  " WHERE guest_link_id = %s", (gid,))
        expect(r == [("ok", "gail.guest@outside.example", "Gail", "Guest")], f"guest_joins {r}")

    t.check("guest_join_ok", guest_join_ok)

    def guest_invalid_input():
        t.open(b, st["gurl"])
        # the browser takes a@localhost; the extension wants two labels
        s = t.submit(b, email="gus@localhost", first_name="Gus", last_name="Guest")
        expect(s == "invalid", f"data-status {s}")
        expect(b.find_element(By.ID, "error").is_displayed(), "no error shown")
        expect(b.find_element(By.ID, "first_name").get_attribute("value") == "Gus", "the form was not kept")
        t.shot(b, "guest-invalid")
        s = t.submit(b, email="gus@corp.example")
        expect(s == "domain_restricted", f"a restricted domain: data-status {s}")
        expect(t.guest_state(st["gid"])[2] == 2, f"joins {t.guest_state(st['gid'])}")

    t.check("guest_invalid_input", guest_invalid_input)

    def guest_click_limited_exhausted():
        gid, token, url = t.guest_link("One seat", click_limit=1)
        t.open(a, url)
        s = t.submit(a, email="first.come@outside.example", first_name="First", last_name="Come")
        expect(s == "ok", f"the first: data-status {s}")
        t.open(b, url)
        s = t.submit(b, email="second.come@outside.example", first_name="Second", last_name="Come")
        expect(s == "exhausted", f"the second: data-status {s}")
        t.shot(b, "guest-full")
        expect(t.guest_state(gid)[:2] == ("exhausted", 1), f"state {t.guest_state(gid)}")

    t.check("guest_click_limited_exhausted", guest_click_limited_exhausted)

    def guest_link_is_not_a_login():
        # issue 18: a guest who types an account's address is not that
        # account.  The platform's result names the join, with the email as
        # a claim; no user is returned, created or changed.
        lobby = import_lobby()
        platform = Platform()
        try:
            secret = os.urandom(24).hex()
            p, base, log = t.start_app("lobby-guest-app-url", {
                "PGUSER": "media_lobby", "PGPASSWORD": st["lobby_password"],
                "LOBBY_APP_URL": platform.landing, "LOBBY_SECRET": secret})
            gid, token, url = t.guest_link("Open day")
            t.open(a, base + "g/" + token)
            s = t.submit(a, email="ADMIN@media.example", first_name="Mallory", last_name="Evil")
            expect(s == "platform", f"the guest is not at LOBBY_APP_URL: data-status {s}")
            # the same browser again, with another account's address: the
            # same guest (its first join), still no user
            t.open(a, base + "g/" + token)
            s = t.submit(a, email="olivia@media.example", first_name="Mallory", last_name="Evil")
            expect(s == "platform", f"the rejoin is not at LOBBY_APP_URL: data-status {s}")
            signed = platform.results()
            expect(len(signed) == 2, f"the platform got {platform.got}")
            first, again = (lobby.verify_result(lobby.Signer(secret), x, max_age=60) for x in signed)
            expect(first is not None and again is not None, "a result does not verify")
            joins = t.sql("SELECT join_id FROM invitetomedia.guest_link_joins"
                          " WHERE guest_link_id = %s AND status = 'ok'", (gid,))
            expect(len(joins) == 1, f"ok joins of the link: {joins}")
            join_id = joins[0][0]
            for r, status, email in ((first, "ok", "ADMIN@media.example"),
                                     (again, "rejoin", "olivia@media.example")):
                expect("user_id" not in keys_in(r), f"a guest result names a user: {r}")
                expect("email" not in keys_in(r), f"a guest result has an unqualified email: {r}")
                want = {"kind": "guest_link", "status": status, "id": gid,
                        "media_id": "talks", "role": "viewer"}
                expect(all(r.get(k) == v for k, v in want.items()), f"result {r}")
                expect(r.get("guest") == {"join_id": join_id, "email_claimed": email,
                                          "first_name": "Mallory", "last_name": "Evil"},
                       f"{status}: guest {r.get('guest')}, the join is {join_id}")
            # a registered address of a restricted domain is refused as an
            # unregistered one is: the answer tells no account (another
            # browser: this one would rejoin whatever it types)
            t.open(b, base + "g/" + token)
            s = t.submit(b, email="cora@corp.example", first_name="Cora", last_name="Corp")
            expect(s == "domain_restricted", f"a registered address of corp.example: data-status {s}")
            p.send_signal(signal.SIGTERM)
            expect(p.wait(timeout=15) == 0, "the lobby did not stop on SIGTERM")
            text = open(log).read()
            expect(re.search(rf"\(guest link {gid}, join {join_id}\): join ok", text),
                   "no join logged with the link and join ids")
        finally:
            platform.stop()

    t.check("guest_link_is_not_a_login", guest_link_is_not_a_login)

    def guest_joins_leave_users():
        # every guest join since guest_join_ok (ok, rejoin, refused, with
        # new addresses and with accounts' addresses): no user created or
        # changed
        expect("users" in st, "guest_join_ok did not run")
        now = t.users()
        added = sorted(set(now) - set(st["users"]), key=repr)
        gone = sorted(set(st["users"]) - set(now), key=repr)
        expect(not added and not gone,
               f"guest joins changed the users table: {len(st['users'])} rows, now {len(now)}",
               "\n".join([f"+ {x}" for x in added] + [f"- {x}" for x in gone]))

    t.check("guest_joins_leave_users", guest_joins_leave_users)

    # -- what a mail scanner's GET and HEAD do: nothing -----------------------------

    def scanner_get_head_unused():
        iid, token, url = t.invite("sid.scanned@outside.example")
        gid, gtoken, gurl = t.guest_link("Scanned", media="launch")
        for u in (url, gurl):
            for method in ("GET", "HEAD"):
                status, _, body = t.http(method, u)
                expect(status == 200, f"{method} {u[:30]}...: {status}")
                if method == "GET":
                    expect(data_status(body) == "form", f"GET: data-status {data_status(body)}")
        expect(t.invite_state(iid) == ("pending", 0, 0), f"invite: {t.invite_state(iid)}")
        expect(t.guest_state(gid) == ("active", 0, 0), f"guest link: {t.guest_state(gid)}")
        st["scanned"] = (iid, url)

    t.check("scanner_get_head_unused", scanner_get_head_unused)

    # -- CSRF ---------------------------------------------------------------------------

    def post_without_csrf_refused():
        iid, url = st["scanned"]
        right = {"email": "sid.scanned@outside.example"}
        # no cookie, no token
        status, _, body = t.http("POST", url, right)
        expect(status == 400 and data_status(body) == "csrf", f"no token: {status} {data_status(body)}")
        # the cookies of a GET, and no token
        jar = http.cookiejar.CookieJar()
        status, _, page = t.http("GET", url, jar=jar)
        status, _, body = t.http("POST", url, right, jar=jar)
        expect(status == 400 and data_status(body) == "csrf", f"cookie only: {status} {data_status(body)}")
        # another session's token
        other = http.cookiejar.CookieJar()
        _, _, other_page = t.http("GET", url, jar=other)
        token = re.search(r'name="csrf" value="([^"]+)"', other_page).group(1)
        status, _, body = t.http("POST", url, dict(right, csrf=token), jar=jar)
        expect(status == 400 and data_status(body) == "csrf", f"another's token: {status} {data_status(body)}")
        # a guest link the same
        gid, gtoken, gurl = t.guest_link("Forged", media="launch")
        status, _, body = t.http("POST", t.base + "g/" + gtoken,
                                 {"email": "f@outside.example", "first_name": "F", "last_name": "G"})
        expect(status == 400 and data_status(body) == "csrf", f"guest: {status} {data_status(body)}")
        expect(t.invite_state(iid) == ("pending", 0, 0), f"invite: {t.invite_state(iid)}")
        expect(t.guest_state(gid) == ("active", 0, 0), f"guest link: {t.guest_state(gid)}")
        # and the real form still works
        s = t.open(b, url)
        s = t.submit(b, email="sid.scanned@outside.example")
        expect(s == "ok", f"the browser's form afterwards: data-status {s}")

    t.check("post_without_csrf_refused", post_without_csrf_refused)

    def browser_form_without_csrf_cookie():
        iid, token, url = t.invite("cora.cookieless@outside.example")
        t.open(a, url)
        a.delete_cookie("itm_csrf")
        s = t.submit(a, email="cora.cookieless@outside.example")
        expect(s == "csrf", f"data-status {s}")
        t.shot(a, "form-expired")
        expect(t.invite_state(iid) == ("pending", 0, 0), f"invite: {t.invite_state(iid)}")

    t.check("browser_form_without_csrf_cookie", browser_form_without_csrf_cookie)

    def browser_planted_cookie_refused():
        # a device cookie planted with a longer path (from a sibling
        # subdomain, say): the browser sends it first, beside the lobby's
        iid, token, url = t.invite("pia.planted@outside.example")
        t.open(a, url)
        host = urllib.parse.urlsplit(t.base).hostname
        a.execute_cdp_cmd("Network.setCookie", {
            "name": "itm_device", "value": "planted.sig", "domain": host, "path": "/i/"})
        try:
            s = t.open(a, url)
            expect(s == "cookie_conflict", f"data-status {s}")
            expect(not a.find_elements(By.TAG_NAME, "form"), "a form on the refusal")
            t.shot(a, "cookie-conflict")
        finally:
            a.execute_cdp_cmd("Network.deleteCookies", {
                "name": "itm_device", "domain": host, "path": "/i/"})
        s = t.open(a, url)
        expect(s == "form", f"without the planted cookie: data-status {s}")
        s = t.submit(a, email="pia.planted@outside.example")
        expect(s == "ok", f"the form afterwards: data-status {s}")

    t.check("browser_planted_cookie_refused", browser_planted_cookie_refused)

    # -- the other refusals: each its own page, never the email -----------------------

    def refused_pages():
        cases = []
        iid, token, url = t.invite("rita.revoked@outside.example")
        t.sql("SELECT invitetomedia.invite_revoke(%s, 'olivia')", (iid,))
        cases.append(("revoked", url, "rita.revoked@outside.example", "invite-revoked"))
        iid, token, url = t.invite("eve.expired@outside.example")
        # as the tables' owner: the link's time ran out
        t.sql("UPDATE invitetomedia.invites SET expires_at = now() - interval '1 minute'"
              " WHERE invite_id = %s", (iid,))
        cases.append(("expired", url, "eve.expired@outside.example", "invite-expired"))
        cases.append(("not_found", url[:-6] + "AAAAAA", None, "link-not-found"))
        for want, u, email, shot in cases:
            s = t.open(b, u)
            expect(s == want, f"{want}: data-status {s}")
            expect(not b.find_elements(By.TAG_NAME, "form"), f"{want}: a form")
            expect(len(b.find_element(By.TAG_NAME, "h1").text) > 5, f"{want}: no heading")
            if email:
                t.no_email_on_page(b, email)
            t.shot(b, shot)
        iid, token, url = t.invite("dora.disabled@outside.example")
        t.sql("UPDATE invitetomedia.settings SET enabled = false")
        try:
            s = t.open(b, url)
            expect(s == "disabled", f"disabled: data-status {s}")
            t.shot(b, "disabled")
        finally:
            t.sql("UPDATE invitetomedia.settings SET enabled = true")

    t.check("refused_pages", refused_pages)

    # -- the POST throttle's page: 429, Retry-After, nothing used -----------------------

    def browser_too_many():
        # a lobby whose invite links take one POST a minute: the wrong
        # email spends it, and the right one then gets the throttle's page
        p, base, log = t.start_app("lobby-too-many", dict(st["lobby_env"],
                                                          LOBBY_POST_PER_INVITE="1/60"))
        try:
            iid, token, url = t.invite("tom.toomany@outside.example")
            link = base + "i/" + token
            s = t.open(b, link)
            expect(s == "form", f"GET: data-status {s}")
            s = t.submit(b, email="not.tom@outside.example")
            expect(s == "email_mismatch", f"the first POST: data-status {s}")
            s = t.submit(b, email="tom.toomany@outside.example")
            expect(s == "too_many", f"the second POST: data-status {s}")
            expect(not b.find_elements(By.TAG_NAME, "form"), "a form on the refusal")
            expect("wait a minute" in b.find_element(By.TAG_NAME, "main").text.lower(),
                   "the page does not say to wait")
            t.no_email_on_page(b, "tom.toomany@outside.example")
            t.shot(b, "too-many")
            seen = [(status, h.get("retry-after")) for u, status, h in t.responses if u == link]
            expect(seen and seen[-1][0] == 429 and (seen[-1][1] or "").isdigit()
                   and 0 < int(seen[-1][1]) <= 60,
                   f"the browser got {seen[-1] if seen else None}, not 429 with Retry-After")
            expect(t.invite_state(iid)[:2] == ("pending", 0), f"invite: {t.invite_state(iid)}")
            p.send_signal(signal.SIGTERM)
            expect(p.wait(timeout=15) == 0, "the lobby did not stop on SIGTERM")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()

    t.check("browser_too_many", browser_too_many)

    # -- LOBBY_APP_URL: the platform receives a result it can verify -----------------

    def app_url_redirect():
        lobby = import_lobby()
        platform = Platform()
        try:
            secret = os.urandom(24).hex()
            p, base, log = t.start_app("lobby-app-url", {
                "PGUSER": "media_lobby", "PGPASSWORD": st["lobby_password"],
                "LOBBY_APP_URL": platform.landing, "LOBBY_SECRET": secret})
            iid, token, url = t.invite("pia.platform@outside.example")
            t.open(a, base + "i/" + token)
            s = t.submit(a, email="pia.platform@outside.example")
            expect(s == "platform", f"the browser is not at LOBBY_APP_URL: data-status {s}")
            got = [g for g in platform.got if g.startswith("/landing")]    # not /favicon.ico
            expect(len(got) == 1 and got[0].startswith("/landing?from=lobby&itm_result="),
                   f"the platform got {got}")
            signed = platform.results()[0]
            r = lobby.verify_result(lobby.Signer(secret), signed, max_age=60)
            expect(r is not None, "the result does not verify with LOBBY_SECRET")
            want = {"kind": "invite", "status": "ok", "id": iid, "media_id": "launch",
                    "role": "speaker", "user_id": "pia.platform@outside.example",
                    "title": "Spring launch webcast"}
            expect(all(r.get(k) == v for k, v in want.items()), f"result {r}")
            expect(lobby.verify_result(lobby.Signer("x" * 48), signed) is None,
                   "the result verifies with another secret")
            data, sig = signed.split(".")
            forged = lobby._b64(json.dumps(dict(r, role="moderator")).encode()) + "." + sig
            expect(lobby.verify_result(lobby.Signer(secret), forged) is None, "a forged result verifies")
            p.send_signal(signal.SIGTERM)
            expect(p.wait(timeout=15) == 0, "the lobby did not stop on SIGTERM")
        finally:
            platform.stop()

    t.check("app_url_redirect", app_url_redirect)

    # -- the database unreachable: 503, "try again" ----------------------------------

    def database_down_503():
        # a port nothing listens on
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        p, base, log = t.start_app("lobby-nodb", {
            "LOBBY_DSN": f"host=127.0.0.1 port={port} dbname=postgres user=media_lobby connect_timeout=3"})
        token = st["url"].rsplit("/", 1)[1]
        status, headers, body = t.http("GET", base + "i/" + token)
        expect(status == 503, f"status {status}")
        expect(data_status(body) == "unavailable", f"data-status {data_status(body)}")
        expect("try again" in body.lower(), "no 'try again'")
        for bad in ("Traceback", "psycopg", "OperationalError", "connection", str(port)):
            expect(bad not in body, f"the page shows {bad!r}")
        t.open(b, base + "i/" + token)
        t.shot(b, "unavailable")
        p.send_signal(signal.SIGTERM)
        expect(p.wait(timeout=15) == 0, "the second lobby did not stop on SIGTERM")
        text = open(log).read()
        expect("database error" in text, "no database error logged")
        expect(token not in text, "the token is in the log")

    t.check("database_down_503", database_down_503)

    # -- every response: the headers -----------------------------------------------------

    def headers_every_response():
        for d in t.drivers.values():
            t.drain(d)
        status, _, _ = t.http("GET", t.base + "static/countdown.js")
        expect(status == 200, f"countdown.js: {status}")
        t.http("GET", t.base + "no/such/page")
        t.http("HEAD", t.base)
        bad = []
        for url, status, h in t.responses:
            short = re.sub(r"(it[mg]_)[A-Za-z0-9_-]+", r"\1...", url)
            for k, v in HEADERS.items():
                if h.get(k) != v:
                    bad.append(f"{status} {short}: {k}: {h.get(k)!r}")
            csp = h.get("content-security-policy", "")
            directives = dict((x.strip().split(" ", 1) + [""])[:2] for x in csp.split(";") if x.strip())
            if (directives.get("default-src") != "'none'" or directives.get("script-src") != "'self'"
                    or "unsafe-inline" in csp or "frame-ancestors 'none'" not in csp):
                bad.append(f"{status} {short}: Content-Security-Policy: {csp!r}")
        statuses = sorted({s for _, s, _ in t.responses})
        expect(len(t.responses) >= 40, f"only {len(t.responses)} responses seen")
        expect({200, 303, 308, 400, 403, 404, 410, 503} <= set(statuses), f"statuses seen: {statuses}")
        expect(not bad, f"{len(bad)} of {len(t.responses)} responses lack a header", "\n".join(bad[:30]))
        print(f"# headers: {len(t.responses)} responses, statuses {statuses}", flush=True)

    t.check("headers_every_response", headers_every_response)

    def no_csp_violation():
        msgs = []
        for name, d in t.drivers.items():
            for entry in d.get_log("browser"):
                if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]:
                    msgs.append(f"{name}: {entry['message']}")
        expect(not msgs, f"{len(msgs)} CSP violations", "\n".join(msgs))

    t.check("no_csp_violation", no_csp_violation)

    # -- the log, and SIGTERM ------------------------------------------------------------

    def sigterm_and_log():
        p = st["proc"]
        p.send_signal(signal.SIGTERM)
        expect(p.wait(timeout=15) == 0, f"status {p.returncode} after SIGTERM")
        text = open(st["log"]).read()
        expect("stopped" in text, "no 'stopped' in the log")
        leaked = [tok[:8] + "..." for tok in t.tokens if tok in text or tok[4:] in text]
        expect(not leaked, f"{len(leaked)} tokens in the log")
        expect(f"(invite {st['iid']}): consume ok" in text, "no consume logged with the invite id")
        expect(re.search(r"\(guest link \d+, join \d+\): join ok", text),
               "no join logged with the link and join ids")

    t.check("sigterm_and_log", sigterm_and_log)

    def screenshots():
        # each page's PNG, written by this run
        bad = []
        for name in SHOTS:
            path = os.path.join(t.shots, name + ".png")
            try:
                with open(path, "rb") as fh:
                    head = fh.read(8)
                fresh = os.path.getmtime(path) >= t.started
            except OSError:
                head, fresh = b"", False
            if head != b"\x89PNG\r\n\x1a\n" or not fresh or os.path.getsize(path) < 3000:
                bad.append(name)
        expect(not bad, f"{len(bad)} of {len(SHOTS)} screenshots missing: {', '.join(bad)}")
        print(f"# screenshots: {len(SHOTS)} in {t.shots}", flush=True)

    t.check("screenshots", screenshots)

    # -- what an attacker sends: test/lobby/hardening.py ---------------------------------

    sys.dont_write_bytecode = True
    sys.path.insert(0, HERE)
    import hardening
    hardening.run(t, st, expect, Fail, import_lobby)


if __name__ == "__main__":
    sys.exit(main())
