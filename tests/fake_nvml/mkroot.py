#!/usr/bin/env python
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write the fake filesystem root a topology brings besides NVML.

    python3 mkroot.py <topology.conf> <outdir>

writes, under <outdir>:
  sys/devices/pciDDDD:BB/<root port>/<switch up>/<switch down>/<gpu>/   nested like real sysfs, each
      device with a 4096-byte binary `config` (header, PCIe capability, extended capabilities with
      ACS when configured), `vendor`, `device`, `class`, `numa_node`, link width files
  sys/bus/pci/devices/<bdf>            relative symlinks into sys/devices (os.path.realpath works)
  sys/kernel/iommu_groups/<n>/devices/<bdf>   when `pci.iommu on`
  proc/cmdline, proc/uptime, proc/meminfo, proc/cpuinfo, proc/sys/kernel/random/boot_id
  kmsg                                  /dev/kmsg records `prio,seq,timestamp_usec,-;message`

Stdlib only; runs on Python 3.6+ (Debian 12/13's python3 included). The same key resolution rules
as the C library (tests/fake_nvml/fake_nvml.c) are implemented in Topology below; see README.md.
"""

from __future__ import print_function

import os
import re
import shutil
import struct
import sys

BDF_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
ROOT_BUS_RE = re.compile(r"^pci[0-9a-f]{4}:[0-9a-f]{2}$")
RANGE_RE = re.compile(r"^(\d+)-(\d+)$")

# PCIe device kinds: (vendor, device, class code, header type, PCIe port type)
KINDS = {
    "root_port": (0x8086, 0x352A, 0x060400, 1, 0x4),    # Intel Xeon (Sapphire Rapids) root port
    "switch_up": (0x1000, 0xC030, 0x060400, 1, 0x5),    # Broadcom PEX89000 upstream port
    "switch_down": (0x1000, 0xC030, 0x060400, 1, 0x6),  # Broadcom PEX89000 downstream port
    "gpu": (0x10DE, 0x0000, 0x030200, 0, 0x0),          # NVIDIA 3D controller (device from NVML)
    "endpoint": (0x15B3, 0x1021, 0x020700, 0, 0x0),     # e.g. a ConnectX-7 (override vendor/device/class)
}

DEFAULT_BOOT_LOG = [
    # (prio, age in seconds before "now", message)
    (5, None, "Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0) #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1"),
    (6, None, "Command line: {cmdline}"),
    (6, None, "pci 0000:00:00.0: [8086:09a2] type 00 class 0x088000"),
]


class TopologyError(Exception):
    pass


def _score(component):
    if component == "*":
        return 0
    if RANGE_RE.match(component):
        return 1
    return 2


def _component_matches(pattern, component):
    if pattern == "*" or pattern == component:
        return True
    match = RANGE_RE.match(pattern)
    if match and component.isdigit():
        return int(match.group(1)) <= int(component) <= int(match.group(2))
    return False


class Topology(object):
    """A topology file: `key value` lines, includes, wildcard/range keys (as the C library reads it)."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.entries = []  # (components, score, value, order)
        self.description = None
        self._load(self.path, 0)

    def _load(self, path, depth):
        if depth > 8:
            raise TopologyError("%s: includes nested too deeply" % path)
        real = os.path.realpath(path)
        with open(real) as handle:
            lines = handle.read().splitlines()
        for line in lines:
            text = line.strip()
            if text.startswith("#"):
                if self.description is None and depth == 0:
                    self.description = text.lstrip("#").strip()
                continue
            if not text:
                continue
            parts = text.split(None, 1)
            key, value = parts[0], (parts[1].strip() if len(parts) > 1 else "")
            if key == "include":
                self._load(os.path.join(os.path.dirname(real), value), depth + 1)
                continue
            components = key.split(".")
            self.entries.append((components, sum(_score(c) for c in components), value, len(self.entries)))

    def lookup(self, key):
        """The winning raw value for a concrete key (most specific, then latest), or None."""
        components = key.split(".")
        best = None
        for pattern, score, value, order in self.entries:
            if len(pattern) != len(components):
                continue
            if all(_component_matches(p, c) for p, c in zip(pattern, components)):
                if best is None or score >= best[0]:
                    best = (score, value)
        return None if best is None else best[1]

    def get(self, key, default=None):
        value = self.lookup(key)
        return default if value is None else value

    def gpu(self, index, item, default=None):
        value = self.lookup("gpu.%d.%s" % (index, item))
        if value is None:
            return default
        return value.replace("{i}", str(index))

    def literal_keys(self, prefix):
        """Keys written literally (no wildcard) that start with prefix, in file order."""
        seen = []
        for pattern, _score_, _value, _order in self.entries:
            key = ".".join(pattern)
            if key.startswith(prefix) and key not in seen:
                seen.append(key)
        return seen

    def gpu_count(self):
        value = self.lookup("gpu.count")
        if value is None or value.lower().startswith("error:"):
            return 0
        return int(value, 0)


def parse_error(value):
    """'error:NAME' -> 'NAME', else None."""
    if value is not None and value.lower().startswith("error:"):
        return value[6:]
    return None


def parse_size(text):
    """'2TiB', '512GiB', '81559MiB', '1234' -> bytes."""
    match = re.match(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|TiB)?\s*$", text)
    if not match:
        raise TopologyError("not a size: %r" % text)
    factor = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[match.group(2)]
    return int(match.group(1)) * factor


def sysfs_bdf(nvml_bus_id):
    """NVML '00000000:17:00.0' -> sysfs '0000:17:00.0'."""
    return nvml_bus_id[-12:].lower()


# --- PCI devices --------------------------------------------------------------------------------

class PciDevice(object):
    def __init__(self, bdf, kind, attrs):
        if kind not in KINDS:
            raise TopologyError("pci.%s: unknown kind %r (one of %s)" % (bdf, kind, ", ".join(sorted(KINDS))))
        self.bdf = bdf
        self.kind = kind
        self.attrs = attrs
        self.parent = attrs.get("parent")
        if not self.parent:
            raise TopologyError("pci.%s: parent= is required" % bdf)
        vendor, device, klass, header, port = KINDS[kind]
        self.vendor = int(attrs["vendor"], 0) if "vendor" in attrs else vendor
        self.device = int(attrs["device"], 0) if "device" in attrs else device
        self.klass = int(attrs["class"], 0) if "class" in attrs else klass
        self.header_type = header
        self.port_type = port
        self.acs = int(attrs["acs"], 0) if "acs" in attrs else None
        self.numa = int(attrs.get("numa", "0"))
        self.iommu_group = int(attrs["iommu_group"]) if "iommu_group" in attrs else None
        self.subsystem = (0, 0)
        self.link = (5, 16, 5, 16)  # gen current, width current, gen max, width max
        self.children = []

    @property
    def bus(self):
        return int(self.bdf[5:7], 16)


def parse_pci(topology):
    devices = {}
    for key in topology.literal_keys("pci."):
        name = key[4:]
        if not BDF_RE.match(name):
            continue  # settings such as pci.iommu
        tokens = topology.lookup(key).split()
        if not tokens:
            raise TopologyError("%s: kind missing" % key)
        attrs = {}
        for token in tokens[1:]:
            if "=" not in token:
                raise TopologyError("%s: %r is not attr=value" % (key, token))
            attr, value = token.split("=", 1)
            attrs[attr] = value
        devices[name] = PciDevice(name, tokens[0], attrs)
    for device in devices.values():
        if ROOT_BUS_RE.match(device.parent):
            continue
        if device.parent not in devices:
            raise TopologyError("pci.%s: parent %s is not defined" % (device.bdf, device.parent))
        devices[device.parent].children.append(device)
    return devices


def _gpu_details(topology, devices):
    """Device id, subsystem id and link state of PCI GPUs from the NVML keys with their bus id."""
    by_bdf = {}
    # NVML may enumerate fewer GPUs than the bus holds (missing-gpu): look at every gpu.N written.
    indexes = set(range(topology.gpu_count()))
    for key in topology.literal_keys("gpu."):
        parts = key.split(".")
        if len(parts) >= 3 and parts[1].isdigit():
            indexes.add(int(parts[1]))
    for index in sorted(indexes):
        bus_id = topology.gpu(index, "pci_bus_id")
        if bus_id and not parse_error(bus_id):
            by_bdf[sysfs_bdf(bus_id)] = index
    for device in devices.values():
        if device.kind != "gpu":
            continue
        index = by_bdf.get(device.bdf)
        if index is None:
            continue
        device_id = topology.gpu(index, "pci_device_id")
        if device_id and not parse_error(device_id) and "device" not in device.attrs:
            device.device = int(device_id, 0) >> 16
            device.vendor = int(device_id, 0) & 0xFFFF
        subsystem = topology.gpu(index, "pci_subsystem_id")
        if subsystem and not parse_error(subsystem):
            device.subsystem = (int(subsystem, 0) & 0xFFFF, int(subsystem, 0) >> 16)
        link = []
        for item, default in (("gen_current", 5), ("width_current", 16), ("gen_max", 5), ("width_max", 16)):
            value = topology.gpu(index, "pcie." + item)
            link.append(int(value, 0) if value and not parse_error(value) else default)
        device.link = tuple(link)


def _subtree_max_bus(device):
    return max([device.bus] + [_subtree_max_bus(child) for child in device.children])


def config_space(device):
    """4096 bytes: type 0/1 header, PCIe capability at 0x40, extended capabilities from 0x100."""
    cfg = bytearray(4096)
    struct.pack_into("<HH", cfg, 0x00, device.vendor, device.device)
    struct.pack_into("<HH", cfg, 0x04, 0x0547 if device.header_type else 0x0546, 0x0010)  # status: cap list
    struct.pack_into("<I", cfg, 0x08, (device.klass << 8) | 0xA1)  # class code + revision
    cfg[0x0E] = device.header_type
    cfg[0x34] = 0x40
    if device.header_type == 1:
        secondary = min([child.bus for child in device.children]) if device.children else device.bus + 1
        subordinate = max([_subtree_max_bus(child) for child in device.children]) if device.children else secondary
        cfg[0x18], cfg[0x19], cfg[0x1A] = device.bus, secondary, subordinate
    else:
        struct.pack_into("<HH", cfg, 0x2C, device.subsystem[0], device.subsystem[1])
    # PCI Express capability (id 0x10), version 2, device/port type
    gen_cur, width_cur, gen_max, width_max = device.link
    struct.pack_into("<BBH", cfg, 0x40, 0x10, 0x00, 0x0002 | (device.port_type << 4))
    struct.pack_into("<I", cfg, 0x40 + 0x0C, gen_max | (width_max << 4))   # Link Capabilities
    struct.pack_into("<H", cfg, 0x40 + 0x12, gen_cur | (width_cur << 4))   # Link Status
    # Extended capabilities: AER (0x0001) at 0x100, then ACS (0x000D) at 0x148 when configured.
    acs_offset = 0x148
    struct.pack_into("<I", cfg, 0x100, 0x0001 | (2 << 16) | ((acs_offset if device.acs is not None else 0) << 20))
    if device.acs is not None:
        struct.pack_into("<I", cfg, acs_offset, 0x000D | (1 << 16))
        struct.pack_into("<H", cfg, acs_offset + 4, 0x005F)  # ACS capability: SV TB RR CR UF DT(0x40)
        struct.pack_into("<H", cfg, acs_offset + 6, device.acs)  # ACS control
    return bytes(cfg)


def _write(path, data, mode="w"):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory)
    with open(path, mode) as handle:
        handle.write(data)


def _symlink(target, link):
    directory = os.path.dirname(link)
    if not os.path.isdir(directory):
        os.makedirs(directory)
    os.symlink(os.path.relpath(target, directory), link)


def write_sysfs(topology, outdir):
    sysfs = os.path.join(outdir, "sys")
    devices = parse_pci(topology)
    _gpu_details(topology, devices)
    paths = {}

    def device_path(device):
        if device.bdf not in paths:
            if ROOT_BUS_RE.match(device.parent):
                parent_path = os.path.join(sysfs, "devices", device.parent)
            else:
                parent_path = device_path(devices[device.parent])
            paths[device.bdf] = os.path.join(parent_path, device.bdf)
        return paths[device.bdf]

    for bdf in sorted(devices):
        device = devices[bdf]
        path = device_path(device)
        _write(os.path.join(path, "config"), config_space(device), "wb")
        _write(os.path.join(path, "vendor"), "0x%04x\n" % device.vendor)
        _write(os.path.join(path, "device"), "0x%04x\n" % device.device)
        _write(os.path.join(path, "class"), "0x%06x\n" % device.klass)
        _write(os.path.join(path, "numa_node"), "%d\n" % device.numa)
        _write(os.path.join(path, "current_link_width"), "%d\n" % device.link[1])
        _write(os.path.join(path, "max_link_width"), "%d\n" % device.link[3])
        _symlink(path, os.path.join(sysfs, "bus", "pci", "devices", bdf))

    iommu = (topology.get("pci.iommu", "off").lower() in ("on", "1", "yes", "true"))
    groups = {}
    if iommu:
        next_group = 0
        for bdf in sorted(devices):
            group = devices[bdf].iommu_group
            if group is None:
                while next_group in groups or any(d.iommu_group == next_group for d in devices.values()):
                    next_group += 1
                group = next_group
            groups.setdefault(group, []).append(bdf)
        for group, members in sorted(groups.items()):
            group_dir = os.path.join(sysfs, "kernel", "iommu_groups", str(group))
            _write(os.path.join(group_dir, "type"), "DMA\n")
            for bdf in members:
                _symlink(paths[bdf], os.path.join(group_dir, "devices", bdf))
                _symlink(group_dir, os.path.join(paths[bdf], "iommu_group"))
    elif not os.path.isdir(os.path.join(sysfs, "kernel", "iommu_groups")):
        os.makedirs(os.path.join(sysfs, "kernel", "iommu_groups"))  # present but empty, like real sysfs
    return devices, groups


# --- procfs and kernel log ----------------------------------------------------------------------

def write_procfs(topology, outdir):
    proc = os.path.join(outdir, "proc")
    cmdline = topology.get("proc.cmdline", "BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro quiet")
    _write(os.path.join(proc, "cmdline"), cmdline + "\n")
    uptime = topology.get("proc.uptime", "86400.00 170000.00")
    _write(os.path.join(proc, "uptime"), uptime + "\n")
    # A new boot of the same host: another proc.boot_id.
    _write(os.path.join(proc, "sys", "kernel", "random", "boot_id"),
           topology.get("proc.boot_id", "4f3c2a1e-8d5b-4c6a-9e7f-0a1b2c3d4e5f") + "\n")
    total_kb = parse_size(topology.get("proc.mem_total", "64GiB")) // 1024
    free_kb = total_kb * 9 // 10
    meminfo = [
        ("MemTotal", total_kb), ("MemFree", free_kb), ("MemAvailable", total_kb * 19 // 20),
        ("Buffers", 1024), ("Cached", total_kb // 40), ("SwapCached", 0), ("Shmem", 65536),
        ("SwapTotal", 0), ("SwapFree", 0), ("HugePages_Total", 0), ("Hugepagesize", 2048),
    ]
    _write(os.path.join(proc, "meminfo"), "".join(
        "%-16s%10d%s\n" % (name + ":", value, "" if name.startswith("HugePages_") else " kB")
        for name, value in meminfo))
    cpus = int(topology.get("proc.cpus", "4"))
    hypervisor = topology.get("proc.hypervisor", "no").lower() in ("yes", "on", "1", "true")
    flags = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc"
    if hypervisor:
        flags += " hypervisor"
    blocks = []
    for cpu in range(cpus):
        blocks.append(
            "processor\t: %d\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
            "model name\t: Intel(R) Xeon(R) Platinum 8480+\nphysical id\t: %d\ncpu cores\t: %d\n"
            "flags\t\t: %s\n" % (cpu, cpu * 2 // max(cpus, 1), max(cpus // 2, 1), flags))
    _write(os.path.join(proc, "cpuinfo"), "\n".join(blocks) + "\n")
    return float(uptime.split()[0])


def kmsg_records(topology, uptime_s):
    """[(prio, seq, timestamp_usec, message)] in sequence order."""
    cmdline = topology.get("proc.cmdline", "")
    records = []
    for seq, (prio, _age, message) in enumerate(DEFAULT_BOOT_LOG):
        records.append((prio, seq, 0 if seq == 0 else 1200 * seq, message.format(cmdline=cmdline)))
    for key in topology.literal_keys("kmsg."):
        seq_text = key[5:]
        if not seq_text.isdigit():
            raise TopologyError("%s: kmsg keys are kmsg.<sequence number>" % key)
        parts = topology.lookup(key).split(None, 2)
        if len(parts) != 3:
            raise TopologyError("%s: value must be '<prio> <age seconds> <message>'" % key)
        prio, age, message = int(parts[0]), float(parts[1]), parts[2]
        timestamp = int(round((uptime_s - age) * 1e6))
        if timestamp < 0:
            raise TopologyError("%s: age %s is older than the uptime" % (key, parts[1]))
        records.append((prio, int(seq_text), timestamp, message))
    records.sort(key=lambda record: record[1])
    return records


def write_kmsg(topology, outdir, uptime_s):
    lines = ["%d,%d,%d,-;%s" % record for record in kmsg_records(topology, uptime_s)]
    _write(os.path.join(outdir, "kmsg"), "\n".join(lines) + "\n")


def make_root(topology_path, outdir):
    """Write the fake root for a topology into outdir (replaced if it exists). Returns outdir."""
    topology = Topology(topology_path)
    for part in ("sys", "proc", "kmsg"):
        path = os.path.join(outdir, part)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
    if not os.path.isdir(outdir):
        os.makedirs(outdir)
    write_sysfs(topology, outdir)
    uptime_s = write_procfs(topology, outdir)
    write_kmsg(topology, outdir, uptime_s)
    _write(os.path.join(outdir, "TOPOLOGY"), "%s\n%s\n" % (topology.path, topology.description or ""))
    return outdir


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: %s <topology.conf> <outdir>\n" % argv[0])
        return 2
    try:
        make_root(argv[1], argv[2])
    except (TopologyError, OSError, ValueError) as exc:
        sys.stderr.write("mkroot: %s\n" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
