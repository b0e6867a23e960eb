"""End to end alerts (issue 12): a real Prometheus evaluates the shipped rules on what node_exporter reads.

Debian's prometheus-node-exporter on the hosts of group node_exporter (prepare.yml) reads the textfile
the role wrote. Debian's prometheus server (the package that gives promtool, tests/harness/setup.sh)
runs on the controller, listens on loopback, scrapes those hosts on the scenario's Docker network and
evaluates roles/gpu_health/files/prometheus/inferops-gpu-health.rules.yml. Its HTTP API must show, per
host, exactly the alerts the host's report calls for: the ACS host's acs finding (pair 2-3) firing, the
ECC host's checks and ECC errors firing, the healthy H100 host nothing, not even pending.

Staleness: the ECC hosts' textfile is made two hours old before the scrape (what a stopped timer
leaves behind) and only they must raise InferopsGpuHealthReportStale, with node_exporter 1.5 (Debian
12) and 1.9 (Debian 13) both.
"""

import json
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import testinfra
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "roles/gpu_health/files/prometheus/inferops-gpu-health.rules.yml"
REPORT = "/var/lib/inferops/gpu_health/report.json"
TEXTFILE = "/var/lib/node_exporter/textfile_collector/inferops_gpu_health.prom"
STALE_TOPOLOGY = "ecc-bad"
STALE_AGE_S = 7200
# Each alert is told apart by these labels (others, such as a repair action, may be added).
KEY = ("alertname", "check", "gpu", "pair")
SETTLE_TIMEOUT_S = 60


def node(name):
    return testinfra.get_host("ansible://" + name, ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def derived_rules(directory):
    """The shipped rules with every `for:` cut to 1 s, so that the test waits seconds, not 30 minutes.

    Nothing else changes (expressions, labels, annotations are the shipped ones). A `for` still
    above zero keeps the pending -> firing path in the test; that each rule waits its full `for` is
    promtool's test (tests/unit/test_prometheus_rules.py)."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    path = directory / "rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path, **params):
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def alerts(self):
        return self.get("/api/v1/alerts")["alerts"]


def wait_for(what, probe, timeout=SETTLE_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = probe()
        except OSError:
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"Prometheus: {what} not reached in {timeout} s"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def targets():
    """{inventory name: (testinfra host, topology, IPv4 address)} of the node_exporter hosts."""
    runner = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
    found = {}
    for name in runner.get_hosts("node_exporter"):
        target = node(name)
        addresses = [a for a in target.interface("eth0").addresses if "." in a]
        assert addresses, name
        found[name] = (target, runner.get_variables(name)["fake_nvml_topology"], addresses[0])
    assert {topology for _t, topology, _a in found.values()} >= {"h100-sxm-8", "pcie-4-acs", STALE_TOPOLOGY}
    return found


@pytest.fixture(scope="module")
def stale(targets):
    """The STALE_TOPOLOGY hosts' textfile two hours old while Prometheus runs; its mtime restored after."""
    saved = {}
    for name, (target, topology, _address) in targets.items():
        if topology == STALE_TOPOLOGY:
            saved[name] = target.check_output("stat -c %%Y %s", TEXTFILE)
            with target.sudo():
                target.check_output("touch -d @%s %s", str(int(time.time()) - STALE_AGE_S), TEXTFILE)
    yield set(saved)
    for name, mtime in saved.items():
        with targets[name][0].sudo():
            targets[name][0].check_output("touch -d @%s %s", mtime, TEXTFILE)


@pytest.fixture(scope="module")
def prometheus(targets, stale, tmp_path_factory):
    """Prometheus scraping every node_exporter host each second, stopped when the module ends."""
    assert stale
    work = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(derived_rules(work))],
        # instance = the inventory name, as a fleet would label it (the runbooks use it with --limit).
        "scrape_configs": [{"job_name": "node", "static_configs": [
            {"targets": [f"{address}:9100"], "labels": {"instance": name}}
            for name, (_target, _topology, address) in sorted(targets.items())]}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    api = Prometheus(port)
    try:
        wait_for("ready", lambda: urllib.request.urlopen(api.base + "/-/ready", timeout=5).status == 200)
        # Every target scraped, its textfile read without error, the gpu_health metrics in.
        wait_for("all targets up", lambda: len([t for t in api.get("/api/v1/targets")["activeTargets"]
                                                if t["health"] == "up"]) == len(targets))
        wait_for("every textfile scraped", lambda: len(api.get(
            "/api/v1/query", query="inferops_gpu_health_verdict == 1")["result"]) == len(targets))
        # Settled: at least one alert, none pending, the same set over three evaluations.
        seen = []

        def settled():
            alerts = api.alerts()
            seen.append(sorted(json.dumps(a["labels"], sort_keys=True) for a in alerts
                               if a["state"] == "firing"))
            return (alerts and all(a["state"] == "firing" for a in alerts)
                    and len(seen) >= 6 and seen[-1] == seen[-3] == seen[-6])
        wait_for("alerts settled", settled)
        yield api
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        print((work / "prometheus.log").read_text()[-4000:])


def key(labels):
    return tuple(labels.get(name, "") for name in KEY)


def expected_alerts(report, topology, stale_host):
    """What the shipped rules must raise for this host, from its JSON report (the same run wrote both)."""
    rule = {"fail": "InferopsGpuHealthCheckFailing", "warn": "InferopsGpuHealthCheckWarning"}
    wanted = set()
    for check in report["checks"]:
        if check["verdict"] in rule:
            gpu = "" if check.get("gpu") is None else str(check["gpu"])
            pair = "-".join(str(g) for g in check["pair"]) if check.get("pair") else ""
            wanted.add((rule[check["verdict"]], check["id"], gpu, pair))
    if topology == "ecc-bad":
        # GPU 5: 4 uncorrectable errors and a row remap waiting for a reset (tests/fake_nvml).
        wanted |= {("InferopsGpuEccUncorrected", "", "5", ""), ("InferopsGpuRowRemapPending", "", "5", "")}
    if stale_host:
        wanted.add(("InferopsGpuHealthReportStale", "", "", ""))
    return wanted


def test_rules_loaded_and_healthy(prometheus):
    groups = prometheus.get("/api/v1/rules")["groups"]
    shipped = yaml.safe_load(RULES.read_text())["groups"]
    assert [(g["name"], [r["name"] for r in g["rules"]]) for g in groups] == \
        [(g["name"], [r["alert"] for r in g["rules"]]) for g in shipped]
    broken = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert not broken


def test_textfile_read_by_node_exporter(prometheus, targets):
    errors = prometheus.get("/api/v1/query", query="node_textfile_scrape_error")["result"]
    assert {e["metric"]["instance"]: e["value"][1] for e in errors} == {name: "0" for name in targets}
    mtimes = prometheus.get("/api/v1/query", query='node_textfile_mtime_seconds{file=~".*inferops_gpu_health[.]prom"}')
    assert {m["metric"]["instance"] for m in mtimes["result"]} == set(targets)


def test_alerts_per_host(host, prometheus, targets, stale):
    name = host.ansible.get_variables()["inventory_hostname"]
    if name not in targets:
        pytest.skip("no node_exporter on this host")
    topology = targets[name][1]
    report = json.loads(host.file(REPORT).content_string)
    mine = [a for a in prometheus.alerts() if a["labels"]["instance"] == name]
    assert all(a["state"] == "firing" for a in mine), mine
    firing = {key(a["labels"]) for a in mine}
    assert firing == expected_alerts(report, topology, name in stale)
    if topology == "h100-sxm-8":
        assert report["summary"]["verdict"] == "pass" and not firing
    if topology == "pcie-4-acs":
        acs = next(a for a in mine if key(a["labels"]) == ("InferopsGpuHealthCheckFailing", "acs", "", "2-3"))
        assert acs["labels"]["severity"] == "critical"
        assert "disable ACS" in acs["annotations"]["runbook"]
        assert acs["annotations"]["summary"].startswith(f"GPU health check acs fails on {name} ")
