"""The shared Molecule platform keys (molecule/shared/filter_plugins/molecule_platforms.py).

Every scenario's platform entry names only what is particular to its host; the create and destroy
playbooks fill in the rest from molecule/shared/vars/platform.yml with this filter.
"""

import importlib.util
import os

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(REPO, "molecule", "shared")
_spec = importlib.util.spec_from_file_location(
    "molecule_platforms", os.path.join(SHARED, "filter_plugins", "molecule_platforms.py"))
mp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mp)

with open(os.path.join(SHARED, "vars", "platform.yml")) as _f:
    SHARED_KEYS = yaml.safe_load(_f)["inferops_molecule_platform"]


def fill(*entries):
    return mp.platforms(list(entries), SHARED_KEYS, "/repo")


def test_minimal_entry_gets_every_shared_key():
    (got,) = fill({"name": "h1", "image": "inferops/debian:13"})
    assert got["image"] == "inferops/debian:13"
    assert got["pre_build_image"] is True and got["privileged"] is False
    assert got["command"] == "/lib/systemd/systemd"
    assert got["cgroupns_mode"] == "host" and got["keep_volumes"] is False
    assert got["tmpfs"] == ["/run", "/run/lock"]
    assert got["security_opts"] == ["seccomp=unconfined", "apparmor=unconfined"]
    # Every capability but SYS_RESOURCE: --privileged fails in this sandbox.
    assert len(got["capabilities"]) == 37 and "SYS_RESOURCE" not in got["capabilities"]
    assert got["volumes"] == [
        "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "/repo/.cache/apt-archives/h1:/var/cache/apt/archives:rw",
        "/repo/.cache/pip:/root/.cache/pip:rw",
    ]


def test_each_host_its_own_apt_archive_directory():
    got = fill({"name": "a"}, {"name": "b"})
    apt = [v for p in got for v in p["volumes"] if v.endswith(":/var/cache/apt/archives:rw")]
    assert len(set(apt)) == 2


def test_entry_keys_win_and_extra_keys_pass_through():
    (got,) = fill({"name": "h", "shm_size": "2g", "groups": ["g"], "keep_volumes": True,
                   "networks": [{"name": "n"}]})
    assert got["shm_size"] == "2g" and got["groups"] == ["g"] and got["keep_volumes"] is True
    assert got["networks"] == [{"name": "n"}]


def test_capability_deltas():
    (got,) = fill({"name": "h", "capabilities": ["-MKNOD", "SYS_RESOURCE"]})
    assert "MKNOD" not in got["capabilities"]
    assert got["capabilities"][-1] == "SYS_RESOURCE" and len(got["capabilities"]) == 37
    with pytest.raises(ValueError, match="NOPE"):
        fill({"name": "h", "capabilities": ["-NOPE"]})


def test_volumes_appended_and_replaced_by_container_path():
    (got,) = fill({"name": "h", "volumes": ["/var/lib/docker", "/x:/var/cache/apt/archives:rw",
                                            "/m:/srv/models:ro"]})
    assert got["volumes"] == [
        "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "/x:/var/cache/apt/archives:rw",
        "/repo/.cache/pip:/root/.cache/pip:rw",
        "/var/lib/docker",
        "/m:/srv/models:ro",
    ]


def test_entry_not_modified_in_place():
    entry = {"name": "h", "volumes": ["/var/lib/docker"]}
    fill(entry)
    assert entry == {"name": "h", "volumes": ["/var/lib/docker"]}


def test_docker_playbook_is_the_installed_plugin_one():
    path = mp.docker_playbook("create")
    assert path.endswith(os.path.join("molecule_plugins", "docker", "playbooks", "create.yml"))
    assert os.path.isfile(path)
