"""Build the execution environment of tests/ee/execution-environment.yml with ansible-builder, once per
machine: the image carries the hash of its inputs in the label `inferops.recipe` and is rebuilt only
when that hash changes (as tests/images/build.sh does for the base images).

Inputs staged under .cache/ee/files (ansible-builder's additional_build_files):
  inferops-gpu.tar.gz      `ansible-galaxy collection build` of the checkout
  collections/<ns>/<name>  community.docker (and its dependency community.library_inventory_filtering_v1),
                           community.general, ansible.posix from the `ansible` package in .venv
  wheels/                  every Python package the build installs, downloaded by this machine's pip (its own
                           index and certificate settings) for the image's Python (Debian 13: CPython 3.13)

    .venv/bin/python tests/ee/build.py            # prints the image name; log: .cache/logs/ee-build.log
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "harness"))

from artifact import VENV_BIN, build_tarball  # noqa: E402

IMAGE = "inferops/gpu-ee:test"
DEFINITION = HERE / "execution-environment.yml"
WORK = REPO / ".cache" / "ee"
FILES = WORK / "files"
LOG = REPO / ".cache" / "logs" / "ee-build.log"
BUNDLED = ("community/docker", "community/library_inventory_filtering_v1", "community/general", "ansible/posix")
SITE = Path(subprocess.run([str(VENV_BIN / "python"), "-c", "import ansible_collections, os; "
                            "print(os.path.dirname(ansible_collections.__path__[0]))"],
                           capture_output=True, text=True, check=True).stdout.strip())
# The image's Python: wheels are chosen for it, not for the controller's.
WHEEL_TARGET = ["--only-binary=:all:", "--python-version", "3.13", "--implementation", "cp", "--abi", "cp313",
                "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                "--platform", "manylinux2014_x86_64", "--platform", "any"]


def python_requirements() -> list[str]:
    """Everything pip installs during the build: ansible-core and ansible-runner (the definition), what
    ansible-builder itself installs (bindep, pyyaml, packaging, dumb-init), and the collections'
    declared requirements (meta/requirements.txt and community.docker's)."""
    definition = yaml.safe_load(DEFINITION.read_text())
    wanted = [definition["dependencies"][key]["package_pip"] for key in ("ansible_core", "ansible_runner")]
    wanted += ["bindep", "pyyaml", "packaging", "dumb-init==1.2.5"]
    for path in (REPO / "meta" / "requirements.txt",
                 SITE / "ansible_collections" / "community" / "docker" / "meta" / "ee-requirements.txt"):
        wanted += [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]
    return sorted(set(wanted))


def stage(log) -> str:
    """Stage the inputs; returns the hash of everything that defines the image."""
    digest = hashlib.sha256()
    FILES.mkdir(parents=True, exist_ok=True)

    tarball = build_tarball(WORK / "dist")
    shutil.copyfile(tarball, FILES / "inferops-gpu.tar.gz")
    with tarfile.open(tarball) as archive:
        # FILES.json holds every file's checksum: the content, without the tar's timestamps.
        digest.update(archive.extractfile("FILES.json").read())
        digest.update(archive.extractfile("MANIFEST.json").read())

    for name in BUNDLED:
        source, target = SITE / "ansible_collections" / name, FILES / "collections" / name
        manifest = (source / "MANIFEST.json").read_bytes()
        digest.update(manifest)
        if not (target / "MANIFEST.json").is_file() or (target / "MANIFEST.json").read_bytes() != manifest:
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))

    wanted = python_requirements()
    stamp = FILES / "wheels" / ".requirements.json"
    if not stamp.is_file() or json.loads(stamp.read_text()) != wanted:
        shutil.rmtree(FILES / "wheels", ignore_errors=True)
        (FILES / "wheels").mkdir(parents=True)
        log.write(f"==> pip download {' '.join(wanted)}\n")
        log.flush()
        subprocess.run([str(VENV_BIN / "python"), "-m", "pip", "download", "-q", "--progress-bar", "off",
                        "--dest", str(FILES / "wheels"), *WHEEL_TARGET, *wanted],
                       stdout=log, stderr=subprocess.STDOUT, check=True)
        stamp.write_text(json.dumps(wanted))
    digest.update(json.dumps(sorted(p.name for p in (FILES / "wheels").glob("*.whl"))).encode())

    for path in sorted([*HERE.glob("*.yml"), HERE / "build.py", *(REPO / "meta").glob("*")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    base = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", "inferops/debian:13"],
                          capture_output=True, text=True, check=True).stdout.strip()
    digest.update(base.encode())
    return digest.hexdigest()[:16]


def current_label() -> str:
    run = subprocess.run(["docker", "image", "inspect", "--format", '{{ index .Config.Labels "inferops.recipe" }}',
                          IMAGE], capture_output=True, text=True, check=False)
    return run.stdout.strip() if run.returncode == 0 else ""


def build() -> str:
    LOG.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with LOG.open("w") as log:
        recipe = stage(log)
        if current_label() == recipe:
            print(f"{IMAGE} up to date (recipe {recipe}, checked in {time.monotonic() - start:.0f}s)", file=sys.stderr)
            return IMAGE
        log.write(f"==> ansible-builder build (recipe {recipe})\n")
        log.flush()
        run = subprocess.run([str(VENV_BIN / "ansible-builder"), "build", "-v", "3", "--container-runtime", "docker",
                              "-f", str(DEFINITION), "-c", str(WORK / "context"), "-t", IMAGE,
                              "--extra-build-cli-args", f"--label inferops.recipe={recipe}"],
                             cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False)
    if run.returncode != 0:
        tail = "\n".join(LOG.read_text(errors="replace").splitlines()[-40:])
        raise SystemExit(f"ansible-builder build failed (rc {run.returncode}); log {LOG}:\n{tail}")
    print(f"{IMAGE} built (recipe {recipe}) in {time.monotonic() - start:.0f}s", file=sys.stderr)
    return IMAGE


if __name__ == "__main__":
    print(build())
