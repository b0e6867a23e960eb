# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read what a GPU host is: NVML through pynvml, the PCIe path in sysfs, the kernel log.

Pure Python with no ansible import, so the gpu_health role can copy this file onto a host and
run it from a systemd timer without Ansible. Every item NVML cannot answer is recorded with the
NVML error's name instead of a value: nothing raises out of collect(), nothing passes silently.
"""

from __future__ import annotations

import os
import re
import struct
import traceback

try:
    import pynvml

    HAS_PYNVML = True
    PYNVML_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised by the module's missing_required_lib path
    pynvml = None
    HAS_PYNVML = False
    PYNVML_IMPORT_ERROR = traceback.format_exc()

P2P_STATUS = {
    0: "OK",
    1: "CHIPSET_NOT_SUPPORTED",
    2: "GPU_NOT_SUPPORTED",
    3: "IOH_TOPOLOGY_NOT_SUPPORTED",
    4: "DISABLED_BY_REGKEY",
    5: "NOT_SUPPORTED",
    6: "UNKNOWN",
}
# pynvml's NVML_P2P_CAPS_INDEX_READ is the tuple (0,) (stray comma), so literals are used.
P2P_CAPS = {"read": 0, "write": 1, "nvlink": 2, "pci": 4}
TOPOLOGY_LEVEL = {0: "INTERNAL", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}
COMPUTE_MODE = {0: "DEFAULT", 1: "EXCLUSIVE_THREAD", 2: "PROHIBITED", 3: "EXCLUSIVE_PROCESS"}
VIRTUALIZATION_MODE = {0: "NONE", 1: "PASSTHROUGH", 2: "VGPU", 3: "HOST_VGPU", 4: "HOST_VSGA"}
CLOCKS_EVENT_REASONS = {
    0x1: "GpuIdle",
    0x2: "ApplicationsClocksSetting",
    0x4: "SwPowerCap",
    0x8: "HwSlowdown",
    0x10: "SyncBoost",
    0x20: "SwThermalSlowdown",
    0x40: "HwThermalSlowdown",
    0x80: "HwPowerBrakeSlowdown",
    0x100: "DisplayClockSetting",
}
FIELD_RECOVERY_ACTION = 230
NVLINK_MAX_LINKS = 18

# PCIe ACS extended capability (pciutils lib/header.h).
ACS_CAP_ID = 0x000D
ACS_CTRL_OFFSET = 6
ACS_BITS = {
    0x01: "SrcValid",
    0x02: "TransBlk",
    0x04: "ReqRedir",
    0x08: "CmpltRedir",
    0x10: "UpstreamFwd",
    0x20: "EgressCtrl",
    0x40: "DirectTrans",
}
# Bits that send peer-to-peer requests up to the root complex: the cause of incident 1.
ACS_REDIRECT_MASK = 0x04 | 0x08 | 0x20

BDF_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
XID_RE = re.compile(r"NVRM: Xid \(PCI:([0-9a-fA-F:.]+)\): (\d+)")
DMESG_TS_RE = re.compile(r"^\[\s*(\d+\.\d+)\]\s*(.*)$")


def nvml_error_name(exc):
    """NVMLError_NotSupported -> 'NotSupported'; anything else -> its class name."""
    name = type(exc).__name__
    return name[len("NVMLError_"):] if name.startswith("NVMLError_") else name


def _read(call, *args):
    """Call one NVML function: (value, None) or (None, error name). Never raises."""
    try:
        return call(*args), None
    except Exception as exc:  # NVMLError subclasses, NVMLLibraryMismatchError, ctypes errors
        return None, nvml_error_name(exc)


class _Item:
    """Collects the values of one GPU (or the system) and the errors met on the way."""

    def __init__(self):
        self.data = {}
        self.errors = {}

    def read(self, key, call, *args, convert=None):
        value, error = _read(call, *args)
        if error is not None:
            self.data[key] = None
            self.errors[key] = error
            return None
        if convert is not None:
            value = convert(value)
        self.data[key] = value
        return value


def sysfs_bdf(nvml_bus_id):
    """NVML '00000000:17:00.0' -> sysfs '0000:17:00.0'."""
    return nvml_bus_id[-12:].lower()


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _cuda_version(raw):
    return "%d.%d" % (raw // 1000, (raw % 1000) // 10)


def _temperature(handle):
    # nvmlDeviceGetTemperature is deprecated in newer bindings; older ones lack the V form.
    if hasattr(pynvml, "nvmlDeviceGetTemperatureV"):
        value, error = _read(pynvml.nvmlDeviceGetTemperatureV, handle, pynvml.NVML_TEMPERATURE_GPU)
        if error is None:
            return value
    return pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)


def _clocks_event_reasons(handle):
    if hasattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons"):
        return pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
    return pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)


def _recovery_action(handle):
    values = pynvml.nvmlDeviceGetFieldValues(handle, [FIELD_RECOVERY_ACTION])
    field = values[0]
    if field.nvmlReturn != 0:
        raise pynvml.NVMLError(field.nvmlReturn)
    return int(field.value.uiVal)


def _nvlink(handle):
    """Active and inactive NVLink counts; NotSupported on PCIe-only GPUs."""
    active = inactive = 0
    for link in range(NVLINK_MAX_LINKS):
        try:
            state = pynvml.nvmlDeviceGetNvLinkState(handle, link)
        except pynvml.NVMLError as exc:
            if link == 0:
                raise
            if nvml_error_name(exc) in ("InvalidArgument", "NotSupported"):
                break  # past the GPU's last link
            raise
        if state:
            active += 1
        else:
            inactive += 1
    return {"active": active, "inactive": inactive, "total": active + inactive}


def _processes(handle):
    return [
        {"pid": proc.pid, "used_memory_bytes": proc.usedGpuMemory}
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    ]


def _gpu(index, handle):
    gpu = _Item()
    gpu.data["index"] = index
    gpu.read("uuid", pynvml.nvmlDeviceGetUUID, handle, convert=_text)
    gpu.read("name", pynvml.nvmlDeviceGetName, handle, convert=_text)
    pci = gpu.read("pci", pynvml.nvmlDeviceGetPciInfo, handle)
    del gpu.data["pci"]
    gpu.data["pci_bus_id"] = _text(pci.busId) if pci is not None else None
    if pci is None:
        gpu.errors["pci_bus_id"] = gpu.errors.pop("pci")
    gpu.read("vbios_version", pynvml.nvmlDeviceGetVbiosVersion, handle, convert=_text)
    memory = gpu.read("memory", pynvml.nvmlDeviceGetMemoryInfo, handle)
    gpu.data["memory"] = (
        {"total_bytes": memory.total, "used_bytes": memory.used, "free_bytes": memory.free}
        if memory is not None else None
    )
    gpu.read("temperature_c", _temperature, handle)
    gpu.read(
        "temperature_slowdown_c", pynvml.nvmlDeviceGetTemperatureThreshold, handle,
        pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN,
    )
    gpu.read("power_usage_w", pynvml.nvmlDeviceGetPowerUsage, handle, convert=lambda mw: round(mw / 1000.0, 1))
    gpu.read("power_limit_w", pynvml.nvmlDeviceGetEnforcedPowerLimit, handle, convert=lambda mw: round(mw / 1000.0, 1))
    gpu.read("persistence_mode", pynvml.nvmlDeviceGetPersistenceMode, handle, convert=bool)
    gpu.read("mig_mode", pynvml.nvmlDeviceGetMigMode, handle, convert=lambda m: {"current": bool(m[0]), "pending": bool(m[1])})
    gpu.read("compute_mode", pynvml.nvmlDeviceGetComputeMode, handle, convert=lambda m: COMPUTE_MODE.get(m, str(m)))
    gpu.read("virtualization_mode", pynvml.nvmlDeviceGetVirtualizationMode, handle,
             convert=lambda m: VIRTUALIZATION_MODE.get(m, str(m)))

    ecc = {}
    mode, error = _read(pynvml.nvmlDeviceGetEccMode, handle)
    ecc["mode"] = {"current": bool(mode[0]), "pending": bool(mode[1])} if error is None else None
    if error:
        gpu.errors["ecc.mode"] = error
    for counter_name, counter in (("volatile", pynvml.NVML_VOLATILE_ECC), ("aggregate", pynvml.NVML_AGGREGATE_ECC)):
        for kind_name, kind in (("corrected", pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED),
                                ("uncorrected", pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED)):
            key = "%s_%s" % (counter_name, kind_name)
            value, error = _read(pynvml.nvmlDeviceGetTotalEccErrors, handle, kind, counter)
            ecc[key] = value
            if error:
                gpu.errors["ecc." + key] = error
    gpu.data["ecc"] = ecc

    gpu.read("row_remap", pynvml.nvmlDeviceGetRemappedRows, handle, convert=lambda r: {
        "correctable": r[0], "uncorrectable": r[1], "pending": bool(r[2]), "failure": bool(r[3])})
    gpu.read("recovery_action", _recovery_action, handle)
    gpu.read("clocks_event_reasons", _clocks_event_reasons, handle, convert=lambda mask: {
        "mask": mask, "active": [name for bit, name in sorted(CLOCKS_EVENT_REASONS.items()) if mask & bit]})

    pcie = {}
    for key, call in (("gen_current", pynvml.nvmlDeviceGetCurrPcieLinkGeneration),
                      ("gen_max", pynvml.nvmlDeviceGetMaxPcieLinkGeneration),
                      ("width_current", pynvml.nvmlDeviceGetCurrPcieLinkWidth),
                      ("width_max", pynvml.nvmlDeviceGetMaxPcieLinkWidth),
                      ("replay_counter", pynvml.nvmlDeviceGetPcieReplayCounter)):
        value, error = _read(call, handle)
        pcie[key] = value
        if error:
            gpu.errors["pcie." + key] = error
    gpu.data["pcie"] = pcie
    gpu.read("nvlink", _nvlink, handle)
    gpu.read("processes", _processes, handle)
    gpu.data["errors"] = gpu.errors
    return gpu.data


def _pairs(handles, gpus):
    pairs = []
    for a in range(len(handles)):
        for b in range(a + 1, len(handles)):
            pair = {"gpus": [gpus[a]["index"], gpus[b]["index"]], "p2p": {}, "errors": {}}
            for name, index in P2P_CAPS.items():
                status, error = _read(pynvml.nvmlDeviceGetP2PStatus, handles[a], handles[b], index)
                pair["p2p"][name] = P2P_STATUS.get(status, str(status)) if error is None else None
                if error:
                    pair["errors"]["p2p." + name] = error
            level, error = _read(pynvml.nvmlDeviceGetTopologyCommonAncestor, handles[a], handles[b])
            pair["topology"] = TOPOLOGY_LEVEL.get(level, str(level)) if error is None else None
            if error:
                pair["errors"]["topology"] = error
            pair["nvlink"] = pair["p2p"]["nvlink"] == "OK"
            pairs.append(pair)
    return pairs


def collect_nvml():
    """NVML inventory: {'nvml': {...}, 'driver': {...}, 'gpus': [...], 'pairs': [...]}."""
    result = {"nvml": {"available": False, "error": None, "message": None},
              "driver": {}, "gpu_count": None, "gpus": [], "pairs": []}
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        result["nvml"]["error"] = nvml_error_name(exc)
        result["nvml"]["message"] = str(exc)
        return result
    try:
        result["nvml"]["available"] = True
        system = _Item()
        system.read("version", pynvml.nvmlSystemGetDriverVersion, convert=_text)
        system.read("cuda_version", pynvml.nvmlSystemGetCudaDriverVersion, convert=_cuda_version)
        system.read("nvml_version", pynvml.nvmlSystemGetNVMLVersion, convert=_text)
        system.data["errors"] = system.errors
        result["driver"] = system.data
        count, error = _read(pynvml.nvmlDeviceGetCount)
        if error:
            result["nvml"]["error"] = error
            result["nvml"]["message"] = "nvmlDeviceGetCount failed: %s" % error
            return result
        result["gpu_count"] = count
        handles = []
        for index in range(count):
            handle, error = _read(pynvml.nvmlDeviceGetHandleByIndex, index)
            if error:
                # A GPU NVML counts but cannot open (lost, reset required) is a finding of its own.
                result["gpus"].append({"index": index, "errors": {"handle": error}})
                continue
            handles.append(handle)
            result["gpus"].append(_gpu(index, handle))
        opened = [gpu for gpu in result["gpus"] if "handle" not in gpu["errors"]]
        result["pairs"] = _pairs(handles, opened)
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # a shutdown error must not hide what was read
            pass
    return result


# --- PCIe path: ACS and IOMMU -------------------------------------------------------------------

def upstream_bridges(sysfs_root, bdf):
    """The bridges from the root port down to the GPU (the GPU excluded), or None if unknown."""
    entry = os.path.join(sysfs_root, "bus", "pci", "devices", bdf)
    if not os.path.exists(entry):
        return None
    parts = os.path.realpath(entry).split(os.sep)
    return [part for part in parts[:-1] if BDF_RE.match(part)]


def acs_control(sysfs_root, bdf):
    """(ACS control word or None when the bridge has no ACS capability, error or None)."""
    path = os.path.join(sysfs_root, "bus", "pci", "devices", bdf, "config")
    try:
        with open(path, "rb") as handle:
            config = handle.read(4096)
    except OSError as exc:
        return None, "cannot read %s: %s" % (path, exc.strerror)
    if len(config) <= 0x100:
        return None, "extended config space of %s is not readable (run as root)" % bdf
    offset = 0x100
    seen = set()
    while 0x100 <= offset <= len(config) - 8 and offset not in seen:
        seen.add(offset)
        header = struct.unpack_from("<I", config, offset)[0]
        if header in (0, 0xFFFFFFFF):
            break
        if header & 0xFFFF == ACS_CAP_ID:
            return struct.unpack_from("<H", config, offset + ACS_CTRL_OFFSET)[0], None
        offset = (header >> 20) & 0xFFC
    return None, None


def describe_acs(control):
    return [name for bit, name in sorted(ACS_BITS.items()) if control & bit]


def collect_pci(sysfs_root, gpus):
    """Bridges above each GPU and their ACS state."""
    paths = {}
    bridges = {}
    for gpu in gpus:
        bus_id = gpu.get("pci_bus_id")
        if not bus_id:
            continue
        bdf = sysfs_bdf(bus_id)
        chain = upstream_bridges(sysfs_root, bdf)
        paths[gpu["index"]] = {"bdf": bdf, "bridges": chain}
        for bridge in chain or []:
            if bridge in bridges:
                continue
            control, error = acs_control(sysfs_root, bridge)
            bridges[bridge] = {
                "acs_control": control,
                "acs_flags": describe_acs(control) if control is not None else [],
                "acs_redirect": bool(control & ACS_REDIRECT_MASK) if control is not None else None,
                "error": error,
            }
    return {"gpu_paths": paths, "bridges": bridges}


def _read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def collect_iommu(sysfs_root, procfs_root):
    groups_dir = os.path.join(sysfs_root, "kernel", "iommu_groups")
    try:
        groups = len(os.listdir(groups_dir))
    except OSError:
        groups = 0
    cmdline = (_read_text(os.path.join(procfs_root, "cmdline")) or "").split()
    cpuinfo = _read_text(os.path.join(procfs_root, "cpuinfo")) or ""
    return {
        "enabled": groups > 0,
        "groups": groups,
        "passthrough": "iommu=pt" in cmdline,
        "cmdline": [arg for arg in cmdline if "iommu" in arg],
        "hypervisor": bool(re.search(r"^flags\s*:.*\bhypervisor\b", cpuinfo, re.M)),
    }


# --- kernel log, memory, shm --------------------------------------------------------------------

def _kernel_log_records(path):
    """Messages with their timestamp in seconds since boot (None when the line has none)."""
    records = []
    if path.startswith("/dev/"):
        # /dev/kmsg: one record per read(); O_NONBLOCK ends the loop at the newest record.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            while True:
                try:
                    chunk = os.read(fd, 8192)
                except BlockingIOError:
                    break
                except BrokenPipeError:  # a record was overwritten while we read: skip it
                    continue
                if not chunk:
                    break
                records.append(chunk.decode("utf-8", "replace").rstrip("\n"))
        finally:
            os.close(fd)
    else:
        with open(path, errors="replace") as handle:
            records = handle.read().splitlines()
    parsed = []
    for record in records:
        head, sep, message = record.partition(";")
        fields = head.split(",")
        if sep and len(fields) >= 3 and fields[2].isdigit():
            parsed.append((int(fields[2]) / 1e6, message.split("\n")[0]))
            continue
        match = DMESG_TS_RE.match(record)
        parsed.append((float(match.group(1)), match.group(2)) if match else (None, record))
    return parsed


def collect_xids(kernel_log, uptime_s):
    """Xid events from the kernel log of this boot."""
    try:
        records = _kernel_log_records(kernel_log)
    except OSError as exc:
        return {"available": False, "error": "cannot read %s: %s" % (kernel_log, exc.strerror), "events": []}
    events = []
    for timestamp, message in records:
        match = XID_RE.search(message)
        if not match:
            continue
        events.append({
            "pci": match.group(1).lower(),
            "xid": int(match.group(2)),
            "timestamp_s": timestamp,
            "age_s": round(uptime_s - timestamp, 1) if timestamp is not None and uptime_s is not None else None,
            "message": message.strip(),
        })
    return {"available": True, "error": None, "events": events}


def collect_host(procfs_root, shm_path):
    uptime = _read_text(os.path.join(procfs_root, "uptime"))
    meminfo = _read_text(os.path.join(procfs_root, "meminfo")) or ""
    match = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
    shm = {"path": shm_path, "size_bytes": None, "free_bytes": None, "error": None}
    try:
        stat = os.statvfs(shm_path)
        shm["size_bytes"] = stat.f_blocks * stat.f_frsize
        shm["free_bytes"] = stat.f_bavail * stat.f_frsize
    except OSError as exc:
        shm["error"] = "cannot stat %s: %s" % (shm_path, exc.strerror)
    return {
        # The loaded kernel module publishes its version here; NVML's own error does not always
        # say that it is missing (libnvidia-ml1 in a container answers Unknown, not DriverNotLoaded).
        "nvidia_module_loaded": os.path.exists(os.path.join(procfs_root, "driver", "nvidia", "version")),
        "uptime_s": float(uptime.split()[0]) if uptime else None,
        # Changes at every boot: the repair-action escalation's evidence of a reboot.
        "boot_id": (_read_text(os.path.join(procfs_root, "sys", "kernel", "random", "boot_id")) or "").strip() or None,
        "memory_total_bytes": int(match.group(1)) * 1024 if match else None,
        "shm": shm,
    }


def collect(sysfs_root="/sys", procfs_root="/proc", kernel_log="/dev/kmsg", shm_path="/dev/shm"):
    """Everything the health checks read, as plain data."""
    facts = collect_nvml()
    host = collect_host(procfs_root, shm_path)
    facts["host"] = {"uptime_s": host["uptime_s"], "boot_id": host["boot_id"],
                     "memory_total_bytes": host["memory_total_bytes"],
                     "nvidia_module_loaded": host["nvidia_module_loaded"]}
    facts["shm"] = host["shm"]
    facts["pci"] = collect_pci(sysfs_root, facts["gpus"])
    facts["iommu"] = collect_iommu(sysfs_root, procfs_root)
    facts["xids"] = collect_xids(kernel_log, host["uptime_s"])
    return facts
