# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: drift_report
type: aggregate
short_description: Write the drift report of playbooks/drift.yml (JSON for machines, Markdown for people)
version_added: 0.1.0
author:
  - inferops.gpu maintainers (@inferops)
description:
  - Collects, per host, every task that reported C(changed) in the plays of C(playbooks/drift.yml) and
    writes them as C(drift.json) and C(drift.md) (host, role, task, what would change).
  - "Plays take part by naming their phase in a literal play variable, C(inferops_drift_phase: detect) (the roles
    run in check mode, a change is drift) or C(inferops_drift_phase: remediate) (a change is a fix). Changes of
    other plays and of handlers are not recorded."
  - The callback is idle until the playbook arms it with a fact C(inferops_drift_run) (keys C(id), C(mode),
    C(report_dir)), so enabling it for every playbook in C(ansible.cfg) is harmless. C(report_dir) from that fact
    wins over the O(report_dir) option.
  - A fact C(inferops_health_drift) (a list of C(kind)/C(detail) dicts, see the C(inferops.gpu.gpu_health_drift)
    filter) set in a detect play is the host's health drift and is reported in the same files.
  - Secrets stay out, a result or loop item hidden with C(no_log) is reported as changed with its details
    replaced by C(details hidden (no_log)); diffs are cut to O(diff_lines) changed lines.
  - Even where a task forgot C(no_log), secret values are masked (C(********)) everywhere in what the callback
    writes or shows - diffs, item labels, messages, task names - by the rule of the
    P(inferops.gpu.masked_secrets#filter) filter - values of keys that look secret (token, password, key, secret,
    credential, auth), C(NAME=VALUE) pairs with such a name, URL passwords (C(scheme://user:password@host)).
    Paths, flags and other drift information stay readable.
  - The files are rewritten when each play starts and at the end of the run, so a later play of the same run
    (the verdict of C(drift.yml)) can read them.
  - The exit status comes from the playbook, whose verdict play fails when the report lists drift; a
    callback cannot change C(ansible-playbook)'s exit status.
requirements:
  - enabled, for example C(ANSIBLE_CALLBACKS_ENABLED=inferops.gpu.drift_report) or C(callbacks_enabled) in ansible.cfg
options:
  report_dir:
    description:
      - Directory of C(drift.json) and C(drift.md) when the arming fact names none. Relative paths are relative
        to the working directory of C(ansible-playbook).
    type: path
    default: drift-report
    env:
      - name: INFEROPS_DRIFT_REPORT_DIR
    ini:
      - section: inferops_drift_report
        key: report_dir
  diff_lines:
    description: Changed lines of a diff kept in the report per file or item; 0 keeps only the counts.
    type: int
    default: 10
    env:
      - name: INFEROPS_DRIFT_DIFF_LINES
    ini:
      - section: inferops_drift_report
        key: diff_lines
seealso:
  - plugin: inferops.gpu.gpu_health_drift
    plugin_type: filter
"""

import datetime
import difflib
import json
import os
import tempfile
from collections.abc import Mapping

from ansible.playbook.handler import Handler
from ansible.plugins.callback import CallbackBase

from ansible_collections.inferops.gpu.plugins.module_utils.secrets import mask_text, masked, masked_strings

PHASE_VAR = "inferops_drift_phase"
PHASES = ("detect", "remediate")
ARM_FACT = "inferops_drift_run"
HEALTH_FACT = "inferops_health_drift"
HIDDEN = "details hidden (no_log)"
REPORT_FORMAT = 1
_LINE_MAX = 200


def _cut(text, limit=_LINE_MAX):
    text = str(text).replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _lines(value):
    if value is None:
        return []
    if isinstance(value, str):
        return value.splitlines()
    return json.dumps(value, indent=2, sort_keys=True, default=str).splitlines()


def summarize_diff(diff, max_lines=10):
    """One line per diff entry ('<header>: +A -R lines') followed by up to max_lines changed lines.

    Ansible modules return a diff as a dict (or a list of them) with before/after (text or data),
    before_header/after_header, or a ready-made 'prepared' text.
    """
    entries = diff if isinstance(diff, list) else [diff]
    summary = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        # before_header names the managed path; a template's after_header is its temporary source.
        header = entry.get("before_header") or entry.get("after_header") or ""
        if "prepared" in entry:
            changed = [line for line in str(entry["prepared"]).splitlines()
                       if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        elif "before" in entry or "after" in entry:
            before, after = entry.get("before"), entry.get("after")
            if isinstance(before, Mapping) and isinstance(after, Mapping) and all(
                    not isinstance(value, (Mapping, list)) for value in list(before.values()) + list(after.values())):
                # Attribute diffs (file state, service state): key: old -> new
                keys = sorted(set(before) | set(after))
                changed = ["~%s: %s -> %s" % (key, before.get(key), after.get(key))
                           for key in keys if before.get(key) != after.get(key)]
            else:
                changed = [line for line in difflib.unified_diff(_lines(before), _lines(after), lineterm="", n=0)
                           if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        else:
            continue
        added = sum(1 for line in changed if line.startswith("+"))
        removed = sum(1 for line in changed if line.startswith("-"))
        modified = sum(1 for line in changed if line.startswith("~"))
        counts = ", ".join(part for part in (
            "+%d" % added if added else "", "-%d" % removed if removed else "",
            "~%d" % modified if modified else "") if part) or "no line changes"
        summary.append("%s%s" % (header + ": " if header else "", counts))
        summary.extend("  " + _cut(line) for line in changed[:max(max_lines, 0)])
        if len(changed) > max(max_lines, 0) > 0:
            summary.append("  ... %d more changed line(s)" % (len(changed) - max_lines))
    return summary


def _hidden(result):
    return bool(result.get("_ansible_no_log")) or "censored" in result


def _item_label(result):
    label = result.get("_ansible_item_label", result.get("item"))
    if isinstance(label, (Mapping, list)):
        label = json.dumps(label, sort_keys=True, default=str)
    return _cut(label, 120) if label is not None else None


def describe_change(result, max_lines=10):
    """What a changed result says would change: items, diff summary, or the module's message."""
    if _hidden(result):
        return [HIDDEN]
    lines = []
    loop = result.get("results")
    if isinstance(loop, list):
        for item in loop:
            if not isinstance(item, Mapping) or not item.get("changed"):
                continue
            if _hidden(item):
                lines.append("item: " + HIDDEN)
                continue
            lines.append(mask_text("item %s" % _item_label(item)))
            lines.extend("  " + line for line in describe_change(item, max_lines))
        return lines
    if result.get("diff"):
        # Masked before it is cut into lines: a key's value is known to be secret only next to its key.
        lines.extend(summarize_diff(masked(result["diff"]), max_lines))
    if not lines and result.get("msg"):
        lines.append(_cut(mask_text(result["msg"])))
    return [mask_text(line) for line in lines] or ["changed (the module reported no diff)"]


class CallbackModule(CallbackBase):
    """Collect drift per host and write drift.json / drift.md."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "inferops.gpu.drift_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.phase = None
        self.play = None
        self.run = None
        self.playbook = None
        self.hosts = {}
        self.written = []

    # --- options --------------------------------------------------------------------------
    def _option(self, name, default):
        try:
            value = self.get_option(name)
        except KeyError:
            return default
        return default if value is None else value

    # --- events ---------------------------------------------------------------------------
    def v2_playbook_on_start(self, playbook):
        self.playbook = getattr(playbook, "_file_name", None)

    def v2_playbook_on_play_start(self, play):
        self.flush()
        phase = (getattr(play, "vars", None) or {}).get(PHASE_VAR)
        self.phase = phase if phase in PHASES else None
        self.play = play.get_name() if hasattr(play, "get_name") else None

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_skipped(self, result):
        self._host(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if ignore_errors:
            self._host(result)
        else:
            self._error(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._error(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        self.flush()

    # --- collection -----------------------------------------------------------------------
    @staticmethod
    def _parts(result):
        # ansible-core 2.19 names them host/task/result; earlier releases only _host/_task/_result.
        host = getattr(result, "host", None) or result._host
        task = getattr(result, "task", None) or result._task
        data = getattr(result, "result", None)
        return host, task, data if isinstance(data, Mapping) else result._result

    def _host(self, result):
        if not (self.run and self.phase):
            return None
        host = self._parts(result)[0]
        return self.hosts.setdefault(host.get_name(), {"changes": [], "remediated": [], "health": [], "errors": []})

    def _where(self, task):
        role = getattr(task, "_role", None)
        role_name = role.get_name(include_role_fqcn=False) if role is not None else None
        name = task.name or task.action
        return role_name, _cut(name, 160)

    def _record(self, result):
        task, data = self._parts(result)[1:]
        facts = data.get("ansible_facts") or {}
        if isinstance(facts.get(ARM_FACT), Mapping):
            self.run = dict(facts[ARM_FACT])
        record = self._host(result)
        if record is None:
            return
        if self.phase == "detect" and isinstance(facts.get(HEALTH_FACT), list):
            record["health"] = [dict(kind=str(item.get("kind")), detail=_cut(item.get("detail"), 400))
                                for item in facts[HEALTH_FACT] if isinstance(item, Mapping)]
        # A handler (a restart) follows from a change already recorded.
        if not data.get("changed") or isinstance(task, Handler):
            return
        role, name = self._where(task)
        entry = {"role": role, "task": name, "action": task.action,
                 "changes": describe_change(data, int(self._option("diff_lines", 10)))}
        record["changes" if self.phase == "detect" else "remediated"].append(entry)

    def _error(self, result, kind):
        record = self._host(result)
        if record is None:
            return
        task, data = self._parts(result)[1:]
        role, name = self._where(task)
        message = HIDDEN if _hidden(data) else _cut(data.get("msg") or data.get("reason") or kind, 400)
        record["errors"].append({"phase": self.phase, "role": role, "task": name, "kind": kind, "msg": message})

    # --- report ---------------------------------------------------------------------------
    @staticmethod
    def host_status(record, mode):
        if record["errors"]:
            return "error"
        if record["changes"] or record["health"]:
            if mode == "remediate" and record["remediated"] and not record["health"]:
                return "remediated"
            return "drifted"
        return "clean"

    def report(self):
        mode = (self.run or {}).get("mode", "detect")
        hosts = {}
        for name in sorted(self.hosts):
            record = self.hosts[name]
            hosts[name] = dict(record, status=self.host_status(record, mode))
        by_status = {}
        for name, record in hosts.items():
            by_status.setdefault(record["status"], []).append(name)
        return {
            "format": REPORT_FORMAT,
            "run_id": (self.run or {}).get("id"),
            "mode": mode,
            "playbook": self.playbook,
            "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "drifted": any(record["changes"] or record["health"] for record in hosts.values()),
            "errors": bool(by_status.get("error")),
            "summary": {
                "hosts": len(hosts),
                "clean": by_status.get("clean", []),
                "drifted": by_status.get("drifted", []),
                "remediated": by_status.get("remediated", []),
                "error": by_status.get("error", []),
                "changes": sum(len(record["changes"]) for record in hosts.values()),
                "health": sum(len(record["health"]) for record in hosts.values()),
            },
            "hosts": hosts,
        }

    def flush(self):
        if not self.run:
            return
        # The last line of defence for a task that forgot no_log: every string of the report.
        report = masked_strings(self.report())
        directory = os.path.abspath(os.path.expanduser(
            str(self.run.get("report_dir") or self._option("report_dir", "drift-report"))))
        try:
            os.makedirs(directory, mode=0o750, exist_ok=True)
            self.written = [
                _write(os.path.join(directory, "drift.json"), json.dumps(report, indent=2, sort_keys=True) + "\n"),
                _write(os.path.join(directory, "drift.md"), render_markdown(report)),
            ]
        except OSError as exc:
            self._display.warning(mask_text("inferops.gpu.drift_report: cannot write the drift report to %s: %s"
                                            % (directory, exc)))


def _write(path, text):
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".drift-")
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    os.chmod(temporary, 0o640)
    os.replace(temporary, path)
    return path


def _md(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report):
    """The report for people: a summary table, then per drifted host its roles, tasks and changes."""
    summary = report["summary"]
    out = ["# Drift report", "",
           "Mode **%s**, %s, run `%s`." % (report["mode"], report["generated"], report.get("run_id")), ""]
    if report["mode"] == "remediate":
        headline = "%d host(s): %d clean, %d remediated, %d still drifted, %d with errors." % (
            summary["hosts"], len(summary["clean"]), len(summary["remediated"]), len(summary["drifted"]),
            len(summary["error"]))
    else:
        headline = "%d host(s): %d clean, %d drifted, %d with errors." % (
            summary["hosts"], len(summary["clean"]), len(summary["drifted"]), len(summary["error"]))
    out += [headline, "", "| Host | Status | Changes | Health | Errors |", "|---|---|---|---|---|"]
    for name, record in report["hosts"].items():
        out.append("| %s | %s | %d | %d | %d |" % (
            _md(name), record["status"], len(record["changes"]), len(record["health"]), len(record["errors"])))
    for name, record in report["hosts"].items():
        if record["status"] == "clean":
            continue
        out += ["", "## %s (%s)" % (_md(name), record["status"])]
        if record["changes"]:
            out += ["", "| Role | Task | What would change |", "|---|---|---|"]
            for change in record["changes"]:
                out.append("| %s | %s | %s |" % (
                    _md(change["role"] or "-"), _md(change["task"]),
                    "<br>".join(_md(line) for line in change["changes"])))
        if record["health"]:
            out += ["", "Health:", ""] + ["- **%s**: %s" % (item["kind"], _md(item["detail"])) for item in record["health"]]
        if record["remediated"]:
            out += ["", "Remediated:", ""] + ["- %s: %s" % (_md(change["role"] or "-"), _md(change["task"]))
                                              for change in record["remediated"]]
        if record["errors"]:
            out += ["", "Errors:", ""] + ["- %s %s: %s (%s)" % (
                error["phase"], _md(error["task"]), _md(error["msg"]), error["kind"]) for error in record["errors"]]
    return "\n".join(out) + "\n"
