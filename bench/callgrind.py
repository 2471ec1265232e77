#!/usr/bin/env python3
"""Helper of bench/callgrind.sh (see there and bench/README.md, "Release
1.1.1: the whitelist's cost"): loads the database, writes the single-user
scripts, reads callgrind's output and writes the report.

  callgrind.py load   --sock DIR --port P --links N --workdir DIR
                      [--version V] [--lib PATH]
                      [--tenants N --sites-per-tenant S --pool P]
  callgrind.py script --call NAME --impl c|floor --count N
                      [--tenants N --sites-per-tenant S --api at|1x]
  callgrind.py check  --call NAME --count N LOG      (exit 1 unless N ok)
  callgrind.py report --outdir DIR --counts A,B --label L [--baseline DIR]
                      [--top K] > report.md

The calls are the bench's own pgbench statements (bench/scenarios.py), the
same calling statement, so one call here is one transaction of the bench:
  consume  invite_consume of a distinct single-use link (existing user),
           scenario consume_distinct;
  join     guest_link_join of the hot unlimited guest link, no device, the
           email of an existing user, scenario guest_hot;
  create   invite_create without sending email, scenario create (the email
           from a sequence instead of random(): the same work);
  check    invite_check of a distinct link, scenario check (the link from a
           sequence instead of random()).
With --tenants (issue 22) the database is 2.0's, of tenants and sites
(bench.py's load_tenants()), and the calls are the same ones through 2.0's
entry points (scenarios.py, v2_*), run as the role bench_app (SET ROLE
before the PREPARE), which acts for one tenant: --api at names the site
(invite_consume_at, ...), --api 1x calls the 1.x names (the tenant's
default site).
"""
import argparse
import glob
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import scenarios as S  # noqa: E402

CALLS = ("consume", "join", "create", "check")
CREATE_EMAIL = "'new' || nextval('bench.cg_seq') || '@example.com'"


def statement(call, impl, tenants=0, sites=3, api="at"):
    if tenants:
        if impl != "c":
            raise SystemExit("only the extension's calls run on a 2.0 database of tenants")
        import bench as B
        home = B.site_name(B.measured_tenant(tenants), 1)
        if call == "consume":
            sql = S.v2_consume(api, "distinct", sites)
        elif call == "join":
            sql = S.v2_guest_join(api, home, False)
        elif call == "create":
            sql = S.v2_create(api, home, CREATE_EMAIL, False)
        elif call == "check":
            sql = S.v2_check(api, "distinct", sites)
        else:
            raise SystemExit("unknown call %s" % call)
        return " ".join(sql.split()).rstrip(";")
    if call == "consume":
        sql = S.consume(impl, "distinct")
    elif call == "join":
        sql = S.guest_join(impl, False)
    elif call == "create":
        sql = S.create(impl, CREATE_EMAIL, False)
    elif call == "check":
        sql = S.check(impl, "distinct")
    else:
        raise SystemExit("unknown call %s" % call)
    if sql is None:
        raise SystemExit("no %s implementation of %s" % (impl, call))
    # single-user mode: one command per line
    return " ".join(sql.split()).rstrip(";")


# what every call's one row says when it took the ok path (postgres
# --single prints each column as: name = "value")
OK_ROW = {
    "consume": re.compile(r'\bstatus = "ok"'),
    "join": re.compile(r'\bstatus = "ok"'),
    "check": re.compile(r'\bstatus = "ok"|\bmedia_id = "m1"'),
    "create": re.compile(r'\btok = "itm_'),
}


def cmd_load(a):
    os.environ.setdefault("PGBIN", subprocess.check_output(["pg_config", "--bindir"], text=True).strip())
    import bench as B
    if a.version:
        B.SETUP_SQL = B.SETUP_SQL.replace("CREATE EXTENSION invitetomedia;",
                                          "CREATE EXTENSION invitetomedia VERSION '%s';" % a.version)
    pg = B.PG(a.sock, a.port)
    if a.tenants:
        if a.version and a.version != "2.0":
            raise SystemExit("--tenants loads a 2.0 database")
        B.load_tenants(pg, "site", a.links, a.tenants, a.sites_per_tenant, a.workdir, pool=a.pool)
        pg.psql("CREATE SEQUENCE bench.cg_seq")
        pg.psql(B.TENANT_GRANTS_SQL)
    else:
        B.load(pg, "site", a.links, a.workdir)
        pg.psql("CREATE SEQUENCE bench.cg_seq")
    if a.lib:
        # another build of the library (an older release, for a baseline):
        # the database's C functions point at it; the installed one stays
        n = pg.psql("WITH u AS (UPDATE pg_catalog.pg_proc SET probin = '%s'"
                    " WHERE probin = '$libdir/invitetomedia' RETURNING 1) SELECT count(*) FROM u" % a.lib)
        print("  %s C functions now call %s" % (n, a.lib))
    print("  extension %s" % pg.psql("SELECT extversion FROM pg_extension WHERE extname = 'invitetomedia'"))
    pg.psql("VACUUM (FREEZE, ANALYZE)")
    pg.psql("CHECKPOINT")


def cmd_script(a):
    lines = []
    if a.tenants:
        import bench as B
        # the role the calls act as: mapped to the measured tenant
        lines.append("SET ROLE %s" % B.MEASURED_ROLE)
    lines += ["PREPARE c AS " + statement(a.call, a.impl, a.tenants, a.sites_per_tenant, a.api)]
    lines += ["EXECUTE c"] * a.count
    sys.stdout.write("\n".join(lines) + "\n")


def cmd_check(a):
    text = open(a.log).read()
    ok = len(OK_ROW[a.call].findall(text))
    errors = re.findall(r"ERROR:.*", text)
    if ok != a.count or errors:
        print("  %s: %d of %d calls ok%s" % (a.log, ok, a.count,
                                            (", " + errors[0]) if errors else ""))
        sys.exit(1)


# --- reading callgrind's output ------------------------------------------------

def total_ir(path):
    """The program's total instructions (the summary/totals line)."""
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise SystemExit("no totals in %s" % path)


def per_function(path, inclusive):
    """{function [object]: Ir} from callgrind_annotate (exclusive or
    inclusive).  callgrind_annotate lists a function once per source file
    its instructions came from (an inlined header, the library's source
    under two spellings of its path): self costs are summed over those,
    inclusive costs are the largest of them (each is the whole call)."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", "--show-percs=no",
                          "--inclusive=%s" % ("yes" if inclusive else "no"), path],
                         capture_output=True, text=True, check=True).stdout
    cost, obj = {}, {}
    started = False
    for line in out.splitlines():
        if "file:function" in line:
            started = True
            continue
        if not started:
            continue
        m = re.match(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*?)\s*$", line)
        if not m:
            continue
        name = m.group(2)
        o = re.search(r"\s*\[(?:.*/)?([^/\]]+)\]$", name)
        if o:
            name = name[:o.start()]
        # "file:function": the function (a file name holds no spaces)
        name = re.sub(r"^[^ ]*?:(?=[^:])", "", name, count=1) if ":" in name else name
        n = int(m.group(1).replace(",", ""))
        if inclusive:
            cost[name] = max(cost.get(name, 0), n)
        else:
            cost[name] = cost.get(name, 0) + n
        if o:
            obj[name] = o.group(1)
    return {("%s [%s]" % (f, obj[f])) if f in obj else f: v for f, v in cost.items()}


def runs(outdir):
    """{(call, impl, direct, count): path}"""
    found = {}
    for p in glob.glob(os.path.join(outdir, "*.callgrind")):
        m = re.match(r"(\w+)\.(\w+)\.(on|off|na)\.(\d+)\.callgrind$", os.path.basename(p))
        if m:
            found[(m.group(1), m.group(2), m.group(3), int(m.group(4)))] = p
    return found


def per_call(outdir, counts):
    """{(call, impl, direct): Ir per call}: (Ir(B) - Ir(A)) / (B - A)."""
    lo, hi = counts
    found = runs(outdir)
    res = {}
    for (call, impl, direct, n), p in found.items():
        if n == hi and (call, impl, direct, lo) in found:
            res[(call, impl, direct)] = (total_ir(p) - total_ir(found[(call, impl, direct, lo)])) / (hi - lo)
    return res


def per_call_functions(outdir, counts, key, inclusive):
    lo, hi = counts
    found = runs(outdir)
    a = per_function(found[key + (lo,)], inclusive)
    b = per_function(found[key + (hi,)], inclusive)
    return {f: (b.get(f, 0) - a.get(f, 0)) / (hi - lo) for f in set(a) | set(b)}


def k(x):
    return "%.0fk" % (x / 1000.0) if x is not None else "-"


def cmd_report(a):
    counts = [int(c) for c in a.counts.split(",")]
    cur = per_call(a.outdir, counts)
    base = per_call(a.baseline, counts) if a.baseline else {}
    out = []
    out.append("Instructions per call (callgrind, `postgres --single`, (Ir(%d calls) - Ir(%d calls)) / %d),"
               " %s%s:" % (counts[1], counts[0], counts[1] - counts[0], a.label,
                           (" against %s" % a.baseline_label) if a.baseline else ""))
    for d, lab in ((a.outdir, a.label), (a.baseline, a.baseline_label)):
        if d and os.path.exists(os.path.join(d, "build.txt")):
            out.append("")
            out.append("%s: %s" % (lab, open(os.path.join(d, "build.txt")).read().strip()))
    out.append("")
    if a.baseline:
        out.append("| call | direct_use | %s | %s | change |" % (a.baseline_label, a.label))
        out.append("|---|---|---:|---:|---:|")
    else:
        out.append("| call | direct_use | %s |" % a.label)
        out.append("|---|---|---:|")
    order = [(c, i, d) for c in CALLS for i in ("c", "floor") for d in ("on", "off", "na")]
    for key in order:
        if key not in cur and key not in base:
            continue
        name = key[0] if key[1] == "c" else "%s (floor)" % key[0]
        d = key[2] if key[2] != "na" else "-"
        if a.baseline:
            b, c = base.get(key), cur.get(key)
            ch = "%+.1f %%" % (100.0 * (c - b) / b) if b and c else "-"
            out.append("| %s | %s | %s | %s | %s |" % (name, d, k(b), k(c), ch))
        else:
            out.append("| %s | %s | %s |" % (name, d, k(cur.get(key))))
    # the functions behind each call (and behind each change): self cost,
    # inclusive cost, and the extension's own functions (inclusive)
    views = (("self", False, None), ("inclusive, below the extension's entry point", True, "below"),
             ("inclusive, the extension's functions", True, "[invitetomedia.so]"))
    for key in order:
        if key not in cur or key[1] != "c":
            continue
        for title, inclusive, only in views:
            fc = per_call_functions(a.outdir, counts, key, inclusive)
            fb = per_call_functions(a.baseline, counts, key, inclusive) if key in base else None
            if only == "below":
                # the callers of the extension's entry point (and the
                # statement's machinery around it) all change by the same
                # amount: left out, so that what the call itself does shows
                def entry(d):
                    ext = [v for f, v in d.items() if f.endswith("[invitetomedia.so]")]
                    return max(ext) if ext else float("inf")
                runs_ = [d for d in (fc, fb) if d is not None]
                tops = [entry(d) for d in runs_]
                drop = {f for d, t in zip(runs_, tops) for f, v in d.items() if v >= t}
                fc = {f: v for f, v in fc.items() if f not in drop}
                fb = {f: v for f, v in fb.items() if f not in drop} if fb is not None else None
            elif only:
                fc = {f: v for f, v in fc.items() if f.endswith(only)}
                fb = {f: v for f, v in fb.items() if f.endswith(only)} if fb is not None else None
            out.append("")
            out.append("%s, direct_use %s, instructions per call by function, %s%s:" % (
                key[0], key[2], title,
                (" (%s, %s, difference; the largest differences)" % (a.baseline_label, a.label))
                if fb is not None and only in (None, "below") else ""))
            out.append("")
            if fb is not None:
                names = set(fc) | set(fb)
                if only and only != "below":
                    top = sorted(names, key=lambda f: -max(fc.get(f, 0), fb.get(f, 0)))[:a.top]
                else:
                    top = sorted(names, key=lambda f: -abs(fc.get(f, 0) - fb.get(f, 0)))[:a.top]
                out.append("| function | %s | %s | difference |" % (a.baseline_label, a.label))
                out.append("|---|---:|---:|---:|")
                for f in top:
                    out.append("| `%s` | %.0f | %.0f | %+.0f |" % (f, fb.get(f, 0), fc.get(f, 0),
                                                                fc.get(f, 0) - fb.get(f, 0)))
            else:
                top = sorted(fc, key=lambda f: -fc[f])[:a.top]
                out.append("| function | Ir per call |")
                out.append("|---|---:|")
                for f in top:
                    out.append("| `%s` | %.0f |" % (f, fc[f]))
    print("\n".join(out))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("load")
    p.add_argument("--sock", required=True)
    p.add_argument("--port", required=True)
    p.add_argument("--links", type=int, default=20000)
    p.add_argument("--workdir", required=True)
    p.add_argument("--version")
    p.add_argument("--lib")
    p.add_argument("--tenants", type=int, default=0)
    p.add_argument("--sites-per-tenant", type=int, default=3)
    p.add_argument("--pool", type=int, default=0,
                   help="links of the measured tenant, at least (--tenants)")
    p = sub.add_parser("script")
    p.add_argument("--call", required=True, choices=CALLS)
    p.add_argument("--impl", default="c", choices=("c", "floor"))
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--tenants", type=int, default=0)
    p.add_argument("--sites-per-tenant", type=int, default=3)
    p.add_argument("--api", default="at", choices=S.APIS)
    p = sub.add_parser("check")
    p.add_argument("--call", required=True, choices=CALLS)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("log")
    p = sub.add_parser("report")
    p.add_argument("--outdir", required=True)
    p.add_argument("--counts", default="1000,2000")
    p.add_argument("--label", default="this build")
    p.add_argument("--baseline")
    p.add_argument("--baseline-label", default="baseline")
    p.add_argument("--top", type=int, default=20)
    a = ap.parse_args()
    {"load": cmd_load, "script": cmd_script, "check": cmd_check, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
