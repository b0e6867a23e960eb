"""Helpers shared by the harness tests (tests/static, tests/integration).

Every tool runs as a subprocess with the project's virtualenv first on PATH; its whole output
goes to a log under .cache/logs/, and a failure message carries the log's tail.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
LOGS = REPO / ".cache" / "logs"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TAIL_LINES = int(os.environ.get("INFEROPS_LOG_TAIL", "80"))
# Lines that say where a long run failed, wherever they are in its log: pytest's summary (a
# verifier's failed test), Ansible's failed tasks (also inside a verifier's assertion, after its
# "E " prefix), the assertion itself. A scenario's tail is its destroy step. In that order, each
# line once; "FAILED - RETRYING" is an until loop at work, not a failure.
WHERE_FAILED = [re.compile(r"^(FAILED|ERROR) (?!- RETRYING)\S"),
                re.compile(r"^(E\s+)?(fatal: \[|failed: \[|\[ERROR\]: )"),
                re.compile(r"^E\s+(assert |\w+Error\b)")]
WHERE_FAILED_LINES, WHERE_FAILED_WIDTH = 30, 300


def tool_env(**extra: str) -> dict[str, str]:
    """Environment for a tool run: the venv first on PATH, colours off, no prompts."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env.pop("PYTHONHOME", None)
    env.update(
        NO_COLOR="1",
        PY_COLORS="0",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        MOLECULE_NO_COLOR="1",
        # The tools' own progress bars and borders make logs hard to read.
        TERM="dumb",
    )
    env.update(extra)
    return env


class ToolRun:
    def __init__(self, name: str, cmd: list[str], rc: int, log: Path, seconds: float):
        self.name, self.cmd, self.rc, self.log, self.seconds = name, cmd, rc, log, seconds

    @property
    def text(self) -> str:
        return ANSI.sub("", self.log.read_text(errors="replace"))

    def tail(self, lines: int = TAIL_LINES) -> str:
        return "\n".join(self.text.splitlines()[-lines:])

    def where_failed(self) -> list[str]:
        """The log's failure lines (first ones, each cut short: -vvv results are long)."""
        lines = [line.strip() for line in self.text.splitlines()]
        found = list(dict.fromkeys(line for pattern in WHERE_FAILED for line in lines if pattern.match(line)))
        return [line if len(line) <= WHERE_FAILED_WIDTH else line[:WHERE_FAILED_WIDTH] + " ..."
                for line in found[:WHERE_FAILED_LINES]]

    def failure(self, what: str | None = None) -> str:
        rel = self.log.relative_to(REPO)
        head = what or f"{' '.join(self.cmd)} exited with {self.rc}"
        where = self.where_failed()
        return (
            f"{head} after {self.seconds:.0f}s; full log: {rel}\n"
            + (f"---- where it failed ({len(where)} lines) ----\n" + "\n".join(where) + "\n" if where else "")
            + f"---- last {TAIL_LINES} lines of {rel} ----\n{self.tail()}"
        )


def run_logged(name: str, cmd: list[str], cwd: Path = REPO, timeout: float | None = None,
               env: dict[str, str] | None = None) -> ToolRun:
    """Run cmd, writing stdout+stderr to .cache/logs/<name>.log; never raises on rc != 0."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}.log"
    start = time.monotonic()
    with log.open("w") as fh:
        fh.write(f"$ cd {cwd} && {' '.join(cmd)}\n")
        fh.flush()
        # Own session, so a timeout ends the tool and everything it started.
        with subprocess.Popen(cmd, cwd=cwd, env=env or tool_env(), stdout=fh,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True) as proc:
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                fh.write(f"\n[harness] TIMEOUT: stopped after {timeout}s\n")
                rc = 124
    return ToolRun(name, cmd, rc, log, time.monotonic() - start)


RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=\d+\s+changed=(?P<changed>\d+)\s", re.M)


def check_step_changes(log_text: str, scenario: str) -> dict[str, int]:
    """Hosts whose PLAY RECAP reported changes in the scenario's `check` step of a Molecule log."""
    name = re.escape(scenario)
    match = re.search(rf"\[{name} > check\] Executing\n(?P<body>.*?)\[{name} > check\] Executed",
                      log_text, re.S)
    if not match:
        return {}
    return {m["host"]: int(m["changed"]) for m in RECAP.finditer(match["body"]) if int(m["changed"])}
