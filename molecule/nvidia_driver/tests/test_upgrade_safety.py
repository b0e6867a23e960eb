"""Upgrade safety on one mirror host (runs after test_nvidia_driver.py, which checks the converged
versions): upgrade_safety.yml publishes a newer 550 stand-in into the running mirror, shows that
`unattended-upgrade --dry-run --debug` and a real `apt-get -y upgrade` leave the held driver where it
is (while they do upgrade an unheld package of the same origin), then applies the role with the new
version pinned and upgrades allowed. The checks below read the host after that run."""

import json
import os
import re
import subprocess

import pytest

SCENARIO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Newer than every 550 release the harness builds; published by upgrade_safety.yml when missing.
NEW = "550.144.03-1"
# The mirror host converged to an exact older release (molecule.yml): older than the newest of its
# branch on every run, whatever an earlier run left in the mirror.
UPGRADE_HOST = "nvidia-driver-mirror-debian13"
DRIVER = ("cuda-drivers-550", "nvidia-driver", "nvidia-kernel-dkms", "nvidia-smi", "libcuda1", "libnvidia-ml1",
          "nvidia-persistenced")


@pytest.fixture(scope="module")
def upgrade_run():
    """The side playbook, once (its own assertions cover the steps before the upgrade)."""
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        pytest.skip("runs under Molecule only (needs its inventory)")
    cmd = ["ansible-playbook", "-i", inventory, "--limit", UPGRADE_HOST, "-e", f"upgrade_safety_new_version={NEW}",
           os.path.join(SCENARIO_DIR, "upgrade_safety.yml")]
    # The run reports in JSON only, read task by task below.
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json", ANSIBLE_RETRY_FILES_ENABLED="false")
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    assert res.returncode == 0, _failures(res.stdout) or res.stdout[-6000:] + res.stderr[-3000:]
    return json.loads(res.stdout)


def _failures(stdout):
    try:
        plays = json.loads(stdout)["plays"]
    except (ValueError, KeyError):
        return ""
    return "\n".join(f"{task['task']['name']} on {name}: {result.get('msg', result)}"
                     for play in plays for task in play["tasks"] for name, result in task["hosts"].items()
                     if result.get("failed"))


def _result(run, play, task, name):
    """The result on host `name` of the last task called `task` in play number `play` of the run."""
    # A role's task is named "<role> : <task>".
    found = [t["hosts"][name] for t in run["plays"][play]["tasks"]
             if t["task"]["name"].split(" : ")[-1] == task and name in t["hosts"]]
    assert found, f"no task {task!r} ran on {name} in play {play}"
    return found[-1]


@pytest.fixture()
def upgrade_host(host, request):
    if host.backend.get_hostname() != UPGRADE_HOST:
        pytest.skip("upgrade safety runs on one mirror host, %s" % UPGRADE_HOST)
    return request.getfixturevalue("upgrade_run")


@pytest.mark.usefixtures("upgrade_host")
@pytest.mark.parametrize("name", DRIVER)
def test_new_version_installed_and_held(host, name):
    assert host.package(name).version == NEW, name
    assert host.check_output("dpkg-query -W -f '${Status}' %s" % name).startswith("hold "), name


@pytest.mark.usefixtures("upgrade_host")
def test_new_version_pinned(host):
    pref = host.file("/etc/apt/preferences.d/inferops-nvidia-driver.pref").content_string
    assert re.search(r"^Pin: version %s$" % re.escape(NEW), pref, re.M), pref
    policy = host.check_output("apt-cache policy nvidia-driver")
    assert re.search(r"Candidate: %s$" % re.escape(NEW), policy, re.M), policy
    assert "Driver Version: %s" % NEW.rsplit("-", 1)[0] in host.check_output("nvidia-smi")
    # The exclusion the dry-run relied on is still in place after the upgrade.
    dump = host.check_output("apt-config dump Unattended-Upgrade::Package-Blacklist")
    assert '"nvidia-"' in dump and '"cuda-drivers"' in dump, dump


def test_upgrade_on_purpose_reports_reboot_and_health_check(host, upgrade_host):
    name, new = host.backend.get_hostname(), NEW.rsplit("-", 1)[0]
    before = _result(upgrade_host, 0, "Upgrade safety | the driver before", name)["stdout"]
    # The driver was older before, and this run's install changed it.
    assert NEW not in before, before
    assert _result(upgrade_host, 1, "Install the driver packages", name)["changed"]
    # The reboot policy: needed (the new module is not loaded), reported, not done in a container.
    report = _result(upgrade_host, 1, "Report the reboot state", name)["msg"]
    assert f"needs a reboot: no NVIDIA kernel module is loaded (driver {new} installed)" in report, report
    assert "Policy nvidia_driver_reboot=if_needed; not rebooting: this is a container" in report, report
    assert _result(upgrade_host, 1, "Reboot under the reboot policy", name).get("skipped"), report
    # The gpu_health step ran and said why it cannot confirm here (no pynvml on these hosts).
    note = _result(upgrade_host, 1, "Note that the verification is skipped without pynvml", name)["msg"]
    assert "pynvml is not importable" in note, note
