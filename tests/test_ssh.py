"""The SSH analyser (protocols/ssh.py): banners, KEXINIT parsing and RFC 4253
7.1 negotiation, the host key, Zeek's authentication heuristic, malformed
packets and non-SSH input, run on the author's harness with SSH byte
streams built here from the RFCs; then a real OpenSSH server and client in
network namespaces, captured and replayed, checked against what `ssh -vv`
says it negotiated."""
from __future__ import annotations

import base64
import hashlib
import struct

import pytest

from analyser import ORIG, RESP
from analyser.testing import Hole, run
from protocols.ssh import Ssh

# -- SSH's wire format, from RFC 4251/4253 -------------------------------------------


def string(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


def packet(payload: bytes) -> bytes:
    """An unencrypted binary packet: length, padding length, payload, padding
    (at least 4 bytes, total a multiple of 8)."""
    padding = 8 - (5 + len(payload)) % 8
    if padding < 4:
        padding += 8
    return struct.pack("!IB", 1 + len(payload) + padding, padding) + payload + b"\0" * padding


def kexinit(kex="curve25519-sha256,diffie-hellman-group14-sha256",
            host_key="ssh-ed25519,rsa-sha2-512", ciphers="aes128-ctr,aes256-ctr",
            ciphers_s2c=None, macs="hmac-sha2-256,hmac-sha1", compression="none") -> bytes:
    lists = [kex, host_key, ciphers, ciphers_s2c or ciphers, macs, macs,
             compression, compression, "", ""]
    body = b"\x14" + bytes(range(16)) + b"".join(string(x.encode()) for x in lists)
    return packet(body + b"\0" + b"\0\0\0\0")


HOST_KEY = string(b"ssh-ed25519") + string(bytes(range(32)))
NEWKEYS = packet(b"\x15")


def ecdh_reply(blob=HOST_KEY) -> bytes:
    return packet(b"\x1f" + string(blob) + string(b"Q" * 32) + string(b"signature"))


def handshake(client_kex=None, server_kex=None, server_lines=b"", host_key_msg=None):
    """Banners, KEXINITs, the ECDH exchange and NEWKEYS, as packets come."""
    return [(RESP, server_lines + b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
            (ORIG, b"SSH-2.0-OpenSSH_9.2p1\r\n"),
            (ORIG, client_kex or kexinit()), (RESP, server_kex or kexinit()),
            (ORIG, packet(b"\x1e" + string(b"Q" * 32))),
            (RESP, (host_key_msg or ecdh_reply()) + NEWKEYS), (ORIG, NEWKEYS)]


def ssh_keygen_fingerprint(blob: bytes) -> str:
    """OpenSSH's sshkey_fingerprint(SSH_DIGEST_SHA256, SSH_FP_BASE64)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def only_row(result) -> dict:
    row, = result.logs["ssh"]
    return row


# -- banners -------------------------------------------------------------------------------


def test_banners_with_lines_before_the_servers():
    result = run(Ssh, handshake(server_lines=b"Welcome to the lab\r\nno entry\n"))
    row = only_row(result)
    assert (row["client"], row["server"], row["version"]) == (
        "SSH-2.0-OpenSSH_9.2p1", "SSH-2.0-OpenSSH_9.2p1 Debian-2", 2)
    server_version, = result.of("ssh_server_version")
    assert server_version["pre_banner_lines"] == 2
    assert result.services == ["ssh"] and result.confirmed and not result.errors
    assert not result.violations


@pytest.mark.parametrize("client, server, version", [
    ("SSH-1.99-Cisco-1.25", "SSH-2.0-Cisco-1.25", 2),
    ("SSH-2.0-x", "SSH-1.99-y", 2),
    ("SSH-1.5-x", "SSH-1.99-y", 1),
    ("SSH-1.99-x", "SSH-1.99-y", 2),
    ("SSH-1.5-x", "SSH-2.0-y", None),
])
def test_session_version_follows_zeeks_rules(client, server, version):
    result = run(Ssh, [(ORIG, client.encode() + b"\r\n"), (RESP, server.encode() + b"\n")])
    row = only_row(result)
    assert (row["client"], row["server"], row.get("version")) == (client, server, version)
    mismatch = [w for w in result.of("weird") if w["name"] == "SSH_version_mismatch"]
    assert len(mismatch) == (version is None)


def test_a_client_that_sends_no_banner_is_a_violation():
    result = run(Ssh, [(ORIG, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                       (RESP, b"HTTP/1.1 400 Bad Request\r\n")])
    violation, = result.violations
    assert violation["failure_reason"] == "client did not start with an SSH- banner"
    assert violation["failure_data"] == "GET / HTTP/1.1\r\n"
    assert "ssh" not in result.logs and result.services == [] and not result.confirmed


def test_a_server_that_sends_binary_before_any_banner_is_a_violation():
    result = run(Ssh, [(RESP, b"\x16\x03\x01\x00\x05hello\0\n"), (ORIG, b"SSH-2.0-x\r\n")])
    violation, = result.violations
    assert violation["failure_reason"] == "no SSH- banner from the server"
    assert not result.confirmed and result.services == []


def ssh1_packet(msg: int, data: bytes) -> bytes:
    """SSH 1: length (type + data + CRC), 8 - length % 8 bytes of padding, type, data, CRC."""
    length = 1 + len(data) + 4
    return struct.pack("!I", length) + b"\0" * (8 - length % 8) + bytes([msg]) + data + bytes(4)


def test_ssh1_is_confirmed_by_the_clients_session_key():
    script = [(RESP, b"SSH-1.99-OpenSSH_6.6\n"), (ORIG, b"SSH-1.5-OpenSSH_6.2\n"),
              (RESP, ssh1_packet(2, b"k" * 200)), (ORIG, ssh1_packet(3, b"s" * 140)),
              (ORIG, b"\xaa" * 48), (RESP, b"\xbb" * 16)]
    result = run(Ssh, script[:3])
    assert not result.confirmed and only_row(result)["version"] == 1
    result = run(Ssh, script)
    assert result.confirmed and result.services == ["ssh"]
    row = only_row(result)
    assert (row["version"], row["auth_attempts"]) == (1, 0)
    assert "auth_success" not in row and "kex_alg" not in row
    assert result.delivered[ORIG] == len(b"SSH-1.5-OpenSSH_6.2\n") + len(script[3][1])


@pytest.mark.parametrize("client, server, direction", [
    ("192.168.1.32", "128.2.10.238", "OUTBOUND"), ("128.2.10.238", "10.0.0.1", "INBOUND"),
    ("10.0.0.1", "172.16.5.4", None), ("8.8.8.8", "1.1.1.1", None),
    ("fd00::1", "2001:db8::1", "OUTBOUND")])
def test_direction_as_zeek_sets_it_from_private_address_space(client, server, direction):
    from analyser.runtime import ConnId
    result = run(Ssh, handshake(), conn_id=ConnId(client, 40000, server, 22, "tcp"))
    assert only_row(result)["direction"] == direction


# -- key exchange ------------------------------------------------------------------------------


def test_negotiation_takes_the_clients_first_algorithm_the_server_has():
    client = kexinit(kex="sntrup761x25519-sha512@openssh.com,curve25519-sha256,ecdh-sha2-nistp256",
                     host_key="rsa-sha2-512,ssh-ed25519",
                     ciphers="aes256-gcm@openssh.com,aes128-ctr,aes256-ctr",
                     macs="umac-64@openssh.com,hmac-sha2-512,hmac-sha2-256",
                     compression="zlib@openssh.com,none")
    server = kexinit(kex="ecdh-sha2-nistp256,curve25519-sha256",
                     host_key="ssh-ed25519,rsa-sha2-512",
                     ciphers="aes256-ctr,aes128-ctr", macs="hmac-sha2-256,hmac-sha2-512",
                     compression="none,zlib@openssh.com")
    row = only_row(run(Ssh, handshake(client, server)))
    assert (row["kex_alg"], row["host_key_alg"], row["cipher_alg"], row["mac_alg"],
            row["compression_alg"]) == ("curve25519-sha256", "rsa-sha2-512", "aes128-ctr",
                                        "hmac-sha2-512", "zlib@openssh.com")


def test_capabilities_event_carries_each_sides_lists():
    result = run(Ssh, handshake(kexinit(ciphers="a,b"), kexinit(ciphers="b")))
    client, server = result.of("ssh_capabilities")
    assert (client["is_server"], client["encryption_algorithms_client_to_server"]) == (False, "a,b")
    assert (server["is_server"], server["encryption_algorithms_server_to_client"]) == (True, "b")


def test_directions_that_negotiate_differently_are_both_named():
    client = kexinit(ciphers="aes128-ctr,aes256-ctr", ciphers_s2c="aes256-ctr,aes128-ctr")
    row = only_row(run(Ssh, handshake(client, kexinit())))
    assert row["cipher_alg"] == "To server: aes128-ctr, to client: aes256-ctr"


def test_an_aead_cipher_still_gets_the_negotiated_mac_as_zeek_logs_it():
    both = kexinit(ciphers="chacha20-poly1305@openssh.com", macs="hmac-sha2-256-etm@openssh.com")
    row = only_row(run(Ssh, handshake(both, both)))
    assert (row["cipher_alg"], row["mac_alg"]) == ("chacha20-poly1305@openssh.com",
                                                   "hmac-sha2-256-etm@openssh.com")


def test_no_common_algorithm():
    row = only_row(run(Ssh, handshake(kexinit(ciphers="3des-cbc"), kexinit())))
    assert row["cipher_alg"] == "Algorithm negotiation failed"


def test_host_key_from_the_ecdh_reply_split_over_segments():
    reply = ecdh_reply() + NEWKEYS
    script = handshake()[:-2] + [(RESP, reply[:7]), (RESP, reply[7:40]), (RESP, reply[40:]),
                                 (ORIG, NEWKEYS)]
    result = run(Ssh, script)
    row = only_row(result)
    assert row["host_key_fingerprint"] == ssh_keygen_fingerprint(HOST_KEY)
    md5 = hashlib.md5(HOST_KEY).hexdigest()
    assert row["host_key"] == ":".join(md5[i:i + 2] for i in range(0, 32, 2))
    assert result.confirmed


def test_host_key_from_a_group_exchange_reply_is_message_33():
    gex = kexinit(kex="diffie-hellman-group-exchange-sha256")
    blob = string(b"ssh-rsa") + string(b"\x01\x00\x01") + string(b"\x00" + b"\xc3" * 64)
    script = [(RESP, b"SSH-2.0-s\r\n"), (ORIG, b"SSH-2.0-c\r\n"), (ORIG, gex), (RESP, gex),
              (ORIG, packet(b"\x22" + struct.pack("!III", 2048, 3072, 8192))),
              (RESP, packet(b"\x1f" + string(b"\x05" * 64) + string(b"\x02"))),   # GROUP
              (ORIG, packet(b"\x20" + string(b"E" * 64))),
              (RESP, packet(b"\x21" + string(blob) + string(b"F") + string(b"sig")) + NEWKEYS)]
    row = only_row(run(Ssh, script))
    assert row["kex_alg"] == "diffie-hellman-group-exchange-sha256"
    assert row["host_key_fingerprint"] == ssh_keygen_fingerprint(blob)


# -- malformed packets ------------------------------------------------------------------------


@pytest.mark.parametrize("bad, weird", [
    (struct.pack("!IB", 2, 0) + b"\0\0", "SSH_bad_packet_length"),
    (struct.pack("!IB", 12, 12) + b"\0" * 12, "SSH_bad_packet_length"),
    (struct.pack("!IB", 0x7FFFFFFF, 4) + b"\x14", "SSH_max_packet_length_exceeded"),
])
def test_a_malformed_packet_length_is_a_weird_and_a_violation(bad, weird):
    result = run(Ssh, [(RESP, b"SSH-2.0-s\r\n"), (ORIG, b"SSH-2.0-c\r\n"), (ORIG, bad)])
    assert [w["name"] for w in result.of("weird")] == [weird]
    assert result.of("weird")[0]["side"] == "orig"
    violation, = result.violations
    assert violation["failure_reason"].startswith(weird)
    assert not result.confirmed and not result.errors
    assert only_row(result)["client"] == "SSH-2.0-c"       # what was known is logged


def test_a_cut_kexinit_is_a_weird():
    cut = packet(b"\x14" + bytes(16) + struct.pack("!I", 500) + b"curve")
    result = run(Ssh, [(RESP, b"SSH-2.0-s\r\n"), (ORIG, b"SSH-2.0-c\r\n"), (ORIG, cut)])
    assert [w["name"] for w in result.of("weird")] == ["SSH_truncated_string"]
    assert "kex_alg" not in only_row(result) and not result.errors


# -- after NEWKEYS: Zeek's authentication heuristic, message events ------------------------------


def encrypted(*sizes_by_side):
    """(side, n) -> n bytes of ciphertext in one segment."""
    return [(side, b"\xaa" * n) for side, n in sizes_by_side]


def test_success_after_failures_as_zeeks_heuristic_counts_it():
    after = encrypted((ORIG, 52), (RESP, 52),      # SERVICE_REQUEST / SERVICE_ACCEPT
                      (ORIG, 68), (RESP, 84),      # "none" -> USERAUTH_FAILURE
                      (ORIG, 100), (RESP, 84),     # a password -> failure
                      (ORIG, 100), (RESP, 36),     # another -> SUCCESS (52 - 16)
                      (ORIG, 500), (RESP, 84))     # the session: not read any more
    result = run(Ssh, handshake() + after)
    row = only_row(result)
    assert (row["auth_success"], row["auth_attempts"]) == (True, 2)
    assert [e["authenticated"] for e in result.of("ssh_auth_attempted")] == [False, True]
    # Once the row is final the streams are released: the last segments never reach Python.
    assert result.delivered[ORIG] == sum(len(d) for s, d in handshake() + after[:-2] if s == ORIG)


def test_failures_only_are_logged_at_the_end():
    after = encrypted((ORIG, 52), (RESP, 52), (ORIG, 68), (RESP, 84),
                      (ORIG, 100), (RESP, 84), (ORIG, 100), (RESP, 84))
    row = only_row(run(Ssh, handshake() + after))
    assert (row["auth_success"], row["auth_attempts"]) == (False, 2)


def test_a_banner_is_skipped_once_and_none_auth_success():
    banner = encrypted((ORIG, 52), (RESP, 52), (ORIG, 68), (RESP, 52 + 300), (RESP, 84),
                       (ORIG, 100), (RESP, 36))
    row = only_row(run(Ssh, handshake() + banner))
    assert (row["auth_success"], row["auth_attempts"]) == (True, 1)
    none = encrypted((ORIG, 52), (RESP, 52), (ORIG, 68), (RESP, 36))
    row = only_row(run(Ssh, handshake() + none))
    assert (row["auth_success"], row["auth_attempts"]) == (True, 1)


def test_server_data_before_the_clients_first_encrypted_segment_is_ignored():
    after = encrypted((RESP, 300), (ORIG, 52), (RESP, 52), (ORIG, 68), (RESP, 36))
    row = only_row(run(Ssh, handshake() + after))
    assert (row["auth_success"], row["auth_attempts"]) == (True, 1)


def test_no_guess_under_compression():
    z = kexinit(compression="zlib@openssh.com")
    after = encrypted((ORIG, 52), (RESP, 52), (ORIG, 68), (RESP, 36))
    result = run(Ssh, handshake(z, z) + after)
    row = only_row(result)
    assert "auth_success" not in row and row["auth_attempts"] == 0
    assert result.delivered[RESP] == sum(len(d) for s, d in handshake(z, z) if s == RESP)


def test_the_rest_of_the_segment_carrying_newkeys_is_encrypted():
    script = handshake()[:-1] + [(ORIG, NEWKEYS + b"\xaa" * 52), (RESP, b"\xbb" * 52),
                                 (ORIG, b"\xaa" * 68), (RESP, b"\xbb" * 36)]
    result = run(Ssh, script, config={"messages": True})
    assert [(e["side"], e["len"]) for e in result.of("ssh_message")] == [
        ("orig", 52), ("resp", 52), ("orig", 68), ("resp", 36)]
    assert only_row(result)["auth_success"] is True


def test_message_events_go_on_to_the_end_only_when_asked():
    after = encrypted((ORIG, 52), (RESP, 52), (ORIG, 68), (RESP, 36),
                      (ORIG, 1000), (RESP, 2000), (ORIG, 44))
    result = run(Ssh, handshake() + after, config={"messages": True})
    events = result.of("ssh_message")
    assert [(e["side"], e["len"]) for e in events] == [
        ("orig", 52), ("resp", 52), ("orig", 68), ("resp", 36),
        ("orig", 1000), ("resp", 2000), ("orig", 44)]
    assert events[-1]["ts"] > events[0]["ts"]
    assert not run(Ssh, handshake() + after).of("ssh_message")


def test_a_gap_stops_parsing_and_the_row_is_still_written():
    script = handshake()[:3] + [Hole(RESP, 500)] + handshake()[3:]
    result = run(Ssh, script)
    assert [w["name"] for w in result.of("weird")] == ["SSH_content_gap"]
    row = only_row(result)
    assert row["server"] == "SSH-2.0-OpenSSH_9.2p1 Debian-2" and "kex_alg" not in row


# -- a real OpenSSH server and client ------------------------------------------------------------

SSHD = "/usr/sbin/sshd"


def _real_ssh_unavailable() -> str | None:
    import shutil

    from netns import unavailable
    for tool in (SSHD, "ssh", "ssh-keygen", "tcpdump"):
        if shutil.which(tool) is None:
            return "needs %s (Debian: openssh-server, openssh-client, tcpdump)" % tool
    return unavailable()


SSHD_CONFIG = """\
Port 22
Port 2222
ListenAddress {ip}
HostKey {d}/host_ed25519
HostKey {d}/host_rsa
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
"""

# (port, extra ssh options): OpenSSH's defaults on 22 (an AEAD cipher: the MAC
# is implicit, and this one MAC is offered); forced classic choices on 2222,
# a port with no hint, found by content.
CONNECTIONS = [
    (22, ["-o", "MACs=hmac-sha2-512"]),
    (2222, ["-o", "KexAlgorithms=diffie-hellman-group-exchange-sha256",
            "-o", "HostKeyAlgorithms=rsa-sha2-256", "-c", "aes256-ctr",
            "-m", "hmac-sha2-256", "-o", "Compression=yes"]),
]


def parse_ssh_debug(text: str) -> dict:
    """What `ssh -vv` says it negotiated (OpenSSH's kex.c and sshconnect.c)."""
    import re
    found = {}
    patterns = {
        "kex_alg": r"debug1: kex: algorithm: (\S+)",
        "host_key_alg": r"debug1: kex: host key algorithm: (\S+)",
        "s2c": r"debug1: kex: server->client cipher: (\S+) MAC: (\S+) compression: (\S+)",
        "c2s": r"debug1: kex: client->server cipher: (\S+) MAC: (\S+) compression: (\S+)",
        "remote": r"debug1: Remote protocol version (\S+), remote software version (.+)",
        "local": r"debug1: Local version string (.+)",
        "host_key": r"debug1: Server host key: (\S+) (SHA256:\S+)",
        "authenticated": r"Authenticated to \S+ .*using \"(\w+)\"",
    }
    for key, pattern in patterns.items():
        m = re.search(pattern, text)
        assert m, "ssh -vv did not say %r:\n%s" % (key, text)
        found[key] = m.groups() if len(m.groups()) > 1 else m.group(1)
    return found


@pytest.mark.skipif(_real_ssh_unavailable() is not None, reason=str(_real_ssh_unavailable()))
def test_openssh_session_matches_what_ssh_vv_reports(tmp_path, run_cli):
    import os
    import subprocess
    import time

    from conftest import read_zeek_log
    from netns import VethPair

    d = tmp_path
    for kind in ("ed25519", "rsa"):
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", d / ("host_" + kind)],
                       check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "user"], check=True)
    (d / "authorized_keys").write_text((d / "user.pub").read_text())
    os.makedirs("/run/sshd", exist_ok=True)                # sshd's privilege separation dir
    pcap = d / "ssh.pcap"
    with VethPair(tag="ssh") as net:
        (d / "sshd_config").write_text(SSHD_CONFIG.format(ip=net.server_ip, d=d))
        sshd = net.popen("server", [SSHD, "-D", "-e", "-f", d / "sshd_config"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        reports = []
        with net.capture("client", pcap, "tcp"):
            for port, options in CONNECTIONS:
                for _ in range(50):                         # until sshd listens
                    done = net.run("client", [
                        "ssh", "-vv", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                        "-o", "UserKnownHostsFile=/dev/null", "-F", "/dev/null",
                        "-i", d / "user", "-p", port, *options, "root@" + net.server_ip,
                        "true"], check=False)
                    if "Connection refused" not in done.stderr:
                        break
                    time.sleep(0.1)
                assert done.returncode == 0, done.stderr
                reports.append(parse_ssh_debug(done.stderr))
        sshd.terminate()
    out = d / "out"
    done = run_cli("replay", pcap, "--logs", out, "-q")
    assert done.returncode == 0, done.stderr
    rows = read_zeek_log(out / "ssh.log")
    services = {r["id.resp_p"]: r["service"] for r in read_zeek_log(out / "conn.log")}
    assert [r["id.resp_p"] for r in rows] == ["22", "2222"]
    assert services == {"22": "ssh", "2222": "ssh"}
    for row, report, (port, _) in zip(rows, reports, CONNECTIONS):
        proto, software = report["remote"]
        assert row["server"] == "SSH-%s-%s" % (proto, software)
        assert row["client"] == report["local"]
        assert row["version"] == "2"
        assert (row["kex_alg"], row["host_key_alg"]) == (report["kex_alg"],
                                                          report["host_key_alg"])
        assert report["c2s"] == report["s2c"]          # Zeek logs one name when equal
        cipher, mac, compression = report["c2s"]
        assert (row["cipher_alg"], row["compression_alg"]) == (cipher, compression)
        # ssh -vv prints <implicit> for an AEAD cipher; Zeek logs the negotiated MAC.
        assert row["mac_alg"] == (mac if mac != "<implicit>" else "hmac-sha2-512")
        key_type, fingerprint = report["host_key"]
        assert row["host_key_fingerprint"] == fingerprint
        assert report["authenticated"] == "publickey"
    assert rows[0]["cipher_alg"] == "chacha20-poly1305@openssh.com"
    # Zeek's segment-size guess agrees with the client's "Authenticated" on 22;
    # under zlib compression (2222) it makes none, as in Zeek.
    assert (rows[0]["auth_success"], rows[0]["auth_attempts"]) == ("T", "1")
    assert (rows[1]["auth_success"], rows[1]["auth_attempts"]) == ("-", "0")
    assert (rows[1]["kex_alg"], rows[1]["compression_alg"]) == (
        "diffie-hellman-group-exchange-sha256", "zlib@openssh.com")
