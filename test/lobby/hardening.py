"""The lobby facing the internet (issue 19): what an attacker sends it, plain
HTTP and raw sockets, no browser.  Run by lobby_test.py after the browser
checks, on the same throttle-free cluster: run(t, st) adds its checks to
t's count, "name ... ok" or "name ... FAILED (why)".

Each check starts from a finding of the outside review and fails on the
lobby that had it:

  malformed_chunked_survives  a chunked POST with a bad chunk terminator, a
                              chunk longer than its data and a half-close
                              killed the process (SIGSEGV in Werkzeug)
  chunked_body_limit          a 32 MB chunked POST, no cookies: refused
                              early, the process's memory barely moves
  waitress_errors_headed      waitress's own answers (400 for malformed
                              HTTP or a bad chunk, 413 for a body over the
                              limit, 431 for headers over it, 501) carry the
                              security headers of the lobby's pages; they
                              carried none
  csrf_before_form            a POST without the CSRF cookie is refused
                              before a byte of its body is read
  non_ascii_no_500            a cookie, a form field or a result signature
                              that is not ASCII: no 500
  host_cookies                behind HTTPS the cookies are __Host- ones; a
                              device cookie planted from a sibling
                              subdomain (sent first) does not take the use
  duplicate_cookies_refused   two device or two CSRF cookies: 400, nothing
                              used
  pool_bounded                40 concurrent GETs while the invites are
                              locked: never more connections than the pool
  pool_after_restart          the database restarted: no 503 (the pool
                              checks a connection before it is used)
  keys_per_purpose            the platform's result key verifies results
                              and makes no device cookie; the secret itself
                              verifies nothing; an expired result is refused
                              by verify_result and /welcome
  throttle_429                POSTs beyond a client's or a link's rate:
                              429 with Retry-After, nothing called
  throttle_memory_bounded     the throttle keeps at most its entries
  silent_client_closed        a client silent in its headers is closed
                              after LOBBY_TIMEOUT
  load_bounded                2,000 requests from 50 concurrent clients
                              (GETs, guest joins): only 200, 303, 429, 503;
                              never more connections than the pool; RSS
                              bounded; one ok join per admitted client
  load_restart                the database restarted in the middle of a
                              load run of GETs, invite uses and guest joins:
                              only 200, 303, 429, 503 throughout, no use
                              lost or doubled (each client's single-use
                              invite used once, each "ok" answered recorded
                              once), then normal answers
(and lobby_test.py's app_role: the lobby runs as the README's lobby role,
which cannot call invite_create)
"""

import base64
import hashlib
import hmac
import http.cookiejar
import io
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import psycopg


def hostport(base):
    u = urllib.parse.urlsplit(base)
    return u.hostname, u.port


def raw(base, data, half_close=True, timeout=10):
    """Sends DATA on one connection and returns what comes back (b"" if the
    server closed without a word)."""
    s = socket.create_connection(hostport(base), timeout=timeout)
    got = b""
    try:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
    finally:
        s.close()
    return got


def head_of(resp):
    """The status and the headers (lower-case names) of a raw answer."""
    head = resp.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status_of(resp), headers


# the headers every answer of the lobby carries (lobby.security_headers)
SECURITY_HEADERS = ("referrer-policy", "cache-control", "content-security-policy",
                    "x-frame-options", "x-content-type-options")


def status_of(resp):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", resp)
    return int(m.group(1)) if m else None


def data_status(html):
    m = re.search(r'<main data-status="([^"]*)"', html)
    return m.group(1) if m else None


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **kw):
        return None


def fetch(url, data=None, cookie=None, headers=()):
    """(status, headers, body) of one request, redirects not followed, with
    a Cookie header as given (a browser's, or an attacker's)."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method="POST" if data is not None else "GET")
    if cookie:
        req.add_header("Cookie", cookie)
    for k, v in headers:
        req.add_header(k, v)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=20) as r:
            return r.status, r.headers, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode("utf-8", "replace")


def get_cookies(url):
    """A first visit: the cookies set (name: value), the Set-Cookie lines
    and the form's CSRF token."""
    status, headers, body = fetch(url)
    lines = headers.get_all("Set-Cookie") or []
    cookies = dict(line.split(";")[0].split("=", 1) for line in lines)
    m = re.search(r'name="csrf" value="([^"]+)"', body)
    return {"status": status, "cookies": cookies, "set": lines, "csrf": m and m.group(1)}


def post(url, data, cookie):
    status, headers, body = fetch(url, data, cookie)
    return status, body


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run(t, st, expect, Fail, import_lobby):
    def start():
        # its own application_name: its connections are counted apart
        p, base, log = t.start_app("lobby-hardening",
                                   dict(st["lobby_env"], PGAPPNAME="lobby-hardening"))
        st["h"] = (p, base, log)

    if not t.check("hardening_lobby_starts", start):
        return

    def again():
        """The hardening lobby, started again if a check killed it (the
        lobby that segfaulted: each finding fails on its own)."""
        p, base, log = st["h"]
        if p.poll() is not None:
            start()

    def alive(why):
        p, base, log = st["h"]
        time.sleep(0.3)
        expect(p.poll() is None, f"{why}: the lobby exited with {p.returncode}",
               open(log).read()[-3000:])
        status, _, _ = t.http("GET", base)
        expect(status == 200, f"{why}: then GET / answers {status}")

    # -- finding 1: one request killed the server ---------------------------------

    def malformed_chunked_survives():
        p, base, log = st["h"]
        head = (b"POST /i/itm_abc HTTP/1.1\r\nHost: lobby\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
        bodies = [
            b"5\r\nemailXX8000\r\n" + b"a" * 100,        # bad terminator, short chunk
            b"5\r\nemailXX\r\n100\r\nabc",
            b"5\r\nemail\r\n100\r\nabc",
            b"zz\r\nemail\r\n0\r\n\r\n",                  # not a chunk size
            b"-5\r\nemail\r\n0\r\n\r\n",
        ]
        for body in bodies:
            resp = raw(base, head + body)
            code = status_of(resp)
            expect(code in (None, 400, 413), f"{body[:16]!r}: answered {code}")
            alive(repr(body[:16]))

    t.check("malformed_chunked_survives", malformed_chunked_survives)

    # -- finding 2: chunked bodies bypassed the 16 KB limit ------------------------

    def chunked_body_limit():
        again()
        p, base, log = st["h"]
        before = rss_kb(p.pid)
        s = socket.create_connection(hostport(base), timeout=20)
        chunk = b"a" * 65536
        piece = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        sent = 0
        try:
            s.sendall(b"POST /g/itg_abc HTTP/1.1\r\nHost: lobby\r\nTransfer-Encoding: chunked\r\n"
                      b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
            for _ in range(512):                       # 32 MB
                s.sendall(piece)
                sent += len(chunk)
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass                                       # refused mid-way: good
        got = b""
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                got += c
        except OSError:
            pass
        s.close()
        grew = rss_kb(p.pid) - before
        code = status_of(got)
        expect(code in (None, 400, 413), f"a 32 MB chunked POST: {code} after {sent >> 20} MB")
        expect(code is not None or sent < 32 << 20,
               "the whole 32 MB was taken in and nothing answered")
        expect(grew < 16 * 1024, f"the lobby grew by {grew // 1024} MB on a 32 MB body")
        print(f"# chunked 32 MB POST: {code}, {sent >> 20} MB sent, RSS +{grew // 1024} MB",
              flush=True)
        alive("after the 32 MB body")

    t.check("chunked_body_limit", chunked_body_limit)

    # -- waitress's own answers: the headers of the lobby's pages ----------------

    def waitress_errors_headed():
        again()
        p, base, log = st["h"]
        # what the application's pages carry, from this lobby
        status, headers, _ = fetch(base)
        expect(status == 200, f"GET /: {status}")
        want = {k: headers.get(k) for k in SECURITY_HEADERS}
        expect(all(want.values()), f"the application's page lacks a header: {want}")
        expect(want["x-frame-options"] == "DENY" and want["x-content-type-options"] == "nosniff"
               and "frame-ancestors 'none'" in want["content-security-policy"],
               f"the application's headers: {want}")
        big = b"GET / HTTP/1.1\r\nHost: lobby\r\nX-Big: "
        post = (b"POST /i/itm_abc HTTP/1.1\r\nHost: lobby\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n")
        # each sent whole in one piece that waitress reads to its end before
        # it answers (an unread byte at its close would reset the connection
        # and drop the answer)
        cases = [
            ("a header line without a colon", 400,
             b"GET / HTTP/1.1\r\nHost: lobby\r\nNo colon here\r\n\r\n"),
            ("a bad chunk size", 400,
             post + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nemail\r\n0\r\n\r\n"),
            ("a bad chunk terminator", 400,
             post + b"Transfer-Encoding: chunked\r\n\r\n5\r\nemailXX0\r\n\r\n"),
            ("Content-Length 100000", 413, post + b"Content-Length: 100000\r\n\r\n"),
            ("a 16 KB chunked body", 413,
             post + b"Transfer-Encoding: chunked\r\n\r\n8000\r\n" + b"a" * (16384 - 6)),
            ("16 KB of headers", 431, big.ljust(16384, b"a")),
            ("Transfer-Encoding: gzip", 501,
             post + b"Transfer-Encoding: gzip\r\n\r\n"),
        ]
        seen = []
        for what, code, data in cases:
            resp = raw(base, data, half_close=False)
            got, h = head_of(resp)
            seen.append(got)
            expect(got == code, f"{what}: answered {got}, expected {code}", resp[:600])
            expect(b"generated by waitress" in resp, f"{what}: not waitress's own answer")
            for k in SECURITY_HEADERS:
                expect(h.get(k) == want[k], f"{what} ({got}): {k}: {h.get(k)!r},"
                       f" the lobby's pages send {want[k]!r}")
        print(f"# waitress's own answers {seen}: the lobby's {len(SECURITY_HEADERS)} headers",
              flush=True)
        alive("after waitress's own answers")

    t.check("waitress_errors_headed", waitress_errors_headed)

    def csrf_before_form():
        # in the process, as a platform imports it: a body that counts its reads
        lobby = import_lobby()

        class Counting(io.BytesIO):
            reads = 0

            def read(self, *a):
                Counting.reads += 1
                return super().read(*a)

            def readline(self, *a):
                Counting.reads += 1
                return super().readline(*a)

        class NoDB:
            def one(self, *a):
                raise AssertionError("the database was called")

        app = lobby.create_app(NoDB(), "k" * 32)
        body = b"email=a%40b.example&first_name=A&last_name=B&csrf=x"
        for path in ("/i/itm_" + "A" * 48, "/g/itg_" + "A" * 48):
            Counting.reads = 0
            client = app.test_client()           # no cookie jar from the last one
            r = client.post(path, input_stream=Counting(body), content_length=len(body),
                            content_type="application/x-www-form-urlencoded")
            text = r.get_data(as_text=True)
            expect(r.status_code == 400 and 'data-status="csrf"' in text,
                   f"{path[:3]}: {r.status_code}")
            expect(Counting.reads == 0, f"{path[:3]}: the body was read ({Counting.reads} reads)"
                   " before the CSRF check refused it")

    t.check("csrf_before_form", csrf_before_form)

    # -- finding 3: a non-ASCII cookie or field was a 500 -------------------------

    def non_ascii_no_500():
        again()
        p, base, log = st["h"]
        iid, token, url = t.invite("nora.nonascii@outside.example")
        link = base + "i/" + token
        path = "/i/" + token
        # a device cookie whose signature is not ASCII, on a GET
        for cookie in ("itm_device=abc.\u00e9t\u00e9", "itm_device=\u00e9.x",
                       "itm_csrf=" + "\u00e9" * 43):
            resp = raw(base, f"GET {path} HTTP/1.1\r\nHost: lobby\r\nCookie: {cookie}\r\n"
                             "Connection: close\r\n\r\n".encode())
            code = status_of(resp)
            expect(code == 200, f"GET with {cookie[:14]!r}...: {code}")
        # a form field that is not ASCII, with the cookies of a GET
        jar = http.cookiejar.CookieJar()
        status, _, page = t.http("GET", link, jar=jar)
        expect(status == 200, f"GET: {status}")
        for fields in ({"email": "nora.nonascii@outside.example", "csrf": "\u00e9t\u00e9"},
                       {"email": "n\u00f6ra@outside.example", "csrf": "\u00e9"}):
            status, _, body = t.http("POST", link, fields, jar=jar)
            expect(status == 400 and data_status(body) == "csrf",
                   f"POST csrf={fields['csrf']!r}: {status} {data_status(body)}")
        # a result whose signature is not ASCII
        status, _, body = t.http("GET", base + "welcome?itm_result=e30." +
                                 urllib.parse.quote("\u00e9t\u00e9"))
        expect(status == 404, f"/welcome with a non-ASCII signature: {status}")
        expect(t.invite_state(iid) == ("pending", 0, 0), f"invite: {t.invite_state(iid)}")

    t.check("non_ascii_no_500", non_ascii_no_500)

    # -- finding 5: a cookie planted from a sibling subdomain took the device -------

    def secure_start():
        p, base, log = t.start_app("lobby-secure", dict(st["lobby_env"], LOBBY_COOKIE_SECURE="1"))
        st["sec"] = (p, base, log)

    def host_cookies():
        if "sec" not in st:
            secure_start()
        p, base, log = st["sec"]
        iid, token, url = t.invite("hana.host@outside.example")
        link = base + "i/" + token
        victim = get_cookies(link)
        expect(set(victim["cookies"]) == {"__Host-itm_device", "__Host-itm_csrf"},
               f"cookies behind HTTPS: {sorted(victim['cookies'])}")
        for line in victim["set"]:
            attrs = [a.strip().lower() for a in line.split(";")[1:]]
            expect("secure" in attrs and "path=/" in attrs and "httponly" in attrs
                   and not any(a.startswith("domain=") for a in attrs),
                   f"Set-Cookie: {line.split('=')[0]}: {attrs}")
        # the attacker's own device cookie, planted from a sibling subdomain
        # under the old name with a longer path: sent first, and ignored
        attacker = get_cookies(link)
        planted = "itm_device=" + attacker["cookies"]["__Host-itm_device"]
        jar = "; ".join([planted] + [f"{k}={v}" for k, v in victim["cookies"].items()])
        status, body = post(link, {"email": "hana.host@outside.example",
                                   "csrf": victim["csrf"]}, jar)
        expect(status == 303, f"the victim's POST: {status} {data_status(body)}")
        dev = t.one("SELECT device_id FROM invitetomedia.redemptions WHERE invite_id = %s"
                    " AND status = 'ok'", (iid,))[0]
        want = victim["cookies"]["__Host-itm_device"].split(".")[0]
        expect(dev == want, "the use was recorded under another device than the victim's")

    t.check("host_cookies", host_cookies)

    def duplicate_cookies_refused():
        again()
        if "sec" not in st:
            secure_start()
        for (p, base, log), name in ((st["h"], "itm_device"), (st["sec"], "__Host-itm_device")):
            iid, token, url = t.invite("dora.dup@outside.example")
            link = base + "i/" + token
            one, two = get_cookies(link), get_cookies(link)
            csrf_name = name.replace("itm_device", "itm_csrf")
            jar = (f"{name}={two['cookies'][name]}; {name}={one['cookies'][name]}; "
                   f"{csrf_name}={one['cookies'][csrf_name]}")
            status, body = post(link, {"email": "dora.dup@outside.example",
                                       "csrf": one["csrf"]}, jar)
            expect(status == 400 and data_status(body) == "cookie_conflict",
                   f"two {name} cookies: {status} {data_status(body)}")
            expect(t.invite_state(iid) == ("pending", 0, 0), f"{name}: invite {t.invite_state(iid)}")
            # the same for two CSRF cookies
            jar = (f"{name}={one['cookies'][name]}; {csrf_name}={two['cookies'][csrf_name]}; "
                   f"{csrf_name}={one['cookies'][csrf_name]}")
            status, body = post(link, {"email": "dora.dup@outside.example",
                                       "csrf": one["csrf"]}, jar)
            expect(status == 400 and data_status(body) == "cookie_conflict",
                   f"two {csrf_name} cookies: {status} {data_status(body)}")
            expect(t.invite_state(iid) == ("pending", 0, 0), f"{name}: invite {t.invite_state(iid)}")

    t.check("duplicate_cookies_refused", duplicate_cookies_refused)

    # -- finding 4: connections without bound, and 503s after a restart ------------

    def lobby_connections():
        return t.one("SELECT count(*) FROM pg_stat_activity"
                     " WHERE application_name = 'lobby-hardening'")[0]

    def restart_database(down=0.0, while_down=None):
        """Restarts the cluster (fast: its sessions are ended), after DOWN
        seconds stopped, and reconnects the test's own session whatever the
        restart did.  WHILE_DOWN, if given, is called once the server has
        stopped (its time counts in DOWN)."""
        # pg_ctl on this cluster's data directory (pg_ctlcluster goes by
        # the cluster's name and pid file, which another pg_virtualenv's
        # 15/regress may share)
        version = t.one("SHOW server_version_num")[0][:2]
        datadir = t.one("SHOW data_directory")[0]
        config = t.one("SHOW config_file")[0]
        # the pg_ctl beside the running server's binary (a backend of this
        # session, same user: /proc tells its executable), else Debian's
        pg_ctl = f"/usr/lib/postgresql/{version}/bin/pg_ctl"
        try:
            exe = os.readlink(f"/proc/{t.one('SELECT pg_backend_pid()')[0]}/exe")
            if os.path.exists(os.path.join(os.path.dirname(exe), "pg_ctl")):
                pg_ctl = os.path.join(os.path.dirname(exe), "pg_ctl")
        except OSError:
            pass
        t.db.close()

        def ctl(*args):
            return subprocess.run([pg_ctl, "-D", datadir, "-w", "-t", "60"] + list(args),
                                  capture_output=True, text=True, stdin=subprocess.DEVNULL)

        logfile = os.path.join(t.work, "pg-restart.log")
        try:
            if not down:
                r = ctl("-l", logfile, "-m", "fast", "restart")
            else:
                r = ctl("-m", "fast", "stop")
                if r.returncode == 0:
                    stopped = time.time()
                    if while_down:
                        while_down()
                    time.sleep(max(0.0, down - (time.time() - stopped)))
                    # the server's options, as pg_ctlcluster gives them
                    r = ctl("-l", logfile, "-o", f"-c config_file={config}", "start")
        finally:
            # the next checks need the cluster's superuser connection
            for _ in range(100):
                try:
                    t.db = psycopg.connect("", autocommit=True)
                    break
                except psycopg.OperationalError:
                    time.sleep(0.2)
        expect(r.returncode == 0, f"pg_ctl: {r.returncode}", r.stdout + r.stderr)

    def pool_bounded():
        again()
        p, base, log = st["h"]
        iid, token, url = t.invite("paula.pool@outside.example")
        link = base + "i/" + token
        results, peak = [], [0]
        # the invites locked for 3 s: every request holds its connection
        locker = psycopg.connect("")
        locker.execute("LOCK TABLE invitetomedia.invites IN ACCESS EXCLUSIVE MODE")

        def one():
            try:
                status, _, _ = fetch(link)
            except Exception as e:
                status = type(e).__name__
            results.append(status)

        threads = [threading.Thread(target=one) for _ in range(40)]
        for th in threads:
            th.start()
        deadline = time.time() + 3
        while time.time() < deadline:
            peak[0] = max(peak[0], lobby_connections())
            time.sleep(0.1)
        locker.rollback()
        locker.close()
        for th in threads:
            th.join(60)
        counts = {x: results.count(x) for x in set(results)}
        print(f"# 40 concurrent GETs on a locked table: {counts}, at most {peak[0]}"
              " connections (LOBBY_POOL_SIZE 4)", flush=True)
        expect(peak[0] <= 4, f"the lobby opened {peak[0]} connections (its pool has 4)")
        expect(set(results) <= {200, 503}, f"answers {counts}")
        expect(results.count(200) >= 1, f"answers {counts}")

    t.check("pool_bounded", pool_bounded)

    def pool_after_restart():
        again()
        p, base, log = st["h"]
        iid, token, url = t.invite("rosa.restart@outside.example")
        link = base + "i/" + token
        for _ in range(4):                       # the pool holds connections
            fetch(link)
        expect(lobby_connections() >= 1, "the lobby holds no connection")
        restart_database()
        got = [fetch(link)[0] for _ in range(8)]
        expect(got == [200] * 8, f"after a restart: {got}")

    t.check("pool_after_restart", pool_after_restart)

    # -- finding 6: one secret for everything, results without an expiry ----------

    def keys_per_purpose():
        lobby = import_lobby()
        secret = os.urandom(24).hex()
        p, base, log = t.start_app("lobby-keys", dict(st["lobby_env"], LOBBY_SECRET=secret))
        try:
            iid, token, url = t.invite("kim.keys@outside.example")
            link = base + "i/" + token
            first = get_cookies(link)
            jar = "; ".join(f"{k}={v}" for k, v in first["cookies"].items())
            status, headers, body = fetch(link, {"email": "kim.keys@outside.example",
                                                 "csrf": first["csrf"]}, jar)
            expect(status == 303, f"the right email: {status} {data_status(body)}")
            signed = urllib.parse.parse_qs(
                urllib.parse.urlsplit(headers["Location"]).query)["itm_result"][0]
            # what the platform holds: the result key, derived from the secret
            key = lobby.result_key(secret)
            r = lobby.verify_result(key, signed, max_age=60)
            expect(r is not None and r["id"] == iid, f"the result does not verify: {r}")
            expect(0 < r["expires_at"] - r["issued_at"] <= 600,
                   f"the result's life: {r['issued_at']} to {r.get('expires_at')}")
            try:
                bad = lobby.verify_result(secret, signed)
            except ValueError:
                bad = None
            expect(bad is None, "the result verifies with LOBBY_SECRET itself")
            expect(lobby.verify_result(lobby.Signer(secret), signed) is not None,
                   "the lobby's Signer does not verify its result")
            out = subprocess.run([os.path.join(os.path.dirname(lobby.__file__), "serve"),
                                  "--result-key"], env=dict(os.environ, LOBBY_SECRET=secret),
                                 capture_output=True, text=True)
            expect(out.returncode == 0 and out.stdout.strip() == key,
                   f"serve --result-key: {out.returncode} {out.stdout.strip()[:8]}...")
            # with the result key, or the secret itself, a device cookie is
            # not made: the lobby answers with a cookie of its own
            rand = "A" * 43
            for k in (bytes.fromhex(key), key.encode(), secret.encode()):
                for msg in (b"device\0" + rand.encode(), rand.encode()):
                    sig = lobby._b64(hmac.new(k, msg, hashlib.sha256).digest())
                    cookie = f"itm_device={rand}.{sig}"
                    status, headers, body = fetch(link, cookie=cookie)
                    names = [c.split("=")[0] for c in headers.get_all("Set-Cookie") or []]
                    expect("itm_device" in names,
                           "a device cookie signed with what the platform holds is taken")
            # /welcome: an expired result is nothing
            now = int(time.time())
            old = dict(r, issued_at=now - 3600, expires_at=now - 3000)
            data = lobby._b64(json.dumps(old).encode())
            forged = data + "." + lobby._b64(hmac.new(bytes.fromhex(key), data.encode(),
                                                      hashlib.sha256).digest())
            expect(lobby.verify_result(key, forged) is None, "an expired result verifies")
            status, _, body = fetch(base + "welcome?itm_result=" + forged)
            expect(status == 404, f"/welcome with an expired result: {status} {data_status(body)}")
            status, _, body = fetch(base + "welcome?itm_result=" + signed)
            expect(status == 200, f"/welcome with the fresh result: {status}")
        finally:
            p.terminate()
            p.wait(timeout=15)

    t.check("keys_per_purpose", keys_per_purpose)

    # -- finding 7: nothing slowed a client trying many links -----------------------

    def throttle_429():
        p, base, log = t.start_app("lobby-throttle", dict(
            st["lobby_env"], LOBBY_TRUSTED_PROXIES="1", LOBBY_POST_PER_CLIENT="5/60",
            LOBBY_POST_PER_INVITE="4/60", LOBBY_POST_PER_GUEST_LINK="6/60"))
        try:
            def send(url, fields, xff, cookie=None):
                status, headers, body = fetch(url, fields, cookie,
                                              headers=[("X-Forwarded-For", xff)])
                return status, headers.get("Retry-After"), data_status(body)

            # one client (behind the proxy), many links; the addresses it
            # puts before its own in X-Forwarded-For change nothing
            got = [send(f"{base}g/itg_{'B' * 40}{i:08d}", {"email": "x@y.example"},
                        f"198.51.100.{i}, 203.0.113.7") for i in range(10)]
            codes = [g[0] for g in got]
            expect(codes[:5] == [400] * 5 and codes[5:] == [429] * 5, f"one client: {codes}")
            for status, retry, ds in got[5:]:
                expect(retry and retry.isdigit() and 0 < int(retry) <= 60,
                       f"429 with Retry-After {retry!r}")
                expect(ds == "too_many", f"429: data-status {ds}")
            # another client is not slowed by that one
            status, retry, ds = send(f"{base}g/itg_{'C' * 48}", {"email": "x@y.example"},
                                     "203.0.113.8")
            expect(status == 400, f"another client: {status}")
            # one invite link, many clients, each with a wrong email: no more
            # than the link's rate reaches the database
            iid, token, url = t.invite("tia.throttle@outside.example")
            link = base + "i/" + token
            codes = []
            for i in range(10):
                c = get_cookies(link)
                jar = "; ".join(f"{k}={v}" for k, v in c["cookies"].items())
                codes.append(send(link, {"email": f"wrong{i}@outside.example", "csrf": c["csrf"]},
                                  f"192.0.2.{i}", jar)[0])
            expect(codes[:4] == [200] * 4 and codes[4:] == [429] * 6, f"one link: {codes}")
            rows = t.invite_state(iid)
            expect(rows[2] <= 4, f"{rows[2]} attempts recorded for the link")
            print(f"# throttle: one client {[g[0] for g in got]}, one link {codes}", flush=True)
            # behind the trusted proxy, X-Forwarded-Proto: https is an HTTPS
            # request (__Host- cookies); straight to a lobby without one, not
            status, headers, _ = fetch(link, headers=[("X-Forwarded-Proto", "https"),
                                                      ("X-Forwarded-For", "192.0.2.99")])
            names = sorted(c.split("=")[0] for c in headers.get_all("Set-Cookie") or [])
            expect(names == ["__Host-itm_csrf", "__Host-itm_device"],
                   f"behind the proxy, HTTPS: cookies {names}")
            again()
            status, headers, _ = fetch(st["h"][1] + "i/" + token,
                                       headers=[("X-Forwarded-Proto", "https")])
            names = sorted(c.split("=")[0] for c in headers.get_all("Set-Cookie") or [])
            expect(names == ["itm_csrf", "itm_device"],
                   f"no trusted proxy, X-Forwarded-Proto believed: cookies {names}")
        finally:
            p.terminate()
            p.wait(timeout=15)

    t.check("throttle_429", throttle_429)

    def throttle_memory_bounded():
        lobby = import_lobby()
        th = lobby.Throttle(5, 60, entries=100)
        for i in range(20000):
            th.hit(f"client {i}")
        expect(len(th) <= 100, f"{len(th)} entries kept (at most 100)")
        # the most recent keep their count
        for _ in range(5):
            th.hit("client 19999")
        expect(th.hit("client 19999") > 0, "a recent client is no longer counted")

    t.check("throttle_memory_bounded", throttle_memory_bounded)

    # -- a client that goes silent in its headers: closed after LOBBY_TIMEOUT ------

    def silent_client_closed():
        p, base, log = t.start_app("lobby-timeout", dict(st["lobby_env"], LOBBY_TIMEOUT="2"))
        try:
            s = socket.create_connection(hostport(base), timeout=15)
            s.sendall(b"GET / HTTP/1.1\r\nHost: lobby\r\nX-Slow: ")
            started = time.time()
            try:
                got = s.recv(100)
            except socket.timeout:
                got = None
            took = time.time() - started
            s.close()
            expect(got == b"", f"after {took:.1f} s silent in its headers: {got!r}")
            expect(took < 8, f"closed after {took:.1f} s (LOBBY_TIMEOUT 2)")
            status, _, _ = fetch(base)
            expect(status == 200, f"then GET /: {status}")
        finally:
            p.terminate()
            p.wait(timeout=15)

    t.check("silent_client_closed", silent_client_closed)

    # -- a bounded load run: 2,000 requests from 50 clients ---------------------------

    def load_bounded():
        p, base, log = t.start_app("lobby-load", dict(
            st["lobby_env"], PGAPPNAME="lobby-load", LOBBY_TRUSTED_PROXIES="1"))
        try:
            iid, itoken, iurl = t.invite("lena.load@outside.example")
            gid, gtoken, gurl = t.guest_link("Load", media="talks")
            ipath, gpath = "/i/" + itoken, "/g/" + gtoken
            host, port = hostport(base)
            statuses, joined, errors = [], set(), []
            lock = threading.Lock()
            peak = [0]
            done = threading.Event()

            def sample():
                while not done.is_set():
                    n = t2.execute("SELECT count(*) FROM pg_stat_activity"
                                   " WHERE application_name = 'lobby-load'").fetchone()[0]
                    peak[0] = max(peak[0], n)
                    time.sleep(0.05)

            def client(n):
                import http.client
                addr = f"10.{n // 250}.{n % 250}.1"
                conn = http.client.HTTPConnection(host, port, timeout=30)

                def req(method, path, body=None, cookie=None):
                    h = {"X-Forwarded-For": addr}
                    if cookie:
                        h["Cookie"] = cookie
                    if body is not None:
                        h["Content-Type"] = "application/x-www-form-urlencoded"
                        body = urllib.parse.urlencode(body)
                    try:
                        conn.request(method, path, body=body, headers=h)
                        r = conn.getresponse()
                        data = r.read().decode("utf-8", "replace")
                    except Exception as e:
                        conn.close()
                        return type(e).__name__, None, ""
                    return r.status, r, data

                status, r, page = req("GET", gpath)
                with lock:
                    statuses.append(status)
                if status != 200:
                    return
                cookie = "; ".join(c.split(";")[0] for c in r.headers.get_all("Set-Cookie") or [])
                csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
                for i in range(39):
                    if i % 3 == 2:
                        status, r, _ = req("POST", gpath, {
                            "email": f"load{n}@outside.example", "first_name": "Lo",
                            "last_name": f"Ad{n}", "csrf": csrf}, cookie)
                        if status == 303:
                            with lock:
                                joined.add(n)
                    else:
                        status, r, _ = req("GET", ipath)
                    with lock:
                        statuses.append(status)
                conn.close()

            t2 = psycopg.connect("", autocommit=True)
            sampler = threading.Thread(target=sample)
            sampler.start()
            before = rss_kb(p.pid)
            started = time.time()
            threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(300)
            took = time.time() - started
            after = rss_kb(p.pid)
            done.set()
            sampler.join()
            t2.close()
            counts = {x: statuses.count(x) for x in sorted(set(statuses), key=str)}
            oks = t.one("SELECT count(*) FROM invitetomedia.guest_link_joins"
                        " WHERE guest_link_id = %s AND status = 'ok'", (gid,))[0]
            print(f"# load: {len(statuses)} requests from 50 clients in {took:.1f} s"
                  f" ({len(statuses) / took:.0f}/s), answers {counts}, at most {peak[0]}"
                  f" database connections (pool 4), RSS {before // 1024} -> {after // 1024} MB,"
                  f" {oks} guests joined", flush=True)
            expect(len(statuses) == 2000, f"{len(statuses)} requests answered of 2000")
            bad = {k: v for k, v in counts.items() if k not in (200, 303, 429, 503)}
            expect(not bad, f"answers beyond 200, 303, 429, 503: {bad}")
            expect(peak[0] <= 4, f"{peak[0]} connections (pool 4)")
            expect(after - before < 32 * 1024, f"RSS grew by {(after - before) // 1024} MB")
            # no use lost or made up: one ok join per client that was admitted
            expect(oks == len(joined), f"{oks} ok joins, {len(joined)} clients admitted")
            expect(p.poll() is None, "the lobby exited")
            st["load"] = (len(statuses), took, counts, peak[0], before, after)
        finally:
            p.terminate()
            p.wait(timeout=15)

    t.check("load_bounded", load_bounded)

    # -- a load run with a database restart in its middle ---------------------------

    def load_restart():
        """Clients that each use their own single-use invites one after
        another (a GET, then POSTs with the right email until an answer
        other than 503 or 429) and join one guest link every third invite,
        while the database restarts; each goes on until it has been
        admitted three times after the restart.  The database is down for
        3 s: requests wait up to LOBBY_POOL_TIMEOUT (2 s) for a connection,
        then get 503."""
        nclients, per = 24, 40
        p, base, log = t.start_app("lobby-restart", dict(
            st["lobby_env"], PGAPPNAME="lobby-restart", LOBBY_TRUSTED_PROXIES="1",
            # the restart is what is tested here, not the throttle
            LOBBY_POST_PER_CLIENT="100000/60", LOBBY_POST_PER_INVITE="1000/60",
            LOBBY_POST_PER_GUEST_LINK="100000/60",
            # a request waits 2 s for a connection: some give up while the
            # database is down (3 s), and say "try again"
            LOBBY_POOL_TIMEOUT="2"))
        try:
            rows = t.sql(
                "SELECT c.invite_id, c.token, 'rr' || g || '@outside.example'"
                " FROM generate_series(1, %s) g, LATERAL invitetomedia.invite_create("
                " 'launch', 'olivia', 'rr' || g || '@outside.example', 'Ria', 'Restart',"
                " 'speaker') c ORDER BY g", (nclients * per,))
            t.tokens.extend(r[1] for r in rows)
            mine = [rows[n * per:(n + 1) * per] for n in range(nclients)]
            # a media entry of its own: one may have 3 usable guest links
            t.sql("INSERT INTO invitetomedia.media (media_id, media_type, title, owner_id)"
                  " VALUES ('restart', 'webcast', 'Restart webcast', 'olivia')")
            gid, gtoken, gurl = t.guest_link("Restart", media="restart")
            host, port = hostport(base)
            phase = ["before"]           # before, during, after the restart
            answers = []                 # (phase, status) of every request
            invite_results = {}          # invite_id: [(client, result), ...]
            guest_results = []           # (client, result)
            devices = {}                 # client: its device id
            errors = []
            used = [0]
            lock = threading.Lock()

            def client(n):
                import http.client
                conn = http.client.HTTPConnection(host, port, timeout=30)
                addr = f"10.7.{n}.1"
                cookie, after = None, 0

                def req(method, path, body=None):
                    nonlocal cookie
                    h = {"X-Forwarded-For": addr}
                    if cookie:
                        h["Cookie"] = cookie
                    if body is not None:
                        h["Content-Type"] = "application/x-www-form-urlencoded"
                        body = urllib.parse.urlencode(body)
                    sent_in = phase[0]
                    try:
                        conn.request(method, path, body=body, headers=h)
                        r = conn.getresponse()
                        text = r.read().decode("utf-8", "replace")
                    except Exception as e:
                        conn.close()
                        with lock:
                            answers.append((sent_in, type(e).__name__))
                        return type(e).__name__, None, ""
                    with lock:
                        answers.append((sent_in, r.status))
                    if cookie is None and r.headers.get_all("Set-Cookie"):
                        cookie = "; ".join(c.split(";")[0] for c in r.headers.get_all("Set-Cookie"))
                        devices[n] = re.search(r"itm_device=([^.;]+)\.", cookie).group(1)
                    return r.status, r, text

                def until_admitted(path, fields, what):
                    """POSTs until an answer other than 503 or 429: the
                    result of the 303, or None (an error noted)."""
                    deadline = time.time() + 90
                    while True:
                        status, r, text = req("GET", path)
                        if status == 200:
                            break
                        if status not in (503, 429) or time.time() > deadline:
                            errors.append(f"client {n}: {what}: GET {status} {data_status(text)}")
                            return None
                        time.sleep(0.1)
                    csrf = re.search(r'name="csrf" value="([^"]+)"', text).group(1)
                    while True:
                        status, r, text = req("POST", path, dict(fields, csrf=csrf))
                        if status == 303:
                            signed = urllib.parse.parse_qs(urllib.parse.urlsplit(
                                r.headers["Location"]).query)["itm_result"][0]
                            data = signed.split(".")[0]
                            return json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
                        if status not in (503, 429) or time.time() > deadline:
                            errors.append(f"client {n}: {what}: POST {status} {data_status(text)}")
                            return None
                        time.sleep(0.1)

                for i, (iid, token, email) in enumerate(mine[n]):
                    result = until_admitted("/i/" + token, {"email": email}, f"invite {iid}")
                    if result is None:
                        return
                    with lock:
                        invite_results.setdefault(iid, []).append((n, result))
                        used[0] += 1
                    if i % 3 == 1:
                        result = until_admitted("/g/" + gtoken, {
                            "email": f"rr{n}@outside.example", "first_name": "Ria",
                            "last_name": f"Restart{n}"}, "the guest link")
                        if result is None:
                            return
                        with lock:
                            guest_results.append((n, result))
                    if phase[0] == "after":
                        after += 1
                        if after >= 3:
                            break
                else:
                    errors.append(f"client {n}: used all {per} invites before the restart ended")
                conn.close()

            # a page asked for while the server is known to be down: the
            # lobby waits LOBBY_POOL_TIMEOUT for a connection, then 503 (the
            # clients' requests may or may not fall into the 3 s)
            probe_iid, probe_token, _ = t.invite("ria.probe@outside.example")
            probe = []

            def ask_while_down():
                probe.append(fetch(base + "i/" + probe_token)[0])

            threads = [threading.Thread(target=client, args=(n,)) for n in range(nclients)]
            for th in threads:
                th.start()
            # the restart once the clients are well under way
            deadline = time.time() + 60
            while used[0] < 2 * nclients and time.time() < deadline and not errors:
                time.sleep(0.05)
            before_restart = used[0]
            phase[0] = "during"
            started = time.time()
            try:
                restart_database(down=3, while_down=ask_while_down)
            finally:
                took = time.time() - started
                phase[0] = "after"
                for th in threads:
                    th.join(240)
            expect(not any(th.is_alive() for th in threads), "a client still runs after 4 minutes")

            by_phase = {}
            for ph, status in answers:
                by_phase.setdefault(ph, {}).setdefault(status, 0)
                by_phase[ph][status] += 1
            print(f"# load and restart: {len(answers)} requests from {nclients} clients,"
                  f" {before_restart} invites used before the restart ({took:.1f} s); answers"
                  f" {by_phase}; {len(invite_results)} invites used,"
                  f" {sum(1 for v in invite_results.values() if v[0][1]['status'] == 'rejoin')}"
                  f" answered rejoin (used by an answer that was lost), {len(guest_results)} guest"
                  " admissions", flush=True)
            expect(not errors, f"{len(errors)} clients failed: {errors[0] if errors else ''}",
                   "\n".join(errors[:20]))
            bad = [(ph, s) for ph, s in answers if s not in (200, 303, 429, 503)]
            expect(not bad, f"answers beyond 200, 303, 429, 503: {bad[:10]}")
            expect(probe == [503], f"a page asked for while the database was down: {probe}")
            text = open(log).read()
            expect("Traceback" not in text and "unexpected error" not in text,
                   "an unexpected error in the log", text[-3000:])

            # every use the lobby answered is in the database once, by the
            # client's device; no single-use invite used twice; no use
            # recorded that no client was answered for
            ids = [r[0] for r in rows]
            ok_rows = {}
            for iid, device in t.sql("SELECT invite_id, device_id FROM invitetomedia.redemptions"
                                     " WHERE invite_id = ANY(%s) AND status = 'ok'", (ids,)):
                ok_rows.setdefault(iid, []).append(device)
            uses = dict(t.sql("SELECT invite_id, use_count FROM invitetomedia.invite_status"
                              " WHERE invite_id = ANY(%s)", (ids,)))
            twice = {i: n for i, n in uses.items() if n > 1}
            expect(not twice, f"single-use invites used more than once: {twice}")
            for iid, got in invite_results.items():
                n, result = got[0]
                expect(len(got) == 1, f"invite {iid} admitted {len(got)} times")
                expect(result["status"] in ("ok", "rejoin") and result["id"] == iid,
                       f"invite {iid}: result {result}")
                expect(ok_rows.get(iid) == [devices[n]],
                       f"invite {iid}, answered {result['status']}: ok records {ok_rows.get(iid)},"
                       f" the client's device {devices[n]}")
                expect(uses.get(iid) == 1, f"invite {iid}: use_count {uses.get(iid)}")
            phantom = sorted(set(ok_rows) - set(invite_results))
            expect(not phantom, f"uses recorded that no client was admitted for: {phantom}")
            unused = [i for i in ids if i not in invite_results and uses.get(i)]
            expect(not unused, f"invites no client got to, used: {unused}")
            # the guest link: one ok join per device, for every admitted client
            joins = {}
            for device, status in t.sql("SELECT device_id, status FROM invitetomedia.guest_link_joins"
                                        " WHERE guest_link_id = %s", (gid,)):
                joins.setdefault(device, []).append(status)
            admitted = {n for n, _ in guest_results}
            oks = {n: joins.get(devices[n], []).count("ok") for n in admitted}
            expect(all(v == 1 for v in oks.values()), f"ok joins per client: {oks}")
            expect(sum(s.count("ok") for s in joins.values()) == len(admitted),
                   f"{sum(s.count('ok') for s in joins.values())} ok joins recorded,"
                   f" {len(admitted)} clients admitted")
            answered_ok = [n for n, r in guest_results if r["status"] == "ok"]
            expect(len(answered_ok) == len(set(answered_ok)),
                   "a client was answered ok twice on the guest link")

            # afterwards: normal answers, a use that works, the pool's bound
            iid, token, url = t.invite("ria.after@outside.example")
            got = [fetch(base + "i/" + token)[0] for _ in range(8)]
            expect(got == [200] * 8, f"GETs after the load: {got}")
            c = get_cookies(base + "i/" + token)
            jar = "; ".join(f"{k}={v}" for k, v in c["cookies"].items())
            status, headers, body = fetch(base + "i/" + token, {
                "email": "ria.after@outside.example", "csrf": c["csrf"]}, jar)
            expect(status == 303, f"a use after the load: {status} {data_status(body)}")
            expect(t.invite_state(iid)[:2] == ("exhausted", 1), f"invite {t.invite_state(iid)}")
            n = t.one("SELECT count(*) FROM pg_stat_activity"
                      " WHERE application_name = 'lobby-restart'")[0]
            expect(n <= 4, f"{n} connections (pool 4)")
            expect(p.poll() is None, "the lobby exited")
        finally:
            p.terminate()
            p.wait(timeout=15)

    t.check("load_restart", load_restart)

    def stop():
        again()
        p, base, log = st["h"]
        p.terminate()
        expect(p.wait(timeout=15) == 0, f"status {p.returncode} after SIGTERM")
        text = open(log).read()
        expect("Traceback" not in text, "a traceback in the log", text[-3000:])
        if "sec" in st:
            p, base, log = st["sec"]
            p.terminate()
            expect(p.wait(timeout=15) == 0, f"the secure lobby: status {p.returncode} after SIGTERM")

    t.check("hardening_lobby_stops", stop)
