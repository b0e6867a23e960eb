"""`ansible-galaxy collection build` succeeds and ships no tests, scenarios or local tooling."""

import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LEFT_OUT = ("tests/", "molecule/", ".venv/", ".cache/", ".collections/", ".ci/", ".config/", "Makefile",
            "requirements-dev.txt")


def test_collection_build_excludes_tests_and_scenarios(tmp_path):
    run = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), str(REPO)],
        capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    tarballs = list(tmp_path.glob("inferops-gpu-*.tar.gz"))
    assert len(tarballs) == 1
    with tarfile.open(tarballs[0]) as archive:
        names = archive.getnames()
    assert "plugins/modules/gpu_health.py" in names
    assert "plugins/module_utils/gpu_inventory.py" in names
    assert "MANIFEST.json" in names and "galaxy.yml" not in names
    shipped = [name for name in names if name.startswith(LEFT_OUT) or name in LEFT_OUT]
    assert not shipped, shipped
