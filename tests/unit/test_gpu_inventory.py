"""Pure parts of gpu_inventory: ACS parsing, kernel log records, host facts."""

import os
import struct

from ansible_collections.inferops.gpu.plugins.module_utils import gpu_inventory as inv


def _config(tmp_path, bdf, caps, size=4096):
    """Write a sysfs config file with a chain of extended capabilities [(id, payload_word)]."""
    data = bytearray(size)
    offset = 0x100
    for position, (cap_id, control) in enumerate(caps):
        nxt = 0x100 + 0x40 * (position + 1) if position + 1 < len(caps) else 0
        struct.pack_into("<I", data, offset, cap_id | (1 << 16) | (nxt << 20))
        struct.pack_into("<H", data, offset + inv.ACS_CTRL_OFFSET, control)
        offset = nxt
    device = tmp_path / "bus" / "pci" / "devices" / bdf
    device.mkdir(parents=True)
    (device / "config").write_bytes(bytes(data))
    return str(tmp_path)


def test_acs_found_after_other_capabilities(tmp_path):
    root = _config(tmp_path, "0000:03:10.0", [(0x0001, 0), (0x000B, 0), (inv.ACS_CAP_ID, 0x001D)])
    control, error = inv.acs_control(root, "0000:03:10.0")
    assert error is None
    assert control == 0x1D
    assert inv.describe_acs(control) == ["SrcValid", "ReqRedir", "CmpltRedir", "UpstreamFwd"]
    assert control & inv.ACS_REDIRECT_MASK


def test_bridge_without_acs_has_no_control_and_no_error(tmp_path):
    root = _config(tmp_path, "0000:00:01.0", [(0x0001, 0)])
    assert inv.acs_control(root, "0000:00:01.0") == (None, None)


def test_config_space_cut_at_256_bytes_reports_root_needed(tmp_path):
    root = _config(tmp_path, "0000:00:01.0", [], size=256)
    control, error = inv.acs_control(root, "0000:00:01.0")
    assert control is None
    assert "run as root" in error


def test_capability_loop_terminates(tmp_path):
    data = bytearray(4096)
    struct.pack_into("<I", data, 0x100, 0x0001 | (0x100 << 20))  # points at itself
    device = tmp_path / "bus" / "pci" / "devices" / "0000:00:02.0"
    device.mkdir(parents=True)
    (device / "config").write_bytes(bytes(data))
    assert inv.acs_control(str(tmp_path), "0000:00:02.0") == (None, None)


def test_kernel_log_kmsg_and_dmesg_formats(tmp_path):
    log = tmp_path / "kmsg"
    log.write_text(
        "6,1,1000000,-;Linux version 6.1\n"
        "4,2,85000000000,-;NVRM: Xid (PCI:0000:17:00): 79, pid=1, name=python3, GPU has fallen off the bus.\n"
        "[  100.500000] NVRM: Xid (PCI:0000:2A:00): 13, Graphics Exception\n"
    )
    xids = inv.collect_xids(str(log), uptime_s=86400.0)
    assert xids["available"]
    assert [(e["pci"], e["xid"], e["age_s"]) for e in xids["events"]] == [
        ("0000:17:00", 79, 1400.0), ("0000:2a:00", 13, 86299.5)]


def test_unreadable_kernel_log_is_reported_not_raised(tmp_path):
    xids = inv.collect_xids(str(tmp_path / "absent"), uptime_s=1.0)
    assert not xids["available"]
    assert "cannot read" in xids["error"]


def test_host_facts_from_procfs(tmp_path):
    (tmp_path / "uptime").write_text("1234.50 99.00\n")
    (tmp_path / "meminfo").write_text("MemTotal:       2097152 kB\nMemFree: 1 kB\n")
    host = inv.collect_host(str(tmp_path), str(tmp_path))
    assert host["uptime_s"] == 1234.5
    assert host["memory_total_bytes"] == 2 * 1024 ** 3
    assert host["shm"]["size_bytes"] > 0


def test_sysfs_bus_id_form():
    assert inv.sysfs_bdf("00000000:17:00.0") == "0000:17:00.0"
    assert inv.sysfs_bdf("0000000A:1B:00.0") == "000a:1b:00.0"


def test_upstream_bridges_follow_symlinks(tmp_path):
    tree = tmp_path / "devices" / "pci0000:00" / "0000:00:01.0" / "0000:01:00.0" / "0000:02:08.0" / "0000:03:00.0"
    tree.mkdir(parents=True)
    devices = tmp_path / "bus" / "pci" / "devices"
    devices.mkdir(parents=True)
    os.symlink(os.path.relpath(tree, devices), devices / "0000:03:00.0")
    assert inv.upstream_bridges(str(tmp_path), "0000:03:00.0") == ["0000:00:01.0", "0000:01:00.0", "0000:02:08.0"]
    assert inv.upstream_bridges(str(tmp_path), "0000:99:00.0") is None


def test_nvidia_module_presence_read_from_procfs(tmp_path):
    assert inv.collect_host(str(tmp_path), str(tmp_path))["nvidia_module_loaded"] is False
    (tmp_path / "driver" / "nvidia").mkdir(parents=True)
    (tmp_path / "driver" / "nvidia" / "version").write_text("NVRM version: 550.163.01\n")
    assert inv.collect_host(str(tmp_path), str(tmp_path))["nvidia_module_loaded"] is True
