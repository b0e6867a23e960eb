"""Exposure defaults (issue 11): the Docker API on TCP without TLS is refused, plain http:// warns.

One container-free ansible-playbook run on localhost, through the roles' real entry points:
container_runtime's `render` (its preflight: platform, value checks, current daemon.json, the
exposure rule) and package_repository's `preflight`. Nothing on this machine changes: render writes
only into the test's directory, and daemon.json is a file of the test's own
(container_runtime_daemon_json_path). Unit tests of the rules: tests/unit/test_container_runtime_filter.py
and tests/unit/test_repository_key.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = REPO / ".venv" / "bin" / "ansible-playbook"

TLS = {"tlsverify": True, "tlscacert": "/etc/docker/ca.pem", "tlscert": "/etc/docker/cert.pem",
       "tlskey": "/etc/docker/key.pem"}

# name: (container_runtime variables, current daemon.json content or None, refused?)
RENDER_CASES = {
    "tcp_without_tls": (
        {"container_runtime_daemon_extra_options": {"hosts": ["unix:///run/docker.sock", "tcp://0.0.0.0:2375"]}},
        None, True),
    "kept_from_current_file": ({}, {"hosts": ["tcp://10.0.0.5:2375"]}, True),
    # TLS-verified TCP is fine; a plain http mirror is accepted, with a warning naming the variable.
    "tcp_with_tls_verify_http_mirror": (
        {"container_runtime_daemon_extra_options": dict(TLS, hosts=["unix:///run/docker.sock", "tcp://0.0.0.0:2376"]),
         "container_runtime_docker_source": "docker_repo",
         "package_repository_docker_url": "http://mirror.internal/docker"}, None, False),
}

PLAYBOOK = """
- name: container_runtime render, one case per host
  hosts: render
  gather_facts: false
  tasks:
    - name: The case
      block:
        - name: Render (preflight included)
          ansible.builtin.include_role:
            name: inferops.gpu.container_runtime
            tasks_from: render
        - name: Keep the outcome
          ansible.builtin.copy:
            content: '{{{{ {{"refused": false}} | to_json }}}}'
            dest: "{out}/{{{{ inventory_hostname }}}}.json"
            mode: "0600"
      rescue:
        - name: Keep the refusal
          ansible.builtin.copy:
            content: '{{{{ {{"refused": true, "task": ansible_failed_task.name, "msg": ansible_failed_result.msg}} | to_json }}}}'
            dest: "{out}/{{{{ inventory_hostname }}}}.json"
            mode: "0600"

- name: package_repository preflight with a plain http mirror and key
  hosts: preflight
  gather_facts: false
  tasks:
    - name: Facts the filter needs
      ansible.builtin.setup:
        gather_subset: [min]
    - name: Preflight
      ansible.builtin.include_role:
        name: inferops.gpu.package_repository
        tasks_from: preflight
      vars:
        package_repository_caller: cuda_toolkit
        package_repository_vendors: [cuda]
        package_repository_cuda_url: https://mirror.internal/cuda/{{{{ '{{distro}}/{{arch}}' }}}}
        package_repository_cuda_key_url: http://keys.internal/cuda.pub
"""


def test_docker_api_exposure_and_plain_http(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    render = {}
    for name, (variables, current) in ((key, value[:2]) for key, value in RENDER_CASES.items()):
        daemon_json = tmp_path / ("%s-daemon.json" % name)
        if current is not None:
            daemon_json.write_text(json.dumps(current))
        render[name] = dict(local, container_runtime_nvidia_toolkit_enabled=False,
                            container_runtime_render_dir=str(tmp_path / "render" / name),
                            container_runtime_daemon_json_path=str(daemon_json), **variables)
    inventory = {"all": {"children": {"render": {"hosts": render},
                                      "preflight": {"hosts": {"repository": dict(local)}}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "exposure.yml").write_text(PLAYBOOK.format(out=out))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_DEPRECATION_WARNINGS="0",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_FORKS="4")
    env.pop("ANSIBLE_CONFIG", None)
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    run = subprocess.run([str(PLAYBOOK_BIN), "-i", "inventory.yml", "exposure.yml"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=False, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]

    for name, (variables, current, refused) in RENDER_CASES.items():
        result = json.loads((out / (name + ".json")).read_text())
        assert result["refused"] is refused, (name, result)
        if refused:
            # Refused in preflight (before render wrote daemon.json), naming where the entry comes from.
            assert result["task"].startswith("Daemon.json | the Docker API"), (name, result)
            assert not (tmp_path / "render" / name / "daemon.json").exists(), name
            source = ("container_runtime_daemon_extra_options.hosts" if current is None
                      else "hosts in %s" % (tmp_path / ("%s-daemon.json" % name)))
            assert source in result["msg"] and "unix://" in result["msg"], (name, result["msg"])
            entry = (variables.get("container_runtime_daemon_extra_options", {}).get("hosts") or current["hosts"])[-1]
            assert "'%s'" % entry in result["msg"], (name, result["msg"])
        else:
            assert (tmp_path / "render" / name / "daemon.json").exists(), name
    rendered = json.loads((tmp_path / "render" / "tcp_with_tls_verify_http_mirror" / "daemon.json").read_text())
    assert rendered["hosts"] == ["unix:///run/docker.sock", "tcp://0.0.0.0:2376"] and rendered["tlsverify"] is True

    # Plain http is accepted but never silent: a warning naming each variable (once, however many tasks ask).
    flat = " ".join(output.split())
    for variable, value in (("package_repository_docker_url", "http://mirror.internal/docker"),
                            ("package_repository_cuda_key_url", "http://keys.internal/cuda.pub")):
        warning = "[WARNING]: %s=%s is plain http://" % (variable, value)
        assert flat.count(warning) == 1, (warning, output[-4000:])
    assert "package_repository_cuda_url=https" not in flat
