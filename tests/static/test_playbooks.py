"""The user-facing playbooks against the shipped inventories, without touching a host.

`ansible-playbook --syntax-check` of every playbook with inventory/example and inventory/demo
(from .venv, inferops.gpu resolved through .collections as in ansible.cfg), the inventories'
groups and variables as ansible-inventory sees them, and what the playbooks promise in their
structure: one tag per role in site.yml, drift plays in check mode, the vault pattern.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
PLAYBOOKS = sorted(path.name for path in (REPO / "playbooks").glob("*.yml"))
INVENTORIES = [name for name in ("example", "demo") if (REPO / "inventory" / name).is_dir()]
ROLES = ("nvidia_driver", "cuda_toolkit", "container_runtime", "nccl_tuning", "gpu_health", "xinference")


def _env():
    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0")
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    return env


def _run(*args):
    return subprocess.run([str(arg) for arg in args], cwd=REPO, env=_env(), capture_output=True, text=True,
                          check=False, timeout=300)


def _load(relative):
    return yaml.safe_load((REPO / relative).read_text())


def test_the_four_playbooks_exist():
    assert {"site.yml", "provision.yml", "drift.yml", "health.yml"} <= set(PLAYBOOKS)


@pytest.mark.parametrize("inventory", INVENTORIES)
@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_syntax_check(playbook, inventory):
    run = _run(BIN / "ansible-playbook", "--syntax-check", "-i", "inventory/" + inventory, "playbooks/" + playbook)
    assert run.returncode == 0, run.stdout + run.stderr


def test_example_inventory_groups_and_vault_pattern():
    run = _run(BIN / "ansible-inventory", "-i", "inventory/example", "--list")
    assert run.returncode == 0, run.stderr
    listing = json.loads(run.stdout)
    assert len(listing["xinference_supervisor"]["hosts"]) == 1
    assert len(listing["xinference_workers"]["hosts"]) >= 2
    assert listing["xinference_local"]["hosts"]
    hostvars = listing["_meta"]["hostvars"]
    worker = hostvars[listing["xinference_workers"]["hosts"][0]]
    # Secrets reach the roles only through vault_ variables, and none is committed.
    assert worker["xinference_admin_password"] == "{{ vault_xinference_admin_password }}"
    vault = _load("inventory/example/group_vars/all/vault.yml")
    assert vault and all(name.startswith("vault_") and value == "" for name, value in vault.items())
    # Per-GPU-model variables exist for the groups provision.yml creates.
    assert (REPO / "inventory/example/group_vars/gpu_h100.yml").is_file()
    assert _load("inventory/example/group_vars/gpu_h100.yml")["gpu_health_expected_gpu_count"] == 8


def test_demo_inventory_is_one_simulated_docker_host():
    if "demo" not in INVENTORIES:
        pytest.skip("no inventory/demo in this checkout")
    run = _run(BIN / "ansible-inventory", "-i", "inventory/demo", "--list")
    assert run.returncode == 0, run.stderr
    hostvars = json.loads(run.stdout)["_meta"]["hostvars"]
    assert list(hostvars) == ["inferops-demo"]
    demo = hostvars["inferops-demo"]
    assert demo["ansible_connection"] == "community.docker.docker"
    assert demo["xinference_image"] == "inferops/xinference-cpu" and str(demo["xinference_image_tag"]) == "4.1.0"
    assert any(model["model_type"] == "embedding" for model in demo["xinference_models"])


def _tasks(play):
    for task in play.get("tasks", []):
        yield task
        for key in ("block", "rescue", "always"):
            yield from task.get(key, [])


def test_site_has_one_tag_per_role_and_toggles():
    text = (REPO / "playbooks/site.yml").read_text() + (REPO / "playbooks/tasks/host_roles.yml").read_text() \
        + (REPO / "playbooks/tasks/health_gate.yml").read_text() + (REPO / "playbooks/tasks/xinference.yml").read_text()
    for role in ROLES:
        assert "name: inferops.gpu." + role in text, role
        assert "tags: [%s]" % role in text, role
        assert "inferops_%s_enabled | default(true) | bool" % role in text, role


def test_drift_detect_plays_run_in_check_mode_and_name_their_phase():
    plays = _load("playbooks/drift.yml")
    detect = [play for play in plays if (play.get("vars") or {}).get("inferops_drift_phase") == "detect"]
    remediate = [play for play in plays if (play.get("vars") or {}).get("inferops_drift_phase") == "remediate"]
    assert len(detect) == 3 and len(remediate) == 3
    assert all(play["check_mode"] is True and play["diff"] is True for play in detect)
    assert all("check_mode" not in play for play in remediate)
    # Remediation touches only the hosts the verdict put into drift_remediate.
    assert all(play["hosts"].startswith("drift_remediate") for play in remediate)


def test_controller_plays_are_not_limited_away():
    # --limit must not drop the plays that arm the report, decide and summarise: they run over
    # all hosts with run_once instead of on localhost.
    for playbook in PLAYBOOKS:
        for play in _load("playbooks/" + playbook):
            assert play["hosts"] != "localhost", (playbook, play["name"])


def test_provision_rolls_in_batches():
    plays = _load("playbooks/provision.yml")
    rolling = [play for play in plays if "serial" in play]
    assert len(rolling) == 1
    assert "provision_batch_percent" in rolling[0]["serial"] and rolling[0]["serial"].endswith("'%' }}")
    assert "provision_max_fail_percentage" in str(rolling[0]["max_fail_percentage"])
