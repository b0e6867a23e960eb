"""inferops.gpu.check_mode (plugins/action/check_mode.py) against a real ansible-playbook run.

ansible_check_mode only reflects --check (ansible/ansible#61689); the action must also report a
play's, block's or task's check_mode keyword, and false when a task turns check mode off.
The playbook runs on localhost with the local connection: no container needed.
"""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PLAYBOOK = """
- name: Play without a check_mode keyword
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Probe
      inferops.gpu.check_mode:
      register: plain
    - name: Probe with check_mode true on the task
      inferops.gpu.check_mode:
      check_mode: true
      register: task_on
    - name: Probe with check_mode false on the task
      inferops.gpu.check_mode:
      check_mode: false
      register: task_off
    - name: Probe in a block with check_mode true
      check_mode: true
      block:
        - name: Probe
          inferops.gpu.check_mode:
          register: block_on
    - name: Record
      ansible.builtin.set_fact:
        probes_plain_play:
          plain: "{{ plain.check_mode }}"
          task_on: "{{ task_on.check_mode }}"
          task_off: "{{ task_off.check_mode }}"
          block_on: "{{ block_on.check_mode }}"
          changed: "{{ plain is changed }}"
      check_mode: false

- name: Play with check_mode true
  hosts: localhost
  gather_facts: false
  check_mode: true
  tasks:
    - name: Probe
      inferops.gpu.check_mode:
      register: play_on
    - name: Record
      ansible.builtin.copy:
        content: "{{ {'plain_play': probes_plain_play, 'play_on': play_on.check_mode,
                      'ansible_check_mode': ansible_check_mode} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
      check_mode: false
"""


def _run(tmp_path, *extra):
    playbook = tmp_path / "probe.yml"
    playbook.write_text(PLAYBOOK)
    out = tmp_path / "out.json"
    env = dict(os.environ,
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"),
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    bindir = os.path.dirname(sys.executable)
    proc = subprocess.run([os.path.join(bindir, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", "out=%s" % out,
                           "-e", "ansible_python_interpreter=%s" % sys.executable, str(playbook), *extra],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          env=env, cwd=str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stdout
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def collection_linked():
    if not os.path.isdir(os.path.join(REPO, ".collections", "ansible_collections", "inferops", "gpu")):
        pytest.skip(".collections not set up (make setup links the checkout there)")


def test_without_check(tmp_path, collection_linked):
    got = _run(tmp_path)
    assert got["plain_play"] == {"plain": False, "task_on": True, "task_off": False,
                                 "block_on": True, "changed": False}
    assert got["play_on"] is True
    # The reason for the plugin: a play's check_mode keyword leaves ansible_check_mode false.
    assert got["ansible_check_mode"] is False


def test_with_check_flag(tmp_path, collection_linked):
    got = _run(tmp_path, "--check")
    assert got["plain_play"] == {"plain": True, "task_on": True, "task_off": False,
                                 "block_on": True, "changed": False}
    assert got["play_on"] is True
    assert got["ansible_check_mode"] is True
