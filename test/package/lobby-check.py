#!/usr/bin/python3
"""lobby-check.py BASE INVITE_ID TOKEN SECRET_FILE DEVICE_FILE: what the
package test asks of the installed lobby (invitetomedia-lobby.service,
started by test/package/run.sh with the unit's command line and
environment), over HTTP as the TLS proxy of lobby.conf's defaults would
send it (X-Forwarded-For, X-Forwarded-Proto: https).

BASE is the lobby's URL; INVITE_ID and TOKEN an unused invite for
lina.lobby@outside.example; SECRET_FILE the secret the package made
(/etc/invitetomedia/lobby.secret); DEVICE_FILE where the device id the lobby
issued is written, for test/package/session.sh to find in the database.

Prints one line per check, "name ... ok" or "name ... FAILED (why)";
exits non-zero if a check failed.  Run as root (it reads the secret).
"""

import base64
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import urllib.parse
import http.client

EMAIL = "lina.lobby@outside.example"
PROXY = {"X-Forwarded-For": "203.0.113.50", "X-Forwarded-Proto": "https"}
# the headers of every answer (README, "The lobby", What it guarantees)
HEADERS = {
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
}
# the result key: HMAC-SHA256(secret, label), as the README states it
LABEL = b"invitetomedia-lobby v1 key: result"
SERVE = "/usr/share/invitetomedia-lobby/serve"

failed = 0


class Fail(Exception):
    pass


def expect(cond, why):
    if not cond:
        raise Fail(why)


def check(name, fn):
    global failed
    try:
        fn()
    except Exception as e:
        failed = 1
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"{name} ... FAILED ({why})", flush=True)
        return
    print(f"{name} ... ok", flush=True)


def main():
    base, invite_id, token, secret_file, device_file = sys.argv[1:6]
    invite_id = int(invite_id)
    u = urllib.parse.urlsplit(base)
    host, port = u.hostname, u.port
    path = "/i/" + token
    st = {}

    def request(method, target, fields=None, cookie=None, headers=None):
        conn = http.client.HTTPConnection(host, port, timeout=20)
        h = dict(PROXY, **(headers or {}))
        body = None
        if fields is not None:
            body = urllib.parse.urlencode(fields)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        if cookie:
            h["Cookie"] = cookie
        try:
            conn.request(method, target, body=body, headers=h)
            r = conn.getresponse()
            text = r.read().decode("utf-8", "replace")
            return r.status, r.headers, text
        finally:
            conn.close()

    def data_status(text):
        m = re.search(r'<main data-status="([^"]*)"', text)
        return m.group(1) if m else None

    def headers_ok(h, what):
        for k, v in HEADERS.items():
            expect(h.get(k) == v, f"{what}: {k}: {h.get(k)!r}")
        csp = h.get("content-security-policy") or ""
        expect("default-src 'none'" in csp and "frame-ancestors 'none'" in csp,
               f"{what}: Content-Security-Policy {csp!r}")

    def raw(data):
        s = socket.create_connection((host, port), timeout=20)
        got = b""
        try:
            s.sendall(data)
            while True:
                c = s.recv(65536)
                if not c:
                    break
                got += c
        finally:
            s.close()
        head = got.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", head[0])
        h = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            h[k.strip().lower()] = v.strip()
        return (int(m.group(1)) if m else None), h

    # -- the link's page -------------------------------------------------------

    def link_page():
        status, h, text = request("GET", path)
        expect(status == 200, f"GET /i/<token>: {status}")
        expect(data_status(text) == "form", f"data-status {data_status(text)}")
        expect("Spring launch webcast" in text, "the media's title is not shown")
        expect(EMAIL not in text, "the page shows the invited email")
        headers_ok(h, "GET /i/<token>")
        # behind the proxy, over HTTPS: __Host- cookies (lobby.conf's
        # LOBBY_COOKIE_SECURE=1 and LOBBY_TRUSTED_PROXIES=1)
        lines = h.get_all("Set-Cookie") or []
        names = sorted(x.split("=", 1)[0] for x in lines)
        expect(names == ["__Host-itm_csrf", "__Host-itm_device"], f"cookies {names}")
        for line in lines:
            attrs = [a.strip().lower() for a in line.split(";")[1:]]
            expect("secure" in attrs and "httponly" in attrs, f"Set-Cookie {attrs}")
        st["cookie"] = "; ".join(x.split(";")[0] for x in lines)
        st["device"] = re.search(r"__Host-itm_device=([^.;]+)\.", st["cookie"]).group(1)
        st["csrf"] = re.search(r'name="csrf" value="([^"]+)"', text).group(1)

    check("lobby_link_page", link_page)
    if "csrf" not in st:
        return 1

    # -- bad input: refused, nothing used ----------------------------------------

    def refuses_bad_input():
        cookie, csrf = st["cookie"], st["csrf"]
        # no CSRF cookie, no token
        status, h, text = request("POST", path, {"email": EMAIL})
        expect(status == 400 and data_status(text) == "csrf",
               f"POST without CSRF: {status} {data_status(text)}")
        # the cookies, a forged token
        status, h, text = request("POST", path, {"email": EMAIL, "csrf": "x" + csrf[1:]}, cookie)
        expect(status == 400 and data_status(text) == "csrf",
               f"POST with a forged token: {status} {data_status(text)}")
        # a NUL in the email
        status, h, text = request("POST", path, {"email": EMAIL + "\0", "csrf": csrf}, cookie)
        expect(status == 400 and data_status(text) == "invalid",
               f"POST with a NUL: {status} {data_status(text)}")
        # a wrong email: asked again (and counted by the database)
        status, h, text = request("POST", path, {"email": "not.lina@outside.example",
                                                 "csrf": csrf}, cookie)
        expect(status == 200 and data_status(text) == "email_mismatch",
               f"a wrong email: {status} {data_status(text)}")
        # a malformed token, an unknown path
        status, h, text = request("GET", "/i/itm_" + "%00" * 4)
        expect(status == 404 and data_status(text) == "not_found",
               f"a malformed token: {status} {data_status(text)}")
        status, h, text = request("GET", "/no/such/page")
        expect(status == 404, f"an unknown path: {status}")
        headers_ok(h, "404")
        # waitress's own answers: malformed HTTP, a body over 16 KB
        status, h = raw(b"GET / HTTP/1.1\r\nHost: lobby\r\nNo colon here\r\n\r\n")
        expect(status == 400, f"malformed HTTP: {status}")
        headers_ok(h, "malformed HTTP (400)")
        status, h = raw(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: lobby\r\n"
                        b"Content-Type: application/x-www-form-urlencoded\r\n"
                        b"Content-Length: 100000\r\n\r\n")
        expect(status == 413, f"a 100000-byte body: {status}")
        headers_ok(h, "a body over the limit (413)")

    check("lobby_refuses_bad_input", refuses_bad_input)

    # -- the right email: admitted, with a result the platform can verify ----------

    def admits():
        with open(secret_file, "rb") as f:
            secret = f.read().strip()
        key = hmac.new(secret, LABEL, hashlib.sha256).digest()
        status, h, text = request("POST", path, {"email": EMAIL, "csrf": st["csrf"]}, st["cookie"])
        expect(status == 303, f"the right email: {status} {data_status(text)}")
        location = h["Location"]
        signed = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["itm_result"][0]
        data, _, sig = signed.partition(".")
        good = base64.urlsafe_b64encode(
            hmac.new(key, data.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
        expect(hmac.compare_digest(good, sig),
               "the result does not verify with the key derived from the installed secret")
        result = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
        expect(result["status"] == "ok" and result["id"] == invite_id
               and result["user_id"] == EMAIL, f"the result: {result}")
        with open(device_file + ".tmp", "w") as f:
            f.write(st["device"] + "\n")
        os.rename(device_file + ".tmp", device_file)
        status, h, text = request("GET", urllib.parse.urlsplit(location).path + "?" +
                                  urllib.parse.urlsplit(location).query)
        expect(status == 200 and data_status(text) == "ok",
               f"the welcome page: {status} {data_status(text)}")
        # the link is used: another device is refused
        status, h, text = request("GET", path)
        expect(status == 200 and data_status(text) == "exhausted",
               f"the used link: {status} {data_status(text)}")
        # the key an admin gives the platform (README.Debian)
        out = subprocess.run([SERVE, "--result-key"], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", "LOBBY_SECRET_FILE": secret_file})
        expect(out.returncode == 0 and out.stdout.strip() == key.hex(),
               f"serve --result-key: status {out.returncode}, {out.stdout.strip()[:8]}..."
               f" {out.stderr.strip()[-200:]}")

    check("lobby_admits", admits)
    return failed


if __name__ == "__main__":
    sys.exit(main())
