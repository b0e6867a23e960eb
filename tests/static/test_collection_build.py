"""`ansible-galaxy collection build` succeeds and ships no tests, scenarios or local tooling."""

import re
import subprocess
import tarfile
from pathlib import Path, PurePosixPath

import yaml

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


# What must never ship, whatever build_ignore says: local state and caches, test scaffolding, and
# anything that looks like a secret (keys, certificates, htpasswd files, vault password files).
NEVER_SHIPPED_PARTS = {".cache", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox", ".venv",
                       ".collections", ".ansible", "tests", "molecule", "output", "drift-report", ".git"}
SECRET_NAME = re.compile(
    r"(\.(pem|key|crt|p12|pfx|jks|kdbx|pyc|retry|log)$|^id_(rsa|dsa|ecdsa|ed25519)|htpasswd|"
    r"^\.?vault[_-]?pass|^\.env$|^\.netrc$|^credentials)", re.IGNORECASE)
SECRET_CONTENT = re.compile(
    r"(-----BEGIN [A-Z ]*PRIVATE KEY-----|^\$ANSIBLE_VAULT;|^[\w.-]+:\$(apr1|2[aby]|5|6)\$)", re.MULTILINE)


def test_collection_build_ships_no_caches_tests_or_secrets(tmp_path):
    run = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), str(REPO)],
        capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    (tarball,) = tmp_path.glob("inferops-gpu-*.tar.gz")
    bad = []
    with tarfile.open(tarball) as archive:
        members = archive.getmembers()
        for member in members:
            parts = PurePosixPath(member.name).parts
            if NEVER_SHIPPED_PARTS & set(parts):
                bad.append(f"{member.name}: a cache, test or local-state directory")
            elif SECRET_NAME.search(parts[-1]):
                bad.append(f"{member.name}: named like a key, certificate, password or cache file")
            elif member.isfile():
                text = archive.extractfile(member).read().decode("utf-8", errors="replace")
                if SECRET_CONTENT.search(text):
                    bad.append(f"{member.name}: holds a private key, vault ciphertext or htpasswd entry")
                # A vault file shipped as an example holds names only: every value empty.
                if parts[-1] in ("vault.yml", "vault.yaml"):
                    values = yaml.safe_load(text) or {}
                    filled = sorted(key for key, value in values.items() if value not in ("", None))
                    if filled:
                        bad.append(f"{member.name}: example vault file with values for {filled}")
    assert len(members) > 50
    assert not bad, "\n".join(bad)
