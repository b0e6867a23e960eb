"""The installed tarball run as users run it, against the converged host.

`ansible-playbook inferops.gpu.drift` (detect) and `inferops.gpu.health` run from a directory outside
the checkout, with ANSIBLE_COLLECTIONS_PATH naming only the collections path the dependency step
installed the tarball into and no other ANSIBLE_* variable (tests/harness/artifact.py clean_env): no
roles path, library or ansible.cfg of the checkout. Every task path Ansible prints must lie in the
installed copy. Then drift.yml again inside the execution environment (tests/ee) through ansible-runner.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
sys.path.insert(0, str(REPO / "tests" / "harness"))

from artifact import VENV_BIN, clean_env  # noqa: E402

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
COLLECTIONS = EPHEMERAL / "collections"
INSTALLED = COLLECTIONS / "ansible_collections" / "inferops" / "gpu"
# Molecule's generated inventory (hosts, host_vars, group_vars), in the ephemeral directory.
INVENTORY = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
HOST = "artifact-debian13"


def playbook(name: str, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = clean_env(COLLECTIONS, **env)
    # Nothing that steers Ansible may point into the checkout (the venv's bin on PATH is the
    # controller's Python installation, not the collection).
    assert not [key for key, value in environment.items()
                if key.startswith("ANSIBLE_") and str(REPO) in value]
    assert REPO not in (cwd, *cwd.parents)
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-vv", "-i", str(INVENTORY), name, *args],
                          cwd=cwd, env=environment, capture_output=True, text=True, check=False, timeout=900)


def task_paths(output: str) -> set[str]:
    return set(re.findall(r"^task path: (\S+?):\d+$", output, re.MULTILINE))


def assert_from_installed_copy(run: subprocess.CompletedProcess) -> None:
    paths = task_paths(run.stdout)
    assert paths, "ansible-playbook -vv printed no task path"
    outside = sorted(p for p in paths if not p.startswith(str(INSTALLED) + "/"))
    assert not outside, f"tasks run from outside the installed collection {INSTALLED}: {outside}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("artifact-run")


def test_the_installed_copy_is_a_tarball_install():
    manifest = json.loads((INSTALLED / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["namespace"] == "inferops"
    assert not (INSTALLED / "tests").exists() and not (INSTALLED / "molecule").exists()
    assert not INSTALLED.is_symlink()


def test_drift_detect_from_the_installed_copy_is_clean(workdir):
    report_dir = workdir / "drift"
    run = playbook("inferops.gpu.drift", workdir,
                   ANSIBLE_CALLBACKS_ENABLED="inferops.gpu.drift_report",
                   INFEROPS_DRIFT_REPORT_DIR=str(report_dir))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert_from_installed_copy(run)
    report = json.loads((report_dir / "drift.json").read_text())
    summary = report["summary"]
    assert summary["clean"] == [HOST], summary
    assert summary["drifted"] == [] and summary["error"] == [], summary
    assert report["mode"] == "detect" and report["drifted"] is False and report["errors"] is False, report
    assert (report_dir / "drift.md").read_text().startswith("#")


def test_health_from_the_installed_copy_reports_the_simulated_gpus(workdir):
    report_dir = workdir / "health"
    run = playbook("inferops.gpu.health", workdir, "-e", f"health_report_dir={report_dir}")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert_from_installed_copy(run)
    fleet = json.loads((report_dir / "gpu-health.json").read_text())
    (host,) = fleet["hosts"]
    assert host["host"] == HOST, host
    assert fleet["gpus"] == 4, fleet
    # pcie-4-acs: ACS redirect on the switch ports above GPUs 2 and 3, so the host is not a plain pass.
    assert host["verdict"] in ("warn", "fail"), host
    assert HOST in (report_dir / "gpu-health.md").read_text()


def test_drift_detect_in_the_execution_environment_is_clean(tmp_path):
    """drift.yml inside the EE (tests/ee, built by the dependency step), run by ansible-runner as AWX runs
    a job: the checkout is not mounted, the collection comes from the image. The EE reaches the host
    through the Docker socket (community.docker.docker_api and the Docker SDK in the image); it has no
    network at all."""
    image = os.environ.get("INFEROPS_EE_IMAGE", "inferops/gpu-ee:test")
    private = tmp_path / "runner"
    shutil.copytree(INVENTORY, private / "inventory")
    (private / "project").mkdir()
    (private / "env").mkdir()
    # Inside the container the private data directory is /runner.
    (private / "env" / "envvars").write_text(yaml.safe_dump({
        "ANSIBLE_CALLBACKS_ENABLED": "inferops.gpu.drift_report",
        "INFEROPS_DRIFT_REPORT_DIR": "/runner/artifacts/drift-report",
    }))
    (private / "env" / "cmdline").write_text("-e ansible_connection=community.docker.docker_api")
    socket = Path("/var/run/docker.sock")
    run = subprocess.run(
        [str(VENV_BIN / "ansible-runner"), "run", str(private), "-p", "inferops.gpu.drift", "--ident", "drift",
         "--process-isolation", "--process-isolation-executable", "docker", "--container-image", image,
         "--container-volume-mount", f"{socket}:{socket}",
         # The image runs as uid 1000: the socket's group lets it in; no network is needed.
         f"--container-option=--group-add={socket.stat().st_gid}", "--container-option=--network=none"],
        cwd=tmp_path, env=clean_env(None), capture_output=True, text=True, check=False, timeout=900)
    artifacts = private / "artifacts" / "drift"
    stdout = (artifacts / "stdout").read_text(errors="replace") if (artifacts / "stdout").is_file() else run.stdout
    assert run.returncode == 0, stdout[-4000:] + run.stderr[-2000:]
    assert (artifacts / "status").read_text().strip() == "successful"
    assert (artifacts / "rc").read_text().strip() == "0"
    # The roles ran from the image's collection, not from a checkout.
    events = [json.loads(p.read_text()) for p in (artifacts / "job_events").glob("*.json")]
    task_paths = {e["event_data"].get("task_path", "").rsplit(":", 1)[0] for e in events
                  if e.get("event") == "playbook_on_task_start"}
    assert task_paths and all(p.startswith("/usr/share/ansible/collections/ansible_collections/inferops/gpu/")
                              for p in task_paths), sorted(task_paths)
    report = json.loads((private / "artifacts" / "drift-report" / "drift.json").read_text())
    assert report["summary"]["clean"] == [HOST], report["summary"]
    assert report["drifted"] is False and report["errors"] is False, report["summary"]
