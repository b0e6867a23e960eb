"""Filters of plugins/filter/nccl_tuning.py: the NCCL precedence (forbidden > pinned > derived >
extra) in every case, the host /dev/shm size, the ACS bridges and the note, on hand-made facts and
on facts the module measured from a fake topology."""

import os

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.gpu.plugins.filter import nccl_tuning as filters
from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import run_health

GIB = 1024 ** 3


def health(nccl_env=None, reasons=None, shm_bytes=None, pairs=None, available=True, gpu_count=2):
    return {
        "nvml": {"available": available, "error": None if available else "DriverNotLoaded"},
        "gpu_count": gpu_count,
        "pairs": pairs or [],
        "recommendation": {"nccl_env": nccl_env or {}, "reasons": reasons or {}, "container_shm_bytes": shm_bytes},
    }


ACS = health({"NCCL_P2P_DISABLE": "1"}, {"NCCL_P2P_DISABLE": "ACS redirect on gpu0-gpu1"})


def rows(result):
    return dict((row["name"], (row["source"], row["value"])) for row in result["variables"])


def test_every_filter_is_registered_and_documented():
    here = os.path.dirname(filters.__file__)
    for name in filters.FilterModule().filters():
        assert os.path.exists(os.path.join(here, name + ".yml")), name


def test_derived_alone():
    result = filters.nccl_tuning_env(ACS)
    assert result["env"] == {"NCCL_P2P_DISABLE": "1"}
    assert result["variables"] == [{"name": "NCCL_P2P_DISABLE", "value": "1", "source": "derived",
                                    "reason": "ACS redirect on gpu0-gpu1"}]


def test_derived_without_reason():
    result = filters.nccl_tuning_env(health({"NCCL_P2P_LEVEL": "PHB"}))
    assert result["variables"][0]["reason"] == "recommended by gpu_health"


def test_pinned_beats_derived_and_says_what_it_overrides():
    result = filters.nccl_tuning_env(ACS, pinned={"NCCL_P2P_DISABLE": 0})
    assert result["env"] == {"NCCL_P2P_DISABLE": "0"}
    assert result["variables"][0]["source"] == "pinned"
    assert result["variables"][0]["reason"] == ("pinned by the operator (nccl_tuning_env_pinned); overrides "
                                                "gpu_health derived NCCL_P2P_DISABLE=1 (ACS redirect on gpu0-gpu1)")


def test_pinned_without_derived():
    result = filters.nccl_tuning_env(health(), pinned={"NCCL_DEBUG": "WARN"})
    assert result["variables"][0]["reason"] == "pinned by the operator (nccl_tuning_env_pinned)"
    assert result["env"] == {"NCCL_DEBUG": "WARN"}


def test_forbidden_beats_pinned_derived_and_extra():
    result = filters.nccl_tuning_env(ACS, pinned={"NCCL_P2P_DISABLE": "0"}, extra={"NCCL_P2P_DISABLE": "2"},
                                     forbidden=["NCCL_P2P_DISABLE"])
    assert result["env"] == {}
    assert result["variables"] == [{
        "name": "NCCL_P2P_DISABLE", "value": None, "source": "forbidden",
        "reason": "never written (nccl_tuning_env_forbidden); gpu_health derived NCCL_P2P_DISABLE=1 "
                  "(ACS redirect on gpu0-gpu1)"}]


def test_forbidden_name_nobody_sets_is_listed_not_written():
    result = filters.nccl_tuning_env(health(), forbidden=["NCCL_IB_DISABLE"])
    assert rows(result) == {"NCCL_IB_DISABLE": ("forbidden", None)}
    assert result["variables"][0]["reason"] == "never written (nccl_tuning_env_forbidden)"
    assert result["env"] == {}


def test_derived_beats_extra():
    result = filters.nccl_tuning_env(ACS, extra={"NCCL_P2P_DISABLE": "0", "NCCL_DEBUG": "INFO"})
    assert rows(result) == {"NCCL_P2P_DISABLE": ("derived", "1"), "NCCL_DEBUG": ("extra", "INFO")}
    assert result["variables"][0]["reason"] == "added by the operator (nccl_tuning_env_extra)"


def test_pinned_beats_extra():
    result = filters.nccl_tuning_env(health(), pinned={"NCCL_DEBUG": "WARN"}, extra={"NCCL_DEBUG": "INFO"})
    assert rows(result) == {"NCCL_DEBUG": ("pinned", "WARN")}


def test_every_source_at_once_sorted_by_name():
    result = filters.nccl_tuning_env(
        health({"NCCL_P2P_DISABLE": "1", "NCCL_SHM_DISABLE": "0"}),
        pinned={"NCCL_SHM_DISABLE": "1", "NCCL_SOCKET_IFNAME": "eth0"}, extra={"NCCL_DEBUG": "WARN"},
        forbidden=["NCCL_IB_HCA"])
    assert [row["name"] for row in result["variables"]] == sorted(rows(result))
    assert rows(result) == {"NCCL_DEBUG": ("extra", "WARN"), "NCCL_IB_HCA": ("forbidden", None),
                            "NCCL_P2P_DISABLE": ("derived", "1"), "NCCL_SHM_DISABLE": ("pinned", "1"),
                            "NCCL_SOCKET_IFNAME": ("pinned", "eth0")}
    assert result["env"] == {"NCCL_DEBUG": "WARN", "NCCL_P2P_DISABLE": "1", "NCCL_SHM_DISABLE": "1",
                             "NCCL_SOCKET_IFNAME": "eth0"}


@pytest.mark.parametrize("fact", [None, {}])
def test_no_gpu_health_fact_only_the_operator_values(fact):
    result = filters.nccl_tuning_env(fact, {"NCCL_DEBUG": "WARN"}, {"NCCL_ALGO": "Ring"}, ["NCCL_P2P_DISABLE"])
    assert result["env"] == {"NCCL_ALGO": "Ring", "NCCL_DEBUG": "WARN"}
    assert filters.nccl_tuning_env(fact) == {"variables": [], "env": {}}


def test_values_become_strings():
    result = filters.nccl_tuning_env(health(), pinned={"NCCL_P2P_DISABLE": 1}, extra={"NCCL_NVLS_ENABLE": False})
    assert result["env"] == {"NCCL_P2P_DISABLE": "1", "NCCL_NVLS_ENABLE": "False"}


def test_bad_inputs_are_refused():
    with pytest.raises(AnsibleFilterError):
        filters.nccl_tuning_env(["not", "a", "fact"])
    with pytest.raises(AnsibleFilterError):
        filters.nccl_tuning_env({}, pinned=["NCCL_DEBUG"])


def test_measured_acs_topology_derives_p2p_disable(fake_gpu_host):
    host = fake_gpu_host("pcie-4-acs")
    fact = run_health(sysfs_root=host.sysfs_root, procfs_root=host.procfs_root, kernel_log=host.kernel_log)
    result = filters.nccl_tuning_env(fact)
    assert rows(result)["NCCL_P2P_DISABLE"] == ("derived", "1")
    assert result["variables"][0]["reason"] == fact["recommendation"]["reasons"]["NCCL_P2P_DISABLE"]


@pytest.mark.parametrize("size, shm_bytes, expected", [
    ("auto", 128 * GIB, "128g"),
    ("auto", int(1.5 * GIB), "1g"),
    ("auto", GIB - 1, "50%"),
    ("auto", None, "50%"),
    ("32g", 128 * GIB, "32g"),
    ("25%", None, "25%"),
])
def test_host_shm_size(size, shm_bytes, expected):
    assert filters.nccl_tuning_host_shm_size(health(shm_bytes=shm_bytes), size) == expected


def test_host_shm_size_without_facts():
    assert filters.nccl_tuning_host_shm_size(None) == "50%"
    assert filters.nccl_tuning_host_shm_size({}, "auto") == "50%"


PAIRS = [{"gpus": [0, 1], "acs_redirect_bridges": ["0000:00:01.0", "0000:00:03.1"]},
         {"gpus": [0, 2], "acs_redirect_bridges": ["0000:00:01.0"]},
         {"gpus": [1, 2]}]


def test_acs_bridges_from_gpu_health_lowered_unique_sorted():
    fact = health(pairs=[{"gpus": [0, 1], "acs_redirect_bridges": ["0000:00:0A.0", "0000:00:01.0"]}] + PAIRS)
    assert filters.nccl_tuning_acs_bridges(fact, True) == ["0000:00:01.0", "0000:00:03.1", "0000:00:0a.0"]


def test_acs_bridges_the_operator_list_wins_and_off_means_none():
    fact = health(pairs=PAIRS)
    assert filters.nccl_tuning_acs_bridges(fact, True, ["0000:80:02.0"]) == ["0000:80:02.0"]
    assert filters.nccl_tuning_acs_bridges(fact, False, ["0000:80:02.0"]) == []
    assert filters.nccl_tuning_acs_bridges(None, True) == []


def test_health_note():
    assert filters.nccl_tuning_health_note(None) == "no gpu_health facts on this host: nothing derived"
    assert filters.nccl_tuning_health_note({}) == "no gpu_health facts on this host: nothing derived"
    assert filters.nccl_tuning_health_note(health(available=False)) == (
        "gpu_health: NVML unavailable (DriverNotLoaded): nothing derived")
    assert filters.nccl_tuning_health_note({"nvml": {}, "pairs": []}) == (
        "gpu_health: NVML unavailable (unknown): nothing derived")
    fact = health(pairs=[{"gpus": [0, 1], "p2p_safe": False}, {"gpus": [0, 2], "p2p_safe": True}, {"gpus": [1, 2]}],
                  gpu_count=3)
    assert filters.nccl_tuning_health_note(fact) == "gpu_health: 3 GPUs, 2 P2P-unsafe GPU pairs"


# --- preflight: the role's variable checks ------------------------------------------------------

VALID = {
    "nccl_tuning_host_shm_size": "auto", "nccl_tuning_host_shm_options": ["rw", "nosuid", "nodev"],
    "nccl_tuning_env_pinned": {}, "nccl_tuning_env_extra": {"NCCL_DEBUG": "WARN", "NCCL_BUFFSIZE": 4194304},
    "nccl_tuning_env_forbidden": [], "nccl_tuning_memlock_limit": "unlimited", "nccl_tuning_memlock_domains": ["*", "root"],
    "nccl_tuning_conf_path": "/etc/nccl.conf", "nccl_tuning_env_file_path": "/etc/inferops/nccl.env",
    "nccl_tuning_acs_clear_enabled": False, "nccl_tuning_acs_clear_iommu_risk_accepted": False,
    "nccl_tuning_acs_clear_bridges": ["0000:17:02.0"], "nccl_tuning_acs_clear_unit_name": "inferops-acs-clear.service",
}


def preflight(**changes):
    return filters.nccl_tuning_preflight_errors(dict(VALID, **changes))


def test_preflight_accepts_valid_values():
    assert preflight() == []
    assert preflight(nccl_tuning_host_shm_size="64g") == preflight(nccl_tuning_host_shm_size="50%") == []
    assert preflight(nccl_tuning_acs_clear_enabled="yes", nccl_tuning_acs_clear_iommu_risk_accepted="true") == []


@pytest.mark.parametrize("changes, message", [
    ({"nccl_tuning_host_shm_size": "128gb"}, 'nccl_tuning_host_shm_size="128gb" is not a tmpfs size'),
    ({"nccl_tuning_host_shm_size": "101%"}, "nccl_tuning_host_shm_size="),
    ({"nccl_tuning_host_shm_options": ["rw,nosuid"]}, 'nccl_tuning_host_shm_options=["rw,nosuid"]: one option per item'),
    ({"nccl_tuning_host_shm_options": ["size=1g"]}, "no size="),
    ({"nccl_tuning_host_shm_options": [""]}, "nccl_tuning_host_shm_options="),
    ({"nccl_tuning_env_pinned": {"NCCL-P2P": "1"}}, 'nccl_tuning_env_pinned holds names that are not valid environment variable names (["NCCL-P2P"])'),
    ({"nccl_tuning_env_forbidden": ["1BAD"]}, "nccl_tuning_env_forbidden holds names"),
    ({"nccl_tuning_env_pinned": {"NCCL_P2P_DISABLE": True}}, 'nccl_tuning_env_pinned["NCCL_P2P_DISABLE"]=true must be a single-line string'),
    ({"nccl_tuning_env_extra": {"NCCL_X": "a\nb"}}, 'nccl_tuning_env_extra["NCCL_X"]="a\\nb" must be'),
    ({"nccl_tuning_env_pinned": {"NCCL_P2P_DISABLE": "0"}, "nccl_tuning_env_forbidden": ["NCCL_P2P_DISABLE"]},
     'nccl_tuning_env_pinned and nccl_tuning_env_forbidden both name ["NCCL_P2P_DISABLE"]: keep one'),
    ({"nccl_tuning_memlock_limit": "-1"}, 'nccl_tuning_memlock_limit="-1" must be unlimited'),
    ({"nccl_tuning_memlock_domains": []}, "nccl_tuning_memlock_domains=[] must list one or more"),
    ({"nccl_tuning_memlock_domains": ["a b"]}, "nccl_tuning_memlock_domains="),
    ({"nccl_tuning_conf_path": "nccl.conf"}, "must be two different absolute paths"),
    ({"nccl_tuning_env_file_path": "/etc/nccl.conf"}, 'nccl_tuning_env_file_path="/etc/nccl.conf" must be two different'),
    ({"nccl_tuning_acs_clear_enabled": True}, "needs nccl_tuning_acs_clear_iommu_risk_accepted=true"),
    ({"nccl_tuning_acs_clear_bridges": ["17:02.0"]}, 'not PCI addresses like 0000:17:02.0: ["17:02.0"]'),
    ({"nccl_tuning_acs_clear_unit_name": "acs clear"}, 'nccl_tuning_acs_clear_unit_name="acs clear" must be a systemd unit'),
])
def test_preflight_names_the_variable(changes, message):
    errors = preflight(**changes)
    assert len(errors) == 1 and message in errors[0], errors


def test_preflight_reports_every_problem_at_once():
    errors = preflight(nccl_tuning_host_shm_size="1x", nccl_tuning_memlock_limit="lots", nccl_tuning_acs_clear_unit_name="x")
    assert [error.split("=")[0] for error in errors] == [
        "nccl_tuning_host_shm_size", "nccl_tuning_memlock_limit", "nccl_tuning_acs_clear_unit_name"]
    with pytest.raises(AnsibleFilterError):
        filters.nccl_tuning_preflight_errors(["not", "a", "dict"])
