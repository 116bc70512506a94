"""The author's kit: `analyser new NAME` (analyser/scaffold.py) writes an
analyser and its test that work as written — its tests pass under pytest in
a fresh directory and a trace replayed with `--load` gets its log and
service — and refuses bad names and existing files; `analyser
list-analysers` says where each analyser comes from and how it is chosen."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO, read_zeek_log
from packets import ACK, PSH, TcpPeer, close, handshake, timed, write_pcap


def in_fresh_dir_env() -> dict:
    """The environment of a user's shell: this checkout's analyser importable,
    nothing of the test suite's."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    return env


def test_new_analyser_passes_its_own_tests_as_written(run_cli, tmp_path):
    done = run_cli("new", "demo", "--dir", tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path)) == ["demo.py", "test_demo.py"]
    assert done.stdout.splitlines()[:2] == ["wrote %s" % (tmp_path / "demo.py"),
                                            "wrote %s" % (tmp_path / "test_demo.py")]
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "test_demo.py"], cwd=tmp_path, env=in_fresh_dir_env(),
                           capture_output=True, text=True, timeout=120)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout


def demo_trace(path, port):
    c, s = TcpPeer("10.1.1.1", 41000, 100), TcpPeer("10.1.1.2", port, 900)
    c.connect(s)
    frames = handshake(c, s) + [
        s.send(PSH | ACK, b"+OK demo server ready\r\n"), c.send(PSH | ACK, b"USER bob\r\n"),
        s.send(PSH | ACK, b"+OK\r\n"), c.send(PSH | ACK, b"LIST 1\r\n"),
        s.send(PSH | ACK, b"-ERR no such message\r\n")] + close(c, s)
    return write_pcap(path, timed(frames))


@pytest.mark.parametrize("port", [110, 5110])      # its port hint, and content detection
def test_new_analyser_runs_on_a_trace_with_load(run_cli, tmp_path, port):
    assert run_cli("new", "demo", "--dir", tmp_path).returncode == 0
    trace = demo_trace(tmp_path / "demo.pcap", port)
    out = tmp_path / "out"
    done = run_cli("replay", trace, "--load", tmp_path / "demo.py", "--logs", out, "-q")
    assert done.returncode == 0, done.stderr
    rows = read_zeek_log(out / "demo.log")
    assert [(r["command"], r["arg"], r["status"], r["reply"], r["id.resp_p"]) for r in rows] == [
        ("USER", "bob", "+OK", "-", str(port)),
        ("LIST", "1", "-ERR", "no such message", str(port))]
    conn, = read_zeek_log(out / "conn.log")
    assert conn["service"] == "demo"


def test_new_names_the_class_after_the_module(run_cli, tmp_path):
    assert run_cli("new", "my_proto2", "--dir", tmp_path).returncode == 0
    text = (tmp_path / "my_proto2.py").read_text()
    assert "class MyProto2(Analyser):" in text and 'name = "my_proto2"' in text
    assert "from my_proto2 import MyProto2" in (tmp_path / "test_my_proto2.py").read_text()


def test_new_never_overwrites(run_cli, tmp_path):
    (tmp_path / "test_demo.py").write_text("# mine\n")
    done = run_cli("new", "demo", "--dir", tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == ("analyser new: %s already exists: nothing written (remove "
                                   "it or choose another name)" % (tmp_path / "test_demo.py"))
    assert sorted(os.listdir(tmp_path)) == ["test_demo.py"]
    assert (tmp_path / "test_demo.py").read_text() == "# mine\n"


@pytest.mark.parametrize("name, message", [
    ("my-proto", "'my-proto' is not a Python identifier (letters, digits and _, not starting "
                 "with a digit): the module is imported by that name"),
    ("2fa", "'2fa' is not a Python identifier (letters, digits and _, not starting with a "
            "digit): the module is imported by that name"),
    ("class", "'class' is a Python keyword: choose another name"),
    ("socket", "'socket' would hide a module of the same name (Python's, the analyser's, or "
               "a test's): choose another name"),
    ("analyser", "'analyser' would hide a module of the same name (Python's, the "
                 "analyser's, or a test's): choose another name"),
])
def test_new_rejects_names_that_cannot_be_modules(run_cli, tmp_path, name, message):
    done = run_cli("new", name, "--dir", tmp_path)
    assert (done.returncode, done.stderr.strip()) == (2, "analyser new: " + message)
    assert os.listdir(tmp_path) == []


def test_new_into_a_missing_directory(run_cli, tmp_path):
    done = run_cli("new", "demo", "--dir", tmp_path / "nowhere")
    assert (done.returncode, done.stderr.strip()) == (
        2, "analyser new: %s is not a directory" % (tmp_path / "nowhere"))


# -- list-analysers -----------------------------------------------------------------------


def entries(text: str) -> dict[str, list[str]]:
    """list-analysers output -> {name: its lines}."""
    out = {}
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        out[lines[0].split(":")[0]] = lines
    return out


def test_list_analysers_says_where_each_comes_from_and_how_it_is_chosen(run_cli, tmp_path):
    assert run_cli("new", "demo", "--dir", tmp_path).returncode == 0
    done = run_cli("list-analysers", "--load", tmp_path / "demo.py")
    assert done.returncode == 0, done.stderr
    listed = entries(done.stdout)
    assert listed["ssh"][:6] == [
        "ssh: SSH banners, key exchange algorithms, host key and Zeek's auth guess.",
        "    from:      built-in module protocols/ssh.py",
        "    transport: tcp",
        "    ports:     22 (hints; --analyser ssh:ports=N,M sets them)",
        '    signature: orig starts "SSH-" (any case)',
        '    signature: resp starts "SSH-" (any case)']
    assert listed["ssh"][6].startswith("    log ssh.log: ts uid id.orig_h id.orig_p")
    assert listed["ssh"][7].startswith("    option messages=False: emit an ssh_message event")
    assert listed["demo"] == [
        "demo: Logs each command with the status of its reply.",
        "    from:      --load %s" % (tmp_path / "demo.py"),
        "    transport: tcp",
        "    ports:     110 (hints; --analyser demo:ports=N,M sets them)",
        '    signature: resp starts "+OK"',
        "    log demo.log: ts uid id.orig_h id.orig_p id.resp_h id.resp_p command arg status "
        "reply"]
    assert listed["gridftp-mode-e"][2:] == [
        "    transport: tcp", "    chosen:    only for connections another analyser expects"]
    assert '    signature: resp starts "220" (after leading spaces)' in listed["ftp"]
    assert ('    signature: orig starts "\\x16\\x03???\\x01???\\x03" (? = any byte)'
            in listed["gridftp-data"])


def test_list_analysers_names_what_a_loaded_module_replaces(run_cli, tmp_path):
    mine = tmp_path / "myssh.py"
    mine.write_text("from analyser import Analyser\n\n\n"
                    "class Mine(Analyser):\n    name = 'ssh'\n    protocol = 'udp'\n\n"
                    "    def main(self):\n        pass\n")
    done = run_cli("list-analysers", "--load", mine)
    assert done.returncode == 0, done.stderr
    assert entries(done.stdout)["ssh"] == [
        "ssh",
        "    from:      --load %s, replacing the one from built-in module protocols/ssh.py"
        % mine,
        "    transport: udp",
        "    chosen:    only for connections another analyser expects"]


def test_list_analysers_with_a_bad_load_is_a_usage_error(run_cli, tmp_path):
    done = run_cli("list-analysers", "--load", tmp_path / "missing.py")
    assert done.returncode == 2
    assert "no such file" in done.stderr
