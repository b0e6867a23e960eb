"""The drift verdict hands its summary to AWX as job artifacts (set_stats), through ansible-runner.

ansible-runner is the engine AWX runs every job with; AWX stores the artifact_data of the run's
playbook_on_stats event as the job's artifacts and passes them to the next workflow node. This
runs playbooks/tasks/drift_verdict.yml on localhost after one check-mode play whose task would
change a file, with the real inferops.gpu.drift_report callback writing drift.json, and checks
the artifacts, the report and the failing exit status that alerts. About 5 s, no containers.
"""

import json
import os
import sys
import textwrap
from pathlib import Path

import ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from harness import REPO, tool_env  # noqa: E402

PLAYBOOK = """\
- name: Arm the report as drift.yml does
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Arm
      ansible.builtin.set_fact:
        inferops_drift_run: {{id: run-awx-1, mode: detect, report_dir: "{report_dir}"}}

- name: A detect play whose task would change a file
  hosts: localhost
  gather_facts: false
  check_mode: true
  diff: true
  vars:
    inferops_drift_phase: detect
  tasks:
    - name: Managed file
      ansible.builtin.copy:
        content: "wanted\\n"
        dest: "{managed}"
        mode: "0644"

- name: Verdict
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Verdict
      ansible.builtin.include_tasks:
        file: {verdict}
      vars:
        drift_verdict_stage: detect
"""


def test_drift_verdict_summary_reaches_the_job_artifacts(tmp_path):
    report_dir = tmp_path / "report"
    project = tmp_path / "runner" / "project"
    project.mkdir(parents=True)
    (project / "drift.yml").write_text(textwrap.dedent(PLAYBOOK.format(
        report_dir=report_dir, managed=tmp_path / "managed.conf",
        verdict=REPO / "playbooks" / "tasks" / "drift_verdict.yml")))
    env = tool_env()
    envvars = {
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
        "ANSIBLE_CALLBACKS_ENABLED": "inferops.gpu.drift_report",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "PATH": env["PATH"],
    }
    result = ansible_runner.run(
        private_data_dir=str(tmp_path / "runner"), playbook="drift.yml", envvars=envvars,
        inventory="localhost ansible_connection=local ansible_python_interpreter=" + sys.executable,
        quiet=True, timeout=120)
    stdout = result.stdout.read()
    # Drift found: the verdict fails the run, as it does for cron.
    assert result.status == "failed" and result.rc == 2, stdout
    assert not (tmp_path / "managed.conf").exists(), "detect changed the file"
    report = json.loads((report_dir / "drift.json").read_text())
    assert report["run_id"] == "run-awx-1" and report["summary"]["drifted"] == ["localhost"], report

    stats = [event for event in result.events if event.get("event") == "playbook_on_stats"]
    assert len(stats) == 1, stdout
    artifacts = stats[0]["event_data"].get("artifact_data") or {}
    assert artifacts.get("inferops_drift") == {
        "run_id": "run-awx-1", "mode": "detect", "stage": "detect",
        "report": f"{report_dir}/drift.json", "drifted": True, "errors": False, "hosts": 1,
        "changes": 1, "health": 0, "drifted_hosts": ["localhost"], "remediated_hosts": [],
        "error_hosts": []}, artifacts
    # ansible-runner also keeps the run's events on disk, as AWX's receptor stream does.
    assert os.listdir(tmp_path / "runner" / "artifacts")
