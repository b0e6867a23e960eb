"""Static checks of the main job (`make demo`): its script, playbooks and inventory.

The demo itself needs Docker and minutes; these checks catch what breaks it without running it.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from harness import REPO, VENV, run_logged, tool_env  # noqa: E402

DEMO = REPO / "tests" / "demo"
HOST = "inferops-demo"


def test_demo_script_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (tests/harness/setup.sh packages installs it)")
    run = run_logged("shellcheck-demo", ["shellcheck", str(DEMO / "run.sh")])
    assert run.rc == 0, run.failure()


@pytest.mark.parametrize("playbook", ["playbooks/site.yml", "tests/demo/prepare.yml"])
def test_demo_playbooks_syntax_check_on_the_demo_inventory(playbook):
    name = "syntax-check-demo-" + Path(playbook).stem
    run = run_logged(name, [str(VENV / "bin" / "ansible-playbook"), "--syntax-check", "-i", "inventory/demo", playbook])
    assert run.rc == 0, run.failure()


def test_demo_inventory_is_the_simulated_host_with_driver_and_toolkit_off():
    run = subprocess.run([str(VENV / "bin" / "ansible-inventory"), "-i", "inventory/demo", "--host", HOST],
                         cwd=REPO, env=tool_env(), capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    host = json.loads(run.stdout)
    assert host["ansible_connection"] == "community.docker.docker"
    assert host["inferops_nvidia_driver_enabled"] is False
    assert host["inferops_cuda_toolkit_enabled"] is False
    # The roles the demo shows stay on (absent toggles default to true in site.yml).
    for role in ("container_runtime", "nccl_tuning", "gpu_health", "xinference"):
        assert host.get(f"inferops_{role}_enabled", True) is True, role
    assert host["gpu_health_sysfs_root"].startswith("/opt/fake-nvml/root")
    assert [m["model_type"] for m in host["xinference_models"]] == ["embedding"]
    # The admin password comes from the environment (tests/demo/run.sh), never from a file in git.
    assert "lookup('ansible.builtin.env'" in host["xinference_admin_password"]
