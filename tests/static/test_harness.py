"""Self-tests of the harness helpers (tests/harness/harness.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from harness import check_step_changes, run_logged  # noqa: E402

LOG = """\
INFO     [demo > idempotence] Executing
PLAY RECAP *********************************************************************
demo-debian12              : ok=5    changed=0    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
INFO     [demo > idempotence] Executed: Successful
INFO     [demo > check] Executing
PLAY RECAP *********************************************************************
demo-debian12              : ok=4    changed=0    unreachable=0    failed=0    skipped=1    rescued=0    ignored=0
demo-debian13              : ok=4    changed={changed}    unreachable=0    failed=0    skipped=1    rescued=0    ignored=0
INFO     [demo > check] Executed: Successful
INFO     [demo > verify] Executing
"""


def test_check_step_without_changes_passes():
    assert not check_step_changes(LOG.format(changed=0), "demo")


def test_check_step_with_changes_is_reported():
    assert check_step_changes(LOG.format(changed=2), "demo") == {"demo-debian13": 2}


def test_check_step_of_another_scenario_is_ignored():
    assert not check_step_changes(LOG.format(changed=2), "other")


def test_run_logged_keeps_output_and_tail():
    run = run_logged("harness-selftest", [sys.executable, "-c", "print('hello'); raise SystemExit(3)"])
    assert run.rc == 3
    assert "hello" in run.tail()
    assert ".cache/logs/harness-selftest.log" in run.failure()


def test_failure_names_the_failed_test_before_the_tail():
    # A scenario's log ends with its destroy step: the verifier's failed test is far above it.
    script = ("[print('FAILED - RETRYING: [h1]: Ready (%d retries left)' % i) for i in range(40)]; "
              "print('FAILED tests/test_x.py::test_y - AssertionError: 3 != 4'); "
              "print('fatal: [h1]: FAILED! => ' + 'x' * 1000); "
              "[print('destroy line', i) for i in range(200)]; raise SystemExit(1)")
    run = run_logged("harness-selftest-where", [sys.executable, "-c", script])
    message = run.failure()
    assert "FAILED tests/test_x.py::test_y - AssertionError: 3 != 4" in message
    where = message.split("---- where it failed")[1].split("---- last")[0]
    assert "fatal: [h1]: FAILED! => " in where and len(where) < 1000
    assert "RETRYING" not in where
    assert "destroy line 199" in message
