#!/usr/bin/env python3
"""unit-command.py UNIT WHAT: what systemd would run for a service unit.

Reads a systemd service file the way systemd reads it for the settings the
invitetomedia-sender and invitetomedia-lobby units use, so that the package
test starts them with the installed unit's own command line and
configuration (no systemd needed):

  WHAT = argv   the command of ExecStart=, with specifiers (%H, %n, %N, %d,
                %%) resolved and ${VAR} / $VAR replaced from the environment
                below, one argument per NUL-terminated record
  WHAT = env    the environment: Environment= lines, then the files of
                EnvironmentFile= (which override them), then what systemd
                sets for User= (HOME, USER, LOGNAME, SHELL), for
                LoadCredential= (CREDENTIALS_DIRECTORY) and its PATH;
                NUL-terminated NAME=value records
  WHAT = credentials   the credentials of LoadCredential=ID:PATH, two
                NUL-terminated records each: ID, then PATH (the file that
                systemd, as root, copies to the credentials directory as ID)
  WHAT = get KEY   the value of KEY in [Service] (the last one given)

The credentials directory (%d, $CREDENTIALS_DIRECTORY) is systemd's
/run/credentials/UNIT-NAME, or $ITM_CREDENTIALS_DIRECTORY: the test copies
the credentials there itself, as systemd would, and names it so.

systemd's rules, as systemd.service(5) and systemd.exec(5) state them:
a word "$VAR" alone becomes the value split at whitespace (zero or more
arguments), "${VAR}" anywhere in a word is replaced by the value as it is
(one argument); EnvironmentFile= lines are NAME=value with optional single
or double quotes, "#" and ";" start comments, and a leading "-" makes the
file optional.
"""

import os
import pwd
import re
import socket
import sys

SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"


def die(msg):
    sys.stderr.write("unit-command.py: %s\n" % msg)
    sys.exit(2)


def read_unit(path):
    """{section: [(key, value), ...]} with continuation lines joined."""
    sections = {}
    current = None
    pending = ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if pending:
                # a comment inside a continued setting is skipped
                if line.lstrip().startswith(("#", ";")):
                    continue
                line = pending + line
                pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            s = line.strip()
            if not s or s.startswith(("#", ";")):
                continue
            if s.startswith("[") and s.endswith("]"):
                current = s[1:-1]
                sections.setdefault(current, [])
                continue
            if "=" not in s or current is None:
                die("%s: cannot read line %r" % (path, s))
            key, value = s.split("=", 1)
            sections[current].append((key.strip(), value.strip()))
    if pending:
        die("%s: ends inside a continued line" % path)
    return sections


def specifiers(text, unit):
    def one(m):
        c = m.group(1)
        if c == "%":
            return "%"
        if c == "H":
            return socket.gethostname()
        if c == "n":
            return os.path.basename(unit)
        if c == "N":
            return re.sub(r"\.[^.]*$", "", os.path.basename(unit))
        if c == "d":
            return credentials_directory(unit)
        die("specifier %%%s is not handled here" % c)

    return re.sub(r"%(.)", one, text)


def credentials_directory(unit):
    return (os.environ.get("ITM_CREDENTIALS_DIRECTORY")
            or "/run/credentials/" + os.path.basename(unit))


def credentials(svc):
    """[(id, path), ...] of LoadCredential=ID:PATH."""
    out = []
    for k, v in svc:
        if k == "LoadCredential":
            cid, sep, path = v.partition(":")
            if not sep or not cid or "/" in cid or not path.startswith("/"):
                die("LoadCredential=%s: expected ID:/absolute/path" % v)
            out.append((cid, path))
    return out


def words(text):
    """systemd's word splitting: quotes and backslash escapes."""
    out = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t\n":
            i += 1
        if i >= n:
            return out
        word = []
        quoted = False
        while i < n and text[i] not in " \t\n":
            c = text[i]
            if c in "\"'":
                q = c
                quoted = True
                i += 1
                while i < n and text[i] != q:
                    if text[i] == "\\" and q == '"' and i + 1 < n:
                        i += 1
                    word.append(text[i])
                    i += 1
                if i >= n:
                    die("unterminated quote in %r" % text)
                i += 1
            elif c == "\\" and i + 1 < n:
                word.append(text[i + 1])
                i += 2
            else:
                word.append(c)
                i += 1
        out.append(("".join(word), quoted))


def env_file(path, env):
    with open(path, encoding="utf-8") as f:
        for raw in f:
            s = raw.strip()
            if not s or s.startswith(("#", ";")):
                continue
            if "=" not in s:
                die("%s: cannot read line %r" % (path, s))
            name, value = s.split("=", 1)
            name = name.strip()
            value = value.strip()
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                die("%s: bad variable name %r" % (path, name))
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            elif len(value) >= 2 and value[0] == value[-1] == '"':
                value = re.sub(r'\\(["\\`$])', r"\1", value[1:-1])
            env[name] = value


def service(unit):
    sections = read_unit(unit)
    if "Service" not in sections:
        die("%s has no [Service] section" % unit)
    return sections["Service"]


def get(svc, key):
    values = [v for k, v in svc if k == key]
    return values[-1] if values else None


def environment(unit, svc):
    env = {}
    for k, v in svc:
        if k == "Environment":
            for assignment, _ in words(specifiers(v, unit)):
                if "=" not in assignment:
                    die("Environment=%s: no '='" % assignment)
                name, value = assignment.split("=", 1)
                env[name] = value
    for k, v in svc:
        if k == "EnvironmentFile":
            path = specifiers(v, unit)
            optional = path.startswith("-")
            path = path.lstrip("-")
            if os.path.exists(path):
                env_file(path, env)
            elif not optional:
                die("EnvironmentFile %s does not exist" % path)
    if credentials(svc):
        env["CREDENTIALS_DIRECTORY"] = credentials_directory(unit)
    user = get(svc, "User")
    if user:
        pw = pwd.getpwnam(user)
        env.update(HOME=pw.pw_dir, USER=user, LOGNAME=user, SHELL=pw.pw_shell)
    env.setdefault("PATH", SYSTEMD_PATH)
    return env


def argv(unit, svc, env):
    cmd = get(svc, "ExecStart")
    if not cmd:
        die("%s has no ExecStart=" % unit)
    cmd = re.sub(r"^[-@:+!]+", "", specifiers(cmd, unit))
    out = []
    for word, quoted in words(cmd):
        m = re.match(r"^\$([A-Za-z_][A-Za-z0-9_]*)$", word)
        if m and not quoted:
            out.extend(env.get(m.group(1), "").split())
            continue
        out.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                          lambda m: env.get(m.group(1), ""), word))
    return out


def main():
    if len(sys.argv) < 3:
        die("usage: unit-command.py UNIT argv|env|credentials|get KEY")
    unit, what = sys.argv[1], sys.argv[2]
    svc = service(unit)
    if what == "get" and len(sys.argv) == 4:
        value = get(svc, sys.argv[3])
        if value is None:
            sys.exit(1)
        print(value)
        return
    if what == "credentials":
        records = [x for pair in credentials(svc) for x in pair]
        sys.stdout.write("".join(r + "\0" for r in records))
        return
    env = environment(unit, svc)
    if what == "env":
        records = ["%s=%s" % kv for kv in sorted(env.items())]
    elif what == "argv":
        records = argv(unit, svc, env)
    else:
        die("unknown request %r" % what)
    sys.stdout.write("".join(r + "\0" for r in records))


main()
