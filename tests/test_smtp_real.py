"""SMTP against real programs: aiosmtpd (Debian's python3-aiosmtpd) serves,
swaks sends, in two network namespaces; tcpdump records the client's end and
the recording is replayed.

The server listens on port 2525, where no port hint applies, so the session
is found by content.  One plain session carries a message, one switches to
TLS with STARTTLS and sends its message encrypted.  What the analyser logs
is checked against what the programs themselves say: swaks's transcript
(the lines it sent and received), the certificate file (its SHA-256 is the
chain fingerprint) and the SNI swaks was told to send.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time

import pytest

import netns
from conftest import read_zeek_log, replay_to

SYSTEM_PYTHON = "/usr/bin/python3"
PORT = 2525


def missing() -> str | None:
    problem = netns.unavailable()
    if problem:
        return problem
    for tool in ("swaks", "tcpdump", "openssl"):
        if shutil.which(tool) is None:
            return "needs %s (Debian package %s)" % (tool, tool)
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import aiosmtpd"], capture_output=True)
    if probe.returncode != 0:
        return "needs aiosmtpd for %s (Debian package python3-aiosmtpd)" % SYSTEM_PYTHON
    return None


pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def wait_for_port(net, timeout=15.0):
    probe = ("import socket, sys\n"
             "socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.5).close()\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if net.run("client", [sys.executable, "-c", probe, net.server_ip, PORT],
                   check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError("aiosmtpd did not start listening")


def sent_lines(transcript: str, prefix: str) -> list[str]:
    """swaks's transcript: ' -> ' lines it sent, '<-  ' lines it received
    (encrypted ones are marked with '~')."""
    return [line[len(prefix):] for line in transcript.splitlines() if line.startswith(prefix)]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smtp-real")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=mail.test", "-keyout", tmp / "key.pem", "-out", tmp / "cert.pem",
                    "-days", "2"], check=True, capture_output=True)
    swaks = ["swaks", "--server", None, "--from", "alice@example.org",
             "--to", "bob@example.net", "--ehlo", "client.test"]
    with netns.VethPair(tag="m") as net:
        swaks[2] = "%s:%d" % (net.server_ip, PORT)
        net.popen("server", [SYSTEM_PYTHON, "-m", "aiosmtpd", "-n", "-l",
                             "%s:%d" % (net.server_ip, PORT), "--tlscert", tmp / "cert.pem",
                             "--tlskey", tmp / "key.pem", "--no-requiretls"],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(net)
        pcap = tmp / "smtp.pcap"
        with net.capture("client", pcap, "tcp port %d" % PORT) as tcpdump:
            plain = net.run("client", [*swaks, "--header", "Subject: plain test message",
                                       "--body", "BODY-NOT-LOGGED"], timeout=60)
            # TLS 1.2, so the certificate travels in the clear (TLS 1.3 encrypts it).
            tls = net.run("client", [*swaks, "--tls", "--tls-sni", "mail.test",
                                     "--tls-protocol", "tlsv1_2",
                                     "--header", "Subject: over tls"], timeout=60)
            time.sleep(1.0)
    assert re.search(r"\b0 packets dropped by kernel", tcpdump.summary), tcpdump.summary
    logs = replay_to(pcap, tmp / "logs")
    return {"plain": plain.stdout, "tls": tls.stdout, "logs": logs, "tmp": tmp,
            "server_ip": net.server_ip}


def connections(recorded):
    rows = read_zeek_log(recorded["logs"] / "conn.log")
    assert len(rows) == 2
    return sorted(rows, key=lambda r: float(r["ts"]))


def test_services_are_found_by_content(recorded):
    plain, tls = connections(recorded)
    assert plain["service"] == "smtp"
    assert set(tls["service"].split(",")) == {"smtp", "ssl"}


def test_plain_message_is_logged_as_swaks_sent_it(recorded):
    transcript = recorded["plain"]
    sent = sent_lines(transcript, " -> ")
    header = {line.partition(": ")[0].upper(): line.partition(": ")[2] for line in sent
              if ": " in line}
    plain, _ = connections(recorded)
    [row] = [r for r in read_zeek_log(recorded["logs"] / "smtp.log") if r["uid"] == plain["uid"]]
    assert row["helo"] == "client.test" and row["tls"] == "F" and row["trans_depth"] == "1"
    assert row["mailfrom"] == "alice@example.org" and row["rcptto"] == "bob@example.net"
    assert row["subject"] == "plain test message" == header["SUBJECT"]
    assert row["msg_id"] == header["MESSAGE-ID"] and row["date"] == header["DATE"]
    assert row["user_agent"] == header["X-MAILER"] and row["from"] == header["FROM"]
    # The reply to the end of data: the last reply before swaks's QUIT.
    received = sent_lines(transcript, "<-  ")
    assert row["last_reply"] == received[-2]
    assert row["path"] == "%s,%s" % (recorded["server_ip"], plain["id.orig_h"])
    assert "BODY-NOT-LOGGED" not in (recorded["logs"] / "smtp.log").read_text()


def test_starttls_session_switches_to_tls_with_the_sni_swaks_sent(recorded):
    _, tls = connections(recorded)
    [row] = [r for r in read_zeek_log(recorded["logs"] / "smtp.log") if r["uid"] == tls["uid"]]
    received = sent_lines(recorded["tls"], "<-  ")
    assert row["tls"] == "T" and row["helo"] == "client.test"
    assert row["last_reply"] == received[-1]            # the 220 to STARTTLS, in the clear
    assert row["last_reply"].startswith("220 ")
    [ssl_row] = read_zeek_log(recorded["logs"] / "ssl.log")
    assert ssl_row["uid"] == tls["uid"]
    assert ssl_row["server_name"] == "mail.test" and ssl_row["established"] == "T"
    assert ssl_row["version"] == "TLSv12"
    der = ssl.PEM_cert_to_DER_cert((recorded["tmp"] / "cert.pem").read_text())
    assert ssl_row["cert_chain_fps"] == hashlib.sha256(der).hexdigest()
    assert socket.inet_aton(ssl_row["id.resp_h"]) == socket.inet_aton(recorded["server_ip"])
