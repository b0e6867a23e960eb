# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the gpu_health checks look like to people and to Prometheus: the failing-check lines of the
module's message and of the gate, the node_exporter textfile, a host's summary and table, and the
fleet report with its Markdown. The module, the filters (plugins/filter/gpu_health.py) and the
role's timer runner on the host all render through here, so their outputs agree byte for byte.

Pure Python with no ansible import, like gpu_health_checks (the timer runs it without Ansible).
"""

from __future__ import annotations

import json

from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import (
    ACTION_NAMES,
    GIB,
    SEVERITY,
    VERDICTS,
    action_of,
    describe_check,
    worst_action,
)


def checks_matching(facts, verdicts):
    """One line per check whose verdict is in verdicts: 'ecc gpu5: <reason>'."""
    return [describe_check(check) for check in facts["checks"] if check["verdict"] in verdicts]


def render_report(facts):
    """The JSON report: the whole fact, sorted keys, indent 2, ASCII (the bytes to_nice_json gave)."""
    return json.dumps(facts, indent=2, sort_keys=True, separators=(",", ": ")) + "\n"


# --- node_exporter textfile -------------------------------------------------------------------


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _metric(lines, metric, value, **labels):
    if value is None:
        return
    if isinstance(value, bool):
        value = int(value)
    label_text = ",".join('%s="%s"' % (key, _escape(val)) for key, val in labels.items())
    lines.append("%s{%s} %s" % (metric, label_text, value) if label_text else "%s %s" % (metric, value))


METRIC_HELP = (
    ("inferops_gpu_health_verdict", "Host verdict of the last GPU health check (1 for the current verdict)."),
    ("inferops_gpu_health_check", "One GPU health check result (1 for its verdict; action is its repair action)."),
    ("inferops_gpu_health_action", "Most disruptive repair action of the host's checks (1 for the current one)."),
    ("inferops_gpu_health_gpus", "GPUs enumerated by NVML."),
    ("inferops_gpu_health_gpus_expected", "GPUs the inventory expects."),
    ("inferops_gpu_health_nvml_up", "1 when NVML initialised."),
    ("inferops_gpu_temperature_celsius", "GPU core temperature."),
    ("inferops_gpu_temperature_slowdown_celsius", "Temperature at which the GPU slows its clocks (NVML)."),
    ("inferops_gpu_memory_total_bytes", "GPU memory size."),
    ("inferops_gpu_ecc_uncorrected_volatile_errors", "Volatile uncorrectable ECC errors."),
    ("inferops_gpu_remapped_rows_pending", "1 when a row remap waits for a GPU reset."),
    ("inferops_gpu_pcie_link_width", "PCIe link width (kind=current|max)."),
    ("inferops_gpu_xid_recent", "Xid errors inside the window, by Xid code."),
    ("inferops_gpu_p2p_safe", "1 when NCCL P2P is safe between the two GPUs."),
    ("inferops_gpu_health_nccl_p2p_disable_recommended", "1 when NCCL_P2P_DISABLE=1 is recommended."),
    ("inferops_gpu_health_container_shm_bytes", "Recommended container /dev/shm size."),
)


def render_prometheus(facts):
    """node_exporter textfile-collector text for evaluated facts."""
    metrics = {}

    def add(metric, value, **labels):
        _metric(metrics.setdefault(metric, []), metric, value, **labels)

    verdict = facts["summary"]["verdict"]
    for value in VERDICTS:
        add("inferops_gpu_health_verdict", int(value == verdict), verdict=value)
    for check in facts["checks"]:
        add("inferops_gpu_health_check", 1, check=check["id"],
            gpu="" if check.get("gpu") is None else check["gpu"],
            pair="" if not check.get("pair") else "%d-%d" % tuple(check["pair"]), verdict=check["verdict"],
            action=action_of(check))
    action = worst_action(facts["checks"])
    for value in ACTION_NAMES:
        add("inferops_gpu_health_action", int(value == action), action=value)
    add("inferops_gpu_health_nvml_up", int(bool(facts["nvml"]["available"])))
    add("inferops_gpu_health_gpus", facts.get("gpu_count"))
    add("inferops_gpu_health_gpus_expected", facts.get("expected_gpu_count"))
    for gpu in facts["gpus"]:
        labels = {"gpu": gpu["index"], "uuid": gpu.get("uuid") or "", "name": gpu.get("name") or ""}
        add("inferops_gpu_temperature_celsius", gpu.get("temperature_c"), **labels)
        add("inferops_gpu_temperature_slowdown_celsius", gpu.get("temperature_slowdown_c"), **labels)
        add("inferops_gpu_memory_total_bytes", (gpu.get("memory") or {}).get("total_bytes"), **labels)
        add("inferops_gpu_ecc_uncorrected_volatile_errors", (gpu.get("ecc") or {}).get("volatile_uncorrected"), **labels)
        if gpu.get("row_remap"):
            add("inferops_gpu_remapped_rows_pending", gpu["row_remap"]["pending"], **labels)
        for kind in ("current", "max"):
            add("inferops_gpu_pcie_link_width", (gpu.get("pcie") or {}).get("width_" + kind), kind=kind, **labels)
    window = facts.get("limits", {}).get("xid_window_s")
    counts = {}
    for event in facts["xids"]["events"]:
        if not window or event["age_s"] is None or event["age_s"] <= window:
            counts[(event["pci"], event["xid"])] = counts.get((event["pci"], event["xid"]), 0) + 1
    for (pci, xid), count in sorted(counts.items()):
        add("inferops_gpu_xid_recent", count, pci=pci, xid=xid)
    for pair in facts["pairs"]:
        add("inferops_gpu_p2p_safe", pair.get("p2p_safe"), gpu_a=pair["gpus"][0], gpu_b=pair["gpus"][1])
    recommendation = facts["recommendation"]
    add("inferops_gpu_health_nccl_p2p_disable_recommended",
        int(recommendation["nccl_env"].get("NCCL_P2P_DISABLE") == "1"))
    add("inferops_gpu_health_container_shm_bytes", recommendation["container_shm_bytes"])

    lines = []
    for name, help_text in METRIC_HELP:
        if name in metrics:
            lines.append("# HELP %s %s" % (name, help_text))
            lines.append("# TYPE %s gauge" % name)
            lines.extend(metrics[name])
    return "\n".join(lines) + "\n"


# --- host summary, table, fleet report ---------------------------------------------------------


def _worst(verdicts):
    found = [verdict for verdict in verdicts if verdict in SEVERITY]
    return max(found, key=SEVERITY.get) if found else "skip"


def _gib(size):
    return "%.0f GiB" % (size / float(GIB)) if isinstance(size, (int, float)) else "-"


def _gpu_rows(facts):
    """One row per GPU: the figures an operator looks at first, and the GPU's worst verdict."""
    by_gpu = {}
    for check in facts["checks"]:
        if check.get("gpu") is not None:
            by_gpu.setdefault(check["gpu"], []).append(check)
    rows = []
    for gpu in facts["gpus"]:
        checks = by_gpu.get(gpu["index"], [])
        pcie = gpu.get("pcie") or {}
        ecc = gpu.get("ecc") or {}
        rows.append({
            "index": gpu["index"],
            "name": gpu.get("name"),
            "uuid": gpu.get("uuid"),
            "pci_bus_id": gpu.get("pci_bus_id"),
            "memory_total_bytes": (gpu.get("memory") or {}).get("total_bytes"),
            "temperature_c": gpu.get("temperature_c"),
            "pcie": "gen%s x%s" % (pcie.get("gen_current", "?"), pcie.get("width_current", "?")) if pcie else None,
            "ecc_uncorrected_volatile": ecc.get("volatile_uncorrected"),
            "verdict": _worst(check["verdict"] for check in checks),
            "action": worst_action(checks),
            "issues": [describe_check(check) for check in checks if check["verdict"] in ("warn", "fail", "error")],
        })
    return rows


def host_summary(facts, host=None):
    """A compact, JSON-ready summary of one host's evaluated facts (what the fleet report keeps)."""
    recommendation = facts["recommendation"]
    host_checks = [check for check in facts["checks"] if check.get("gpu") is None]
    return {
        "host": host,
        "verdict": facts["summary"]["verdict"],
        "counts": facts["summary"]["counts"],
        # The most disruptive repair action on the host; each issue line ends with its own.
        "action": worst_action(facts["checks"]),
        "nvml": "ok" if facts["nvml"].get("available") else (facts["nvml"].get("error") or "unavailable"),
        "driver": (facts.get("driver") or {}).get("version"),
        "cuda": (facts.get("driver") or {}).get("cuda_version"),
        "gpu_count": facts.get("gpu_count"),
        "expected_gpu_count": facts.get("expected_gpu_count"),
        "gpus": _gpu_rows(facts),
        "host_issues": [describe_check(check) for check in host_checks if check["verdict"] in ("warn", "fail", "error")],
        "p2p_unsafe_pairs": ["gpu%d-gpu%d" % tuple(pair["gpus"]) for pair in facts["pairs"] if pair.get("p2p_safe") is False],
        "nccl_env": recommendation.get("nccl_env", {}),
        "nccl_reasons": recommendation.get("reasons", {}),
        "container_shm_size": recommendation.get("container_shm_size"),
        "vllm_disable_custom_all_reduce": recommendation.get("vllm_disable_custom_all_reduce"),
    }


def _table(header, rows):
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells):
        return "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths)).rstrip()
    return [line(header), line(["-" * width for width in widths])] + [line(row) for row in rows]


def host_table(facts, host=None):
    """Lines of text: one header line for the host, then one table row per GPU, then the issues."""
    summary = host_summary(facts, host)
    lines = ["%s: %s (action: %s), %s GPU(s)%s, driver %s, CUDA %s, NVML %s" % (
        host or "host", summary["verdict"].upper(), summary["action"], summary["gpu_count"] if summary["gpu_count"] is not None else "no",
        "" if summary["expected_gpu_count"] is None else " of %s expected" % summary["expected_gpu_count"],
        summary["driver"] or "-", summary["cuda"] or "-", summary["nvml"])]
    if summary["gpus"]:
        lines += _table(
            ["GPU", "NAME", "MEMORY", "TEMP", "PCIE", "ECC-UE", "VERDICT", "ACTION"],
            [[gpu["index"], gpu["name"] or "-", _gib(gpu["memory_total_bytes"]),
              "-" if gpu["temperature_c"] is None else "%sC" % gpu["temperature_c"], gpu["pcie"] or "-",
              "-" if gpu["ecc_uncorrected_volatile"] is None else gpu["ecc_uncorrected_volatile"], gpu["verdict"],
              gpu["action"]]
             for gpu in summary["gpus"]])
    env = summary["nccl_env"]
    lines.append("NCCL: %s; container /dev/shm %s%s" % (
        ", ".join("%s=%s" % item for item in sorted(env.items())) or "nothing forced",
        summary["container_shm_size"] or "-",
        "; vLLM custom all-reduce off" if summary["vllm_disable_custom_all_reduce"] else ""))
    for name, reason in sorted(summary["nccl_reasons"].items()):
        lines.append("  why %s: %s" % (name, reason))
    for issue in summary["host_issues"] + [issue for gpu in summary["gpus"] for issue in gpu["issues"]]:
        lines.append("  ! " + issue)
    return lines


def fleet_report(hosts):
    """{host: evaluated facts or None} -> the fleet report (dict, JSON-ready), hosts sorted by name."""
    report = {"hosts": [], "totals": dict((verdict, 0) for verdict in VERDICTS + ("missing",)), "gpus": 0}
    for host in sorted(hosts):
        facts = hosts[host]
        if not facts:
            report["hosts"].append({"host": host, "verdict": "missing", "action": None, "gpus": [],
                                    "host_issues": ["no gpu_health fact: the host failed or was unreachable"]})
            report["totals"]["missing"] += 1
            continue
        entry = host_summary(facts, host)
        report["hosts"].append(entry)
        report["totals"][entry["verdict"]] += 1
        report["gpus"] += entry["gpu_count"] or 0
    return report


def _md(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def fleet_markdown(report, title="GPU health"):
    """The fleet report as Markdown: a totals line, a table of hosts, a table per host's GPUs."""
    totals = report["totals"]
    out = ["# %s" % title, ""]
    if report.get("generated"):
        out += ["Generated %s." % report["generated"], ""]
    out += ["%d host(s), %d GPU(s): %s." % (
        len(report["hosts"]), report["gpus"],
        ", ".join("%d %s" % (count, verdict) for verdict, count in totals.items() if count)), "",
        "| Host | Verdict | Action | GPUs | Driver | NCCL forced | Container shm | Issues |",
        "|---|---|---|---|---|---|---|---|"]
    for host in report["hosts"]:
        issues = host.get("host_issues", []) + [issue for gpu in host.get("gpus", []) for issue in gpu["issues"]]
        out.append("| %s | %s | %s | %s | %s | %s | %s | %d |" % (
            _md(host["host"]), host["verdict"], host.get("action") or "-", "-" if host.get("gpu_count") is None else host["gpu_count"],
            _md(host.get("driver") or "-"),
            _md(", ".join("%s=%s" % item for item in sorted(host.get("nccl_env", {}).items())) or "-"),
            host.get("container_shm_size") or "-", len(issues)))
    for host in report["hosts"]:
        out += ["", "## %s (%s)" % (_md(host["host"]), host["verdict"]), ""]
        if host.get("gpus"):
            out += ["| GPU | Name | Memory | Temp | PCIe | ECC UE | Verdict | Action |", "|---|---|---|---|---|---|---|---|"]
            for gpu in host["gpus"]:
                out.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    gpu["index"], _md(gpu["name"] or "-"), _gib(gpu["memory_total_bytes"]),
                    "-" if gpu["temperature_c"] is None else "%s C" % gpu["temperature_c"], gpu["pcie"] or "-",
                    "-" if gpu["ecc_uncorrected_volatile"] is None else gpu["ecc_uncorrected_volatile"], gpu["verdict"],
                    gpu.get("action") or "-"))
            out.append("")
        for name, reason in sorted(host.get("nccl_reasons", {}).items()):
            out.append("- `%s=%s`: %s" % (name, host["nccl_env"].get(name), _md(reason)))
        for issue in host.get("host_issues", []) + [issue for gpu in host.get("gpus", []) for issue in gpu["issues"]]:
            out.append("- %s" % _md(issue))
    return "\n".join(out) + "\n"
