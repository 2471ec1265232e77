#!/usr/bin/env python3
"""test/mutation/mutate.py: reads test/mutation/mutants.txt and applies one
mutant to a copy of itm_direct.c.

  mutate.py MUTANTS list            the ids, one a line, in file order
  mutate.py MUTANTS show ID         the mutant's description and its diff
  mutate.py MUTANTS apply ID FILE   rewrites FILE with the mutant applied
  mutate.py MUTANTS check FILE      every mutant applies to FILE (exit 1 if not)

A mutant is an exact string replacement: its "from" text must occur exactly
once in the file, else nothing is written and the exit status is 1 (a
mutant that no longer matches the code must be fixed, not skipped).

The format (see mutants.txt): a block per mutant,
  [id]
  what: one line: the bug the mutant models
  from: the exact text replaced
  to:   its replacement
where from/to are one line each, leading blanks dropped, with the escapes
\\n (newline), \\t (tab) and \\\\ (backslash).  Lines starting with # and
blank lines are ignored.
"""
import difflib
import re
import sys


def unescape(s, where):
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s) or s[i + 1] not in "nt\\":
                sys.exit("%s: bad escape in %r (only \\n, \\t and \\\\)" % (where, s))
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[s[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def read_mutants(path):
    mutants = []
    cur = None
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            line = line.rstrip("\n")
            where = "%s:%d" % (path, no)
            if not line.strip() or line.startswith("#"):
                continue
            m = re.fullmatch(r"\[([a-z0-9_]+)\]", line.strip())
            if m:
                cur = {"id": m.group(1), "line": no}
                if any(x["id"] == cur["id"] for x in mutants):
                    sys.exit("%s: mutant %s twice" % (where, cur["id"]))
                mutants.append(cur)
                continue
            m = re.fullmatch(r"(what|from|to):[ \t]*(.*?)[ \t]*", line)
            if not m or cur is None:
                sys.exit("%s: expected [id], what:, from: or to:, got %r" % (where, line))
            key, val = m.group(1), m.group(2)
            if key in cur:
                sys.exit("%s: %s given twice for %s" % (where, key, cur["id"]))
            cur[key] = val if key == "what" else unescape(val, where)
    for mu in mutants:
        for key in ("what", "from", "to"):
            if key not in mu:
                sys.exit("%s:%d: mutant %s has no %s:" % (path, mu["line"], mu["id"], key))
        if not mu["from"] or mu["from"] == mu["to"]:
            sys.exit("%s:%d: mutant %s changes nothing" % (path, mu["line"], mu["id"]))
    return mutants


def find(mutants, mid):
    for mu in mutants:
        if mu["id"] == mid:
            return mu
    sys.exit("no mutant %s" % mid)


def mutated(mu, text, fname):
    n = text.count(mu["from"])
    if n != 1:
        print("mutant %s: its text occurs %d times in %s (must be exactly once):\n%s"
              % (mu["id"], n, fname, mu["from"]), file=sys.stderr)
        return None
    return text.replace(mu["from"], mu["to"], 1)


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    mutants = read_mutants(argv[1])
    cmd = argv[2]
    if cmd == "list" and len(argv) == 3:
        for mu in mutants:
            print(mu["id"])
        return 0
    if cmd == "show" and len(argv) in (4, 5):
        mu = find(mutants, argv[3])
        print("%s: %s" % (mu["id"], mu["what"]))
        if len(argv) == 5:
            with open(argv[4], encoding="utf-8") as f:
                text = f.read()
            new = mutated(mu, text, argv[4])
            if new is None:
                return 1
            sys.stdout.writelines(difflib.unified_diff(
                text.splitlines(True), new.splitlines(True), argv[4], argv[4] + " (mutant)", n=1))
        return 0
    if cmd == "apply" and len(argv) == 5:
        mu = find(mutants, argv[3])
        with open(argv[4], encoding="utf-8") as f:
            text = f.read()
        new = mutated(mu, text, argv[4])
        if new is None:
            return 1
        with open(argv[4], "w", encoding="utf-8") as f:
            f.write(new)
        return 0
    if cmd == "check" and len(argv) == 4:
        with open(argv[3], encoding="utf-8") as f:
            text = f.read()
        bad = [mu["id"] for mu in mutants if mutated(mu, text, argv[3]) is None]
        print("%d mutants, %d apply to %s" % (len(mutants), len(mutants) - len(bad), argv[3]))
        return 1 if bad else 0
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
