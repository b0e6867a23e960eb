"""Filters of plugins/filter/gpu_health.py on facts measured from the fake topologies.

Every fact comes from the module's own run_health on a fake GPU host (conftest.py), so the
filters are tested against the shape the module really returns.
"""

import copy
import json

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.gpu.plugins.filter import gpu_health as filters
from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import run_health


@pytest.fixture
def facts_of(fake_gpu_host):
    def measure(name, **kwargs):
        host = fake_gpu_host(name)
        return run_health(sysfs_root=host.sysfs_root, procfs_root=host.procfs_root,
                          kernel_log=host.kernel_log, **kwargs)
    return measure


def test_every_filter_is_registered_and_documented():
    import os
    names = filters.FilterModule().filters()
    here = os.path.dirname(filters.__file__)
    for name in names:
        assert os.path.exists(os.path.join(here, name + ".yml")), name


def test_table_has_a_row_per_gpu_and_the_reason_for_nccl(facts_of):
    lines = filters.gpu_health_table(facts_of("pcie-4-acs", expected_gpu_count=4), "gpu-a")
    assert lines[0].startswith("gpu-a: FAIL (action: disable_acs_or_nccl_p2p), 4 GPU(s) of 4 expected, driver 535.216.01")
    rows = [line for line in lines if line.split()[0].isdigit()]
    assert [row.split()[0] for row in rows] == ["0", "1", "2", "3"]
    assert all("NVIDIA L40S" in row and "gen4 x16" in row for row in rows)
    assert "NCCL: NCCL_P2P_DISABLE=1; container /dev/shm 64g; vLLM custom all-reduce off" in lines
    assert any(line.startswith("  why NCCL_P2P_DISABLE: P2P unsafe on GPU0-GPU2") for line in lines)
    assert any(line.startswith("  ! acs gpu2-gpu3:") and line.endswith("(action: disable_acs_or_nccl_p2p)")
               for line in lines)
    # The ACS host's GPUs pass on their own: their rows say so, action none.
    assert all(row.split()[-2:] == ["pass", "none"] for row in rows)


def test_table_of_a_host_without_driver(facts_of):
    lines = filters.gpu_health_table(facts_of("no-driver"), "dead")
    assert lines[0] == "dead: FAIL (action: reboot), no GPU(s), driver -, CUDA -, NVML DriverNotLoaded"
    assert any("nvml_init" in line and "driver not loaded" in line for line in lines)


def test_gpu_row_verdict_is_the_worst_of_its_checks(facts_of):
    summary = filters.gpu_health_host(facts_of("ecc-bad", expected_gpu_count=8), "bad")
    verdicts = {gpu["index"]: gpu["verdict"] for gpu in summary["gpus"]}
    assert verdicts[5] == "fail" and set(v for i, v in verdicts.items() if i != 5) == {"pass"}
    assert summary["gpus"][5]["ecc_uncorrected_volatile"] == 4
    assert any(issue.startswith("xid gpu5: Xid 79") for issue in summary["gpus"][5]["issues"])


def test_fleet_counts_verdicts_and_missing_hosts(facts_of):
    fleet = filters.gpu_health_fleet({
        "b-healthy": facts_of("h100-sxm-8", expected_gpu_count=8),
        "a-acs": facts_of("pcie-4-acs"),
        "c-gone": None,
    })
    assert [host["host"] for host in fleet["hosts"]] == ["a-acs", "b-healthy", "c-gone"]
    assert fleet["gpus"] == 12
    assert fleet["totals"]["fail"] == 1 and fleet["totals"]["missing"] == 1
    assert fleet["hosts"][0]["p2p_unsafe_pairs"] == ["gpu0-gpu2", "gpu0-gpu3", "gpu1-gpu2", "gpu1-gpu3", "gpu2-gpu3"]
    json.dumps(fleet)  # the JSON report is this dict as it is

    markdown = filters.gpu_health_fleet_markdown(dict(fleet, generated="2026-01-01T00:00:00Z"))
    assert markdown.startswith("# GPU health\n\nGenerated 2026-01-01T00:00:00Z.\n")
    assert "| a-acs | fail | disable_acs_or_nccl_p2p | 4 | 535.216.01 | NCCL_P2P_DISABLE=1 | 64g |" in markdown
    assert "| b-healthy | pass | none | 8 |" in markdown
    assert [host["action"] for host in fleet["hosts"]] == ["disable_acs_or_nccl_p2p", "none", None]
    assert "| c-gone | missing | - |" in markdown
    assert "## b-healthy (pass)" in markdown
    assert "| 7 | NVIDIA H100 80GB HBM3 | 80 GiB |" in markdown
    assert "- `NCCL_P2P_DISABLE=1`: P2P unsafe on GPU0-GPU2" in markdown


def test_fleet_rejects_a_list():
    with pytest.raises(AnsibleFilterError, match="dict of host name"):
        filters.gpu_health_fleet([{}])


def test_gate_counts_acs_as_mitigated_only_with_p2p_disabled(facts_of):
    facts = facts_of("pcie-4-acs", expected_gpu_count=4)
    without = filters.gpu_health_gate(facts, ["fail"], {})
    assert not without["passed"] and len(without["blocking"]) == 5 and not without["mitigated"]
    mitigated = filters.gpu_health_gate(facts, ["fail"], {"NCCL_P2P_DISABLE": "1"})
    assert mitigated["passed"] and not mitigated["blocking"]
    assert all(line.endswith("[mitigated: NCCL_P2P_DISABLE=1]") for line in mitigated["mitigated"])
    # A pinned NCCL_P2P_DISABLE=0 does not mitigate.
    assert not filters.gpu_health_gate(facts, ["fail"], {"NCCL_P2P_DISABLE": "0"})["passed"]


def test_gate_never_mitigates_a_broken_nvlink_pair_or_a_gpu_fault(facts_of):
    facts = facts_of("h100-sxm-8")
    for check in facts["checks"]:
        if check["id"] == "p2p" and check["pair"] == [0, 1]:
            check["verdict"] = "fail"
    gate = filters.gpu_health_gate(facts, ["fail"], {"NCCL_P2P_DISABLE": "1"})
    assert not gate["passed"] and gate["blocking"][0].startswith("p2p gpu0-gpu1:")
    ecc = filters.gpu_health_gate(facts_of("ecc-bad"), ["fail"], {"NCCL_P2P_DISABLE": "1"})
    assert not ecc["passed"] and any(line.startswith("ecc gpu5") for line in ecc["blocking"])


def test_gate_with_warn_and_unknown_verdict(facts_of):
    facts = facts_of("h100-sxm-8")
    assert filters.gpu_health_gate(facts, "warn")["passed"]
    with pytest.raises(AnsibleFilterError, match="unknown verdicts bad"):
        filters.gpu_health_gate(facts, ["bad"])


def test_drift_nothing_without_previous_or_when_equal(facts_of):
    facts = facts_of("h100-sxm-8")
    assert filters.gpu_health_drift(facts, None) == []
    assert filters.gpu_health_drift(facts, copy.deepcopy(facts)) == []


def test_drift_names_the_missing_gpu(facts_of):
    drift = filters.gpu_health_drift(facts_of("missing-gpu"), facts_of("h100-sxm-8"))
    assert [item["kind"] for item in drift] == ["gpu_missing"]
    assert drift[0]["detail"].startswith("GPU7 NVIDIA H100 80GB HBM3 (GPU-")
    assert "7 GPU(s) now, 8 before" in drift[0]["detail"]


def test_drift_new_fatal_xid_once(facts_of):
    healthy, bad = facts_of("h100-sxm-8"), facts_of("ecc-bad")
    drift = filters.gpu_health_drift(bad, healthy)
    assert drift == [{"kind": "xid_fatal", "detail": "new fatal Xid 79 on 0000:ab:00: "
                      "NVRM: Xid (PCI:0000:ab:00): 79, pid=48213, name=python3, GPU has fallen off the bus."}]
    # The same event in the previous report is not new.
    assert filters.gpu_health_drift(bad, copy.deepcopy(bad)) == []


def test_drift_driver_gone(facts_of):
    drift = filters.gpu_health_drift(facts_of("no-driver"), facts_of("h100-sxm-8"))
    assert [item["kind"] for item in drift] == ["nvml_unavailable"]
    assert "DriverNotLoaded" in drift[0]["detail"]


def test_drift_p2p_verdict_changed(facts_of):
    now = facts_of("pcie-4-acs")
    before = copy.deepcopy(now)
    # Before: pair 2-3 was safe and its acs check passed (for example ACS was cleared at boot).
    for pair in before["pairs"]:
        if pair["gpus"] == [2, 3]:
            pair["p2p_safe"], pair["unsafe_reasons"] = True, []
    for check in before["checks"]:
        if check["id"] == "acs" and check["pair"] == [2, 3]:
            check["verdict"] = "pass"
    drift = filters.gpu_health_drift(now, before)
    assert [item["kind"] for item in drift] == ["p2p_changed"]
    assert drift[0]["detail"].startswith("gpu2-gpu3: P2P safe -> unsafe, acs pass -> fail (ACS redirect on bridge")


def test_drift_rejects_a_report_that_is_not_a_fact(facts_of):
    with pytest.raises(AnsibleFilterError, match="previous report"):
        filters.gpu_health_drift(facts_of("h100-sxm-8"), {"summary": {}})


@pytest.mark.parametrize("name, group", [
    ("NVIDIA H100 80GB HBM3", "gpu_h100"), ("NVIDIA A100-SXM4-80GB", "gpu_a100"), ("NVIDIA L40S", "gpu_l40s"),
    ("Tesla V100-SXM2-32GB", "gpu_v100"), ("NVIDIA GeForce RTX 4090", "gpu_rtx_4090"),
    ("NVIDIA RTX A6000", "gpu_rtx_a6000"), ("NVIDIA GH200 480GB", "gpu_gh200"),
])
def test_model_group_names(facts_of, name, group):
    facts = facts_of("h100-sxm-8")
    for gpu in facts["gpus"]:
        gpu["name"] = name
    assert filters.gpu_health_model_groups(facts) == [group]


def test_model_groups_of_mixed_and_empty_hosts(facts_of):
    facts = facts_of("h100-sxm-8")
    facts["gpus"][0]["name"] = "NVIDIA L40S"
    assert filters.gpu_health_model_groups(facts, prefix="model_") == ["model_h100", "model_l40s"]
    assert filters.gpu_health_model_groups(facts_of("no-driver")) == ["gpu_none"]


# --- what other roles and playbooks read: gpu_health_host_info, gpu_health_of_hosts ---------------

def test_host_info_of_a_measured_host(facts_of):
    info = filters.gpu_health_host_info(facts_of("pcie-4-acs", expected_gpu_count=4))
    assert info == {"present": True, "nvml_available": True, "gpu_count": 4,
                    "driver_version": "535.216.01", "container_shm_size": "64g"}


def test_host_info_without_nvml_counts_no_gpu(facts_of):
    info = filters.gpu_health_host_info(facts_of("no-driver"))
    assert info["present"] is True and info["nvml_available"] is False
    assert info["gpu_count"] == 0 and info["driver_version"] == ""


@pytest.mark.parametrize("facts", [None, {}])
def test_host_info_without_facts(facts):
    assert filters.gpu_health_host_info(facts) == {
        "present": False, "nvml_available": False, "gpu_count": 0, "driver_version": "", "container_shm_size": None}


def test_host_info_refuses_what_is_not_a_fact():
    with pytest.raises(AnsibleFilterError, match="gpu_health fact"):
        filters.gpu_health_host_info(["gpu0"])


def test_of_hosts_maps_each_host_to_its_fact_or_none(facts_of):
    facts = facts_of("h100-sxm-8")
    hostvars = {"a": {"ansible_facts": {"gpu_health": facts}}, "b": {"ansible_facts": {}}, "c": {}}
    expected = {"a": facts, "b": None, "c": None, "gone": None}
    assert filters.gpu_health_of_hosts(hostvars, ["a", "b", "c", "gone"]) == expected
    # The fleet report takes it as it is.
    fleet = filters.gpu_health_fleet(filters.gpu_health_of_hosts(hostvars, ["a", "b"]))
    assert fleet["totals"]["missing"] == 1 and fleet["gpus"] == 8


@pytest.mark.parametrize("args", [(["a"], ["a"]), ({}, "a")])
def test_of_hosts_refuses_bad_arguments(args):
    with pytest.raises(AnsibleFilterError):
        filters.gpu_health_of_hosts(*args)


# --- gpu_health_compare: the rolling upgrade's before/after gate -----------------------------

def test_compare_same_measurement_is_no_regression(facts_of):
    facts = facts_of("h100-sxm-8")
    assert filters.gpu_health_compare(copy.deepcopy(facts), facts) == []
    # A host that was already failing a check is not held against the upgrade.
    acs = facts_of("pcie-4-acs")
    assert filters.gpu_health_compare(copy.deepcopy(acs), acs) == []


def test_compare_names_a_lost_gpu_and_the_dead_driver(facts_of):
    assert filters.gpu_health_compare(facts_of("missing-gpu"), facts_of("h100-sxm-8"))[0] == "7 GPU(s) now, 8 before"
    gone = filters.gpu_health_compare(facts_of("no-driver"), facts_of("h100-sxm-8"))
    assert gone[0].startswith("NVML answered before, now DriverNotLoaded")
    assert "0 GPU(s) now, 8 before" in gone


def test_compare_names_a_check_that_passed_before_and_fails_now(facts_of):
    now = facts_of("pcie-4-acs")
    before = copy.deepcopy(now)
    for check in before["checks"]:
        if check["id"] == "acs" and check.get("pair") == [2, 3]:
            check["verdict"] = "pass"
    found = filters.gpu_health_compare(now, before)
    assert len(found) == 1 and found[0].startswith("passed before, fail now: acs gpu2-gpu3: ")


def test_compare_new_fatal_xid_is_a_regression(facts_of):
    found = filters.gpu_health_compare(facts_of("ecc-bad"), facts_of("h100-sxm-8"))
    assert found and all(line.startswith("passed before, ") for line in found)


def test_compare_refuses_what_is_not_a_fact(facts_of):
    with pytest.raises(AnsibleFilterError, match="gpu_health_compare \\(before\\)"):
        filters.gpu_health_compare(facts_of("h100-sxm-8"), {"checks": []})
