"""invitetomedia's reference lobby: the invitee's side of a link.

A Flask application (Debian's python3-flask, python3-psycopg and
python3-psycopg-pool) that a platform runs as it is (examples/lobby/serve,
on python3-waitress) or copies into its own web stack.  It calls three of the extension's functions and nothing else:

    GET  /i/<token>   invite_check       the media, the role, the expiry and a
                                         form for the email (never consumes)
    POST /i/<token>   invite_consume     with a device id this app issued
                                         (and invite_check, for the title and
                                         to tell a lockout at once)
    GET  /g/<token>   -                  the guest form (email and names)
    POST /g/<token>   guest_link_join

/i/itg_... is sent on to /g/itg_... (308): settings.link_base_url is one
for both kinds of link.  Every page's <main> carries
data-status="<status>": the status the database returned, "form" for a
usable link's form, "ok" or "rejoin" after admission; the lobby's own are
"csrf", "invalid" (what was typed), "cookie_conflict" (two cookies of one
name: 400), "too_many" (the POST throttle: 429 with Retry-After),
"unavailable" (a database error, or no free connection: 503), "error",
"home", and "not_found", "method_not_allowed", "too_large", "bad_request"
for HTTP errors.

Many sites (create_app(sites=...), serve's LOBBY_SITES; a 2.0 database):
each request's site comes from its Host header ("host": site_hosts, the name
lower-cased, without port or trailing dot) or from a /s/<site_id>/ path
prefix ("path"), looked up with invitetomedia.lobby_site_for_host or
invitetomedia.lobby_site, which also name the role the lobby acts as for
the site's tenant (tenant_roles.lobby).  Every call then runs in its own
transaction after SET LOCAL ROLE to that role, and names the site:
invite_check_at, invite_consume_at, guest_link_join_at.  A host or site
that names no site, or a site whose tenant has no lobby role, is the
not_found page (404).  Without sites, the lobby calls the 1.x functions, as
its role, on the role's default site.

An admission (ok, rejoin) ends in a redirect to the platform with a result
signed with the result key derived from the lobby's secret, good for
RESULT_TTL seconds; with many sites it names the site and the tenant
(site_id, tenant_id).  An invite's result names the user that
invite_consume returned.  A guest link's names no user: a guest link is
not a login, so the result carries the join record's id and what the guest
typed, as claims ("email_claimed"), never a user_id.
"""

import base64
import collections
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from datetime import timezone
from urllib.parse import urlsplit

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql as pg_sql
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from flask import Flask, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

log = logging.getLogger("lobby")

# What a token may look like before the database is asked: the API decides
# (prefix, length, alphabet, checksum), this only keeps out what a query
# parameter cannot carry (NUL) and megabytes of junk.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,128}")
INVITE_PREFIX = "itm_"
GUEST_PREFIX = "itg_"

# a site id (sites.site_id's CHECK), and a host name as the Host header
# brings it: a DNS name or an IP literal, with an optional port
SITE_SHAPE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
HOST_SHAPE = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::[0-9]{0,5})?")
SITE_MODES = ("host", "path")
# where the path prefix's site id is left for the application (PathSites)
SITE_ENVIRON = "invitetomedia.site_id"

# what a request may carry: the forms are an email and two names.  serve
# has waitress refuse more before the application runs (413), chunked
# bodies included; the application refuses a longer Content-Length again.
MAX_BODY = 16 * 1024
MAX_HEADER = 16 * 1024

# the cookies' names: behind HTTPS (cookie_secure, or an HTTPS request)
# with the __Host- prefix, which a browser takes only from this host, Secure,
# with Path=/ and no Domain: a sibling subdomain cannot plant one
DEVICE_COOKIE = "itm_device"
CSRF_COOKIE = "itm_csrf"
HOST_PREFIX = "__Host-"
YEAR = 365 * 24 * 3600

# the HTTP status of each page, by its data-status
HTTP_STATUS = {
    "not_found": 404,
    "revoked": 410,
    "expired": 410,
    "disabled": 403,
    "locked": 403,
    "exhausted": 403,
    "domain_restricted": 403,
    "csrf": 400,
    "cookie_conflict": 400,
    "too_many": 429,
    "invalid": 400,
    "unavailable": 503,
    "error": 500,
}


def token_ref(token):
    """How a token appears in the log: the first 8 hex digits of its SHA-256,
    the hash the database keeps (invites.token_hash), never the token."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:8]


class RedactingFormatter(logging.Formatter):
    """Belt and braces: whatever a log line holds, a token does not get out."""

    TOKEN = re.compile(r"(it[mg]_)[A-Za-z0-9_-]{4,}")

    def format(self, record):
        return self.TOKEN.sub(r"\1[token]", super().format(record))


class Database:
    """A bounded pool of connections (Debian's python3-psycopg-pool): at
    most SIZE open, each used by one request at a time; a request waits up
    to TIMEOUT seconds for one, then fails with PoolTimeout (an
    OperationalError: the page says "try again", 503).  Every call is its
    own transaction (autocommit), as the API expects.  A connection is
    checked (an empty query) before each call, so that after a database
    restart the dead ones are dropped, not the request."""

    def __init__(self, conninfo="", size=4, timeout=5.0):
        from psycopg_pool import ConnectionPool

        params = pg_conninfo.conninfo_to_dict(conninfo)
        kwargs = {"autocommit": True}
        # defaults that the DSN or the environment may override
        if "connect_timeout" not in params and not os.environ.get("PGCONNECT_TIMEOUT"):
            kwargs["connect_timeout"] = 5
        if "application_name" not in params and not os.environ.get("PGAPPNAME"):
            kwargs["application_name"] = "invitetomedia-lobby"
        self.size = size
        self.pool = ConnectionPool(conninfo, kwargs=kwargs, min_size=1, max_size=size,
                                   timeout=timeout, name="lobby")

    def one(self, sql, params=(), role=None):
        """The first row of one call, as a dict (None: no row).  With ROLE
        (a name from the database, never from a request), the call runs in
        a transaction of its own after SET LOCAL ROLE: the role, and the
        tenant it acts for, end with it, whatever happens."""
        # a dead connection (the server restarted, or ended it) is dropped
        # when it goes back to the pool; the next one is tried.  The check
        # runs before the call, so a call is never sent twice.
        for _ in range(self.size + 1):
            with self.pool.connection() as conn:
                try:
                    conn.execute("")
                except psycopg.OperationalError:
                    continue
                if role is None:
                    with conn.cursor(row_factory=dict_row) as cur:
                        cur.execute(sql, params)
                        return cur.fetchone()
                with conn.transaction():
                    conn.execute(pg_sql.SQL("SET LOCAL ROLE {}").format(pg_sql.Identifier(role)))
                    with conn.cursor(row_factory=dict_row) as cur:
                        cur.execute(sql, params)
                        return cur.fetchone()
        raise psycopg.OperationalError("no working connection to the database")

    def close(self):
        self.pool.close()


class Throttle:
    """A token bucket per key (a client's address, a link): RATE requests
    per PER seconds, in bursts of up to RATE.  Memory-bounded: at most
    ENTRIES keys are kept, the least recently seen forgotten first (a
    forgotten key starts again with a full bucket)."""

    def __init__(self, rate, per, entries=10000):
        self.rate, self.per, self.entries = rate, per, entries
        self.buckets = collections.OrderedDict()
        self.lock = threading.Lock()

    def __len__(self):
        return len(self.buckets)

    def hit(self, key):
        """0 if KEY may go on (and counts it), else the seconds to wait."""
        now = time.monotonic()
        with self.lock:
            tokens, then = self.buckets.pop(key, (self.rate, now))
            tokens = min(self.rate, tokens + (now - then) * self.rate / self.per)
            if tokens >= 1:
                self.buckets[key] = (tokens - 1, now)
                wait = 0
            else:
                self.buckets[key] = (tokens, now)
                wait = max(1, math.ceil((1 - tokens) * self.per / self.rate))
            while len(self.buckets) > self.entries:
                self.buckets.popitem(last=False)
            return wait


def parse_rate(value):
    """'30/60' -> (30, 60): 30 requests per 60 seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value or "")
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"{value!r}: expected COUNT/SECONDS, such as 30/60")
    return int(m.group(1)), int(m.group(2))


# the POSTs a client (its address), an invite link and a guest link may
# make, by default: a person types an email once or twice; a guest link is
# shared by an audience that joins at once
POST_LIMITS = {"client": (60, 60), "invite": (10, 60), "guest_link": (300, 60)}


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# Each purpose signs with its own key, derived from the lobby's secret:
# HMAC-SHA256(LOBBY_SECRET, KEY_LABEL + purpose).  The platform gets the
# result key only (result_key(), `serve --result-key`): it verifies results
# and can make no device cookie or CSRF token.
KEY_LABEL = b"invitetomedia-lobby v1 key: "
PURPOSES = ("device", "csrf", "result")
# how long a result is good for: the platform refuses it after expires_at
RESULT_TTL = 120


def derive_key(secret, purpose):
    secret = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(secret, KEY_LABEL + purpose.encode(), hashlib.sha256).digest()


def result_key(secret):
    """The key a platform verifies results with (64 hex digits), derived from
    LOBBY_SECRET; give the platform this, never the secret."""
    return derive_key(secret, "result").hex()


class Signer:
    """HMAC-SHA256, with a key per purpose derived from the lobby's secret."""

    def __init__(self, secret):
        self.keys = {p: derive_key(secret, p) for p in PURPOSES}

    def sign(self, purpose, data):
        return _b64(hmac.new(self.keys[purpose], data.encode(), hashlib.sha256).digest())

    def verify(self, purpose, data, signature):
        """A signature of DATA for PURPOSE; whatever a browser sent (a cookie,
        a form field, a query parameter, any characters) is False, never
        an exception."""
        if not isinstance(signature, str) or not signature.isascii() or not data.isascii():
            return False
        return hmac.compare_digest(self.sign(purpose, data).encode(), signature.encode())


def security_headers(app_url=None):
    """The headers every answer carries, [(name, value), ...]: the
    application's pages, and (serve) the server's own 400, 413 and 431.
    The form may be followed by a redirect to the platform (app_url), to
    which Chromium applies form-action."""
    form_action = "'self'"
    if app_url:
        u = urlsplit(app_url)
        form_action += f" {u.scheme}://{u.netloc}"
    csp = ("default-src 'none'; script-src 'self'; style-src 'self'; "
           "img-src 'self'; form-action " + form_action +
           "; base-uri 'none'; frame-ancestors 'none'")
    return [("Referrer-Policy", "no-referrer"),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy", csp),
            ("X-Frame-Options", "DENY"),
            ("X-Content-Type-Options", "nosniff")]


def normal_host(value):
    """A Host header as site_hosts holds host names: lower-case, without
    the port and the trailing dot; None for what is no host name."""
    m = HOST_SHAPE.fullmatch((value or "").strip().lower())
    if not m:
        return None
    host = m.group(1).rstrip(".")
    return host if 0 < len(host) <= 253 else None


class PathSites:
    """WSGI middleware of the "path" mode: /s/<site_id>/rest is the
    application's /rest, with /s/<site_id> moved to SCRIPT_NAME (so that the
    lobby's own URLs, redirects and static files keep the prefix) and the
    site id left in environ[SITE_ENVIRON]."""

    PREFIX = re.compile(r"/s/([^/]*)(/.*)", re.S)

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        m = self.PREFIX.fullmatch(environ.get("PATH_INFO", ""))
        environ.pop(SITE_ENVIRON, None)
        if m:
            environ[SITE_ENVIRON] = m.group(1)
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + "/s/" + m.group(1)
            environ["PATH_INFO"] = m.group(2)
        return self.app(environ, start_response)


def when(ts):
    """A timestamp as the pages show it: UTC, to the minute."""
    if ts is None:
        return None
    return ts.astimezone(timezone.utc).strftime("%a %d %b %Y, %H:%M UTC")


def create_app(db, secret, app_url=None, cookie_secure=False, post_limits=None,
               throttle_entries=10000, sites=None):
    """The lobby as a WSGI application.  db: a Database (or anything with
    one(sql, params)); secret: the key that signs device ids, CSRF tokens
    and the admission result; app_url: where an admitted invitee is sent
    (None: the lobby's own /welcome page); post_limits: POST_LIMITS's keys
    with (count, seconds), over the defaults; throttle_entries: the
    addresses and links each throttle remembers at most; sites: None (one
    site: the 1.x calls, on the role's default site), "host" (the site of
    the request's Host, site_hosts) or "path" (of a /s/<site_id>/ prefix),
    in a 2.0 database (module docstring).  The client is
    request.remote_addr: behind a proxy, have the WSGI server set it from
    X-Forwarded-For (serve: LOBBY_TRUSTED_PROXIES)."""
    if sites not in (None,) + SITE_MODES:
        raise ValueError(f"sites={sites!r}: expected None, 'host' or 'path'")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    if sites == "path":
        app.wsgi_app = PathSites(app.wsgi_app)
    signer = Signer(secret)
    limits = dict(POST_LIMITS, **(post_limits or {}))
    throttles = {k: Throttle(rate, per, throttle_entries) for k, (rate, per) in limits.items()}

    def throttled(kind, token):
        """A 429 page if this client or this link has posted too much
        lately, else None (and the POST is counted)."""
        waits = [throttles["client"].hit(request.remote_addr or "-"),
                 throttles[kind].hit(hashlib.sha256(token.encode()).digest())]
        wait = max(waits)
        if not wait:
            return None
        log.info("%s link %s: too many POSTs (%s), retry after %d s",
                 "guest" if kind == "guest_link" else "invite", token_ref(token),
                 "client" if waits[0] else "link", wait)
        html, code = message("too_many", kind="guest" if kind == "guest_link" else "invite")
        return html, code, {"Retry-After": str(wait)}

    security = security_headers(app_url)

    # -- cookies: a device id and a CSRF key, both issued here ---------------

    def secure():
        return cookie_secure or request.is_secure

    def cookie_name(name):
        return HOST_PREFIX + name if secure() else name

    def device_id():
        """The device id of this browser, if it carries one this lobby
        issued (the signature says so); None otherwise."""
        value = request.cookies.get(cookie_name(DEVICE_COOKIE), "")
        rand, _, sig = value.partition(".")
        if rand and sig and signer.verify("device", rand, sig):
            return rand
        return None

    def csrf_key():
        value = request.cookies.get(cookie_name(CSRF_COOKIE), "")
        return value if re.fullmatch(r"[A-Za-z0-9_-]{43}", value) else None

    @app.before_request
    def issue_cookies():
        # two cookies of one name (one planted from a sibling subdomain, or
        # with a longer path, besides the lobby's): which device is this?
        # Nothing is used, nothing is set: the browser's cookies are for
        # its user to clear
        request.new_device = request.new_csrf = None
        names = (cookie_name(DEVICE_COOKIE), cookie_name(CSRF_COOKIE))
        if request.endpoint != "static" and any(
                len(request.cookies.getlist(n)) > 1 for n in names):
            log.info("%s %s: two cookies of one name, refused", request.method,
                     request.url_rule.rule if request.url_rule else "-")
            return message("cookie_conflict", kind="http")
        # made here, set by after_request on whatever response follows
        request.new_device = None if device_id() else secrets.token_urlsafe(32)
        request.new_csrf = None if csrf_key() else secrets.token_urlsafe(32)

    def current_device():
        return device_id() or request.new_device

    def csrf_token():
        return signer.sign("csrf", csrf_key() or request.new_csrf)

    def csrf_ok():
        """The form's token matches this browser's CSRF cookie.  Without the
        cookie the POST is refused before a byte of its body is read."""
        key = csrf_key()
        if not key:
            return False
        sent = request.form.get("csrf", "")
        return bool(sent) and signer.verify("csrf", key, sent)

    @app.after_request
    def headers(resp):
        for name, value in security:
            resp.headers[name] = value
        if getattr(request, "new_device", None):
            rand = request.new_device
            resp.set_cookie(cookie_name(DEVICE_COOKIE), rand + "." + signer.sign("device", rand),
                            max_age=YEAR, path="/", httponly=True, samesite="Lax",
                            secure=secure())
        if getattr(request, "new_csrf", None):
            resp.set_cookie(cookie_name(CSRF_COOKIE), request.new_csrf, path="/",
                            httponly=True, samesite="Lax", secure=secure())
        rule = request.url_rule.rule if request.url_rule else "-"
        log.info("%s %s %s", request.method, rule, resp.status_code)
        return resp

    # -- pages ---------------------------------------------------------------

    def page(template, status, code=200, **values):
        return render_template(template, status=status, **values), code

    def message(status, kind="invite", **values):
        """A page that says what happened and what to do next (no form)."""
        return page("message.html", status, HTTP_STATUS.get(status, 200), kind=kind, **values)

    @app.errorhandler(psycopg.Error)
    def database_error(e):
        # the error's first line, never the statement's parameters (the
        # token is one of them)
        first = (str(e).strip().splitlines() or [""])[0]
        log.error("database error: %s %s %s", type(e).__name__,
                  getattr(e, "sqlstate", None) or "-", first)
        html, code = message("unavailable")
        return html, code, {"Retry-After": "10"}

    @app.errorhandler(HTTPException)
    def http_error(e):
        status = {404: "not_found", 405: "method_not_allowed",
                  413: "too_large"}.get(e.code, "bad_request")
        html, _ = message(status, kind="http")
        return html, e.code

    @app.errorhandler(Exception)
    def unexpected(e):
        rule = request.url_rule.rule if request.url_rule else "-"
        log.exception("unexpected error in %s %s", request.method, rule)
        return message("error", kind="http")

    # -- the site of a request (many sites) ----------------------------------

    def find_site():
        """Many sites: the request's site as lobby_site(_for_host) returns it
        (site_id, tenant_id, lobby_role), or None (the page is not_found);
        one site: {} (the 1.x calls).  Kept on the request."""
        if not sites:
            return {}
        if hasattr(request, "itm_site"):
            return request.itm_site
        request.itm_site = None
        if sites == "host":
            key = normal_host(request.environ.get("HTTP_HOST"))
            row = key and db.one("SELECT * FROM invitetomedia.lobby_site_for_host(%s)", (key,))
            what = f"host {key!r}" if key else "no host name"
        else:
            key = request.environ.get(SITE_ENVIRON)
            row = (key and SITE_SHAPE.fullmatch(key)
                   and db.one("SELECT * FROM invitetomedia.lobby_site(%s)", (key,)))
            what = f"site {key!r}" if key else "no /s/<site_id>/ prefix"
        if not row:
            log.info("%s: no such site", what[:80])
        elif row["lobby_role"] is None:
            log.warning("%s: site %s of tenant %s has no lobby role (tenant_roles.lobby)",
                        what, row["site_id"], row["tenant_id"])
        else:
            request.itm_site = row
        return request.itm_site

    def at(site):
        return f" at site {site['site_id']}" if site else ""

    def call(site, fn, args, extra=""):
        """One call of the API: the 1.x function with ARGS, or with a site
        its _at form, the site first, as the site's tenant's lobby role."""
        holes = ", ".join(["%s"] * (len(args) + (1 if site else 0)))
        query = (f"SELECT r.*{extra} FROM invitetomedia.{fn}{'_at' if site else ''}({holes}) r")
        if not site:
            return db.one(query, args)
        return db.one(query, (site["site_id"],) + tuple(args), role=site["lobby_role"])

    @app.route("/")
    def home():
        return message("home", kind="http")

    @app.route("/i/<token>", methods=["GET", "POST"])
    def invite(token):
        if token.startswith(GUEST_PREFIX):
            # link_base_url is one for both kinds: https://host/i/ puts
            # guest links under /i/ too (a host that names no site first
            # gets its 404)
            if find_site() is None:
                return message("not_found", kind="guest")
            return redirect(url_for("guest", token=token), 308)
        if not TOKEN_SHAPE.fullmatch(token):
            log.info("invite link (malformed): not_found")
            return message("not_found")
        ref = token_ref(token)
        if request.method == "POST":
            return throttled("invite", token) or invite_post(token, ref)
        site = find_site()
        if site is None:
            return message("not_found")
        c = check(token)
        log.info("invite link %s%s: check %s", ref, at(site), c["status"])
        return invite_page(c)

    def check(token):
        return call(find_site(), "invite_check", (token,), ", statement_timestamp() AS now")

    def invite_page(c, status=None, email=""):
        """The page for invite_check's answer c: the form for ok (data-status
        "form", or STATUS), the countdown and the form to come for not_yet,
        a line and the form for exhausted (a device that joined before
        rejoins through it: invite_check cannot know the device), and a
        message for the rest."""
        s = c["status"]
        if s not in ("ok", "not_yet", "exhausted"):
            return message(s)
        seconds = None
        if s == "not_yet" and c["opens_at"] is not None:
            seconds = max(0.0, (c["opens_at"] - c["now"]).total_seconds())
        return page("invite.html", status or ("form" if s == "ok" else s),
                    check=c, email=email, csrf=csrf_token(),
                    expires=when(c["expires_at"]), opens=when(c["opens_at"]),
                    seconds=seconds, wait=wait_text(seconds))

    def invite_post(token, ref):
        site = find_site()
        if site is None:
            return message("not_found")
        if not csrf_ok():
            log.info("invite link %s: POST without a valid CSRF token", ref)
            return message("csrf")
        email = request.form.get("email", "")
        if "\0" in email:
            return message("invalid")
        # the title for the welcome page (a use may take the link's last one)
        c = check(token)
        r = call(site, "invite_consume", (token, email, current_device()))
        s = r["status"]
        log.info("invite link %s%s%s: consume %s", ref, at(site),
                 f" (invite {r['invite_id']})" if r["invite_id"] is not None else "", s)
        if s in ("ok", "rejoin"):
            return admitted(site, {
                "kind": "invite", "status": s, "id": r["invite_id"],
                "media_id": r["media_id"], "role": r["role"], "user_id": r["user_id"],
                "first_name": r["first_name"], "last_name": r["last_name"],
                "title": c["media_title"] if c["status"] == "ok" else None,
            })
        if s == "email_mismatch":
            # that may have been the wrong email that locked the link
            after = check(token)
            if after["status"] not in ("ok", "exhausted"):
                log.info("invite link %s: now %s", ref, after["status"])
                return message(after["status"])
            return invite_page(after, status="email_mismatch", email=email)
        if s == "not_yet":
            return invite_page(check(token))
        return message(s)

    @app.route("/g/<token>", methods=["GET", "POST"])
    def guest(token):
        if token.startswith(INVITE_PREFIX):
            return redirect(url_for("invite", token=token), 308)
        if not token.startswith(GUEST_PREFIX) or not TOKEN_SHAPE.fullmatch(token):
            log.info("guest link (malformed): not_found")
            return message("not_found", kind="guest")
        ref = token_ref(token)
        if request.method == "GET":
            if find_site() is None:
                return message("not_found", kind="guest")
            # there is no guest_link_check: what the link is worth shows
            # when the guest joins
            return page("guest.html", "form", form={}, csrf=csrf_token())
        slow = throttled("guest_link", token)
        if slow:
            return slow
        site = find_site()
        if site is None:
            return message("not_found", kind="guest")
        if not csrf_ok():
            log.info("guest link %s: POST without a valid CSRF token", ref)
            return message("csrf", kind="guest")
        form = {k: request.form.get(k, "") for k in ("email", "first_name", "last_name")}
        if any("\0" in v for v in form.values()):
            return page("guest.html", "invalid", 400, form=form, csrf=csrf_token(),
                        error="A field holds a character that no name or address has.")
        try:
            r = call(site, "guest_link_join", (token, form["email"], form["first_name"],
                                               form["last_name"], current_device()))
        except (pg_errors.InvalidParameterValue, pg_errors.NullValueNotAllowed) as e:
            # what the guest typed: a malformed email, an empty name
            log.info("guest link %s: join refused the input (%s)", ref, e.sqlstate)
            d = e.diag
            error = d.message_primary + (": " + d.message_detail if d.message_detail else "")
            error = error[:1].upper() + error[1:]
            return page("guest.html", "invalid", 400, form=form, csrf=csrf_token(), error=error)
        s = r["status"]
        # 1.1.1 returns the join record's id; a 1.1 database has no such column
        join_id = r.get("join_id")
        refs = []
        if r["guest_link_id"] is not None:
            refs.append(f"guest link {r['guest_link_id']}")
        if join_id is not None:
            refs.append(f"join {join_id}")
        log.info("guest link %s%s%s: join %s", ref, at(site),
                 f" ({', '.join(refs)})" if refs else "", s)
        if s in ("ok", "rejoin"):
            # A guest link is not a login: whoever has the link typed this
            # email and these names, and nothing proves them.  The result
            # names the join record, never a user: r["user_id"] (NULL from
            # 1.1.1 on, an account's id on a 1.1 database) is not passed on.
            return admitted(site, {
                "kind": "guest_link", "status": s, "id": r["guest_link_id"],
                "media_id": r["media_id"], "role": r["role"],
                "guest": {
                    "join_id": join_id,
                    "email_claimed": form["email"].strip(),
                    "first_name": form["first_name"].strip(),
                    "last_name": form["last_name"].strip(),
                },
                "title": None,
            })
        if s == "domain_restricted":
            return page("guest.html", s, form=form, csrf=csrf_token())
        return message(s, kind="guest")

    # -- admission -------------------------------------------------------------

    def admitted(site, result):
        """ok and rejoin: to the platform (LOBBY_APP_URL) or the welcome page,
        with the result signed, so that the platform knows that this lobby
        admitted the browser (the signature vouches for the lobby's
        decision, not for what a guest typed).  With many sites the result
        names the site and its tenant: a platform checks them."""
        if site:
            result["site_id"] = site["site_id"]
            result["tenant_id"] = site["tenant_id"]
        result["issued_at"] = int(time.time())
        result["expires_at"] = result["issued_at"] + RESULT_TTL
        result["nonce"] = secrets.token_urlsafe(12)
        data = _b64(json.dumps(result, separators=(",", ":")).encode())
        signed = data + "." + signer.sign("result", data)
        if app_url:
            sep = "&" if "?" in app_url else "?"
            return redirect(f"{app_url}{sep}itm_result={signed}", 303)
        return redirect(url_for("welcome", itm_result=signed), 303)

    @app.route("/welcome")
    def welcome():
        result = verify_result(signer, request.args.get("itm_result", ""), max_age=RESULT_TTL)
        if result is None:
            return message("not_found", kind="http")
        return page("welcome.html", result["status"], result=result)

    return app


def wait_text(seconds):
    """The countdown as the page first shows it (countdown.js then counts)."""
    if seconds is None:
        return None
    s = int(seconds + 0.999)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d} d {h} h {m:02d} min"
    if h:
        return f"{h} h {m:02d} min {s:02d} s"
    if m:
        return f"{m} min {s:02d} s"
    return f"{s} s"


def verify_result(key, signed, max_age=RESULT_TTL):
    """The admission result of a redirect, or None if it was not signed with
    this key, is past its expires_at, or is older than max_age seconds (None:
    expires_at alone).  key: the result key (result_key(LOBBY_SECRET), 64
    hex digits, or its 32 bytes), which is what a platform holds; or the
    lobby's Signer.  A key of another length is a ValueError."""
    if isinstance(key, Signer):
        k = key.keys["result"]
    else:
        k = bytes.fromhex(key) if isinstance(key, str) else bytes(key)
        if len(k) != 32:
            raise ValueError("the result key is 64 hex digits (lobby.result_key(LOBBY_SECRET))")
    data, _, sig = signed.partition(".")
    if not data or not sig or not data.isascii() or not sig.isascii():
        return None
    good = _b64(hmac.new(k, data.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(good.encode(), sig.encode()):
        return None
    try:
        result = json.loads(_unb64(data))
        issued, expires = int(result["issued_at"]), int(result["expires_at"])
    except (ValueError, KeyError, TypeError):
        return None
    now = time.time()
    if now > expires or (max_age is not None and now - issued > max_age):
        return None
    return result


# exported for the server and for platforms
__all__ = ["create_app", "Database", "normal_host", "parse_rate", "PathSites", "RedactingFormatter",
           "Signer", "result_key", "security_headers", "Throttle", "verify_result", "when"]
