"""ansible-lint over the whole collection, production profile (.ansible-lint)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from harness import REPO, run_logged  # noqa: E402


def test_ansible_lint_production_profile():
    run = run_logged("ansible-lint", ["ansible-lint", "--profile", "production", "--offline"],
                     cwd=REPO, timeout=1800)
    assert run.rc == 0, run.failure()
