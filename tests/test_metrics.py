"""Prometheus metrics (analyser/metrics.py): the exporter's families read from
the engine when scraped, a real Prometheus server scraping a paced replay
and answering with the figures of the engine's own summary, and the Grafana
dashboard naming only exported metrics."""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from conftest import REPO, read_zeek_log
from packets import write_pcap
from test_ftp import Session, login, passive_retr

from analyser.metrics import FAMILIES, PREFIX, family_names


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def paced_ftp_trace(path, transfers=6, gap=0.5):
    """One FTP session whose transfers are spread over a few seconds."""
    ses = Session(port=2100)
    login(ses)
    for i in range(transfers):
        passive_retr(ses, 30000 + i, "file%d.bin" % i, 1000 * (i + 1) ** 3)
        ses.wait(gap)
    ses.close()
    write_pcap(path, ses.frames)
    return path


def scrape(port: int) -> str:
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.read().decode()


def samples(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_the_exporter_serves_the_engines_figures(run_cli, tmp_path):
    trace = paced_ftp_trace(tmp_path / "ftp.pcap", transfers=3, gap=0.4)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyser", "replay", trace, "--logs", tmp_path / "logs",
         "--metrics-port", str(port), "--metrics-linger", "3", "--speed", "1"],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:               # the last figures, served during the linger
            try:
                text = scrape(port)
                if "analyser_transfer_size_bytes_count" in text and \
                        samples(text).get(("analyser_connections_active", ())) == 0:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "no final figures from the exporter"
            time.sleep(0.2)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    got = samples(text)
    packets = int(re.search(r"packets\s+([\d,]+)", err).group(1).replace(",", ""))
    assert got[("analyser_packets_total", ())] == packets
    transfers = read_zeek_log(tmp_path / "logs" / "transfers.log")
    assert got[("analyser_transfer_size_bytes_count", (("protocol", "ftp"),))] == len(transfers)
    assert got[("analyser_transfer_size_bytes_sum", (("protocol", "ftp"),))] == \
        sum(int(t["bytes"]) for t in transfers)
    assert got[("analyser_connections_by_service_total", (("service", "ftp"),))] == 1
    # The data connections were counted in compiled code: their bytes are the files'.
    assert got[("analyser_bulk_bytes_total", ())] == sum(int(t["bytes"]) for t in transfers)
    assert got[("analyser_connections_total", (("proto", "tcp"),))] == 1 + len(transfers)
    # Everything read was analysed: nothing waits in the ring.
    assert got[("analyser_ring_backlog_records", ())] == 0
    # Port 2100 is nobody's: found by content, by gridftp (it handles plain FTP too).
    assert got[("analyser_analysis_seconds_total", (("analyser", "gridftp"),))] > 0
    # Nothing undeclared is exported; every family without labels always is
    # (a labelled one has no sample until a label value occurs).
    names = {name for name, _ in got}
    assert names <= set(family_names())
    assert {PREFIX + n for n, kind, labels, _ in FAMILIES
            if kind != "histogram" and not labels} <= names


def test_metrics_port_in_use_is_a_clear_error(run_cli, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = run_cli("replay", REPO / "traces" / "ftp-loopback.pcap", "--logs", tmp_path,
                    "--metrics-port", port)
    assert p.returncode == 2 and "cannot serve metrics on 127.0.0.1:%d" % port in p.stderr
    assert "Traceback" not in p.stderr


def dashboard_expressions():
    board = json.loads((REPO / "dashboards" / "analyser.json").read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    exprs += [v["query"] for v in board["templating"]["list"]]
    return exprs


def test_every_dashboard_expression_names_exported_metrics():
    exported = set(family_names())
    used = set()
    for expr in dashboard_expressions():
        names = set(re.findall(r"\b(analyser_[a-z_]+)\b", expr))
        assert names, expr
        assert names <= exported, (expr, names - exported)
        used |= names
    # The dashboard shows rates, drops, connections, analyser time, transfer sizes.
    for needed in ("analyser_packets_total", "analyser_dropped_packets_total",
                   "analyser_connections_active", "analyser_analysis_seconds_total",
                   "analyser_transfer_size_bytes_bucket"):
        assert needed in used


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="Debian's prometheus package is not installed (make install does)")
def test_a_real_prometheus_server_scrapes_the_figures_of_the_summary(tmp_path):
    trace = paced_ftp_trace(tmp_path / "ftp.pcap")
    exporter, web = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: analyser\n    static_configs:\n"
        "      - targets: ['127.0.0.1:%d']\n" % exporter)
    server = subprocess.Popen(
        ["prometheus", "--config.file", str(tmp_path / "prometheus.yml"),
         "--storage.tsdb.path", str(tmp_path / "data"),
         "--web.listen-address", "127.0.0.1:%d" % web],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    api = "http://127.0.0.1:%d" % web

    def query(expr):
        url = api + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as r:
            result = json.loads(r.read())["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(api + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "prometheus did not start"
            time.sleep(0.2)
        p = subprocess.run(
            [sys.executable, "-m", "analyser", "replay", trace, "--logs", tmp_path / "logs",
             "--metrics-port", str(exporter), "--metrics-linger", "4", "--speed", "1"],
            cwd=REPO, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        packets = int(re.search(r"packets\s+([\d,]+)", p.stderr).group(1).replace(",", ""))
        transfers = read_zeek_log(tmp_path / "logs" / "transfers.log")
        expected = {
            "analyser_packets_total": packets,
            'analyser_transfer_size_bytes_count{protocol="ftp"}': len(transfers),
            'analyser_transfer_size_bytes_sum{protocol="ftp"}':
                sum(int(t["bytes"]) for t in transfers),
            'analyser_transfer_size_bytes_bucket{protocol="ftp",le="131072.0"}':
                sum(int(t["bytes"]) <= 131072 for t in transfers),
        }
        # The series' last value (Prometheus keeps it after the target is gone).
        got = {expr: query("last_over_time(%s[1m])" % expr) for expr in expected}
        assert got == {k: float(v) for k, v in expected.items()}
        # Prometheus saw it grow while the replay ran: more than one scrape.
        assert query("count_over_time(analyser_packets_total[1m])") >= 2
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_readme_metrics_table_matches_the_families():
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Metrics (Prometheus)"):]
    table = section[section.index("| metric | type | labels | meaning |"):]
    rows = [l for l in table.splitlines()[2:] if l.startswith("|")]
    names = [l.split("|")[1].strip().strip("`") for l in rows[:len(FAMILIES)]]
    assert names == [PREFIX + name for name, _, _, _ in FAMILIES]
