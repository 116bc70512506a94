"""The QUIC analyser on real QUIC: ngtcp2's example client and server
(Debian packages ngtcp2-client and ngtcp2-server: `gtlsclient`,
`gtlsserver`, GnuTLS inside) talking HTTP/3 between two network namespaces,
captured by tcpdump on the client's veth end, then replayed.

Oracles: what the client was told and says (the server name it resolves
and sends as SNI, "Negotiated ALPN is h3", "Negotiated cipher suite is
AES-128-GCM", the Destination Connection ID of its first Initial in its
packet trace) and tshark's own decryption of the Initial packets (SNI and
ALPN of the ClientHellos).  With the server's address validation (-V) the
server answers with a Retry: two quic.log rows, one ssl.log row with both
ClientHellos.

The client resolves the server's name through the client namespace's
/etc/netns/<namespace>/hosts (`ip netns exec` mounts it over /etc/hosts),
written for the test and removed after it: the example client sends the
host name as SNI only when it is a name, not an address.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest

import netns
from conftest import REPO, read_zeek_log

SERVER_NAME = "quic.test.example"
NETNS_PROBLEM = netns.unavailable()
MISSING = [tool for tool in ("gtlsclient", "gtlsserver", "openssl", "tcpdump")
           if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(
    NETNS_PROBLEM is not None or bool(MISSING),
    reason=str(NETNS_PROBLEM or "needs %s (Debian: ngtcp2-client, ngtcp2-server, openssl, "
                                "tcpdump)" % ", ".join(MISSING)))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    d = tmp_path_factory.mktemp("quic-cert")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=" + SERVER_NAME, "-batch"],
                   check=True, capture_output=True)
    return cert, key


def capture_http3(tmp_path, certificate, server_options=()):
    """One HTTP/3 request from gtlsclient to gtlsserver on UDP 443: (pcap,
    client output)."""
    cert, key = certificate
    pcap = tmp_path / "quic.pcap"
    with netns.VethPair(tag="q") as net:
        net.offloads(False)
        hosts_dir = "/etc/netns/" + net.ns["client"]
        os.makedirs(hosts_dir, exist_ok=True)
        try:
            with open(hosts_dir + "/hosts", "w") as hosts:
                hosts.write("%s %s\n" % (net.server_ip, SERVER_NAME))
            server = net.popen("server", ["gtlsserver", "-q", *server_options, net.server_ip,
                                          "443", key, cert],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            with net.capture("client", pcap, "udp") as dump:
                client = net.run("client", ["gtlsclient", "--exit-on-all-streams-close",
                                            SERVER_NAME, "443", "https://%s/" % SERVER_NAME],
                                 timeout=60, check=False)
                time.sleep(1.0)                    # the last packets through the capture
            server.kill()
        finally:
            shutil.rmtree(hosts_dir, ignore_errors=True)
    assert client.returncode == 0, client.stderr[-2000:]
    assert re.search(r"\b0 packets dropped by kernel", dump.summary), dump.summary
    return pcap, client.stdout + client.stderr


def replay(pcap, tmp_path):
    logs = tmp_path / "logs"
    done = subprocess.run([sys.executable, "-m", "analyser", "replay", pcap, "--logs", logs,
                           "-q"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return logs


def first_initial_dcids(client_output):
    """The DCIDs of the client's Initial packets, in the order it sent them
    (its packet trace: "pkt tx pkn=0 dcid=0x... type=Initial")."""
    dcids = []
    for dcid in re.findall(r"pkt tx pkn=\d+ dcid=0x([0-9a-f]*) .*type=Initial", client_output):
        if dcid not in dcids:
            dcids.append(dcid)
    return dcids


def tshark_hellos(pcap):
    """(SNI, ALPN) of each ClientHello as tshark decrypts and dissects it."""
    if shutil.which("tshark") is None:
        return None
    out = subprocess.run(["tshark", "-r", pcap, "-Y", "tls.handshake.type == 1", "-T", "fields",
                          "-e", "tls.handshake.extensions_server_name",
                          "-e", "tls.handshake.extensions_alpn_str"],
                         capture_output=True, text=True, check=True).stdout
    return [tuple(line.split("\t")) for line in out.splitlines() if line]


@pytest.mark.parametrize("retry", [False, True], ids=["handshake", "retry"])
def test_ngtcp2_http3_handshake_sni_and_alpn(tmp_path, certificate, retry):
    pcap, said = capture_http3(tmp_path, certificate, ["-V"] if retry else [])
    assert "Negotiated ALPN is h3" in said, said[-2000:]
    assert "Negotiated cipher suite is AES-128-GCM" in said
    dcids = first_initial_dcids(said)
    assert len(dcids) == (2 if retry else 1), dcids
    logs = replay(pcap, tmp_path)

    quic_rows = read_zeek_log(logs / "quic.log")
    assert [r["client_initial_dcid"] for r in quic_rows] == dcids
    assert all((r["server_name"], r["client_protocol"], r["version"])
               == (SERVER_NAME, "h3", "1") for r in quic_rows)
    if retry:
        assert quic_rows[0]["history"] == "ISr" and quic_rows[0]["server_scid"] == "-"
    assert quic_rows[-1]["history"].startswith("ISis")

    (ssl,) = read_zeek_log(logs / "ssl.log")
    assert (ssl["version"], ssl["cipher"], ssl["curve"], ssl["server_name"]) == \
        ("TLSv13", "TLS_AES_128_GCM_SHA256", "x25519", SERVER_NAME)
    assert ssl["ssl_history"] == ("CCs" if retry else "Cs")
    assert (ssl["established"], ssl["resumed"], ssl["next_protocol"]) == ("F", "F", "-")

    conn = read_zeek_log(logs / "conn.log")
    assert [(r["id.resp_p"], r["service"]) for r in conn] == [("443", "quic,ssl")]
    assert not (logs / "weird.log").exists() and not (logs / "analyzer.log").exists()

    hellos = tshark_hellos(pcap)
    if hellos is not None:                     # tshark decrypts the Initials itself
        # (after a Retry it dissects the first ClientHello only)
        assert hellos and set(hellos) == {(SERVER_NAME, "h3")}, hellos
