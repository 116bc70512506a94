"""A two-minute soak (fuzz/soak.py): `analyser live` on a veth pair between
network namespaces while real clients and servers (pyftpdlib and ftplib,
http.server and curl, openssl s_server and s_client) exchange traffic at a
fixed rate.  Nothing dropped, every transfer in the logs with its exact
size, memory flat after the warm-up.  `python fuzz/soak.py --minutes 30` is
the long run.  Deselect with -m "not soak"."""
import shutil

import pytest

import netns
from fuzz import soak

NETNS_PROBLEM = netns.unavailable()


@pytest.mark.soak
@pytest.mark.skipif(NETNS_PROBLEM is not None, reason=str(NETNS_PROBLEM))
@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("openssl") is None,
                    reason="needs curl and openssl")
def test_two_minutes_of_real_traffic_lose_nothing_and_memory_stays_flat(tmp_path):
    figures = soak.soak(2.0, tmp_path, log=lambda *a: None)
    assert figures["problems"] == [], figures
    assert figures["drops"] == (0, 0, 0)
    assert figures["rounds"] >= 100                       # one round a second
    assert figures["made"] == figures["logged"]
    assert figures["made"]["retr"] == figures["made"]["tls"] == figures["rounds"]
    assert figures["rss_growth_after_warmup_mb"] <= soak.FLAT_TOLERANCE_MB
