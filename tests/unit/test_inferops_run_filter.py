"""Filters of plugins/filter/inferops_run.py: the run summary of site.yml / provision.yml and the
drift verdict of drift.yml, line for line."""

import os

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.gpu.plugins.filter import inferops_run as filters


def test_every_filter_is_registered_and_documented():
    here = os.path.dirname(filters.__file__)
    for name in filters.FilterModule().filters():
        assert os.path.exists(os.path.join(here, name + ".yml")), name


HOSTVARS = {
    "web-ok": {"inferops_stage": "roles", "inferops_done": True,
               "xinference_endpoint": "http://10.0.0.1:9997",
               "inferops_health_gate": {"stage": "preflight", "blocking": [], "mitigated": ["acs gpu0-gpu1: x"]}},
    "plain-ok": {"inferops_done": True, "inferops_health_gate": {"mitigated": []}},
    "bad-gpu": {"inferops_stage": "preflight",
                "inferops_health_gate": {"stage": "post-install", "blocking": ["ecc gpu5: 3 errors", "xid gpu1: 79"]}},
    "gate-less": {"inferops_stage": "preflight"},
    "broke": {"inferops_stage": "roles", "inferops_failure": {"stage": "roles", "task": "Driver | install", "msg": "boom"}},
    "stopped": {"inferops_stage": "xinference"},
    "down": {},
    "other-batch": {"inferops_stage": "roles", "inferops_done": True},
    "never": {},
}


def test_summary_one_line_per_host_sorted():
    lines = filters.inferops_summary_lines(
        HOSTVARS, ["web-ok", "plain-ok", "bad-gpu", "broke", "stopped", "down", "gate-less"], list(HOSTVARS),
        ["bad-gpu", "gate-less"])
    assert lines == [
        "bad-gpu: SKIPPED UNHEALTHY (post-install gate): ecc gpu5: 3 errors; xid gpu1: 79",
        'broke: FAILED in roles at "Driver | install": boom',
        "down: NOT REACHED (unreachable, or its batch has not run)",
        "gate-less: SKIPPED UNHEALTHY (health gate): ",
        "other-batch: PROVISIONED",
        "plain-ok: PROVISIONED",
        "stopped: FAILED in xinference (see the output above)",
        "web-ok: PROVISIONED, endpoint http://10.0.0.1:9997, 1 P2P finding(s) mitigated by NCCL_P2P_DISABLE=1",
    ]


def test_summary_without_health_group_or_inventory():
    assert filters.inferops_summary_lines(HOSTVARS, ["plain-ok", "never"]) == [
        "never: NOT REACHED (unreachable, or its batch has not run)", "plain-ok: PROVISIONED"]
    with pytest.raises(AnsibleFilterError):
        filters.inferops_summary_lines(["not", "hostvars"], [])


REPORT = {
    "run_id": "r1", "mode": "detect", "drifted": True, "errors": True,
    "summary": {"drifted": ["acs-node", "h100"], "error": ["zed"], "changes": 3, "health": 1},
    "hosts": {
        "h100": {"status": "drifted", "changes": [
            {"role": "nvidia_driver", "task": "Driver | hold", "changes": ["nvidia-driver: hold", "more"]},
            {"role": None, "task": "Gather", "changes": []}], "health": [], "errors": [], "remediated": []},
        "acs-node": {"status": "drifted", "changes": [
            {"role": "nccl_tuning", "task": "Configure | env file", "changes": ["-NCCL_P2P_DISABLE=0"]}],
            "health": [{"kind": "p2p_changed", "detail": "gpu0-gpu1: P2P safe -> unsafe"}], "errors": [], "remediated": []},
        "Clean": {"status": "clean", "changes": [], "health": [], "errors": [], "remediated": []},
        "zed": {"status": "error", "changes": [], "health": [], "errors": [{"msg": "x"}], "remediated": []},
    },
}


def test_drift_lines():
    assert filters.inferops_drift_lines(REPORT, "/var/tmp/d") == [
        "report: /var/tmp/d/drift.json and drift.md",
        "acs-node: drifted (1 change(s), 1 health finding(s), 0 error(s))",
        "  nccl_tuning | Configure | env file: -NCCL_P2P_DISABLE=0",
        "  health p2p_changed: gpu0-gpu1: P2P safe -> unsafe",
        "Clean: clean",
        "h100: drifted (2 change(s), 0 health finding(s), 0 error(s))",
        "  nvidia_driver | Driver | hold: nvidia-driver: hold",
        "  - | Gather: ",
        "zed: error (0 change(s), 0 health finding(s), 1 error(s))",
    ]


def test_drift_hosts_in_report_order():
    assert filters.inferops_drift_hosts(REPORT) == ["h100", "acs-node"]
    assert filters.inferops_drift_hosts(REPORT, "health") == ["acs-node"]
    assert filters.inferops_drift_hosts(REPORT, "errors") == ["zed"]
    with pytest.raises(AnsibleFilterError):
        filters.inferops_drift_hosts(REPORT, "status")


def test_drift_failure_detect():
    assert filters.inferops_drift_failure(REPORT, "/var/tmp/d") == (
        "Drift on acs-node, h100: 3 change(s), 1 health finding(s); see /var/tmp/d/drift.md")
    assert filters.inferops_drift_failure(dict(REPORT, drifted=False), "/var/tmp/d", "detect") == ""


def test_drift_failure_remediate():
    assert filters.inferops_drift_failure(REPORT, "/d", "remediate") == (
        "health drift needs a person on acs-node; errors on zed; see /d/drift.md")
    clean = {"summary": {"error": []}, "hosts": {"a": {"status": "remediated", "changes": [], "health": []}}}
    assert filters.inferops_drift_failure(clean, "/d", "remediate") == ""
    errors_only = {"summary": {"error": ["a"]}, "hosts": {"a": {"health": []}}}
    assert filters.inferops_drift_failure(errors_only, "/d", "remediate") == "errors on a; see /d/drift.md"


def test_drift_bad_input():
    with pytest.raises(AnsibleFilterError):
        filters.inferops_drift_lines({}, "/d")
    with pytest.raises(AnsibleFilterError):
        filters.inferops_drift_failure(REPORT, "/d", "fix")
