"""ansible-test sanity for the collection, run locally (no --docker: no registry here).

ansible-test insists on a path ending in ansible_collections/<namespace>/<name>, so the
checkout's files (tracked, plus untracked files git does not ignore) are copied afresh to
.cache/ansible_collections/inferops/gpu before each run. Its log: .cache/logs/ansible-test-sanity.log.
"""

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from harness import REPO, VENV, run_logged, tool_env  # noqa: E402

COPY = REPO / ".cache" / "ansible_collections" / "inferops" / "gpu"
EXCLUDED_TOP = (".venv/", ".cache/", ".collections/", "tests/output/", ".git/", "molecule/.cache/")
STANDIN = REPO / "tests" / "harness" / "get_pip_standin.py"

# Sanity tests that cannot run on this kind of machine, with the reason. Keep it empty unless
# a test fundamentally cannot run here; findings in our code are fixed, not skipped.
SKIPPED_SANITY_TESTS: dict[str, str] = {}


def _copy_collection() -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    if COPY.exists():
        shutil.rmtree(COPY)
    COPY.mkdir(parents=True)
    for rel in sorted(set(files)):
        if not rel or rel.startswith(EXCLUDED_TOP):
            continue
        src = REPO / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree, not yet in git
        dst = COPY / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)
    # ansible-test walks up to the nearest .git to list the files it checks; the checkout's
    # own .git ignores .cache/, so the copy gets an empty repository of its own (ansible-test
    # lists tracked and untracked-not-ignored files).
    subprocess.run(["git", "init", "-q", str(COPY)], check=True)


def _pip_version() -> str:
    """The pip version whose get-pip script ansible-test asks for (24.2 for ansible-core 2.19)."""
    found = list(VENV.glob("lib/python*/site-packages/ansible_test/_internal/python_requirements.py"))
    if found:
        match = re.search(r"pip=['\"]([0-9.]+)['\"]", found[0].read_text())
        if match:
            return match.group(1)
    return "24.2"


def _install_get_pip_standin() -> Path:
    cache = Path.home() / ".ansible" / "test" / "cache"
    target = cache / f"get_pip_{_pip_version().replace('.', '_')}.py"
    want = STANDIN.read_bytes()
    if not target.exists() or hashlib.sha256(target.read_bytes()).digest() != hashlib.sha256(want).digest():
        cache.mkdir(parents=True, exist_ok=True)
        target.write_bytes(want)
    return target


def test_ansible_test_sanity():
    _copy_collection()
    _install_get_pip_standin()
    cmd = ["ansible-test", "sanity", "--python", "3.11", "--color", "no"]
    for name in SKIPPED_SANITY_TESTS:
        cmd += ["--skip-test", name]
    env = tool_env()
    # Run from the copy, with the copy (not the checkout) as the collection ansible-test sees.
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    env.pop("ANSIBLE_CONFIG", None)
    run = run_logged("ansible-test-sanity", cmd, cwd=COPY, env=env, timeout=2400)
    assert run.rc == 0, run.failure()
