"""plugins/filter/xinference_container.py: the address a host advertises (and a worker connects
to), and the container environment's precedence (NCCL < the role's own < xinference_env), with the
NCCL variables taken from nccl_tuning's exported fact, never from a file on the host."""

import os

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.gpu.plugins.filter import xinference_container as filters

HERE = os.path.dirname(os.path.abspath(__file__))
FILTER_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "plugins", "filter")


def test_registered_and_documented():
    names = set(filters.FilterModule().filters())
    assert names == {"xinference_address", "xinference_container_env"}
    for name in names:
        assert os.path.isfile(os.path.join(FILTER_DIR, name + ".yml")), name


# --- xinference_address ----------------------------------------------------------------------

FACTS = {"ansible_facts": {"default_ipv4": {"address": "10.0.0.7"}}}


@pytest.mark.parametrize("host_vars, expected", [
    # The operator's address wins over everything.
    (dict(FACTS, xinference_advertise_address="192.168.1.5", ansible_host="10.9.9.9"), "192.168.1.5"),
    # ansible_host when it is an address (IPv4 or IPv6)...
    (dict(FACTS, ansible_host="10.9.9.9"), "10.9.9.9"),
    (dict(FACTS, ansible_host="fd00::5"), "fd00::5"),
    # ...not when it is a name (or a Docker container name): the default IPv4 address then.
    (dict(FACTS, ansible_host="gpu01.example.net"), "10.0.0.7"),
    (dict(FACTS, xinference_advertise_address=""), "10.0.0.7"),
    # Nothing known: empty (preflight refuses it for a cluster shape).
    ({}, ""),
    ({"ansible_facts": {}}, ""),
    ({"ansible_host": "node1", "ansible_facts": {"default_ipv4": {}}}, ""),
])
def test_address(host_vars, expected):
    assert filters.xinference_address(host_vars) == expected


def test_address_needs_host_vars():
    with pytest.raises(AnsibleFilterError, match="hostvars"):
        filters.xinference_address("node1")


# --- xinference_container_env ----------------------------------------------------------------

ROLE_ENV = {"XINFERENCE_HOME": "/data", "XINFERENCE_ENABLE_VIRTUAL_ENV": "0"}
EFFECTIVE = {"env": {"NCCL_P2P_DISABLE": "1", "NCCL_DEBUG": "WARN"}, "variables": []}


def test_nccl_from_nccl_tuning_effective_not_from_xinference_nccl_env():
    env = filters.xinference_container_env(ROLE_ENV, {}, EFFECTIVE, {"NCCL_P2P_DISABLE": "0", "NCCL_X": "1"})
    assert env == dict(ROLE_ENV, NCCL_P2P_DISABLE="1", NCCL_DEBUG="WARN")


def test_nccl_from_xinference_nccl_env_without_nccl_tuning():
    env = filters.xinference_container_env(ROLE_ENV, None, None, {"NCCL_P2P_DISABLE": 1})
    assert env == dict(ROLE_ENV, NCCL_P2P_DISABLE="1")
    assert filters.xinference_container_env(ROLE_ENV) == ROLE_ENV


def test_precedence_operator_over_role_over_nccl():
    env = filters.xinference_container_env(
        {"XINFERENCE_HOME": "/data", "NCCL_DEBUG": "INFO"},
        {"XINFERENCE_HOME": "/srv", "NCCL_P2P_DISABLE": "0", "RETRIES": 5},
        EFFECTIVE)
    assert env == {"XINFERENCE_HOME": "/srv", "NCCL_DEBUG": "INFO", "NCCL_P2P_DISABLE": "0", "RETRIES": "5"}


def test_nccl_tuning_effective_with_nothing_derived():
    assert filters.xinference_container_env(ROLE_ENV, {}, {"env": {}}, {"NCCL_P2P_DISABLE": "1"}) == ROLE_ENV


@pytest.mark.parametrize("args", [
    (["A=1"],),
    (ROLE_ENV, "A=1"),
    (ROLE_ENV, {}, "NCCL_P2P_DISABLE=1"),
    (ROLE_ENV, {}, {"env": ["NCCL_P2P_DISABLE=1"]}),
    (ROLE_ENV, {}, None, ["NCCL_P2P_DISABLE=1"]),
])
def test_container_env_refuses_what_is_not_a_dict(args):
    with pytest.raises(AnsibleFilterError):
        filters.xinference_container_env(*args)
