"""--no-payload-in-logs: what users sent (user names, passwords, file names,
paths, commands, message text) is in no log, event or violation record;
sizes, addresses, times and the structure of every record stay."""
from __future__ import annotations

import json

from conftest import REPO, read_zeek_log
from test_ftp import Session, login


def outputs_text(out):
    return "\n".join(p.read_text() for p in sorted(out.iterdir()) if p.is_file())


def test_no_user_content_in_any_output_of_a_real_session(run_cli, tmp_path):
    truth = json.loads((REPO / "traces" / "ftp-loopback.json").read_text())
    names = [t["file"] for t in truth["transfers"] if t["file"]]
    runs = {}
    for label, extra in (("plain", []), ("private", ["--no-payload-in-logs"])):
        out = tmp_path / label
        out.mkdir()
        p = run_cli("replay", REPO / "traces" / "ftp-loopback.pcap", "--logs", out,
                    "--events", out / "events.json", "-q", *extra)
        assert p.returncode == 0, p.stderr
        runs[label] = out
    plain, private = outputs_text(runs["plain"]), outputs_text(runs["private"])
    secrets = names + ["alice", "Transfer complete"]
    assert all(s in plain for s in secrets)                  # they were there ...
    assert not [s for s in secrets if s in private]          # ... and are gone
    # What is not payload stays: every transfer with its size, every row.
    for log in ("conn.log", "ftp.log", "transfers.log"):
        assert len(read_zeek_log(runs["private"] / log)) == \
            len(read_zeek_log(runs["plain"] / log))
    sizes = lambda out: [t["bytes"] for t in read_zeek_log(out / "transfers.log")]
    assert sizes(runs["private"]) == sizes(runs["plain"])
    ftp = read_zeek_log(runs["private"] / "ftp.log")
    assert {r["user"] for r in ftp} == {"-"} and {r["command"] for r in ftp} >= {"RETR", "STOR"}


def test_violation_data_and_weird_lines_are_payload(replay, tmp_path):
    from analyser import registry
    ses = Session(port=21)
    login(ses, user="bob-the-user")
    ses.cmd(b"\x01secret-junk\r\n")                           # a weird with the line
    ses.reply("HTTP/1.1 200 OK secret-reply\r\n")              # a violation with its data
    ses.close()
    events = []
    replay(ses.frames, analysers=registry.select()[0], logs_dir=str(tmp_path / "logs"),
           on_event=events.append, no_payload=True)
    text = json.dumps(events) + outputs_text(tmp_path / "logs")
    assert "secret" not in text and "bob-the-user" not in text
    violation, = read_zeek_log(tmp_path / "logs" / "analyzer.log")
    assert violation["failure_reason"] == "non-numeric reply code"
    assert violation["failure_data"] == "-"
    assert any(e["event"] == "weird" and e["name"] == "FTP_invalid_command" for e in events)
