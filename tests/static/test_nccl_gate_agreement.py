"""The pre-flight health gate judges exactly the NCCL environment nccl_tuning writes.

A container-free playbook run on localhost: one inventory host per precedence case, each with a
made-up gpu_health fact and its own nccl_tuning_env_pinned / _extra / _forbidden. The real
playbooks/tasks/health_gate.yml (stage preflight) runs first, then the real derive phase of
nccl_tuning (roles/nccl_tuning/tasks/derive.yml); the test compares the env the gate judged with
nccl_tuning_effective.env, and the verdict with what that env mitigates.

The collection is the checkout, seen through a copy of links in which only the gpu_health role is
replaced by one task that returns the case's fact (so nothing is installed or measured here).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
PLAYBOOK_BIN = REPO / ".venv" / "bin" / "ansible-playbook"

FAKE_MODULE = '''#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule
module = AnsibleModule(argument_spec={"facts": {"type": "dict", "required": True}})
module.exit_json(changed=False, ansible_facts={"gpu_health": module.params["facts"]})
'''


def fact(derived=None):
    """A host with a failing ACS check on the PCIe pair gpu0-gpu1; gpu_health recommends `derived`."""
    return {
        "summary": {"verdict": "fail", "counts": {}, "failing": []},
        "checks": [{"id": "acs", "verdict": "fail", "reason": "ACS redirect on bridge 0000:00:01.0",
                    "gpu": None, "pair": [0, 1]}],
        "nvml": {"available": True, "error": None},
        "gpu_count": 2, "gpus": [],
        "pairs": [{"gpus": [0, 1], "nvlink": False, "p2p_safe": False, "acs_redirect_bridges": ["0000:00:01.0"]}],
        "xids": {"events": []},
        "recommendation": {"nccl_env": derived or {}, "reasons": dict((name, "ACS redirect") for name in derived or {}),
                           "container_shm_bytes": 0},
    }


P2P = {"NCCL_P2P_DISABLE": "1"}
# case: (gpu_health derives, pinned, extra, forbidden, the env nccl_tuning writes)
CASES = {
    "derived": (P2P, {}, {}, [], P2P),
    "nothing_derived": ({}, {}, {}, [], {}),
    "pinned_over_derived": (P2P, {"NCCL_P2P_DISABLE": 0}, {}, [], {"NCCL_P2P_DISABLE": "0"}),
    "pinned_without_derived": ({}, {"NCCL_P2P_DISABLE": 1}, {}, [], P2P),
    "forbidden_over_derived": (P2P, {}, {}, ["NCCL_P2P_DISABLE"], {}),
    "forbidden_over_pinned": ({}, {"NCCL_P2P_DISABLE": "1"}, {}, ["NCCL_P2P_DISABLE"], {}),
    "forbidden_over_extra": ({}, {}, {"NCCL_P2P_DISABLE": "1"}, ["NCCL_P2P_DISABLE"], {}),
    "derived_over_extra": (P2P, {}, {"NCCL_P2P_DISABLE": "0", "NCCL_DEBUG": "WARN"}, [],
                           {"NCCL_P2P_DISABLE": "1", "NCCL_DEBUG": "WARN"}),
    "extra_alone": ({}, {}, {"NCCL_P2P_DISABLE": "1"}, [], P2P),
    "pinned_over_extra": ({}, {"NCCL_P2P_DISABLE": "0"}, {"NCCL_P2P_DISABLE": "1"}, [], {"NCCL_P2P_DISABLE": "0"}),
}

PLAYBOOK = """
- name: Pre-flight health gate, as site.yml runs it
  hosts: cases
  gather_facts: false
  tasks:
    - name: The gate
      ansible.builtin.import_tasks: {repo}/playbooks/tasks/health_gate.yml
      vars:
        inferops_gate_stage: preflight

- name: What nccl_tuning derives, as its role runs it
  hosts: cases
  gather_facts: false
  tasks:
    - name: The derive phase of nccl_tuning
      ansible.builtin.include_role:
        name: inferops.gpu.nccl_tuning
        tasks_from: derive.yml
      vars:
        __nccl_tuning_in_container: true
    - name: Keep both
      ansible.builtin.copy:
        content: "{{{{ {{'gate': inferops_health_gate, 'nccl': nccl_tuning_effective}} | to_json }}}}"
        dest: "{out}/{{{{ inventory_hostname }}}}.json"
        mode: "0600"
"""


def _collection(root):
    """ansible_collections/inferops/gpu: links to the checkout, gpu_health replaced by the fake."""
    gpu = root / "ansible_collections" / "inferops" / "gpu"
    (gpu / "roles").mkdir(parents=True)
    for entry in REPO.iterdir():
        if entry.name not in ("roles", ".git", ".venv", ".cache", ".collections"):
            (gpu / entry.name).symlink_to(entry)
    for role in (REPO / "roles").iterdir():
        if role.name != "gpu_health":
            (gpu / "roles" / role.name).symlink_to(role)
    tasks = gpu / "roles" / "gpu_health" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text(yaml.safe_dump([{
        "name": "Fake gpu_health: the case's fact", "ansible.legacy.fake_gpu_health": {"facts": "{{ fake_gpu_health }}"}}]))
    library = root / "library"
    library.mkdir()
    (library / "fake_gpu_health.py").write_text(FAKE_MODULE)


def test_role_defaults_are_the_gates_defaults():
    """The gate reads the three inputs from inventory with default({}) / default([]): the role's own defaults."""
    defaults = yaml.safe_load((REPO / "roles" / "nccl_tuning" / "defaults" / "main.yml").read_text())
    assert (defaults["nccl_tuning_env_pinned"], defaults["nccl_tuning_env_extra"], defaults["nccl_tuning_env_forbidden"]) \
        == ({}, {}, [])


def test_gate_and_nccl_tuning_agree_on_every_precedence_case(tmp_path):
    _collection(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    hosts = {}
    for name, case in CASES.items():
        derived, pinned, extra, forbidden = case[:4]
        hosts[name] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                       "fake_gpu_health": fact(derived), "nccl_tuning_env_pinned": pinned,
                       "nccl_tuning_env_extra": extra, "nccl_tuning_env_forbidden": forbidden}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"children": {"cases": {"hosts": hosts}}}}))
    (tmp_path / "agree.yml").write_text(PLAYBOOK.format(repo=REPO, out=out))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path), ANSIBLE_LIBRARY=str(tmp_path / "library"),
               ANSIBLE_INJECT_FACTS_AS_VARS="False", ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_FORKS="5")
    env.pop("ANSIBLE_CONFIG", None)
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    run = subprocess.run([str(PLAYBOOK_BIN), "-i", "inventory.yml", "agree.yml"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=False, timeout=300)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    for name, case in CASES.items():
        expected = case[4]
        result = json.loads((out / (name + ".json")).read_text())
        gate, nccl = result["gate"], result["nccl"]
        assert nccl["env"] == expected, name
        assert gate["stage"] == "preflight" and gate["nccl_env"] == nccl["env"], name
        p2p_off = nccl["env"].get("NCCL_P2P_DISABLE") == "1"
        assert gate["passed"] is p2p_off, (name, gate)
        assert len(gate["mitigated"]) == int(p2p_off) and len(gate["blocking"]) == int(not p2p_off), (name, gate)
