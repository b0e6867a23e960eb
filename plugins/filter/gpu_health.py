# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over the gpu_health fact: the node_exporter textfile, the checks that fail a gate, the
fleet report and its tables, the site gate with NCCL mitigations, health drift and GPU-model groups.

They run on the controller and render through the module's own code (module_utils.gpu_health_render
beside module_utils.gpu_health_checks), so the role's reports, its gate message and the timer's
runner on the host agree byte for byte. Here: argument checks, the gate, drift and model groups.
Documentation: one <filter name>.yml beside this file per filter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import VERDICTS, describe_check
from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_render import (
    checks_matching,
    fleet_markdown,
    fleet_report,
    host_summary,
    host_table,
    render_prometheus,
)

_REQUIRED = ("summary", "checks", "nvml", "gpus", "pairs", "xids", "recommendation")


def _facts(value, filter_name):
    if not isinstance(value, Mapping):
        raise AnsibleFilterError("%s expects the gpu_health fact (a dict), got %s" % (filter_name, type(value).__name__))
    missing = [key for key in _REQUIRED if key not in value]
    if missing:
        raise AnsibleFilterError("%s: not a gpu_health fact, keys missing: %s" % (filter_name, ", ".join(missing)))
    return value


def gpu_health_prometheus(facts):
    """The gpu_health fact as node_exporter textfile-collector text."""
    return render_prometheus(_facts(facts, "gpu_health_prometheus"))


def gpu_health_failing(facts, verdicts=("fail",)):
    """One line per check whose verdict is in verdicts: 'ecc gpu5: <reason>'."""
    if isinstance(verdicts, str):
        verdicts = [verdicts]
    unknown = sorted(set(verdicts) - set(VERDICTS))
    if unknown:
        raise AnsibleFilterError("gpu_health_failing: unknown verdicts %s (valid: %s)" % (
            ", ".join(unknown), ", ".join(VERDICTS)))
    return checks_matching(_facts(facts, "gpu_health_failing"), list(verdicts))


# ---------------------------------------------------------------------------------------------
# Fleet report (playbooks/health.yml), health gate (site.yml, provision.yml), health drift
# (drift.yml) and GPU-model groups (provision.yml). Controller-side only.

# Checks that are about a GPU pair's P2P path; NCCL_P2P_DISABLE=1 takes NCCL off that path.
_P2P_CHECKS = ("acs", "p2p")
# Words in NVML's product name that say nothing about the model.
_VENDOR_WORDS = ("nvidia", "tesla", "geforce", "quadro")


def gpu_health_host(facts, host=None):
    """A compact, JSON-ready summary of one host's gpu_health fact (what the fleet report keeps)."""
    return host_summary(_facts(facts, "gpu_health_host"), host)


def gpu_health_table(facts, host=None):
    """Lines of text: one header line for the host, then one table row per GPU, then the issues."""
    return host_table(_facts(facts, "gpu_health_table"), host)


def gpu_health_fleet(hosts):
    """{host: gpu_health fact or None} -> the fleet report (dict, JSON-ready), hosts sorted by name."""
    if not isinstance(hosts, Mapping):
        raise AnsibleFilterError("gpu_health_fleet expects a dict of host name -> gpu_health fact")
    for facts in hosts.values():
        if facts:
            _facts(facts, "gpu_health_fleet")
    return fleet_report(hosts)


def gpu_health_fleet_markdown(report, title="GPU health"):
    """The fleet report as Markdown: a totals line, a table of hosts, a table per host's GPUs."""
    if not isinstance(report, Mapping) or "hosts" not in report:
        raise AnsibleFilterError("gpu_health_fleet_markdown expects the output of gpu_health_fleet")
    return fleet_markdown(report, title)


def gpu_health_gate(facts, fail_on=("fail",), nccl_env=None):
    """Split the checks that fail a gate into blocking ones and ones the NCCL settings work around.

    An ACS-redirect or broken-P2P finding on a PCIe pair is exactly what NCCL_P2P_DISABLE=1 (which
    nccl_tuning derives and writes) works around: NCCL then never uses that path. A broken NVLink pair
    is a hardware fault and stays blocking.
    """
    facts = _facts(facts, "gpu_health_gate")
    if isinstance(fail_on, str):
        fail_on = [fail_on]
    unknown = sorted(set(fail_on) - set(VERDICTS))
    if unknown:
        raise AnsibleFilterError("gpu_health_gate: unknown verdicts %s (valid: %s)" % (", ".join(unknown), ", ".join(VERDICTS)))
    p2p_disabled = str((nccl_env or {}).get("NCCL_P2P_DISABLE", "")).strip() == "1"
    nvlink = dict((tuple(pair["gpus"]), pair.get("nvlink")) for pair in facts["pairs"])
    blocking, mitigated = [], []
    for check in facts["checks"]:
        if check["verdict"] not in fail_on:
            continue
        pair = tuple(check.get("pair") or ())
        if p2p_disabled and pair and check["id"] in _P2P_CHECKS and (check["id"] == "acs" or not nvlink.get(pair)):
            mitigated.append(describe_check(check) + " [mitigated: NCCL_P2P_DISABLE=1]")
        else:
            blocking.append(describe_check(check))
    return {"passed": not blocking, "blocking": blocking, "mitigated": mitigated}


def _fatal_xids(facts):
    fatal = set((facts.get("limits") or {}).get("xid_fatal") or [])
    events = (facts.get("xids") or {}).get("events") or []
    return dict(((event.get("pci"), event.get("xid"), event.get("timestamp_s")), event)
                for event in events if event.get("xid") in fatal)


def gpu_health_drift(current, previous=None):
    """Health changes since a previous gpu_health report: GPUs gone, new fatal Xids, P2P verdicts.

    Returns a list of {kind, detail}; empty when nothing changed for the worse or there is no
    previous report to compare with.
    """
    current = _facts(current, "gpu_health_drift")
    if not previous:
        return []
    previous = _facts(previous, "gpu_health_drift (previous report)")
    drift = []
    if previous["nvml"].get("available") and not current["nvml"].get("available"):
        drift.append({"kind": "nvml_unavailable", "detail": "NVML worked in the previous report, now %s: %s" % (
            current["nvml"].get("error"), current["nvml"].get("message"))})
    elif current["nvml"].get("available"):
        now = dict((gpu.get("uuid"), gpu) for gpu in current["gpus"])
        gone = [gpu for gpu in previous["gpus"] if gpu.get("uuid") not in now]
        for gpu in gone:
            drift.append({"kind": "gpu_missing", "detail": "GPU%s %s (%s, %s) is gone: %s GPU(s) now, %s before" % (
                gpu.get("index"), gpu.get("name"), gpu.get("uuid"), gpu.get("pci_bus_id"),
                current.get("gpu_count"), previous.get("gpu_count"))})
        if not gone and (current.get("gpu_count") or 0) < (previous.get("gpu_count") or 0):
            drift.append({"kind": "gpu_missing", "detail": "%s GPU(s) now, %s before" % (
                current.get("gpu_count"), previous.get("gpu_count"))})
        known = _fatal_xids(previous)
        for key, event in sorted(_fatal_xids(current).items(), key=lambda item: str(item[0])):
            if key not in known:
                drift.append({"kind": "xid_fatal", "detail": "new fatal Xid %s on %s: %s" % (
                    event.get("xid"), event.get("pci"), event.get("message"))})
        before = dict((tuple(pair["gpus"]), pair) for pair in previous["pairs"])
        verdicts_before = dict(((check["id"], tuple(check["pair"])), check["verdict"])
                               for check in previous["checks"] if check["id"] in _P2P_CHECKS and check.get("pair"))
        for pair in current["pairs"]:
            key = tuple(pair["gpus"])
            old = before.get(key)
            if old is None:
                continue
            changes = []
            if old.get("p2p_safe") != pair.get("p2p_safe"):
                changes.append("P2P %s -> %s" % ("safe" if old.get("p2p_safe") else "unsafe",
                                                 "safe" if pair.get("p2p_safe") else "unsafe"))
            for check in current["checks"]:
                if check["id"] in _P2P_CHECKS and tuple(check.get("pair") or ()) == key:
                    was = verdicts_before.get((check["id"], key))
                    if was is not None and was != check["verdict"]:
                        changes.append("%s %s -> %s" % (check["id"], was, check["verdict"]))
            if changes:
                drift.append({"kind": "p2p_changed", "detail": "gpu%d-gpu%d: %s%s" % (
                    key[0], key[1], ", ".join(changes),
                    " (%s)" % "; ".join(pair["unsafe_reasons"]) if pair.get("unsafe_reasons") else "")})
    return drift


def _check_key(check):
    return (check["id"], check.get("gpu"), tuple(check.get("pair") or ()))


def gpu_health_compare(after, before):
    """Why a measurement taken after a change is worse than the one taken before it.

    The rolling upgrade's gate (playbooks/upgrade.yml): the same GPU count, NVML still answering,
    and no check that passed before fails, errs or warns now. Returns a list of lines, empty when the
    host is at least as healthy as before. A check that was not passing before is not held against
    the upgrade (it is the health gate's business), nor is one that no longer runs.
    """
    after = _facts(after, "gpu_health_compare")
    before = _facts(before, "gpu_health_compare (before)")
    regressions = []
    if before["nvml"].get("available") and not after["nvml"].get("available"):
        regressions.append("NVML answered before, now %s: %s" % (after["nvml"].get("error"), after["nvml"].get("message")))
    if (after.get("gpu_count") or 0) != (before.get("gpu_count") or 0):
        regressions.append("%s GPU(s) now, %s before" % (after.get("gpu_count") or 0, before.get("gpu_count") or 0))
    passed = set(_check_key(check) for check in before["checks"] if check["verdict"] == "pass")
    for check in after["checks"]:
        if check["verdict"] in ("warn", "fail", "error") and _check_key(check) in passed:
            regressions.append("passed before, %s now: %s" % (check["verdict"], describe_check(check)))
    return regressions


def _model_slug(name):
    words = [word for word in re.split(r"[\s_]+", str(name).lower()) if word and word not in _VENDOR_WORDS]
    if not words:
        return None
    first = re.split(r"-", words[0])[0]
    if first == "rtx" and len(words) > 1:
        first = "rtx_" + re.split(r"-", words[1])[0]
    slug = re.sub(r"[^a-z0-9_]+", "_", first).strip("_")
    return slug or None


def gpu_health_model_groups(facts, prefix="gpu_"):
    """Inventory group names for the GPU models of a host: 'NVIDIA H100 80GB HBM3' -> gpu_h100."""
    facts = _facts(facts, "gpu_health_model_groups")
    slugs = sorted(set(slug for slug in (_model_slug(gpu.get("name") or "") for gpu in facts["gpus"]) if slug))
    return [prefix + slug for slug in slugs] if slugs else [prefix + "none"]


# ---------------------------------------------------------------------------------------------
# What other roles and playbooks read from the fact: they go through these, never into its keys.

def gpu_health_host_info(facts):
    """The few figures other roles use from a host's gpu_health fact (or a report of it), with safe
    values when there is none: NVML available, GPU count (0 without NVML), driver version, the
    recommended container /dev/shm size."""
    if facts is None or (isinstance(facts, Mapping) and not facts):
        facts = {}
    elif not isinstance(facts, Mapping):
        raise AnsibleFilterError("gpu_health_host_info expects the gpu_health fact (a dict) or null, got %s"
                                 % type(facts).__name__)
    available = bool((facts.get("nvml") or {}).get("available"))
    recommendation = facts.get("recommendation") or {}
    return {
        "present": bool(facts),
        "nvml_available": available,
        "gpu_count": int(facts.get("gpu_count") or 0) if available else 0,
        "driver_version": str((facts.get("driver") or {}).get("version") or ""),
        "container_shm_size": recommendation.get("container_shm_size") or None,
    }


def gpu_health_of_hosts(hostvars, hosts):
    """{host: its gpu_health fact, or None when it has none} for the hosts given (hostvars[host]
    ['ansible_facts']['gpu_health']), the input of gpu_health_fleet."""
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError("gpu_health_of_hosts expects hostvars (a dict of host -> variables)")
    if isinstance(hosts, str) or not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError("gpu_health_of_hosts expects a list of host names")
    found = {}
    for host in hosts:
        host_vars = hostvars.get(host) or {}
        found[host] = (host_vars.get("ansible_facts") or {}).get("gpu_health") or None
    return found


_WHOLE_NUMBER = re.compile(r"^[0-9]+\Z")
_NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?\Z")
# Paths the role writes or runs from, absolute; the textfile collector reads only *.prom.
_ABSOLUTE_PATHS = ("gpu_health_report_path", "gpu_health_textfile_path", "gpu_health_venv_path",
                   "gpu_health_timer_install_dir", "gpu_health_timer_config_path")


def _count_ok(value, pattern=_WHOLE_NUMBER):
    """A non-negative number, also as the string -e gives (\"3600\"); never a boolean."""
    return not isinstance(value, bool) and isinstance(value, (int, float, str)) and bool(pattern.match(str(value)))


def gpu_health_preflight_errors(settings):
    """Every problem with gpu_health's variables (keyed by name) that argument_specs cannot express,
    one message per broken rule naming the variable, its value and what is allowed; [] when all is well."""
    if not isinstance(settings, Mapping):
        raise AnsibleFilterError("gpu_health_preflight_errors expects the role's variables as a dict")
    errors = []
    count = settings.get("gpu_health_expected_gpu_count")
    if count is not None and not _count_ok(count):
        errors.append("gpu_health_expected_gpu_count=%s must be null (no expectation) or a whole number, 0 or more"
                      % json.dumps(count))
    for name in ("gpu_health_apt_cache_valid_time", "gpu_health_timer_randomized_delay_sec"):
        if not _count_ok(settings.get(name)):
            errors.append("%s=%s must be a whole number of seconds, 0 or more" % (name, json.dumps(settings.get(name))))
    limits = settings.get("gpu_health_limits") or {}
    for key, value in sorted(limits.items()):
        values = value if isinstance(value, list) else [value]
        if key == "mig_allowed" or all(_count_ok(item, _NUMBER) for item in values):
            continue
        errors.append("gpu_health_limits.%s=%s must not be negative: a number, 0 or more" % (key, json.dumps(value)))
    for name in _ABSOLUTE_PATHS:
        path = settings.get(name)
        # No blanks: the timer unit names these paths in ExecStart, unquoted.
        if not isinstance(path, str) or not path.startswith("/") or re.search(r"\s", path):
            errors.append("%s=%s must be an absolute path without blanks or line breaks (it starts with /)"
                          % (name, json.dumps(path)))
    textfile = settings.get("gpu_health_textfile_path")
    if isinstance(textfile, str) and not re.search(r"\.prom\Z", textfile):
        errors.append("gpu_health_textfile_path=%s must end in .prom: node_exporter's textfile collector reads "
                      "only *.prom" % json.dumps(textfile))
    return errors


class FilterModule:
    """inferops.gpu gpu_health filters."""

    def filters(self):
        return {
            "gpu_health_prometheus": gpu_health_prometheus,
            "gpu_health_failing": gpu_health_failing,
            "gpu_health_host": gpu_health_host,
            "gpu_health_table": gpu_health_table,
            "gpu_health_fleet": gpu_health_fleet,
            "gpu_health_fleet_markdown": gpu_health_fleet_markdown,
            "gpu_health_gate": gpu_health_gate,
            "gpu_health_drift": gpu_health_drift,
            "gpu_health_compare": gpu_health_compare,
            "gpu_health_model_groups": gpu_health_model_groups,
            "gpu_health_host_info": gpu_health_host_info,
            "gpu_health_of_hosts": gpu_health_of_hosts,
            "gpu_health_preflight_errors": gpu_health_preflight_errors,
        }
