# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the playbooks say at the end of a run: the per-host summary of site.yml / provision.yml
(playbooks/tasks/summary.yml) and the drift verdict of drift.yml (playbooks/tasks/drift_verdict.yml)
over the report of the inferops.gpu.drift_report callback. Controller-side only.
Documentation: one <filter name>.yml beside this file per filter.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError


def inferops_summary_lines(hostvars, play_hosts, all_hosts=None, health_failed=None):
    """One line per host of the run: PROVISIONED, SKIPPED UNHEALTHY, FAILED in <stage>, NOT REACHED.

    The hosts are those the play targeted (play_hosts, ansible_play_hosts_all) and any host of
    all_hosts that an earlier play started (it has inferops_stage), sorted by name.
    """
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError("inferops_summary_lines expects hostvars, got %s" % type(hostvars).__name__)
    health_failed = set(health_failed or [])
    started = [host for host in all_hosts or [] if "inferops_stage" in hostvars[host]]
    lines = []
    for host in sorted(set(list(play_hosts or []) + started)):
        hv = hostvars[host]
        gate = hv.get("inferops_health_gate") or {}
        done = hv.get("inferops_done", False)
        if host in health_failed:
            lines.append("%s: SKIPPED UNHEALTHY (%s gate): %s" % (
                host, gate.get("stage", "health"), "; ".join(gate.get("blocking") or [])))
        elif "inferops_failure" in hv:
            failure = hv["inferops_failure"]
            lines.append('%s: FAILED in %s at "%s": %s' % (host, failure["stage"], failure["task"], failure["msg"]))
        elif not done and "inferops_stage" in hv:
            lines.append("%s: FAILED in %s (see the output above)" % (host, hv["inferops_stage"]))
        elif not done:
            lines.append("%s: NOT REACHED (unreachable, or its batch has not run)" % host)
        else:
            mitigated = gate.get("mitigated") or []
            lines.append("%s: PROVISIONED%s%s" % (
                host, ", endpoint %s" % hv["xinference_endpoint"] if "xinference_endpoint" in hv else "",
                ", %d P2P finding(s) mitigated by NCCL_P2P_DISABLE=1" % len(mitigated) if mitigated else ""))
    return lines


def _report(report, filter_name):
    if not isinstance(report, Mapping) or not isinstance(report.get("hosts"), Mapping):
        raise AnsibleFilterError("%s expects the drift report (drift.json of inferops.gpu.drift_report)" % filter_name)
    return report


def inferops_drift_lines(report, report_dir):
    """The drift report in lines: where it is, then per host its status and each change and health finding."""
    report = _report(report, "inferops_drift_lines")
    lines = ["report: %s/drift.json and drift.md" % report_dir]
    for host, record in sorted(report["hosts"].items(), key=lambda item: str(item[0]).lower()):
        lines.append("%s: %s%s" % (host, record["status"], "" if record["status"] == "clean" else (
            " (%d change(s), %d health finding(s), %d error(s))" % (
                len(record["changes"]), len(record["health"]), len(record["errors"])))))
        for change in record["changes"]:
            lines.append("  %s | %s: %s" % (change["role"] or "-", change["task"], (change["changes"] or [""])[0]))
        for item in record["health"]:
            lines.append("  health %s: %s" % (item["kind"], item["detail"]))
    return lines


def inferops_drift_hosts(report, kind="changes"):
    """Hosts whose record lists something of kind (changes: configuration drift, health, errors), report order."""
    if kind not in ("changes", "health", "errors", "remediated"):
        raise AnsibleFilterError("inferops_drift_hosts: kind must be changes, health, errors or remediated, got %r" % (kind,))
    return [host for host, record in _report(report, "inferops_drift_hosts")["hosts"].items() if record.get(kind)]


def inferops_drift_failure(report, report_dir, stage="detect"):
    """Why the verdict fails the run, or '' when it does not.

    detect: anything drifted (the run's exit status alerts cron and CI). remediate: health drift (which
    needs a person) or errors remain after remediation.
    """
    report = _report(report, "inferops_drift_failure")
    summary = report.get("summary") or {}
    see = "see %s/drift.md" % report_dir
    if stage == "detect":
        if not report.get("drifted"):
            return ""
        return "Drift on %s: %s change(s), %s health finding(s); %s" % (
            ", ".join(summary.get("drifted") or []), summary.get("changes"), summary.get("health"), see)
    if stage != "remediate":
        raise AnsibleFilterError("inferops_drift_failure: stage must be detect or remediate, got %r" % (stage,))
    health = inferops_drift_hosts(report, "health")
    errors = summary.get("error") or []
    reasons = (["health drift needs a person on " + ", ".join(health)] if health else []) + (
        ["errors on " + ", ".join(errors)] if errors else [])
    return "%s; %s" % ("; ".join(reasons), see) if reasons else ""


class FilterModule:
    """inferops.gpu filters of the playbooks' summary and drift verdict."""

    def filters(self):
        return {
            "inferops_summary_lines": inferops_summary_lines,
            "inferops_drift_lines": inferops_drift_lines,
            "inferops_drift_hosts": inferops_drift_hosts,
            "inferops_drift_failure": inferops_drift_failure,
        }
