"""The xinference role's cluster key (roles/xinference/tasks/cluster_key.yml) with real
ansible-playbook runs on localhost: a supervisor and a worker, both the local connection, the key
file under a temporary directory. Issue 11: cluster shapes ran without actor authentication.

Generated once on the supervisor (0600), the same on the worker, reused on later runs (changed=0),
read from the supervisor's file by a worker alone, check mode on a first run reports the pending
write and fails nothing, a worker without any key fails with what to do, and the opt-out warns.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RECAP = re.compile(r"^(\w+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)

PLAYBOOK = """
- name: Cluster key tasks of the xinference role
  hosts: all:!sup_elsewhere
  gather_facts: false
  vars:
    __xinference_shape: "{{ 'supervisor' if inventory_hostname in groups['xinference_supervisor'] else 'worker' }}"
    __xinference_supervisor_host: "{{ groups[xinference_supervisor_group] | default([]) | first | default('') }}"
    __xinference_advertise: 127.0.0.1
    __xinference_check_mode: "{{ ansible_check_mode }}"
  tasks:
    - name: The tasks under test
      ansible.builtin.include_tasks: %s
    - name: Record the key each host ends with (the test reads it back), one file for all
      ansible.builtin.copy:
        content: >-
          {{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all
             | map('extract', hostvars, '__xinference_cluster_key') | map('default', ''))) | to_json }}
        dest: "{{ out }}/keys.json"
        mode: "0600"
      run_once: true
      check_mode: false
      changed_when: false
""" % (REPO / "roles" / "xinference" / "tasks" / "cluster_key.yml")
GIVEN = "given-key-Zq8Xv1aaaaaaaaaaaaaaaa"


@pytest.fixture
def cluster(tmp_path):
    """Hosts, all on this machine: sup the supervisor; wrk its worker; late a worker whose supervisor
    (sup_elsewhere, the same key file) is not in the play, so it reads the file; open a worker that
    opted out; given a worker with xinference_cluster_auth_key; orphan a worker whose supervisor
    group is empty. The role's defaults are the inventory's lowest variables, as role defaults are."""
    key_file = tmp_path / "etc" / "inferops" / "xinference-cluster-auth-key"
    (tmp_path / "out").mkdir()
    defaults = yaml.safe_load((REPO / "roles" / "xinference" / "defaults" / "main.yml").read_text())
    defaults.update(ansible_connection="local", ansible_python_interpreter=sys.executable,
                    xinference_cluster_auth_key_path=str(key_file), out=str(tmp_path / "out"))
    inventory = {"all": {
        "hosts": {"sup": None, "wrk": None, "sup_elsewhere": None,
                  "late": {"xinference_supervisor_group": "supervisor_elsewhere"},
                  "open": {"xinference_cluster_auth_required": False},
                  "given": {"xinference_cluster_auth_key": GIVEN},
                  "orphan": {"xinference_supervisor_group": "nobody"}},
        "vars": defaults,
        "children": {"xinference_supervisor": {"hosts": {"sup": None}},
                     "supervisor_elsewhere": {"hosts": {"sup_elsewhere": None}},
                     "xinference_workers": {"hosts": {"wrk": None, "late": None, "open": None, "given": None,
                                                      "orphan": None}}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(PLAYBOOK)

    def run(*extra):
        for stale in (tmp_path / "out").iterdir():
            stale.unlink()
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
        proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"),
                               str(tmp_path / "play.yml"), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env, cwd=str(tmp_path), check=False)
        keys = json.loads((tmp_path / "out" / "keys.json").read_text()) if (tmp_path / "out" / "keys.json").exists() else {}
        recap = dict((m.group(1), {"changed": int(m.group(3)), "failed": int(m.group(5))})
                     for m in RECAP.finditer(proc.stdout))
        return proc, keys, recap

    run.key_file = key_file
    return run


def test_cluster_key(cluster):
    # Check mode, first run: no key file yet. The write is reported, nothing fails (not even the
    # orphan: its container would change anyway), nothing is written; the worker in the play gets
    # the supervisor's key of this run, the one outside it has none to read yet.
    proc, keys, recap = cluster("--check")
    assert proc.returncode == 0, proc.stdout
    assert not cluster.key_file.exists()
    assert recap["sup"]["changed"] >= 1 and len(keys["sup"]) == 48 and keys["wrk"] == keys["sup"], proc.stdout
    assert keys["late"] == "" and keys["orphan"] == "" and keys["open"] == "" and keys["given"] == GIVEN
    assert proc.stdout.count("WARNING: xinference_cluster_auth_required=false") == 1

    # First real run: generated once, 0600, the same on every worker; the orphan fails with what to do.
    proc, keys, recap = cluster()
    key = cluster.key_file.read_text().strip()
    assert len(key) == 48 and key.isalnum()
    assert cluster.key_file.stat().st_mode & 0o777 == 0o600
    assert keys["sup"] == keys["wrk"] == keys["late"] == key, proc.stdout
    assert keys["open"] == "" and keys["given"] == GIVEN
    assert [name for name, counts in recap.items() if counts["failed"]] == ["orphan"], proc.stdout
    assert "This worker has no cluster key" in proc.stdout and "Run the role on the supervisor" in proc.stdout
    assert key not in proc.stdout and GIVEN not in proc.stdout

    # Second run: the same key, nothing changed.
    proc, keys, recap = cluster()
    assert keys["sup"] == keys["wrk"] == keys["late"] == key
    assert all(counts["changed"] == 0 for counts in recap.values()), proc.stdout
    assert key not in proc.stdout
