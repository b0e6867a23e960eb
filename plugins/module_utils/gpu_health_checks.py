# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verdicts, recommendations and reports from what gpu_inventory collected.

Pure Python with no ansible import (the role's timer runs it on hosts without Ansible). The check
catalogue and its thresholds follow the research notes: DCGM, AzNHC, Meta GCM and NCCL's own
P2P rules. Each check yields pass | warn | fail | skip | error with a one-line reason, and a repair
action (REPAIR_ACTIONS, decided by repair_action alone) with escalation from the previous report.
"""

from __future__ import annotations

import json

from ansible_collections.inferops.gpu.plugins.module_utils.gpu_inventory import collect

VERDICTS = ("pass", "warn", "fail", "skip", "error")
# Severity for the summary; skip never raises the host's verdict.
SEVERITY = {"skip": 0, "pass": 1, "warn": 2, "error": 3, "fail": 4}

CHECK_IDS = (
    "nvml_init", "gpu_count", "versions", "ecc", "row_remap", "recovery_action", "clocks_event",
    "temperature", "pcie_link", "nvlink", "persistence", "compute_mode", "mig", "xid",
    "p2p", "acs", "iommu", "shm",
)

GIB = 1024 ** 3
DEFAULT_LIMITS = {
    # Xid history window: AzNHC looks back two hours.
    "xid_window_s": 7200,
    # DCGM/Imbue/GCM: fatal Xids fail the GPU; the GCM list of benign ones only warns.
    "xid_fatal": [48, 56, 57, 58, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120, 140],
    "xid_ignore": [13, 31, 43, 45],
    # Any volatile uncorrectable ECC error fails (Imbue, GCM, CHS).
    "ecc_uncorrected_volatile_max": 0,
    # DCGM level 1: 512 uncorrectable remapped rows exhaust a bank.
    "row_remap_uncorrectable_max": 511,
    # Used only where NVML does not report the GPU's own slowdown threshold.
    "temperature_warn_c": 85,
    # Warn this far below the GPU's slowdown threshold (where its clocks are cut).
    "temperature_slowdown_margin_c": 5,
    "pcie_replay_warn": 1000,
    "mig_allowed": False,
    # NCCL troubleshooting: at least 1 GiB of shm per host for multi-GPU jobs.
    "shm_min_bytes": GIB,
    # Container shm rule: this much per GPU, at least shm_min_bytes, at most half the RAM.
    "shm_per_gpu_bytes": 16 * GIB,
    "shm_max_ram_fraction": 0.5,
}

XID_NAMES = {
    48: "double-bit ECC error", 62: "internal micro-controller halt", 63: "row remapping event",
    64: "row remapping failure", 74: "NVLink error", 79: "GPU has fallen off the bus",
    92: "high single-bit ECC rate", 94: "contained ECC error", 95: "uncontained ECC error",
    119: "GSP RPC timeout", 120: "GSP error", 140: "unrecovered ECC error",
}
RECOVERY_ACTIONS = {1: "GPU_RESET", 2: "NODE_REBOOT", 3: "DRAIN_P2P", 4: "DRAIN_AND_RESET",
                    5: "RECOVER_IMEX_DOMAIN", 6: "BUS_RESET", 7: "SYSTEM_REBOOT"}
THROTTLE_WARN = ("HwSlowdown", "SwThermalSlowdown", "HwThermalSlowdown", "HwPowerBrakeSlowdown")
# Pairs whose path allows P2P by NCCL's default rules (PXB or closer): broken P2P there is a fault.
P2P_CAPABLE_LEVELS = ("INTERNAL", "PIX", "PXB")
NVML_INIT_ADVICE = {
    "DriverNotLoaded": "driver not loaded: the NVIDIA kernel module is not running; install the "
                       "driver (inferops.gpu.nvidia_driver), check `dmesg | grep -i nvidia` and "
                       "Secure Boot, then reboot",
    "LibraryNotFound": "libnvidia-ml.so.1 not found: the NVIDIA driver's user-space libraries are "
                       "not installed",
    "LibRmVersionMismatch": "driver/library version mismatch: the loaded kernel module differs from "
                            "the installed libraries (upgraded without reboot); reboot the host",
    "GpuIsLost": "a GPU is lost: reset it or reboot the host",
    "NoPermission": "no permission to open /dev/nvidia*: run as root",
}


# The repair actions, least to most disruptive (summary.action is the host's most disruptive one).
# After gpud's repair action types (REBOOT_SYSTEM, HARDWARE_INSPECTION, ...), split where the
# operator's first move differs. The set is fixed: alert rules and dashboards match these names.
REPAIR_ACTIONS = (
    ("none", "nothing to repair: the check passed or was skipped, the finding is informational, or the "
             "check could not read its input (the reason says why)"),
    ("reconfigure", "change the host's configuration as the reason says (driver setting, kernel command "
                    "line, /dev/shm, VBIOS); no hardware is touched"),
    ("disable_acs_or_nccl_p2p", "GPU peer-to-peer is unsafe on this PCIe path: disable ACS redirect "
                                "(nccl_tuning_acs_clear_enabled, or iommu=pt / VT-d off) or keep "
                                "NCCL_P2P_DISABLE=1 (inferops.gpu.nccl_tuning sets it)"),
    ("check_fabric_manager", "NVLink: check that nvidia-fabricmanager runs at the driver's version and "
                             "the NVLink state (nvidia-smi nvlink -s)"),
    ("check_cooling_power", "the GPU is hot or hardware cuts its clocks: check airflow, fans, inlet "
                            "temperature and the power supply"),
    ("reset_gpu", "drain the GPU and reset it (nvidia-smi -r -i <gpu>), or reboot the host"),
    ("reboot", "drain the host and reboot it"),
    ("reseat_or_check_riser", "a GPU is missing or its PCIe link is degraded: power off, reseat the GPU, "
                              "check the riser, cable and slot"),
    ("rma", "a hardware fault the driver's remedies do not clear: contact the vendor for an RMA"),
)
ACTION_NAMES = tuple(name for name, _text in REPAIR_ACTIONS)
ACTION_RANK = dict((name, rank) for rank, (name, _text) in enumerate(REPAIR_ACTIONS))
# check id -> {cause, else verdict, else "*": action} for warn and fail verdicts (others: none).
# The module's DOCUMENTATION lists the same table (a unit test compares them).
ACTION_RULES = {
    "nvml_init": {"LibraryNotFound": "reconfigure", "NoPermission": "reconfigure", "*": "reboot"},
    "gpu_count": {"unopenable": "reboot", "*": "reseat_or_check_riser"},
    "versions": {"*": "reconfigure"},
    "ecc": {"disabled": "reconfigure", "*": "reset_gpu"},
    "row_remap": {"pending": "reset_gpu", "*": "rma"},
    "recovery_action": {"GPU_RESET": "reset_gpu", "DRAIN_P2P": "reset_gpu", "DRAIN_AND_RESET": "reset_gpu",
                        "BUS_RESET": "reset_gpu", "RECOVER_IMEX_DOMAIN": "check_fabric_manager",
                        "*": "reboot"},
    "clocks_event": {"*": "check_cooling_power"},
    "temperature": {"*": "check_cooling_power"},
    "pcie_link": {"*": "reseat_or_check_riser"},
    "nvlink": {"*": "check_fabric_manager"},
    "persistence": {"*": "reconfigure"},
    "compute_mode": {"*": "reconfigure"},
    "mig": {"*": "reconfigure"},
    # NVIDIA's Xid catalogue: 79 needs a reboot, 74 is NVLink, 64 (remap failure) is a replacement.
    "xid": {"79": "reboot", "74": "check_fabric_manager", "64": "rma", "fail": "reset_gpu", "warn": "none"},
    "p2p": {"nvlink": "check_fabric_manager", "fail": "disable_acs_or_nccl_p2p", "warn": "none"},
    "acs": {"*": "disable_acs_or_nccl_p2p"},
    "iommu": {"*": "disable_acs_or_nccl_p2p"},
    "shm": {"*": "reconfigure"},
}
# A reset or reboot that did not clear a GPU fault escalates it: the same finding on the same GPU
# (or PCI bus) before and after a reboot is hardware (gpud escalates to HARDWARE_INSPECTION alike).
ESCALATING_CHECKS = ("xid", "ecc")
ESCALATING_ACTIONS = ("reset_gpu", "reboot")


def _subject(check, facts):
    """What a finding is about, stable across reboots: the kernel's bus id, GPU UUIDs, or None."""
    if check.get("pci"):
        return str(check["pci"]).lower()
    uuids = dict((gpu.get("index"), gpu.get("uuid")) for gpu in (facts or {}).get("gpus") or [])
    if check.get("gpu") is not None:
        return uuids.get(check["gpu"]) or check["gpu"]
    if check.get("pair"):
        return tuple(uuids.get(index) or index for index in check["pair"])
    return None


def _finding_key(check, facts):
    return (check["id"], check.get("cause"), _subject(check, facts))


def _previous_findings(previous, fatal_xids):
    """Findings of the previous report: key -> its check, or True for a fatal Xid seen in its log."""
    found = {}
    for event in (previous.get("xids") or {}).get("events") or []:
        if event.get("xid") in fatal_xids and event.get("pci"):
            found[("xid", str(event["xid"]), str(event["pci"]).lower())] = True
    for check in previous.get("checks") or []:
        if check.get("verdict") in ("warn", "fail") and check.get("cause") is not None:
            found[_finding_key(check, previous)] = check
    return found


def rebooted_since(previous, facts):
    """True when the host rebooted after the previous report, False when not, None when unknown.
    The kernel's boot_id says it; without it, uptime that went down does."""
    before, now = previous.get("host") or {}, facts.get("host") or {}
    if before.get("boot_id") and now.get("boot_id"):
        return before["boot_id"] != now["boot_id"]
    if before.get("uptime_s") is not None and now.get("uptime_s") is not None:
        return now["uptime_s"] < before["uptime_s"]
    return None


def repair_action(check, facts=None, previous=None):
    """The one place that decides a check's repair action: {action, action_reason, escalated}.

    The base action comes from ACTION_RULES by check id and cause. A reset_gpu or reboot finding of
    ESCALATING_CHECKS escalates to rma when the previous report (the one the role keeps at
    gpu_health_report_path) had the same finding on the same GPU and the host rebooted since, and
    stays rma while it persists in the same boot. Without a previous report or reboot evidence
    nothing escalates."""
    if check.get("verdict") not in ("warn", "fail"):
        action = "none"
    else:
        rules = ACTION_RULES.get(check["id"], {})
        action = rules.get(check.get("cause") or "", rules.get(check["verdict"], rules.get("*", "none")))
    decided = {"action": action, "action_reason": dict(REPAIR_ACTIONS)[action], "escalated": False}
    if (not previous or facts is None or check["id"] not in ESCALATING_CHECKS
            or action not in ESCALATING_ACTIONS):
        return decided
    fatal = (facts.get("limits") or {}).get("xid_fatal") or DEFAULT_LIMITS["xid_fatal"]
    before = _previous_findings(previous, fatal).get(_finding_key(check, facts))
    rebooted = rebooted_since(previous, facts)
    if before is None or rebooted is None:
        return decided
    if rebooted:
        return {"action": "rma", "escalated": True, "action_reason": (
            "escalated from %s: the same finding was in the previous report (%s) and came back after a reboot; "
            "%s" % (action, before["reason"] if isinstance(before, dict) else "its kernel log had this Xid",
                    dict(REPAIR_ACTIONS)["rma"]))}
    if isinstance(before, dict) and before.get("escalated"):
        # Same boot: the evidence of the earlier boot still holds.
        return {"action": "rma", "escalated": True, "action_reason": before.get("action_reason")}
    return decided


def action_of(check):
    """The check's decided action; for a check from a report written before actions existed, its
    base action (no escalation: there is no previous report to compare with)."""
    action = check.get("action")
    return action if action in ACTION_RANK else repair_action(check)["action"]


def worst_action(checks):
    """The most disruptive action of checks (none when there are none)."""
    return max([action_of(check) for check in checks] + ["none"], key=ACTION_RANK.get)


def merge_limits(limits):
    merged = dict(DEFAULT_LIMITS)
    for key, value in (limits or {}).items():
        if value is not None:
            merged[key] = value
    return merged


def format_bytes_docker(size):
    """Bytes -> the largest whole unit docker's --shm-size accepts ('128g', '512m')."""
    for unit, factor in (("g", GIB), ("m", 1024 ** 2), ("k", 1024)):
        if size >= factor and size % factor == 0:
            return "%d%s" % (size // factor, unit)
    return "%db" % size


class _Checks:
    def __init__(self, skip):
        self.skip = set(skip or ())
        self.items = []

    def add(self, check_id, verdict, reason, gpu=None, pair=None, cause=None, **extra):
        if check_id in self.skip:
            verdict, reason, cause = "skip", "skipped on request (skip_checks)", None
        check = {"id": check_id, "verdict": verdict, "reason": reason, "gpu": gpu, "pair": pair, "cause": cause}
        check.update(extra)
        self.items.append(check)


def _gpu_checks(checks, gpu, limits):
    index = gpu["index"]
    errors = gpu.get("errors", {})
    add = checks.add
    if "handle" in errors:
        add("gpu_count", "fail", "GPU %d is enumerated but cannot be opened (%s): reset or reboot"
            % (index, errors["handle"]), gpu=index, cause="unopenable")
        return

    ecc = gpu["ecc"]
    unc = ecc.get("volatile_uncorrected")
    if ecc.get("mode") is None:
        add("ecc", "skip", "ECC not reported (%s)" % errors.get("ecc.mode"), gpu=index)
    elif unc is not None and unc > limits["ecc_uncorrected_volatile_max"]:
        add("ecc", "fail", "%d volatile uncorrectable ECC errors (limit %d): drain and reset the GPU"
            % (unc, limits["ecc_uncorrected_volatile_max"]), gpu=index, cause="uncorrected")
    elif not ecc["mode"]["current"]:
        add("ecc", "warn", "ECC is disabled", gpu=index, cause="disabled")
    elif unc is None:
        add("ecc", "error", "ECC counters unreadable (%s)" % errors.get("ecc.volatile_uncorrected"), gpu=index)
    else:
        add("ecc", "pass", "no volatile uncorrectable ECC errors", gpu=index)

    remap = gpu.get("row_remap")
    if remap is None:
        add("row_remap", "skip", "row remapping not reported (%s)" % errors.get("row_remap"), gpu=index)
    elif remap["failure"]:
        add("row_remap", "fail", "row remapping failed: replace the GPU", gpu=index, cause="failure")
    elif remap["pending"]:
        add("row_remap", "fail", "row remap pending: reset the GPU to apply it", gpu=index, cause="pending")
    elif remap["uncorrectable"] > limits["row_remap_uncorrectable_max"]:
        add("row_remap", "fail", "%d uncorrectable remapped rows (limit %d)"
            % (remap["uncorrectable"], limits["row_remap_uncorrectable_max"]), gpu=index, cause="exhausted")
    else:
        add("row_remap", "pass", "%d uncorrectable remapped rows, none pending" % remap["uncorrectable"], gpu=index)

    action = gpu.get("recovery_action")
    if action is None:
        add("recovery_action", "skip", "recovery action not reported (%s)" % errors.get("recovery_action"), gpu=index)
    elif action:
        add("recovery_action", "fail", "driver requests recovery action %s"
            % RECOVERY_ACTIONS.get(action, action), gpu=index, cause=RECOVERY_ACTIONS.get(action, str(action)))
    else:
        add("recovery_action", "pass", "no recovery action requested", gpu=index)

    reasons = gpu.get("clocks_event_reasons")
    if reasons is None:
        add("clocks_event", "skip", "clock event reasons not reported (%s)" % errors.get("clocks_event_reasons"), gpu=index)
    else:
        bad = [name for name in reasons["active"] if name in THROTTLE_WARN]
        if bad:
            add("clocks_event", "warn", "clocks slowed down: %s" % ", ".join(bad), gpu=index, cause="slowdown")
        else:
            add("clocks_event", "pass", "no hardware or thermal slowdown", gpu=index)

    temperature = gpu.get("temperature_c")
    # The GPU's own slowdown threshold (where it cuts its clocks) ahead of the fixed number.
    slowdown = gpu.get("temperature_slowdown_c")
    if slowdown:
        warn_c = slowdown - limits["temperature_slowdown_margin_c"]
        source, source_text = "nvml_slowdown", "the GPU's slowdown threshold %d C less %d C" % (
            slowdown, limits["temperature_slowdown_margin_c"])
    else:
        warn_c = limits["temperature_warn_c"]
        source, source_text = "limit", "limits.temperature_warn_c, NVML reports no slowdown threshold"
    threshold = {"threshold_c": warn_c, "threshold_source": source}
    if temperature is None:
        add("temperature", "skip", "temperature not reported (%s)" % errors.get("temperature_c"), gpu=index, **threshold)
    elif temperature >= warn_c:
        add("temperature", "warn", "%d C, at or above %d C (%s)" % (temperature, warn_c, source_text),
            gpu=index, cause="hot", **threshold)
    else:
        add("temperature", "pass", "%d C, below %d C (%s)" % (temperature, warn_c, source_text), gpu=index, **threshold)

    pcie = gpu["pcie"]
    if pcie.get("width_current") is None or pcie.get("width_max") is None:
        add("pcie_link", "skip", "PCIe link width not reported", gpu=index)
    elif pcie["width_current"] < pcie["width_max"]:
        add("pcie_link", "fail", "PCIe link trained at x%d, maximum x%d: reseat the GPU or check the riser/slot"
            % (pcie["width_current"], pcie["width_max"]), gpu=index, cause="width")
    elif pcie.get("replay_counter") is not None and pcie["replay_counter"] >= limits["pcie_replay_warn"]:
        add("pcie_link", "warn", "%d PCIe replays (limit %d)" % (pcie["replay_counter"], limits["pcie_replay_warn"]), gpu=index,
            cause="replays")
    else:
        # Generation drops at idle by design; only the width is a fault.
        add("pcie_link", "pass", "x%d of x%d, gen %s of %s" % (
            pcie["width_current"], pcie["width_max"], pcie.get("gen_current"), pcie.get("gen_max")), gpu=index)

    nvlink = gpu.get("nvlink")
    if nvlink is None:
        add("nvlink", "skip", "no NVLink (%s)" % errors.get("nvlink"), gpu=index)
    elif nvlink["inactive"]:
        add("nvlink", "fail", "%d of %d NVLinks inactive" % (nvlink["inactive"], nvlink["total"]), gpu=index, cause="inactive")
    else:
        add("nvlink", "pass", "%d NVLinks active" % nvlink["active"], gpu=index)

    persistence = gpu.get("persistence_mode")
    if persistence is None:
        add("persistence", "skip", "persistence mode not reported (%s)" % errors.get("persistence_mode"), gpu=index)
    elif persistence:
        add("persistence", "pass", "persistence mode on", gpu=index)
    else:
        add("persistence", "warn", "persistence mode off: enable nvidia-persistenced", gpu=index, cause="off")

    mode = gpu.get("compute_mode")
    if mode is None:
        add("compute_mode", "skip", "compute mode not reported (%s)" % errors.get("compute_mode"), gpu=index)
    elif mode == "PROHIBITED":
        add("compute_mode", "fail", "compute mode PROHIBITED: no process can use this GPU (nvidia-smi -c DEFAULT)", gpu=index,
            cause="prohibited")
    else:
        add("compute_mode", "pass", "compute mode %s" % mode, gpu=index)

    mig = gpu.get("mig_mode")
    if mig is None:
        add("mig", "skip", "MIG not supported (%s)" % errors.get("mig_mode"), gpu=index)
    elif mig["current"] and not limits["mig_allowed"]:
        add("mig", "warn", "MIG is enabled: a model sees a GPU slice, not the whole GPU", gpu=index,
            cause="enabled")
    else:
        add("mig", "pass", "MIG %s" % ("enabled" if mig["current"] else "disabled"), gpu=index)


def _pair_findings(facts):
    """Per pair: P2P state, ACS bridges on the path, and whether NCCL's P2P transport is safe."""
    gpus = {gpu["index"]: gpu for gpu in facts["gpus"]}
    paths = facts["pci"]["gpu_paths"]
    bridges = facts["pci"]["bridges"]
    virtualized = facts["iommu"]["hypervisor"] or any(
        gpu.get("virtualization_mode") in ("PASSTHROUGH", "VGPU") for gpu in gpus.values())
    findings = []
    for pair in facts["pairs"]:
        a, b = pair["gpus"]
        chain_a = (paths.get(a) or {}).get("bridges")
        chain_b = (paths.get(b) or {}).get("bridges")
        redirect, unknown = [], []
        if chain_a is not None and chain_b is not None:
            # Bridges below the pair's common ancestor carry their peer traffic.
            for bridge in sorted(set(chain_a) ^ set(chain_b)):
                state = bridges.get(bridge, {})
                if state.get("acs_redirect"):
                    redirect.append(bridge)
                elif state.get("acs_redirect") is None and state.get("error"):
                    unknown.append(bridge)
        read, write = pair["p2p"].get("read"), pair["p2p"].get("write")
        p2p_ok = read == "OK" and write == "OK"
        capable = pair["nvlink"] or pair.get("topology") in P2P_CAPABLE_LEVELS
        reasons = []
        if p2p_ok and redirect:
            reasons.append("ACS redirect on bridge %s" % ", ".join(redirect))
        if p2p_ok and virtualized and not pair["nvlink"]:
            reasons.append("GPUs are passed through to a VM: the guest's PCIe topology is not the real one")
        if capable and not p2p_ok:
            reasons.append("NVML reports P2P read=%s write=%s on a %s path" % (
                read, write, "NVLink" if pair["nvlink"] else pair.get("topology")))
        findings.append({
            "pair": pair, "gpus": [a, b], "p2p_ok": p2p_ok, "capable": capable,
            "acs_redirect_bridges": redirect, "acs_unknown_bridges": unknown,
            "unsafe_reasons": reasons, "p2p_safe": not reasons,
        })
    return findings


def _pair_checks(checks, findings):
    for finding in findings:
        pair = finding["pair"]
        gpus = finding["gpus"]
        label = "GPU%d-GPU%d" % tuple(gpus)
        read, write = pair["p2p"].get("read"), pair["p2p"].get("write")
        if read is None or write is None:
            checks.add("p2p", "error", "%s: P2P status unreadable (%s)" % (label, pair["errors"]), pair=gpus)
        elif finding["p2p_ok"]:
            checks.add("p2p", "pass", "%s: P2P read/write OK over %s" % (
                label, "NVLink" if pair["nvlink"] else pair.get("topology")), pair=gpus)
        elif pair["nvlink"]:
            checks.add("p2p", "fail", "%s: NVLink pair reports P2P read=%s write=%s; NCCL aborts on this "
                       "(hardware issue: check fabric manager and NVLink state)" % (label, read, write), pair=gpus,
                       cause="nvlink")
        elif finding["capable"]:
            checks.add("p2p", "fail", "%s: P2P read=%s write=%s behind a PCIe switch (%s): set "
                       "NCCL_P2P_DISABLE=1 or fix the platform" % (label, read, write, pair.get("topology")), pair=gpus,
                       cause="pcie")
        else:
            checks.add("p2p", "warn", "%s: no P2P across %s (read=%s): NCCL uses host shared memory "
                       "between these GPUs, keep them in separate tensor-parallel groups or size /dev/shm"
                       % (label, pair.get("topology"), read), pair=gpus, cause="no_p2p_path")

        if finding["acs_redirect_bridges"] and finding["p2p_ok"]:
            checks.add("acs", "fail", "%s: ACS redirect on bridge %s sends P2P through the root complex "
                       "(NCCL can hang while loading): NCCL_P2P_DISABLE=1, or disable ACS/VT-d"
                       % (label, ", ".join(finding["acs_redirect_bridges"])), pair=gpus, cause="redirect")
        elif finding["acs_unknown_bridges"]:
            checks.add("acs", "skip", "%s: ACS state unknown on %s" % (
                label, ", ".join(finding["acs_unknown_bridges"])), pair=gpus)
        else:
            checks.add("acs", "pass", "%s: no ACS redirect on the path" % label, pair=gpus)


def _xid_checks(checks, facts, limits):
    xids = facts["xids"]
    if not xids["available"]:
        checks.add("xid", "skip", "kernel log unreadable: %s" % xids["error"])
        return
    by_bus = {}
    for gpu in facts["gpus"]:
        if gpu.get("pci_bus_id"):
            # The kernel writes the bus id without the function: 0000:17:00
            by_bus[gpu["pci_bus_id"][-12:].lower()[:-2]] = gpu["index"]
    window = limits["xid_window_s"]
    recent = [event for event in xids["events"]
              if not window or event["age_s"] is None or event["age_s"] <= window]
    flagged = {}
    for event in recent:
        if event["xid"] in limits["xid_ignore"]:
            continue
        gpu = by_bus.get(event["pci"][-10:])
        verdict = "fail" if event["xid"] in limits["xid_fatal"] else "warn"
        key = (gpu, event["pci"])
        previous = flagged.get(key)
        if previous is None or SEVERITY[verdict] > SEVERITY[previous[0]]:
            flagged[key] = (verdict, event)
    if not flagged:
        checks.add("xid", "pass", "no Xid errors in the kernel log%s" % (
            " in the last %ds" % window if window else " since boot"))
        return
    for (gpu, bus), (verdict, event) in sorted(flagged.items(), key=lambda item: str(item[0])):
        checks.add("xid", verdict, "Xid %d (%s) on %s %s ago" % (
            event["xid"], XID_NAMES.get(event["xid"], "see NVIDIA's Xid catalogue"), bus,
            "%ds" % event["age_s"] if event["age_s"] is not None else "at an unknown time"), gpu=gpu,
            cause=str(event["xid"]), pci=bus.lower(), xid=event["xid"])


def recommend(facts, findings, limits):
    """NCCL environment and container shm size this host needs, each with its reason."""
    env, reasons = {}, {}
    unsafe = [finding for finding in findings if not finding["p2p_safe"]]
    if unsafe:
        env["NCCL_P2P_DISABLE"] = "1"
        reasons["NCCL_P2P_DISABLE"] = "P2P unsafe on %s" % "; ".join(
            "GPU%d-GPU%d (%s)" % (f["gpus"][0], f["gpus"][1], ", ".join(f["unsafe_reasons"])) for f in unsafe)
    gpu_count = facts.get("gpu_count") or 0
    vllm_off = bool(unsafe)
    if vllm_off:
        vllm_reason = ("vLLM's custom all-reduce talks P2P directly and bypasses NCCL for exactly two "
                       "GPUs, so NCCL_P2P_DISABLE does not cover it: launch 2-GPU models with "
                       "disable_custom_all_reduce=true")
    elif gpu_count == 2:
        vllm_reason = "two GPUs with safe P2P: vLLM's custom all-reduce may stay on"
    else:
        vllm_reason = "P2P is safe on every pair"

    memory = facts["host"].get("memory_total_bytes")
    wanted = max(gpu_count * limits["shm_per_gpu_bytes"], limits["shm_min_bytes"])
    cap = int(memory * limits["shm_max_ram_fraction"]) // GIB * GIB if memory else None
    shm_bytes = min(wanted, cap) if cap else wanted
    shm_bytes = max(shm_bytes // GIB * GIB, limits["shm_min_bytes"])
    rule = ("container /dev/shm = max(GPUs x %s, %s), capped at %d%% of RAM, rounded down to whole GiB: "
            "NCCL keeps its SHM transport buffers (more with NCCL_P2P_DISABLE=1) in /dev/shm, and "
            "Docker's 64 MB default starves it" % (
                format_bytes_docker(limits["shm_per_gpu_bytes"]), format_bytes_docker(limits["shm_min_bytes"]),
                int(limits["shm_max_ram_fraction"] * 100)))
    return {
        "nccl_env": env,
        "reasons": reasons,
        "vllm_disable_custom_all_reduce": vllm_off,
        "vllm_reason": vllm_reason,
        "container_shm_bytes": shm_bytes,
        "container_shm_size": format_bytes_docker(shm_bytes),
        "shm_rule": rule,
    }


def evaluate(facts, expected_gpu_count=None, skip_checks=None, limits=None, previous=None):
    """Add checks (each with its repair action), summary and recommendation to collected facts (in
    place) and return them. previous: the last report of this host (for escalation), or None."""
    limits = merge_limits(limits)
    checks = _Checks(skip_checks)
    nvml = facts["nvml"]
    if not nvml["available"] or facts.get("gpu_count") is None:
        error = nvml["error"] or "Unknown"
        if error in NVML_INIT_ADVICE:
            advice = NVML_INIT_ADVICE[error]
        elif not facts.get("host", {}).get("nvidia_module_loaded", True):
            advice = "%s (NVML said: %s)" % (NVML_INIT_ADVICE["DriverNotLoaded"], nvml["message"] or error)
        else:
            advice = "NVML failed: %s" % (nvml["message"] or error)
        checks.add("nvml_init", "fail", "NVML %s: %s" % (error, advice), cause=error)
        for check_id in CHECK_IDS[1:]:
            checks.add(check_id, "skip", "NVML unavailable")
    else:
        checks.add("nvml_init", "pass", "NVML %s, driver %s, CUDA %s" % (
            facts["driver"].get("nvml_version"), facts["driver"].get("version"), facts["driver"].get("cuda_version")))
        count = facts["gpu_count"]
        if expected_gpu_count is not None and count != expected_gpu_count:
            checks.add("gpu_count", "fail", "NVML enumerates %d GPUs, %d expected: a GPU fell off the bus "
                       "or is not bound to the driver (lspci -d 10de:)" % (count, expected_gpu_count), cause="missing")
        elif count == 0:
            checks.add("gpu_count", "fail", "NVML enumerates no GPU", cause="missing")
        else:
            checks.add("gpu_count", "pass", "%d GPUs%s" % (
                count, "" if expected_gpu_count is None else " as expected"))
        vbios = {}
        for gpu in facts["gpus"]:
            if gpu.get("vbios_version"):
                vbios.setdefault(gpu.get("name"), set()).add(gpu["vbios_version"])
        mixed = {name: sorted(versions) for name, versions in vbios.items() if len(versions) > 1}
        if mixed:
            checks.add("versions", "warn", "GPUs of one model run different VBIOS versions: %s" % mixed, cause="vbios")
        else:
            checks.add("versions", "pass", "driver %s on every GPU" % facts["driver"].get("version"))
        for gpu in facts["gpus"]:
            _gpu_checks(checks, gpu, limits)
        _xid_checks(checks, facts, limits)

    findings = _pair_findings(facts)
    _pair_checks(checks, findings)
    for finding in findings:
        finding["pair"]["acs_redirect_bridges"] = finding["acs_redirect_bridges"]
        finding["pair"]["p2p_safe"] = finding["p2p_safe"]
        finding["pair"]["unsafe_reasons"] = finding["unsafe_reasons"]

    iommu = facts["iommu"]
    if nvml["available"]:
        if iommu["enabled"] and not iommu["passthrough"] and (facts.get("gpu_count") or 0) > 1:
            checks.add("iommu", "warn", "IOMMU is on (%d groups, not iommu=pt): the kernel may enable ACS "
                       "redirect on PCIe bridges" % iommu["groups"], cause="on")
        else:
            checks.add("iommu", "pass", "IOMMU %s" % (
                "in passthrough mode" if iommu["passthrough"] else "on" if iommu["enabled"] else "off"))
        shm = facts["shm"]
        if shm["size_bytes"] is None:
            checks.add("shm", "skip", shm["error"])
        elif shm["size_bytes"] < limits["shm_min_bytes"] and (facts.get("gpu_count") or 0) > 1:
            checks.add("shm", "warn", "%s is %s, below %s: NCCL needs shared memory between local ranks" % (
                shm["path"], format_bytes_docker(shm["size_bytes"]), format_bytes_docker(limits["shm_min_bytes"])), cause="small")
        else:
            checks.add("shm", "pass", "%s is %d MiB" % (shm["path"], shm["size_bytes"] // 1024 ** 2))

    facts["checks"] = checks.items
    facts["limits"] = limits
    for check in checks.items:
        check.update(repair_action(check, facts, previous if isinstance(previous, dict) else None))
    facts["recommendation"] = recommend(facts, findings, limits)
    facts["summary"] = summarize(checks.items)
    facts["expected_gpu_count"] = expected_gpu_count
    return facts


def describe_check(check):
    where = ""
    if check.get("gpu") is not None:
        where = " gpu%d" % check["gpu"]
    elif check.get("pair"):
        where = " gpu%d-gpu%d" % tuple(check["pair"])
    action = action_of(check)
    escalated = ", escalated" if check.get("escalated") else ""
    return "%s%s: %s (action: %s%s)" % (check["id"], where, check["reason"], action, escalated)


def summarize(checks):
    counts = dict((verdict, 0) for verdict in VERDICTS)
    worst = "pass"
    for check in checks:
        counts[check["verdict"]] += 1
        if SEVERITY[check["verdict"]] > SEVERITY[worst]:
            worst = check["verdict"]
    return {
        "verdict": worst,
        "counts": counts,
        "failing": [describe_check(check) for check in checks if check["verdict"] in ("fail", "error")],
        "action": worst_action(checks),
    }


def load_previous_report(path):
    """The JSON report an earlier run wrote at path, or None (missing, unreadable, not a report)."""
    if not path:
        return None
    try:
        with open(path) as handle:
            report = json.load(handle)
    except (OSError, IOError, ValueError):
        return None
    return report if isinstance(report, dict) and "checks" in report and "summary" in report else None


def run_health(sysfs_root="/sys", procfs_root="/proc", kernel_log="/dev/kmsg", shm_path="/dev/shm",
               expected_gpu_count=None, skip_checks=None, limits=None, previous=None):
    """Collect and evaluate in one call: what the module and the role's timer both run."""
    facts = collect(sysfs_root=sysfs_root, procfs_root=procfs_root, kernel_log=kernel_log, shm_path=shm_path)
    return evaluate(facts, expected_gpu_count=expected_gpu_count, skip_checks=skip_checks, limits=limits,
                    previous=previous)
