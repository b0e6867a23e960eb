"""Every Molecule scenario (molecule/<name>/molecule.yml) as one pytest test.

Each runs `molecule test -s <name>` from the repository root with the shared base config
(.config/molecule/config.yml). Its full log: .cache/logs/molecule-<name>.log. Besides Molecule's
own verdict, the check-mode step on the converged hosts must report changed=0.
"""

import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from harness import REPO, run_logged, tool_env  # noqa: E402

TIMEOUT = int(os.environ.get("INFEROPS_MOLECULE_TIMEOUT", "2700"))
RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=\d+\s+changed=(?P<changed>\d+)\s", re.M)


def scenarios() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


def check_step_changes(log_text: str, scenario: str) -> dict[str, int]:
    """Hosts that reported changes in the scenario's check step, with their change count."""
    match = re.search(
        rf"\[{re.escape(scenario)} > check\] Executing\n(?P<body>.*?)\[{re.escape(scenario)} > check\] Executed",
        log_text, re.S)
    if not match:
        return {}
    return {m["host"]: int(m["changed"]) for m in RECAP.finditer(match["body"]) if int(m["changed"])}


@pytest.mark.parametrize("scenario", scenarios())
def test_molecule_scenario(scenario):
    run = run_logged(f"molecule-{scenario}", ["molecule", "test", "-s", scenario],
                     cwd=REPO, timeout=TIMEOUT, env=tool_env())
    assert run.rc == 0, run.failure()
    changed = check_step_changes(run.text, scenario)
    assert not changed, run.failure(
        f"check mode on the converged hosts reported changes {changed}: a converged host "
        "must need no change")
