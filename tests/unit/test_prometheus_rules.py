"""The alerting rules shipped for the gpu_health textfile (roles/gpu_health/files/prometheus/), evaluated
by Prometheus' own rule engine: `promtool test rules` on series taken from the textfile the module
renders for simulated hosts (fake NVML topologies), so a rule that no longer matches a renamed metric
or a label fails here. Each expected alert is derived from the host's own checks; the ACS host's acs
finding must fire and the healthy host must raise nothing."""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import run_health
from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_render import render_prometheus

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = "roles/gpu_health/files/prometheus/inferops-gpu-health.rules.yml"
# instance -> topology; every host's textfile is scraped by node_exporter (job node).
HOSTS = {"acs:9100": "pcie-4-acs", "h100:9100": "h100-sxm-8", "ecc:9100": "ecc-bad",
         "missing:9100": "missing-gpu", "nodriver:9100": "no-driver"}
LINE = re.compile(r'^(?P<name>[a-z_][a-z0-9_]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
EVAL = "2h"


def promtool():
    found = shutil.which("promtool")
    assert found, "promtool is missing: run `make setup` (it installs Debian's prometheus package)"
    return found


def rules():
    with open(f"{REPO}/{RULES}") as handle:
        return {rule["alert"]: rule for group in yaml.safe_load(handle)["groups"] for rule in group["rules"]}


def series(text, instance):
    """[(name, labels, value)] of a textfile, with the labels node_exporter's scrape adds."""
    found = []
    for line in text.splitlines():
        match = LINE.match(line)
        if not line.startswith("#") and match:
            # An empty label is no label to Prometheus (gpu="" on a host-wide check).
            labels = dict(item for item in re.findall(r'([a-z_][a-z0-9_]*)="([^"]*)"', match["labels"] or "") if item[1])
            found.append((match["name"], dict(labels, instance=instance, job="node"), float(match["value"])))
    return found


def selector(name, labels):
    return name + "{" + ",".join('%s="%s"' % item for item in sorted(labels.items())) + "}"


def expand(template, labels, value):
    """The two template forms the rules use: {{ $labels.x }} and {{ $value }} (Go prints 4.0 as 4)."""
    text = re.sub(r"\{\{ \$labels\.([a-z_]+) \}\}", lambda m: labels.get(m[1], ""), template)
    return text.replace("{{ $value }}", "%g" % value)


def alert(rule, labels, value):
    wanted = {key: val for key, val in labels.items() if key != "__name__"}
    wanted.update(rule.get("labels", {}))
    return {"exp_labels": wanted,
            "exp_annotations": {key: expand(text, labels, value) for key, text in rule["annotations"].items()}}


@pytest.fixture
def textfiles(fake_gpu_host):
    found = {}
    for instance, topology in HOSTS.items():
        host = fake_gpu_host(topology)
        found[instance] = render_prometheus(run_health(
            sysfs_root=host.sysfs_root, procfs_root=host.procfs_root, kernel_log=host.kernel_log,
            expected_gpu_count=8 if topology in ("h100-sxm-8", "missing-gpu") else 4))
    return found


def test_promtool_check_rules():
    run = subprocess.run([promtool(), "check", "rules", RULES], cwd=REPO, capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_alerts_fire_on_the_rendered_textfiles(textfiles, tmp_path):
    by_alert = rules()
    inputs, expected = [], {name: [] for name in by_alert}
    for instance, text in textfiles.items():
        for name, labels, value in series(text, instance):
            number = "%d" % value if value.is_integer() else repr(value)
            inputs.append({"series": selector(name, labels), "values": "%s+0x150" % number})
            if name == "inferops_gpu_health_check" and labels["verdict"] in ("fail", "warn"):
                kind = "Failing" if labels["verdict"] == "fail" else "Warning"
                rule = by_alert["InferopsGpuHealthCheck" + kind]
                expected[rule["alert"]].append(alert(rule, labels, value))
            elif name == "inferops_gpu_ecc_uncorrected_volatile_errors" and value > 0:
                expected["InferopsGpuEccUncorrected"].append(alert(by_alert["InferopsGpuEccUncorrected"], labels, value))
            elif name == "inferops_gpu_remapped_rows_pending" and value == 1:
                expected["InferopsGpuRowRemapPending"].append(alert(by_alert["InferopsGpuRowRemapPending"], labels, value))
            elif name == "inferops_gpu_health_nvml_up" and value == 0:
                expected["InferopsGpuNvmlDown"].append(alert(by_alert["InferopsGpuNvmlDown"], labels, value))
        counts = {name: value for name, _labels, value in series(text, instance)}
        missing = counts.get("inferops_gpu_health_gpus_expected", 0) - counts.get("inferops_gpu_health_gpus", 0)
        if "inferops_gpu_health_gpus" in counts and missing > 0:
            # A binary operation drops the metric name and keeps the shared labels.
            expected["InferopsGpuMissing"].append(
                alert(by_alert["InferopsGpuMissing"], {"instance": instance, "job": "node"}, missing))
    # The report's mtime: fresh on every host but one, whose timer stopped at time 0.
    for instance in textfiles:
        labels = {"instance": instance, "job": "node", "file": "/var/lib/node_exporter/textfile_collector/inferops_gpu_health.prom"}
        stale = instance == "nodriver:9100"
        inputs.append({"series": selector("node_textfile_mtime_seconds", labels),
                       "values": "0+0x150" if stale else "0+60x150"})
        if stale:
            expected["InferopsGpuHealthReportStale"].append(alert(by_alert["InferopsGpuHealthReportStale"], labels, 7200))
    for instance, value in (("xi-a:9997", 0), ("xi-b:9997", 1)):
        labels = {"instance": instance, "job": "xinference"}
        inputs.append({"series": selector("up", labels), "values": "%d+0x150" % value})
        if value == 0:
            expected["InferopsXinferenceEndpointDown"].append(
                alert(by_alert["InferopsXinferenceEndpointDown"], dict(labels, __name__="up"), value))

    # Not blind: the ACS host's finding on GPUs 2-3 fires, the healthy H100 host raises nothing.
    failing = expected["InferopsGpuHealthCheckFailing"]
    assert any(a["exp_labels"]["instance"] == "acs:9100" and a["exp_labels"]["check"] == "acs"
               and a["exp_labels"]["pair"] == "2-3" for a in failing), failing
    assert not [a for alerts in expected.values() for a in alerts if a["exp_labels"]["instance"] == "h100:9100"]
    # The runbook points at the finding's repair action (the textfile's action label).
    acs = [a for a in failing if a["exp_labels"]["instance"] == "acs:9100" and a["exp_labels"]["check"] == "acs"]
    assert all(a["exp_labels"]["action"] == "disable_acs_or_nccl_p2p" for a in acs)
    assert all(a["exp_annotations"]["runbook"].startswith("Repair action disable_acs_or_nccl_p2p ") for a in acs)
    assert all(expected[name] for name in ("InferopsGpuEccUncorrected", "InferopsGpuMissing", "InferopsGpuNvmlDown",
                                           "InferopsGpuHealthReportStale", "InferopsXinferenceEndpointDown")), \
        {name: len(alerts) for name, alerts in expected.items()}

    (tmp_path / "rules.yml").write_text(open(f"{REPO}/{RULES}").read())
    (tmp_path / "test.yml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": inputs,
                   "alert_rule_test": [{"eval_time": EVAL, "alertname": name, "exp_alerts": alerts}
                                       for name, alerts in sorted(expected.items())]}]}))
    run = subprocess.run([promtool(), "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
