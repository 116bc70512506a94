"""`analyser new NAME`: the author's starting point, an analyser module and
its test written from a template.

Role in the data flow: none at run time; a tool for writing analysers.  The
generated `NAME.py` is a small but complete line-protocol analyser (a
signature, a port hint, confirm/violation, a declared log, weirds) and
`test_NAME.py` tests it with `analyser.testing.run`; both work as written
(`pytest test_NAME.py`, `analyser replay t.pcap --load NAME.py`), so an
author changes a working analyser rather than starting from nothing.
"""
from __future__ import annotations

import keyword
import os
import sys

MODULE_TEMPLATE = '''\
"""{name}: commands and replies of a line protocol (made by `analyser new {name}`).

Role in the data flow: flows -> streams -> **analysers ({name})** -> sinks
({name}.log, weird events).

As generated it reads a POP3-shaped protocol: the server greets with a
`+OK ...` line, then each command line of the client gets one `+OK ...` or
`-ERR ...` reply line.  Change the signature, the port hint, the checks and
the log's fields to fit yours; `pytest test_{name}.py` tests it without
engine or pcap, and

    analyser replay trace.pcap --load {name}.py --logs out/

runs it (out/{name}.log; conn.log's service says {name}).
"""
from analyser import ORIG, RESP, Analyser, Gap, Signature, conn_id_fields

MAX_LINE = 512                  # bytes of a line kept (RFC 1939: 512 for a POP3 reply)
STATUS = (b"+OK", b"-ERR")      # what every reply starts with


class {class_name}(Analyser):
    """Logs each command with the status of its reply."""
    name = "{name}"
    ports = {{110}}                               # a hint: found on any port by its signature
    signatures = (Signature(RESP, b"+OK"),)      # the server's greeting, checked in C
    logs = {{"{name}": [                          # {name}.log: Zeek's field types
        ("ts", "time"), ("uid", "string"), *conn_id_fields("client", "server"),
        ("command", "string"), ("arg", "string"), ("status", "string"), ("reply", "string")]}}
    payload_fields = frozenset({{"arg", "reply"}})   # unset under --no-payload-in-logs

    def main(self):
        greeting = self.read_line(RESP, MAX_LINE)
        if not greeting.startswith(STATUS):
            # Not this protocol: the next candidate analyser gets the connection.
            self.violation("no +OK/-ERR greeting", greeting)
        self.confirm()                           # conn.log's service: {name}
        while True:                              # a side's end (StreamEnd) ends main()
            try:
                line = self.read_line(ORIG, MAX_LINE)
                reply = self.read_line(RESP, MAX_LINE)
            except Gap as gap:
                # Bytes never captured: the exchange they held is lost, the
                # next read starts after the hole.
                self.weird("{name}_content_gap", size=gap.size)
                continue
            if not line.endswith(b"\\n"):
                self.weird("{name}_line_too_long", limit=MAX_LINE)
            command, _, arg = line.strip().partition(b" ")
            status, _, text = reply.strip().partition(b" ")
            if status not in STATUS:
                self.weird("{name}_bad_reply", reply=reply[:40].decode("utf-8", "replace"))
            self.log("{name}", {{
                "ts": self.ts, "uid": self.uid, "id.orig_h": self.id.orig_h,
                "id.orig_p": self.id.orig_p, "id.resp_h": self.id.resp_h,
                "id.resp_p": self.id.resp_p,
                "command": command.decode("utf-8", "replace").upper(),
                "arg": arg.decode("utf-8", "replace") or None,
                "status": status.decode("utf-8", "replace"),
                "reply": text.decode("utf-8", "replace") or None}})
'''

TEST_TEMPLATE = '''\
\"\"\"Tests of {name}.py on scripted byte streams (analyser.testing.run): no
engine, no pcap.  Run them with `pytest test_{name}.py`.\"\"\"
from analyser import ORIG, RESP
from analyser.testing import Hole, run

from {name} import {class_name}


def test_each_command_is_logged_with_its_reply():
    script = [(RESP, b"+OK ready\\r\\n"), (ORIG, b"user alice\\r\\n"),
              (RESP, b"+OK send your password\\r\\n"), (ORIG, b"STAT\\r\\n"),
              (RESP, b"-ERR"), (RESP, b" not logged in\\r\\n")]
    result = run({class_name}, script)
    rows = result.logs["{name}"]
    assert [(r["command"], r["arg"], r["status"], r["reply"]) for r in rows] == [
        ("USER", "alice", "+OK", "send your password"), ("STAT", None, "-ERR", "not logged in")]
    assert result.services == ["{name}"] and result.confirmed
    assert not result.of("weird") and not result.errors


def test_another_protocol_is_a_violation():
    script = [(ORIG, b"GET / HTTP/1.1\\r\\n\\r\\n"), (RESP, b"HTTP/1.1 200 OK\\r\\n")]
    result = run({class_name}, script)
    violation, = result.violations
    assert violation["failure_reason"] == "no +OK/-ERR greeting"
    assert violation["failure_data"] == "HTTP/1.1 200 OK\\r\\n"
    assert result.services == [] and "{name}" not in result.logs


def test_a_reply_without_status_and_a_hole_are_weirds():
    script = [(RESP, b"+OK\\r\\n"), (ORIG, b"NOOP\\r\\n"), (RESP, b"maybe\\r\\n"),
              (ORIG, b"LI"), Hole(ORIG, 20), (ORIG, b"QUIT\\r\\n"), (RESP, b"+OK bye\\r\\n")]
    result = run({class_name}, script)
    assert [w["name"] for w in result.of("weird")] == ["{name}_bad_reply",
                                                       "{name}_content_gap"]
    assert [(r["command"], r["status"]) for r in result.logs["{name}"]] == [
        ("NOOP", "maybe"), ("QUIT", "+OK")]
'''

# Names that would hide a module the generated files import.
TAKEN = frozenset({"analyser", "protocols", "greenlet", "pytest"})


class ScaffoldError(ValueError):
    """A name or place `analyser new` cannot use: one line for the user."""


def class_name(name: str) -> str:
    """'my_proto' -> 'MyProto' (a leading underscore kept out)."""
    parts = [p for p in name.split("_") if p]
    return "".join(p[0].upper() + p[1:] for p in parts) or "Analyser_"


def check_name(name: str) -> None:
    if not name.isidentifier() or not name.isascii():
        raise ScaffoldError("%r is not a Python identifier (letters, digits and _, not "
                            "starting with a digit): the module is imported by that name"
                            % name)
    if keyword.iskeyword(name):
        raise ScaffoldError("%r is a Python keyword: choose another name" % name)
    if name in TAKEN or name in sys.stdlib_module_names or name.startswith("test_"):
        raise ScaffoldError("%r would hide a module of the same name (Python's, the "
                            "analyser's, or a test's): choose another name" % name)
    if class_name(name) == "Analyser":
        raise ScaffoldError("%r would give a class named like analyser.Analyser" % name)


def create(name: str, directory: str = ".") -> list[str]:
    """Write NAME.py and test_NAME.py into `directory`; returns their paths.
    Nothing is written when either exists."""
    check_name(name)
    if not os.path.isdir(directory):
        raise ScaffoldError("%s is not a directory" % directory)
    values = {"name": name, "class_name": class_name(name)}
    files = [(os.path.join(directory, name + ".py"), MODULE_TEMPLATE),
             (os.path.join(directory, "test_%s.py" % name), TEST_TEMPLATE)]
    existing = [path for path, _ in files if os.path.exists(path)]
    if existing:
        raise ScaffoldError("%s already exist%s: nothing written (remove %s or choose "
                            "another name)" % (" and ".join(existing),
                                               "s" if len(existing) == 1 else "",
                                               "it" if len(existing) == 1 else "them"))
    for path, template in files:
        with open(path, "x", encoding="utf-8") as f:
            f.write(template.format(**values))
    return [path for path, _ in files]
