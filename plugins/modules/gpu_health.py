#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_health
short_description: Measure NVIDIA GPUs over NVML and judge whether the host can run multi-GPU inference
version_added: 0.1.0
description:
  - Reads every GPU and every GPU pair through NVML (C(pynvml)), the PCIe path of each GPU in sysfs
    (ACS redirect on bridges, IOMMU) and the kernel log (Xid errors), and returns them as the fact
    C(gpu_health).
  - Each check gets a verdict V(pass), V(warn), V(fail), V(skip) (not supported or skipped on request)
    or V(error) (the check itself could not read its input) with a one-line reason. An NVML error on one
    item makes that item V(skip) or V(error); it never crashes the module and never passes silently.
  - Derives the recommendation later roles consume, the NCCL variables this host needs
    (C(NCCL_P2P_DISABLE=1) when peer-to-peer is unsafe on any pair), whether vLLM's custom all-reduce must
    be off, and the container C(/dev/shm) size.
  - Container shm rule, max(GPUs x O(limits.shm_per_gpu_bytes), O(limits.shm_min_bytes)) capped at
    O(limits.shm_max_ram_fraction) of RAM and rounded down to whole GiB. NCCL keeps its shared-memory
    transport buffers in C(/dev/shm) (more of them when P2P is disabled), Docker's 64 MB default starves it.
  - Every V(warn) or V(fail) check carries a repair action from a fixed set, C(action) in each check,
    the host's most disruptive one in C(summary.action), an C(action) label in the textfile. V(pass),
    V(skip) and V(error) get V(none). The actions follow, least to most disruptive.
  - V(none), nothing to repair (informational, or the check could not read its input).
  - V(reconfigure), change the host's configuration as the reason says (driver setting, kernel command line,
    C(/dev/shm), VBIOS); no hardware is touched.
  - V(disable_acs_or_nccl_p2p), GPU peer-to-peer is unsafe on the PCIe path, disable ACS redirect (or IOMMU
    passthrough) or keep C(NCCL_P2P_DISABLE=1).
  - V(check_fabric_manager), check nvidia-fabricmanager and the NVLink state.
  - V(check_cooling_power), the GPU is hot or hardware cuts its clocks, check airflow, fans and power.
  - V(reset_gpu), drain the GPU and reset it (C(nvidia-smi -r)), or reboot.
  - V(reboot), drain the host and reboot it.
  - V(reseat_or_check_riser), a GPU is missing or its PCIe link degraded, reseat it, check the riser and slot.
  - V(rma), a hardware fault the driver's remedies do not clear, contact the vendor for an RMA.
  - "Escalation: a V(reset_gpu) or V(reboot) finding of V(xid) or V(ecc) becomes V(rma) (C(escalated=true))
    when the previous report (the file at O(report_path), read before it is replaced) had the same finding on
    the same GPU (by UUID) or PCI bus and the host rebooted since (another kernel C(boot_id), or a lower
    uptime); it stays V(rma) while the finding persists within that boot. For V(xid) the previous report's
    kernel log counts too (the same fatal Xid on the same bus). Without a previous report or reboot
    evidence nothing escalates."
  - The action of each check follows, by verdict and cause.
  - Check V(nvml_init), fail, V(reconfigure) when libnvidia-ml is missing (LibraryNotFound) or not permitted
    (NoPermission), V(reboot) otherwise (driver not loaded, library/kernel module mismatch, GPU lost).
  - Check V(gpu_count), fail, V(reseat_or_check_riser) for fewer GPUs than expected or none; V(reboot) when a
    GPU is enumerated but cannot be opened.
  - Check V(versions), warn (one model, different VBIOS versions), V(reconfigure).
  - Check V(ecc), fail (volatile uncorrectable errors), V(reset_gpu), escalating to V(rma) after a reboot;
    warn (ECC disabled), V(reconfigure).
  - Check V(row_remap), fail, V(reset_gpu) for a pending remap; V(rma) for a remap failure or exhausted rows.
  - Check V(recovery_action), fail, the driver's request, V(reset_gpu) for GPU_RESET, DRAIN_P2P,
    DRAIN_AND_RESET and BUS_RESET, V(check_fabric_manager) for RECOVER_IMEX_DOMAIN, V(reboot) for
    NODE_REBOOT, SYSTEM_REBOOT and any other.
  - Check V(clocks_event), warn (hardware, thermal or power-brake slowdown), V(check_cooling_power).
  - Check V(temperature), warn, V(check_cooling_power). It warns from the GPU's own slowdown threshold
    (NVML C(NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)) less O(limits.temperature_slowdown_margin_c), and from
    O(limits.temperature_warn_c) only where NVML does not report that threshold. The check's C(threshold_c) and
    C(threshold_source) (V(nvml_slowdown) or V(limit)) and its reason say which was used.
  - Check V(pcie_link), fail (link narrower than its maximum) or warn (PCIe replays), V(reseat_or_check_riser).
  - Check V(nvlink), fail (inactive links), V(check_fabric_manager).
  - Check V(persistence), warn (persistence mode off), V(reconfigure).
  - Check V(compute_mode), fail (PROHIBITED), V(reconfigure).
  - Check V(mig), warn (MIG enabled, not allowed), V(reconfigure).
  - Check V(xid), by Xid code (NVIDIA's Xid catalogue), V(reboot) for 79 (fallen off the bus),
    V(check_fabric_manager) for 74 (NVLink), V(rma) for 64 (row remap failure), V(reset_gpu) for any other
    fatal Xid (fail), V(none) for a non-fatal one (warn); V(reset_gpu) and V(reboot) escalate to V(rma) when
    the same Xid comes back on the same bus after a reboot.
  - Check V(p2p), fail, V(check_fabric_manager) on an NVLink pair, V(disable_acs_or_nccl_p2p) behind a PCIe
    switch; warn (no P2P across the host bridge, NCCL's normal case), V(none).
  - Check V(acs), fail (ACS redirect on the pair's path), V(disable_acs_or_nccl_p2p).
  - Check V(iommu), warn (IOMMU on, not C(iommu=pt)), V(disable_acs_or_nccl_p2p).
  - Check V(shm), warn (C(/dev/shm) below O(limits.shm_min_bytes)), V(reconfigure).
  - Only reads the GPUs. With O(report_path) or O(textfile_path) it writes its two reports itself (one
    host call instead of a directory, a copy and a copy task), each by a temporary file renamed over
    the old one (node_exporter's textfile collector requires that), C(root:root 0644), their missing
    directories created C(root:root 0755).
author:
  - inferops.gpu maintainers (@inferops)
requirements:
  - pynvml (the nvidia-ml-py package, or Debian's python3-pynvml) on the managed host
  - the NVIDIA driver's libnvidia-ml.so.1
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module only reads, so check mode returns the same facts.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: partial
    details: The reports' content diff is returned only with O(report_changes=true).
  facts:
    description: Action returns an C(ansible_facts) dictionary that will update existing host facts.
    support: full
options:
  expected_gpu_count:
    description:
      - GPUs this host must have. A different count fails the V(gpu_count) check.
      - Omit it to only require at least one GPU.
    type: int
  skip_checks:
    description:
      - Checks to skip; they are reported with verdict V(skip).
    type: list
    elements: str
    default: []
    choices: [nvml_init, gpu_count, versions, ecc, row_remap, recovery_action, clocks_event, temperature,
              pcie_link, nvlink, persistence, compute_mode, mig, xid, p2p, acs, iommu, shm]
  fail_on:
    description:
      - Verdicts that fail the task. The failure message names every check with such a verdict.
      - The default never fails, so a play can gather facts from unhealthy hosts too.
    type: list
    elements: str
    default: []
    choices: [fail, warn, error]
  limits:
    description:
      - Thresholds. Every key is optional; omitted keys keep the default shown.
    type: dict
    default: {}
    suboptions:
      xid_window_s:
        description: Seconds of kernel log history in which an Xid counts; V(0) means since boot.
        type: int
        default: 7200
      xid_fatal:
        description: Xid codes that fail the GPU (DCGM and AzNHC lists); other Xids warn.
        type: list
        elements: int
        default: [48, 56, 57, 58, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120, 140]
      xid_ignore:
        description: Xid codes that are application faults and are not reported.
        type: list
        elements: int
        default: [13, 31, 43, 45]
      ecc_uncorrected_volatile_max:
        description: Volatile uncorrectable ECC errors tolerated before V(ecc) fails.
        type: int
        default: 0
      row_remap_uncorrectable_max:
        description: Uncorrectable remapped rows tolerated before V(row_remap) fails (a pending remap always fails).
        type: int
        default: 511
      temperature_warn_c:
        description:
          - GPU temperature in Celsius from which V(temperature) warns, on GPUs whose NVML does not report
            their slowdown threshold.
        type: int
        default: 85
      temperature_slowdown_margin_c:
        description:
          - V(temperature) warns this many degrees Celsius below the GPU's own slowdown threshold, where NVML
            reports it (ahead of O(limits.temperature_warn_c)).
        type: int
        default: 5
      pcie_replay_warn:
        description: PCIe replay count from which V(pcie_link) warns.
        type: int
        default: 1000
      mig_allowed:
        description: Whether MIG-enabled GPUs are expected. When false, MIG mode warns.
        type: bool
        default: false
      shm_min_bytes:
        description: Smallest C(/dev/shm) for multi-GPU work (NCCL's documented 1 GiB).
        type: int
        default: 1073741824
      shm_per_gpu_bytes:
        description: Container C(/dev/shm) recommended per GPU.
        type: int
        default: 17179869184
      shm_max_ram_fraction:
        description: Largest share of the host's RAM the recommended container C(/dev/shm) may take.
        type: float
        default: 0.5
  sysfs_root:
    description: Where sysfs is mounted; the PCIe path and IOMMU groups are read below it.
    type: path
    default: /sys
  procfs_root:
    description: Where procfs is mounted; C(uptime), C(meminfo), C(cmdline) and C(cpuinfo) are read below it.
    type: path
    default: /proc
  kernel_log:
    description:
      - Kernel log to search for Xid errors, either C(/dev/kmsg) or a file of kmsg records or C(dmesg) lines.
      - When it cannot be read (for example inside a container) the V(xid) check is V(skip).
    type: path
    default: /dev/kmsg
  shm_path:
    description: The shared-memory mount whose size is checked.
    type: path
    default: /dev/shm
  report_path:
    description:
      - Write the whole fact here as JSON (sorted keys, indent 2), the bytes the role's timer writes.
      - The report already there is read first, as the previous report that repair-action escalation compares
        with (an unreadable one counts as none).
      - Omit it to write no JSON report (and nothing escalates).
    type: path
  textfile_path:
    description:
      - Write the node_exporter textfile (Prometheus text format) here.
      - Omit it to write no textfile.
    type: path
  report_changes:
    description:
      - Whether a new report content counts as a change (and its diff is returned).
      - Reports are observations that differ at every run on a real host, so by default rewriting them
        leaves C(changed=false); a directory created for them, or a wrong owner or mode on a directory,
        always counts.
    type: bool
    default: false
seealso:
  - name: NCCL troubleshooting
    description: ACS, IOMMU and shared memory problems NCCL meets on PCIe hosts.
    link: https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/troubleshooting.html
  - name: NVIDIA Xid catalogue
    description: What each Xid means and how to resolve it.
    link: https://docs.nvidia.com/deploy/xid-errors/index.html
notes:
  - Reading the ACS capability needs the PCI extended configuration space, which only root can read.
    As another user the V(acs) check is V(skip).
  - NVML numbers GPUs in PCI bus order. CUDA does the same only with C(CUDA_DEVICE_ORDER=PCI_BUS_ID);
    use the UUIDs or bus ids to match them.
"""

EXAMPLES = r"""
---
- name: Check the GPUs of an 8-GPU host and stop on any failure
  inferops.gpu.gpu_health:
    expected_gpu_count: 8
    fail_on: [fail, error]

- name: Gather GPU facts without failing, tolerating a known noisy Xid
  inferops.gpu.gpu_health:
    limits:
      xid_ignore: [13, 31, 43, 45, 63]
  register: health

- name: Show what NCCL needs on this host
  ansible.builtin.debug:
    var: ansible_facts['gpu_health']['recommendation']['nccl_env']
"""

RETURN = r"""
---
summary:
  description:
    - The host's verdict (the worst check verdict, V(skip) aside), counts, the failing checks (each line ends
      with its repair action), and C(action), the most disruptive repair action of all checks.
  returned: always
  type: dict
  sample:
    verdict: fail
    counts: {pass: 120, warn: 0, fail: 2, skip: 8, error: 0}
    failing: ["ecc gpu5: 3 volatile uncorrectable ECC errors (limit 0): drain and reset the GPU (action: reset_gpu)"]
    action: reset_gpu
ansible_facts:
  description: Facts set on the host.
  returned: always
  type: dict
  contains:
    gpu_health:
      description: Everything measured, every verdict and the recommendation. Later roles read this.
      returned: always
      type: dict
      contains:
        summary:
          description: Same as the top-level RV(summary).
          type: dict
          returned: always
        nvml:
          description: Whether NVML initialised; C(error) names the NVML error (for example C(DriverNotLoaded)).
          type: dict
          returned: always
          sample: {available: false, error: DriverNotLoaded, message: "Driver Not Loaded"}
        driver:
          description: Driver version, CUDA driver version (C(12.4)) and NVML version.
          type: dict
          returned: when NVML initialised
          sample: {version: 550.127.05, cuda_version: "12.4", nvml_version: 12.550.127.05, errors: {}}
        gpu_count:
          description: GPUs NVML enumerates; null when NVML did not initialise.
          type: int
          returned: always
        expected_gpu_count:
          description: The O(expected_gpu_count) the checks used.
          type: int
          returned: always
        gpus:
          description:
            - One entry per GPU index. Keys C(index), C(uuid), C(name), C(pci_bus_id), C(vbios_version),
              C(memory) (C(total_bytes), C(used_bytes), C(free_bytes)), C(temperature_c),
              C(temperature_slowdown_c), C(power_usage_w), C(power_limit_w), C(persistence_mode),
              C(mig_mode) (C(current), C(pending)), C(compute_mode), C(virtualization_mode),
              C(ecc) (C(mode), C(volatile_corrected), C(volatile_uncorrected), C(aggregate_corrected),
              C(aggregate_uncorrected)), C(row_remap) (C(correctable), C(uncorrectable), C(pending),
              C(failure)), C(recovery_action), C(clocks_event_reasons) (C(mask), C(active)), C(pcie)
              (C(gen_current), C(gen_max), C(width_current), C(width_max), C(replay_counter)),
              C(nvlink) (C(active), C(inactive), C(total)), C(processes) (C(pid), C(used_memory_bytes)).
            - An item NVML could not read is null and C(errors) maps its key to the NVML error name.
          type: list
          elements: dict
          returned: always
        pairs:
          description:
            - One entry per GPU pair. C(gpus) (two indexes), C(p2p) (C(read), C(write), C(nvlink), C(pci)
              NVML P2P status such as C(OK) or C(CHIPSET_NOT_SUPPORTED)), C(topology) (common ancestor,
              C(INTERNAL), C(PIX), C(PXB), C(PHB), C(NODE) or C(SYS)), C(nvlink) (bool),
              C(acs_redirect_bridges), C(p2p_safe) and C(unsafe_reasons).
          type: list
          elements: dict
          returned: always
          sample:
            - gpus: [2, 3]
              p2p: {read: OK, write: OK, nvlink: NOT_SUPPORTED, pci: OK}
              topology: PIX
              nvlink: false
              acs_redirect_bridges: ["0000:03:10.0"]
              p2p_safe: false
              unsafe_reasons: ["ACS redirect on bridge 0000:03:10.0"]
        pci:
          description: C(gpu_paths) (per GPU index, its sysfs C(bdf) and upstream C(bridges)) and C(bridges)
            (per bridge, C(acs_control), C(acs_flags), C(acs_redirect), C(error)).
          type: dict
          returned: always
        iommu:
          description: C(enabled), C(groups), C(passthrough) (C(iommu=pt)), C(cmdline) IOMMU arguments, C(hypervisor).
          type: dict
          returned: always
        xids:
          description: C(available), C(error), and C(events), each with C(pci), C(xid), C(timestamp_s), C(age_s), C(message).
          type: dict
          returned: always
        shm:
          description: C(path), C(size_bytes), C(free_bytes) and C(error) of the host's shared-memory mount.
          type: dict
          returned: always
        host:
          description: C(uptime_s), C(boot_id) (the kernel's, new at every boot), C(memory_total_bytes) and
            C(nvidia_module_loaded) (C(/proc/driver/nvidia/version) exists).
          type: dict
          returned: always
        checks:
          description:
            - Every check, with C(id), C(verdict), C(reason), C(gpu) (index or null) and C(pair) (two indexes or null).
            - C(cause), a short key of what was found (for example V(pending), an Xid code, an NVML error), null when
              it passed; C(action), the repair action, C(action_reason), what to do or why it escalated, and
              C(escalated) (bool).
            - V(xid) checks add C(xid) and C(pci) (the kernel's bus id); V(temperature) checks add C(threshold_c)
              and C(threshold_source).
          type: list
          elements: dict
          returned: always
          sample:
            - {id: acs, verdict: fail, gpu: null, pair: [2, 3], cause: redirect, action: disable_acs_or_nccl_p2p,
               escalated: false, action_reason: "GPU peer-to-peer is unsafe on this PCIe path ...",
               reason: "GPU2-GPU3: ACS redirect on bridge 0000:03:10.0 sends P2P through the root complex ..."}
        recommendation:
          description:
            - C(nccl_env), the NCCL variables this host needs, and C(reasons), why, per variable.
            - C(vllm_disable_custom_all_reduce) and C(vllm_reason), whether 2-GPU vLLM launches must turn
              custom all-reduce off (it bypasses NCCL, so C(NCCL_P2P_DISABLE) does not cover it).
            - C(container_shm_bytes), C(container_shm_size) (for C(--shm-size)) and C(shm_rule).
          type: dict
          returned: always
          sample:
            nccl_env: {NCCL_P2P_DISABLE: "1"}
            reasons: {NCCL_P2P_DISABLE: "P2P unsafe on GPU2-GPU3 (ACS redirect on bridge 0000:03:10.0)"}
            vllm_disable_custom_all_reduce: true
            container_shm_bytes: 68719476736
            container_shm_size: 64g
        limits:
          description: The thresholds in force, defaults merged with O(limits).
          type: dict
          returned: always
"""

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_bytes, to_text

from ansible_collections.inferops.gpu.plugins.module_utils import gpu_inventory
from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import (
    CHECK_IDS,
    DEFAULT_LIMITS,
    load_previous_report,
    run_health,
)
from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_render import (
    checks_matching,
    render_prometheus,
    render_report,
)


def _limits_spec():
    spec = {}
    for key, value in DEFAULT_LIMITS.items():
        if isinstance(value, bool):
            spec[key] = {"type": "bool"}
        elif isinstance(value, list):
            spec[key] = {"type": "list", "elements": "int"}
        elif isinstance(value, float):
            spec[key] = {"type": "float"}
        else:
            spec[key] = {"type": "int"}
        spec[key]["default"] = value
    return spec


def _attrs(path, mode):
    # set_fs_attributes_if_different wants every key; SELinux context and attributes left as they are.
    return {"path": path, "owner": "root", "group": "root", "mode": mode,
            "secontext": [None, None, None, None], "attributes": None}


def _ensure_directory(module, directory):
    """Create directory (and missing parents) root:root 0755; True when anything changed."""
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    changed = bool(missing)
    for path in reversed(missing):
        if not module.check_mode:
            os.mkdir(path, 0o755)
        changed = module.set_fs_attributes_if_different(_attrs(path, "0755"), changed) or changed
    if not missing:
        changed = module.set_fs_attributes_if_different(_attrs(directory, "0755"), False)
    return changed


def _write_report(module, path, text):
    """Atomically write text to path root:root 0644. Returns (directory_changed, file_changed, diff)."""
    data = to_bytes(text)
    directory_changed = _ensure_directory(module, os.path.dirname(path))
    before = None
    if os.path.isfile(path):
        with open(path, "rb") as handle:
            before = handle.read()
    file_changed = before != data
    if file_changed and not module.check_mode:
        fd, tmp = tempfile.mkstemp(prefix=".gpu_health.", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            module.atomic_move(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    file_args = _attrs(path, "0644")
    if before is not None or not module.check_mode:
        file_changed = module.set_fs_attributes_if_different(file_args, file_changed) or file_changed
    diff = {"before_header": path, "after_header": path,
            "before": to_text(before) if before is not None else "", "after": text}
    return directory_changed, file_changed, diff


def main():
    module = AnsibleModule(
        argument_spec={
            "expected_gpu_count": {"type": "int"},
            "skip_checks": {"type": "list", "elements": "str", "default": [], "choices": list(CHECK_IDS)},
            "fail_on": {"type": "list", "elements": "str", "default": [], "choices": ["fail", "warn", "error"]},
            "limits": {"type": "dict", "default": {}, "options": _limits_spec()},
            "sysfs_root": {"type": "path", "default": "/sys"},
            "procfs_root": {"type": "path", "default": "/proc"},
            "kernel_log": {"type": "path", "default": "/dev/kmsg"},
            "shm_path": {"type": "path", "default": "/dev/shm"},
            "report_path": {"type": "path"},
            "textfile_path": {"type": "path"},
            "report_changes": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    if not gpu_inventory.HAS_PYNVML:
        module.fail_json(
            msg=missing_required_lib("pynvml (nvidia-ml-py, or python3-pynvml on Debian)"),
            exception=gpu_inventory.PYNVML_IMPORT_ERROR,
        )
    if params["expected_gpu_count"] is not None and params["expected_gpu_count"] < 0:
        module.fail_json(msg="expected_gpu_count must be 0 or more, got %d" % params["expected_gpu_count"])
    negative = sorted(key for key, value in (params["limits"] or {}).items()
                      if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0)
    if negative:
        module.fail_json(msg="limits must not be negative: %s" % ", ".join(negative))

    facts = run_health(
        sysfs_root=params["sysfs_root"],
        procfs_root=params["procfs_root"],
        kernel_log=params["kernel_log"],
        shm_path=params["shm_path"],
        expected_gpu_count=params["expected_gpu_count"],
        skip_checks=params["skip_checks"],
        limits=params["limits"],
        # The report this module wrote last time, before it is replaced: escalation's evidence.
        previous=load_previous_report(params["report_path"]),
    )
    result = {"changed": False, "summary": facts["summary"], "ansible_facts": {"gpu_health": facts}}
    # The reports are written before fail_on can fail the task, so an unhealthy host gets them too.
    # Through JSON first: the shape the filters and the timer's runner see (lists, string keys).
    plain = json.loads(json.dumps(facts))
    diffs = []
    for path, render in ((params["report_path"], render_report), (params["textfile_path"], render_prometheus)):
        if not path:
            continue
        directory_changed, file_changed, diff = _write_report(module, path, render(plain))
        result["changed"] |= directory_changed or (params["report_changes"] and file_changed)
        if params["report_changes"] and file_changed:
            diffs.append(diff)
    if diffs and module._diff:
        result["diff"] = diffs
    failing = checks_matching(facts, params["fail_on"])
    if failing:
        module.fail_json(
            msg="GPU health: %d check(s) with verdict %s: %s" % (
                len(failing), "/".join(params["fail_on"]), "; ".join(failing)),
            **result
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
