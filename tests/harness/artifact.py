"""The collection as users get it: `ansible-galaxy collection build`, then `ansible-galaxy collection
install --no-deps` of that tarball into an EMPTY collections path, and an environment that runs
Ansible from there with nothing of the checkout on any path.

Used by tests/static/test_artifact.py (ansible-doc of every plugin and role entry point) and by the
Molecule scenario molecule/artifact (its dependency step installs, its verifier runs the playbooks):

    .venv/bin/python tests/harness/artifact.py install DEST          # prints DEST/ansible_collections/inferops/gpu
    .venv/bin/python tests/harness/artifact.py install DEST --ee     # and builds the EE (tests/ee/build.py) if stale

The dependencies (community.docker, community.general, ansible.posix) are not installed: no Galaxy
is reachable here, and the `ansible` package in .venv bundles them (found on sys.path, as for a user
who installed `ansible`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"


def build_tarball(out_dir: Path) -> Path:
    """`ansible-galaxy collection build` of the checkout into out_dir; returns the tarball."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("inferops-gpu-*.tar.gz"):
        old.unlink()
    run = subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "build", "--force",
                          "--output-path", str(out_dir), str(REPO)],
                         capture_output=True, text=True, check=False, env=clean_env(None), cwd=out_dir)
    if run.returncode != 0:
        raise RuntimeError(f"ansible-galaxy collection build failed:\n{run.stdout}{run.stderr}")
    tarballs = sorted(out_dir.glob("inferops-gpu-*.tar.gz"))
    if len(tarballs) != 1:
        raise RuntimeError(f"expected one inferops-gpu tarball in {out_dir}, found {tarballs}")
    return tarballs[0]


def install(dest: Path) -> Path:
    """Build the tarball and install it alone into the emptied collections path dest.

    Returns the installed collection's directory (dest/ansible_collections/inferops/gpu).
    """
    dest = dest.resolve()
    if REPO in (dest, *dest.parents) and ".cache" not in dest.relative_to(REPO).parts:
        raise ValueError(f"{dest}: the install must not land in the checkout (outside .cache)")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    tarball = build_tarball(dest.parent / "dist")
    run = subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "install", "--no-deps",
                          "--force", "-p", str(dest), str(tarball)],
                         capture_output=True, text=True, check=False, env=clean_env(None), cwd=dest)
    if run.returncode != 0:
        raise RuntimeError(f"ansible-galaxy collection install failed:\n{run.stdout}{run.stderr}")
    installed = dest / "ansible_collections" / "inferops" / "gpu"
    if not (installed / "MANIFEST.json").is_file():
        raise RuntimeError(f"no MANIFEST.json under {installed} after the install:\n{run.stdout}")
    return installed


def tarball_names(tarball: Path) -> list[str]:
    with tarfile.open(tarball) as archive:
        return archive.getnames()


def clean_env(collections_path: Path | None, **extra: str) -> dict[str, str]:
    """An environment with no checkout path in it: every ANSIBLE_* and MOLECULE_* variable of the
    caller dropped (roles, library, filter, collections paths and ANSIBLE_CONFIG among them), the
    venv's bin first on PATH, and ANSIBLE_COLLECTIONS_PATH = collections_path only. Run it with a
    working directory outside the checkout, so that its ansible.cfg is not read either: ansible-core's
    defaults then apply, as on a user's controller."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("ANSIBLE_", "MOLECULE_", "PYTHONPATH", "INFEROPS_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(NO_COLOR="1", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", TERM="dumb")
    if collections_path is not None:
        env["ANSIBLE_COLLECTIONS_PATH"] = str(collections_path)
    env.update(extra)
    return env


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4) or argv[1] != "install" or argv[3:] not in ([], ["--ee"]):
        print(__doc__, file=sys.stderr)
        return 2
    print(install(Path(argv[2])))
    if argv[3:] == ["--ee"]:
        sys.path.insert(0, str(REPO / "tests" / "ee"))
        import build  # noqa: E402  pylint: disable=import-outside-toplevel

        build.build()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
