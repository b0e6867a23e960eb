"""Every Molecule scenario (molecule/<name>/molecule.yml) as one pytest test.

Each runs `molecule test -s <name>` from the repository root with the shared base config
(.config/molecule/config.yml). Its full log: .cache/logs/molecule-<name>.log. Besides Molecule's
own verdict, the check-mode step on the converged hosts must report changed=0, and no canary
secret (a CANARY-... value a scenario's inventory holds, issue 11) may appear in the log.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from canary import PREFIX  # noqa: E402
from harness import REPO, check_step_changes, run_logged, tool_env  # noqa: E402

TIMEOUT = int(os.environ.get("INFEROPS_MOLECULE_TIMEOUT", "2700"))

# Scenarios that have not yet passed on a 2-core machine within the suite's budget. They are
# reported as skipped (never silently dropped); INFEROPS_MOLECULE_ALL=1 runs them too.
OPT_IN: dict = {}


def scenarios() -> list:
    found = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))
    run_all = os.environ.get("INFEROPS_MOLECULE_ALL") == "1"
    return [name if run_all or name not in OPT_IN
            else pytest.param(name, marks=pytest.mark.skip(reason=f"opt-in: {OPT_IN[name]}"))
            for name in found]


@pytest.mark.parametrize("scenario", scenarios())
def test_molecule_scenario(scenario):
    run = run_logged(f"molecule-{scenario}", ["molecule", "test", "-s", scenario],
                     cwd=REPO, timeout=TIMEOUT, env=tool_env())
    if run.rc == 124:  # timed out: remove the hosts it left behind
        run_logged(f"molecule-{scenario}-destroy", ["molecule", "destroy", "-s", scenario],
                   cwd=REPO, timeout=600, env=tool_env())
    assert run.rc == 0, run.failure()
    changed = check_step_changes(run.text, scenario)
    assert not changed, run.failure(
        f"check mode on the converged hosts reported changes {changed}: a converged host "
        "must need no change")
    # Every step's output, the converge at -vvv --diff included (molecule/cluster): a canary
    # secret in it was printed by a task that should have been no_log.
    leaked = [line for line in run.text.splitlines() if PREFIX in line]
    assert not leaked, (f"{len(leaked)} line(s) of {run.log} show a canary secret ({PREFIX}...), "
                        "first: " + leaked[0][:400])
