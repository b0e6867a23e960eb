"""plugins/filter/container_runtime.py: the Docker API is never opened on TCP without TLS verification.

The rule sees the daemon.json the role is about to write (the current file with the role's keys
merged in), so both routes to `hosts` are covered: container_runtime_daemon_extra_options and a
current file whose `hosts` the merge keeps. One message per refused entry, naming where it comes
from, the value and what is allowed.
"""

import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.gpu.plugins.filter import container_runtime as filters

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TLS = {"tlsverify": True, "tlscacert": "/etc/docker/ca.pem", "tlscert": "/etc/docker/cert.pem",
       "tlskey": "/etc/docker/key.pem"}


def exposure(extra, current=None):
    """As the role computes it: the current file, the extra options merged over it."""
    merged = dict(current or {})
    merged.update(extra)
    return filters.container_runtime_daemon_exposure(merged, extra, path="/etc/docker/daemon.json")


@pytest.mark.parametrize("hosts", [
    [], ["unix:///var/run/docker.sock"], ["fd://"], ["unix:///run/docker.sock", "fd://"], ["npipe:////./pipe/docker"],
])
def test_local_sockets_are_allowed(hosts):
    assert exposure({"hosts": hosts}) == []


def test_no_hosts_is_allowed():
    assert exposure({"log-driver": "json-file"}) == []


@pytest.mark.parametrize("entry", ["tcp://0.0.0.0:2375", "tcp://127.0.0.1:2375", "TCP://10.0.0.1:2375",
                                   "0.0.0.0:2375", ":2375", "tcp://"])
def test_tcp_without_tls_is_refused(entry):
    messages = exposure({"hosts": ["unix:///run/docker.sock", entry]})
    assert len(messages) == 1
    message = messages[0]
    assert "container_runtime_daemon_extra_options.hosts" in message and "'%s'" % entry in message
    assert "unix://" in message and "tlsverify: true" in message and "tlskey" in message


def test_tcp_with_tls_verification_is_allowed():
    assert exposure(dict(TLS, hosts=["unix:///run/docker.sock", "tcp://0.0.0.0:2376"])) == []


@pytest.mark.parametrize("drop,missing", [
    ("tlsverify", "tlsverify: true"), ("tlscacert", "tlscacert"), ("tlscert", "tlscert"), ("tlskey", "tlskey"),
])
def test_each_missing_tls_setting_is_named(drop, missing):
    options = dict((key, value) for key, value in TLS.items() if key != drop)
    messages = exposure(dict(options, hosts=["tcp://0.0.0.0:2376"]))
    assert len(messages) == 1 and "(missing: %s)" % missing in messages[0]


def test_tls_without_verification_is_refused():
    """`tls: true` encrypts but lets any client in."""
    options = dict(TLS, tlsverify=False, tls=True, hosts=["tcp://0.0.0.0:2376"])
    assert "missing: tlsverify: true" in exposure(options)[0]
    assert exposure(dict(TLS, tlsverify="true", hosts=["tcp://0.0.0.0:2376"]))  # a string is not JSON true


def test_one_message_per_entry():
    assert len(exposure({"hosts": ["tcp://0.0.0.0:2375", "tcp://[::]:2375", "unix:///run/docker.sock"]})) == 2


def test_current_file_route_names_the_file():
    """A tcp host already in daemon.json would be kept by the merge and Docker restarted with it."""
    messages = exposure({}, current={"hosts": ["tcp://0.0.0.0:2375"]})
    assert len(messages) == 1 and "hosts in /etc/docker/daemon.json" in messages[0] and "'tcp://0.0.0.0:2375'" in messages[0]
    # TLS settings may come from either place: what dockerd reads is the merged file.
    assert exposure(TLS, current={"hosts": ["tcp://0.0.0.0:2376"]}) == []
    # The variable's hosts replace the file's.
    assert exposure({"hosts": ["fd://"]}, current={"hosts": ["tcp://0.0.0.0:2375"]}) == []


@pytest.mark.parametrize("hosts,reason", [
    ("tcp://0.0.0.0:2375", "TCP without TLS"), ({"a": 1}, "must be a list"), ([5], "not a socket address"),
    ([""], "not a socket address"), (["ssh://host"], "not ssh://"),
])
def test_malformed_entries(hosts, reason):
    messages = exposure({"hosts": hosts})
    assert len(messages) == 1 and reason in messages[0]


def test_refuses_what_is_not_a_daemon_json():
    with pytest.raises(AnsibleFilterError, match="merged daemon.json"):
        filters.container_runtime_daemon_exposure(["hosts"])


def test_registered_documented_and_used_in_preflight():
    assert set(filters.FilterModule().filters()) == {"container_runtime_daemon_exposure"}
    with open(os.path.join(REPO, "plugins", "filter", "container_runtime_daemon_exposure.yml")) as handle:
        assert yaml.safe_load(handle)["DOCUMENTATION"]["name"] == "container_runtime_daemon_exposure"
    with open(os.path.join(REPO, "roles", "container_runtime", "tasks", "read_daemon_json.yml")) as handle:
        tasks = yaml.safe_load(handle)
    names = [task["name"] for task in tasks]
    # After the merge (the rule judges the merged file), in the file preflight and render both include.
    assert names.index("Daemon.json | the Docker API is not opened on TCP without TLS") > \
        names.index("Daemon.json | merge the managed keys into the current content")
