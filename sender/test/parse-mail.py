#!/usr/bin/env python3
"""parse-mail.py - reads email files with Python's email package (an
independent MIME parser) and prints what the sender's tests check, as one
JSON array, one object per file, in the order given."""

import email
import email.policy
import email.utils
import json
import sys


def describe(path):
    with open(path, "rb") as f:
        raw = f.read()
    head, _, _ = raw.partition(b"\n\n")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    defects = [type(d).__name__ for d in msg.defects]
    for name, value in msg.items():
        defects += ["%s: %s" % (name, type(d).__name__)
                    for d in getattr(value, "defects", ())]
    date_ok = False
    try:
        dt = email.utils.parsedate_to_datetime(msg["Date"])
        date_ok = dt is not None and dt.tzinfo is not None
    except (TypeError, ValueError):
        pass
    to = [[a.display_name, a.addr_spec] for a in msg["To"].addresses] if msg["To"] else []
    frm = [[a.display_name, a.addr_spec] for a in msg["From"].addresses] if msg["From"] else []
    try:
        body = msg.get_content()
    except Exception as e:  # noqa: BLE001 - reported to the test
        body = None
        defects.append("body: %s" % e)
    return {
        "file": path,
        "defects": defects,
        "header_names": [k for k, _ in msg.items()],
        "headers_ascii": all(b < 128 for b in head),
        "max_line": max((len(l) for l in raw.split(b"\n")), default=0),
        "lone_dot_lines": sum(1 for l in raw.split(b"\n") if l in (b".", b".\r")),
        "crlf": b"\r" in raw,
        "mime_version": msg["MIME-Version"],
        "message_id": msg["Message-ID"],
        "date_ok": date_ok,
        "from": frm,
        "to": to,
        "subject": msg["Subject"],
        "content_type": msg.get_content_type(),
        "charset": msg.get_content_charset(),
        "cte": msg["Content-Transfer-Encoding"],
        "auto_submitted": msg["Auto-Submitted"],
        "body": body,
    }


if __name__ == "__main__":
    json.dump([describe(p) for p in sys.argv[1:]], sys.stdout, ensure_ascii=True)
    sys.stdout.write("\n")
