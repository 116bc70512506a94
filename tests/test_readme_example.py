"""The README's "write your own analyser" example, run exactly as written
there: the code block is taken from README.md, saved as http_summary.py and
run with the command the README gives."""
import json
import re

from conftest import REPO, read_zeek_log


def readme_blocks():
    text = (REPO / "README.md").read_text()
    section = text.split("## Write your own analyser", 1)[1]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.S)


def test_readme_analyser_example_runs_as_documented(run_cli, tmp_path):
    blocks = readme_blocks()
    code = next(body for lang, body in blocks if lang == "python" and "class HttpSummary" in body)
    command = next(body for lang, body in blocks if lang == "sh").strip()
    (tmp_path / "http_summary.py").write_text(code)
    args = command.split()[1:]                     # drop the program name
    assert args[:2] == ["replay", "traces/http-loopback.pcap"]
    args = [str(REPO / a) if a.startswith("traces/") else a for a in args]
    args = [str(tmp_path / a) if a in ("http_summary.py", "out/") else a for a in args]
    p = run_cli(*args)
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    exchanges = [e for e in events if e["event"] == "http_exchange"]
    # What the trace holds is written down by the script that recorded it.
    expected = json.loads((REPO / "traces" / "http-loopback.json").read_text())["requests"]
    assert sorted(e["body_bytes"] for e in exchanges) == sorted(r["body_bytes"] for r in expected)
    assert sorted(e["status"] for e in exchanges) == sorted(r["status"] for r in expected)
    assert all(e["method"] == "GET" for e in exchanges)
    assert all(e["uid"].startswith("C") and e["id.resp_p"] == 2180 for e in exchanges)
    assert not [e for e in events if e["event"] == "analyser_error"]
    rows = read_zeek_log(tmp_path / "out" / "conn.log")
    http_conns = {e["uid"] for e in exchanges}
    assert {r["uid"] for r in rows if r["service"] == "http"} == http_conns


def test_readme_signature_and_harness_examples_run_as_documented():
    """The Pop3 analyser of "How an analyser is chosen" and the harness test of
    "Testing an analyser without the engine", run together as written."""
    blocks = [body for lang, body in readme_blocks() if lang == "python"]
    analyser_code = next(b for b in blocks if "class Pop3" in b)
    test_code = next(b for b in blocks if "def test_pop3_logs_each_command" in b)
    namespace: dict = {}
    exec(compile(analyser_code + "\n" + test_code, "README.md", "exec"), namespace)
    namespace["test_pop3_logs_each_command"]()
    # And the violation of the same analyser, on bytes that are not POP3.
    from analyser import RESP
    from analyser.testing import run
    result = run(namespace["Pop3"], [(RESP, b"220 an FTP server\r\n")])
    assert [v["failure_reason"] for v in result.violations] == ["no POP3 greeting"]
    assert result.services == [] and not result.confirmed
