"""The fake NVML reads back, through the UNMODIFIED pynvml, exactly what each topology file says;
mkroot.py writes the sysfs/procfs/kmsg side of the same topology.

Two kinds of tests: generic ones compare every NVML answer with the topology file as resolved by
mkroot.Topology (an independent Python implementation of the key rules), and per-topology ones pin
the literal values the health-check tests rely on.
"""

import ctypes
import os
import re
import struct

import pytest

pynvml = pytest.importorskip("pynvml")

import importlib.util  # noqa: E402

FAKE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fake_nvml")
TOPOLOGY_DIR = os.path.join(FAKE_DIR, "topologies")
LIBRARY = os.path.join(FAKE_DIR, "build", "libnvidia-ml.so.1")


def _load_mkroot():
    spec = importlib.util.spec_from_file_location("fake_nvml_mkroot_t", os.path.join(FAKE_DIR, "mkroot.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mkroot = _load_mkroot()
TOPOLOGIES = sorted(name[:-5] for name in os.listdir(TOPOLOGY_DIR) if name.endswith(".conf"))
P2P_INDEX = {"read": 0, "write": 1, "nvlink": 2, "atomics": 3, "pci": 4}
P2P_STATUS = {"OK": 0, "CHIPSET_NOT_SUPPORTED": 1, "GPU_NOT_SUPPORTED": 2, "IOH_TOPOLOGY_NOT_SUPPORTED": 3,
              "DISABLED_BY_REGKEY": 4, "NOT_SUPPORTED": 5, "UNKNOWN": 6}
TOPO_LEVEL = {"INTERNAL": 0, "SINGLE": 10, "PIX": 10, "MULTIPLE": 20, "PXB": 20, "HOSTBRIDGE": 30, "PHB": 30,
              "NODE": 40, "CPU": 40, "SYSTEM": 50, "SYS": 50}
SYMBOLS_PYNVML_CALLS = (
    "nvmlInitWithFlags", "nvmlInit", "nvmlInit_v2", "nvmlShutdown", "nvmlErrorString",
    "nvmlSystemGetDriverVersion", "nvmlSystemGetCudaDriverVersion", "nvmlSystemGetCudaDriverVersion_v2",
    "nvmlSystemGetNVMLVersion", "nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetName",
    "nvmlDeviceGetUUID", "nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetMemoryInfo_v2",
    "nvmlDeviceGetTemperature", "nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperatureThreshold",
    "nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPersistenceMode",
    "nvmlDeviceGetMigMode", "nvmlDeviceGetComputeMode", "nvmlDeviceGetEccMode", "nvmlDeviceGetTotalEccErrors",
    "nvmlDeviceGetRemappedRows", "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetCurrentClocksThrottleReasons", "nvmlDeviceGetCurrPcieLinkGeneration",
    "nvmlDeviceGetMaxPcieLinkGeneration", "nvmlDeviceGetCurrPcieLinkWidth", "nvmlDeviceGetMaxPcieLinkWidth",
    "nvmlDeviceGetPcieReplayCounter", "nvmlDeviceGetNvLinkState", "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetP2PStatus", "nvmlDeviceGetTopologyCommonAncestor", "nvmlDeviceGetVirtualizationMode",
    "nvmlDeviceGetVbiosVersion", "nvmlDeviceGetFieldValues",
)


# --- helpers ------------------------------------------------------------------------------------

def error_class(name):
    """'NOT_SUPPORTED' -> pynvml.NVMLError_NotSupported (the class pynvml generates)."""
    return pynvml.nvmlExceptionClass(getattr(pynvml, "NVML_ERROR_" + name))


def read(call, *args):
    """(value, None) or (None, NVMLError subclass)."""
    try:
        return call(*args), None
    except pynvml.NVMLError as exc:
        return None, type(exc)


def expect(raw, convert=lambda v: int(v, 0)):
    """What the topology value means: ('value', x) or ('error', class)."""
    assert raw is not None, "topology leaves the item unset"
    if raw.lower().startswith("error:"):
        return ("error", error_class(raw[6:]))
    return ("value", convert(raw))


def got(call, *args):
    value, error = read(call, *args)
    return ("error", error) if error else ("value", value)


def size(raw):
    return mkroot.parse_size(raw)


def uints(raw):
    return [int(v, 0) for v in raw.split()]


def opened(host):
    pynvml.nvmlInit()
    count = pynvml.nvmlDeviceGetCount()
    return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]


@pytest.fixture
def nvml():
    """Shut pynvml down after the test whatever happened."""
    yield pynvml
    while True:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            break


# --- the library itself -------------------------------------------------------------------------

def test_library_exports_every_symbol_pynvml_calls(fake_nvml_library):
    missing = [name for name in SYMBOLS_PYNVML_CALLS if not hasattr(fake_nvml_library, name)]
    assert missing == []


def test_library_has_the_real_soname():
    with open(LIBRARY, "rb") as handle:
        data = handle.read()
    assert b"libnvidia-ml.so.1\x00" in data


def test_pynvml_loads_the_fake_by_soname(fake_gpu_host, nvml, fake_nvml_library):
    fake_gpu_host("h100-sxm-8")
    nvml.nvmlInit()
    # The fake's own test hook is reachable through pynvml's handle: it is our library.
    assert hasattr(nvml.nvmlLib, "fake_nvml_refcount")
    assert nvml.nvmlLib.fake_nvml_refcount() == 1
    fake_nvml_library.fake_nvml_topology_path.restype = ctypes.c_char_p
    assert fake_nvml_library.fake_nvml_topology_path().decode() == os.path.join(TOPOLOGY_DIR, "h100-sxm-8.conf")


def test_refcount_and_topology_switch_in_one_process(fake_gpu_host, nvml, fake_nvml_library):
    fake_gpu_host("h100-sxm-8")
    nvml.nvmlInit()
    nvml.nvmlInit()
    assert fake_nvml_library.fake_nvml_refcount() == 2
    fake_gpu_host("pcie-4-acs")  # not re-read while initialised
    assert nvml.nvmlDeviceGetCount() == 8
    nvml.nvmlShutdown()
    assert nvml.nvmlDeviceGetCount() == 8
    nvml.nvmlShutdown()
    assert fake_nvml_library.fake_nvml_refcount() == 0
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetCount()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nvml.nvmlShutdown()
    nvml.nvmlInit()  # 0 -> 1: re-reads the file
    assert nvml.nvmlDeviceGetCount() == 4
    assert nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(0)) == "NVIDIA L40S"


def test_failed_init_leaves_nvml_uninitialised(fake_gpu_host, nvml, fake_nvml_library):
    fake_gpu_host("no-driver")
    for _attempt in range(2):
        with pytest.raises(pynvml.NVMLError_DriverNotLoaded) as caught:
            nvml.nvmlInit()
        assert str(caught.value) == "Driver Not Loaded"
    assert fake_nvml_library.fake_nvml_refcount() == 0
    fake_gpu_host("missing-gpu")
    nvml.nvmlInit()
    assert nvml.nvmlDeviceGetCount() == 7


def test_missing_topology_file_fails_init_with_unknown(monkeypatch, tmp_path, nvml, fake_nvml_library):
    monkeypatch.setenv("FAKE_NVML_TOPOLOGY", str(tmp_path / "absent.conf"))
    with pytest.raises(pynvml.NVMLError_Unknown):
        nvml.nvmlInit()


def test_bad_error_name_in_topology_fails_init(monkeypatch, tmp_path, nvml, fake_nvml_library):
    conf = tmp_path / "bad.conf"
    conf.write_text("# broken\ngpu.count 1\ngpu.*.name error:NO_SUCH_ERROR\n")
    monkeypatch.setenv("FAKE_NVML_TOPOLOGY", str(conf))
    with pytest.raises(pynvml.NVMLError_Unknown):
        nvml.nvmlInit()


def test_error_strings_come_from_the_library(fake_gpu_host, nvml):
    fake_gpu_host("h100-sxm-8")
    nvml.nvmlInit()
    assert nvml.nvmlErrorString(pynvml.NVML_ERROR_NOT_SUPPORTED) == "Not Supported"
    assert nvml.nvmlErrorString(pynvml.NVML_ERROR_DRIVER_NOT_LOADED) == "Driver Not Loaded"
    assert str(pynvml.NVMLError(29)) == "Invalid state"  # not in pynvml's own table: asks the library


def test_handles_are_checked(fake_gpu_host, nvml):
    fake_gpu_host("pcie-4-acs")
    nvml.nvmlInit()
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceGetHandleByIndex(4)
    bogus = pynvml.c_nvmlDevice_t()
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceGetName(bogus)
    handle = nvml.nvmlDeviceGetHandleByPciBusId("00000000:1A:00.0")
    assert nvml.nvmlDeviceGetIndex(handle) == 2
    assert nvml.nvmlDeviceGetIndex(nvml.nvmlDeviceGetHandleByUUID(nvml.nvmlDeviceGetUUID(handle))) == 2


def test_p2p_read_index_must_be_the_literal_zero(fake_gpu_host, nvml):
    fake_gpu_host("h100-sxm-8")
    handles = opened(None)
    # pynvml's NVML_P2P_CAPS_INDEX_READ is the tuple (0,): ctypes refuses it.
    assert pynvml.NVML_P2P_CAPS_INDEX_READ == (0,)
    with pytest.raises(Exception):
        nvml.nvmlDeviceGetP2PStatus(handles[0], handles[1], pynvml.NVML_P2P_CAPS_INDEX_READ)
    assert nvml.nvmlDeviceGetP2PStatus(handles[0], handles[1], 0) == pynvml.NVML_P2P_STATUS_OK
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceGetP2PStatus(handles[0], handles[1], 5)


# --- generic: every topology reads back as its file says -----------------------------------------

SCALAR_ITEMS = (
    # (pynvml call, extra args, topology item, converter)
    ("nvmlDeviceGetName", (), "name", str),
    ("nvmlDeviceGetUUID", (), "uuid", str),
    ("nvmlDeviceGetVbiosVersion", (), "vbios_version", str),
    ("nvmlDeviceGetTemperature", (0,), "temperature", lambda v: int(v, 0)),
    ("nvmlDeviceGetTemperatureThreshold", (0,), "temperature.shutdown", lambda v: int(v, 0)),
    ("nvmlDeviceGetTemperatureThreshold", (1,), "temperature.slowdown", lambda v: int(v, 0)),
    ("nvmlDeviceGetTemperatureThreshold", (2,), "temperature.mem_max", lambda v: int(v, 0)),
    ("nvmlDeviceGetTemperatureThreshold", (3,), "temperature.gpu_max", lambda v: int(v, 0)),
    ("nvmlDeviceGetPowerUsage", (), "power.usage_mw", lambda v: int(v, 0)),
    ("nvmlDeviceGetEnforcedPowerLimit", (), "power.limit_mw", lambda v: int(v, 0)),
    ("nvmlDeviceGetPersistenceMode", (), "persistence_mode", lambda v: int(v, 0)),
    ("nvmlDeviceGetMigMode", (), "mig_mode", uints),
    ("nvmlDeviceGetComputeMode", (), "compute_mode",
     lambda v: {"DEFAULT": 0, "EXCLUSIVE_THREAD": 1, "PROHIBITED": 2, "EXCLUSIVE_PROCESS": 3}[v]),
    ("nvmlDeviceGetVirtualizationMode", (), "virtualization_mode",
     lambda v: {"NONE": 0, "PASSTHROUGH": 1, "VGPU": 2, "HOST_VGPU": 3, "HOST_VSGA": 4}[v]),
    ("nvmlDeviceGetEccMode", (), "ecc.mode", uints),
    ("nvmlDeviceGetTotalEccErrors", (0, 0), "ecc.volatile.corrected", lambda v: int(v, 0)),
    ("nvmlDeviceGetTotalEccErrors", (1, 0), "ecc.volatile.uncorrected", lambda v: int(v, 0)),
    ("nvmlDeviceGetTotalEccErrors", (0, 1), "ecc.aggregate.corrected", lambda v: int(v, 0)),
    ("nvmlDeviceGetTotalEccErrors", (1, 1), "ecc.aggregate.uncorrected", lambda v: int(v, 0)),
    ("nvmlDeviceGetRemappedRows", (), "remapped_rows", lambda v: tuple(uints(v))),
    ("nvmlDeviceGetCurrentClocksEventReasons", (), "clocks_event_reasons", lambda v: int(v, 0)),
    ("nvmlDeviceGetCurrentClocksThrottleReasons", (), "clocks_event_reasons", lambda v: int(v, 0)),
    ("nvmlDeviceGetCurrPcieLinkGeneration", (), "pcie.gen_current", lambda v: int(v, 0)),
    ("nvmlDeviceGetMaxPcieLinkGeneration", (), "pcie.gen_max", lambda v: int(v, 0)),
    ("nvmlDeviceGetCurrPcieLinkWidth", (), "pcie.width_current", lambda v: int(v, 0)),
    ("nvmlDeviceGetMaxPcieLinkWidth", (), "pcie.width_max", lambda v: int(v, 0)),
    ("nvmlDeviceGetPcieReplayCounter", (), "pcie.replay_counter", lambda v: int(v, 0)),
)

HEALTHY_TOPOLOGIES = [name for name in TOPOLOGIES if name != "no-driver"]


@pytest.mark.parametrize("name", HEALTHY_TOPOLOGIES)
def test_every_gpu_item_reads_back(fake_gpu_host, nvml, name):
    host = fake_gpu_host(name)
    cfg = host.config
    handles = opened(host)
    assert len(handles) == cfg.gpu_count()
    assert nvml.nvmlSystemGetDriverVersion() == cfg.get("driver.version")
    assert nvml.nvmlSystemGetNVMLVersion() == cfg.get("driver.nvml_version")
    assert nvml.nvmlSystemGetCudaDriverVersion() == int(cfg.get("driver.cuda_version"))
    assert nvml.nvmlSystemGetCudaDriverVersion_v2() == int(cfg.get("driver.cuda_version"))
    for index, handle in enumerate(handles):
        for call, args, item, convert in SCALAR_ITEMS:
            assert got(getattr(nvml, call), handle, *args) == expect(cfg.gpu(index, item), convert), (index, item)
        if hasattr(nvml, "nvmlDeviceGetTemperatureV"):
            assert got(nvml.nvmlDeviceGetTemperatureV, handle, 0) == expect(cfg.gpu(index, "temperature"))

        pci = nvml.nvmlDeviceGetPciInfo(handle)
        bus_id = cfg.gpu(index, "pci_bus_id")
        assert pci.busId == bus_id
        domain, bus, rest = bus_id.split(":")
        assert (pci.domain, pci.bus, pci.device) == (int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16))
        assert pci.pciDeviceId == int(cfg.gpu(index, "pci_device_id"), 0)
        assert pci.pciSubSystemId == int(cfg.gpu(index, "pci_subsystem_id"), 0)

        total = size(cfg.gpu(index, "memory.total"))
        used = size(cfg.gpu(index, "memory.used"))
        reserved = size(cfg.gpu(index, "memory.reserved"))
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        assert (memory.total, memory.used, memory.free) == (total, used + reserved, total - used - reserved)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
        assert (memory.total, memory.reserved, memory.used, memory.free) == (
            total, reserved, used, total - used - reserved)

        links = cfg.gpu(index, "nvlink.links")
        if links.startswith("error:"):
            assert got(nvml.nvmlDeviceGetNvLinkState, handle, 0) == expect(links)
        else:
            for link in range(int(links)):
                assert got(nvml.nvmlDeviceGetNvLinkState, handle, link) == expect(
                    cfg.gpu(index, "nvlink.%d.state" % link))
            with pytest.raises(pynvml.NVMLError_InvalidArgument):
                nvml.nvmlDeviceGetNvLinkState(handle, int(links))

        # 230 = NVML_FI_DEV_GET_GPU_RECOVERY_ACTION (the constant is absent in pynvml 12.550)
        field = nvml.nvmlDeviceGetFieldValues(handle, [230])[0]
        raw = cfg.gpu(index, "field.230")
        if raw.startswith("error:"):
            assert field.nvmlReturn == getattr(pynvml, "NVML_ERROR_" + raw[6:])
        else:
            assert (field.nvmlReturn, field.valueType, field.value.uiVal) == (0, 1, int(raw, 0))

        processes = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        raw = cfg.gpu(index, "processes")
        wanted = [] if raw == "none" else [tuple(int(x) for x in p.split(":")) for p in raw.split()]
        assert [(p.pid, p.usedGpuMemory) for p in processes] == wanted


@pytest.mark.parametrize("name", HEALTHY_TOPOLOGIES)
def test_every_pair_reads_back(fake_gpu_host, nvml, name):
    cfg = fake_gpu_host(name).config
    handles = opened(None)

    def pair_value(prefix, a, b, suffix=""):
        # Pairs are unordered; the more specific key wins, then the later line.
        best = None
        for x, y in ((a, b), (b, a)):
            key = "%s.%d.%d%s" % (prefix, x, y, suffix)
            for pattern, score, value, order in cfg.entries:
                if len(pattern) == len(key.split(".")) and all(
                        mkroot._component_matches(p, c) for p, c in zip(pattern, key.split("."))):
                    if best is None or (score, order) > best[:2]:
                        best = (score, order, value)
        return best[2]

    for a in range(len(handles)):
        for b in range(len(handles)):
            for word, index in P2P_INDEX.items():
                raw = pair_value("p2p", a, b, "." + word)
                assert got(nvml.nvmlDeviceGetP2PStatus, handles[a], handles[b], index) == expect(
                    raw, lambda v: P2P_STATUS[v]), (a, b, word)
            level = nvml.nvmlDeviceGetTopologyCommonAncestor(handles[a], handles[b])
            assert level == (0 if a == b else TOPO_LEVEL[pair_value("topo", a, b)]), (a, b)


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_topology_files_document_themselves(name):
    with open(os.path.join(TOPOLOGY_DIR, name + ".conf")) as handle:
        first = handle.readline()
    assert first.startswith("# ") and len(first) > 30 and first.rstrip().endswith(".")


# --- per topology: the literal facts the health checks rely on ----------------------------------

def bus_ids(handles):
    return [pynvml.nvmlDeviceGetPciInfo(h).busId for h in handles]


def test_h100_sxm_8(fake_gpu_host, nvml):
    fake_gpu_host("h100-sxm-8")
    handles = opened(None)
    assert bus_ids(handles) == ["00000000:%s:00.0" % b for b in ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")]
    for handle in handles:
        assert nvml.nvmlDeviceGetName(handle) == "NVIDIA H100 80GB HBM3"
        assert nvml.nvmlDeviceGetMemoryInfo(handle).total == 81559 * 1024 ** 2
        assert [nvml.nvmlDeviceGetNvLinkState(handle, link) for link in range(18)] == [1] * 18
        assert nvml.nvmlDeviceGetEccMode(handle) == [1, 1]
        assert nvml.nvmlDeviceGetTotalEccErrors(handle, 1, 0) == 0
        assert nvml.nvmlDeviceGetRemappedRows(handle) == (0, 0, 0, 0)
        assert nvml.nvmlDeviceGetPersistenceMode(handle) == 1
        assert nvml.nvmlDeviceGetMigMode(handle) == [0, 0]
        assert (nvml.nvmlDeviceGetCurrPcieLinkGeneration(handle), nvml.nvmlDeviceGetCurrPcieLinkWidth(handle)) == (5, 16)
        # Driver 550 does not know the recovery-action field: a per-field error, not an exception.
        assert nvml.nvmlDeviceGetFieldValues(handle, [230])[0].nvmlReturn == pynvml.NVML_ERROR_NOT_SUPPORTED
    assert nvml.nvmlSystemGetDriverVersion() == "550.127.05"
    assert nvml.nvmlSystemGetCudaDriverVersion() == 12040
    for a in range(8):
        for b in range(a + 1, 8):
            assert [nvml.nvmlDeviceGetP2PStatus(handles[a], handles[b], i) for i in (0, 1, 2, 3, 4)] == [0] * 5
            same_socket = (a < 4) == (b < 4)
            assert nvml.nvmlDeviceGetTopologyCommonAncestor(handles[a], handles[b]) == (40 if same_socket else 50)


def test_pcie_4_acs(fake_gpu_host, nvml):
    fake_gpu_host("pcie-4-acs")
    handles = opened(None)
    assert bus_ids(handles) == ["00000000:18:00.0", "00000000:19:00.0", "00000000:1A:00.0", "00000000:1B:00.0"]
    for a in range(4):
        for b in range(4):
            if a == b:
                continue
            assert [nvml.nvmlDeviceGetP2PStatus(handles[a], handles[b], i) for i in (0, 1, 2, 3, 4)] == [0, 0, 5, 5, 0]
            assert nvml.nvmlDeviceGetTopologyCommonAncestor(handles[a], handles[b]) == pynvml.NVML_TOPOLOGY_SINGLE
    for handle in handles:
        with pytest.raises(pynvml.NVMLError_NotSupported):
            nvml.nvmlDeviceGetNvLinkState(handle, 0)
        with pytest.raises(pynvml.NVMLError_NotSupported):
            nvml.nvmlDeviceGetMigMode(handle)
        with pytest.raises(pynvml.NVMLError_NotSupported):
            nvml.nvmlDeviceGetTemperatureThreshold(handle, pynvml.NVML_TEMPERATURE_THRESHOLD_MEM_MAX)
    procs = nvml.nvmlDeviceGetComputeRunningProcesses(handles[0])
    assert [(p.pid, p.usedGpuMemory) for p in procs] == [(4242, 39 * 1024 ** 3)]
    assert all(nvml.nvmlDeviceGetComputeRunningProcesses(h) == [] for h in handles[1:])


def test_pcie_4_two_sockets(fake_gpu_host, nvml):
    fake_gpu_host("pcie-4-two-sockets")
    handles = opened(None)
    assert bus_ids(handles) == ["00000000:18:00.0", "00000000:19:00.0", "00000000:9A:00.0", "00000000:9B:00.0"]

    def p2p(a, b):
        return [nvml.nvmlDeviceGetP2PStatus(handles[a], handles[b], i) for i in (0, 1, 2, 4)]

    def topo(a, b):
        return nvml.nvmlDeviceGetTopologyCommonAncestor(handles[a], handles[b])

    for a, b in ((0, 1), (1, 0), (2, 3), (3, 2)):
        assert p2p(a, b) == [0, 0, 5, 0] and topo(a, b) == 10
    for a, b in ((0, 2), (0, 3), (1, 2), (1, 3), (3, 0)):
        assert p2p(a, b) == [1, 1, 5, 1] and topo(a, b) == 50
    field = nvml.nvmlDeviceGetFieldValues(handles[0], [230])[0]
    assert (field.nvmlReturn, field.value.uiVal) == (0, 0)


def test_ecc_bad(fake_gpu_host, nvml):
    fake_gpu_host("ecc-bad")
    handles = opened(None)
    assert len(handles) == 8
    bad = handles[5]
    assert nvml.nvmlDeviceGetPciInfo(bad).busId == "00000000:AB:00.0"
    assert nvml.nvmlDeviceGetTotalEccErrors(bad, 1, 0) == 4
    assert nvml.nvmlDeviceGetTotalEccErrors(bad, 1, 1) == 4
    assert nvml.nvmlDeviceGetTotalEccErrors(bad, 0, 0) == 12
    assert nvml.nvmlDeviceGetRemappedRows(bad) == (0, 1, 1, 0)
    for index, handle in enumerate(handles):
        if index != 5:
            assert nvml.nvmlDeviceGetTotalEccErrors(handle, 1, 0) == 0
            assert nvml.nvmlDeviceGetRemappedRows(handle) == (0, 0, 0, 0)


def test_missing_gpu(fake_gpu_host, nvml):
    host = fake_gpu_host("missing-gpu")
    handles = opened(None)
    assert len(handles) == 7
    assert "00000000:DB:00.0" not in bus_ids(handles)
    # ... yet the GPU is on the PCIe bus.
    assert os.path.exists(os.path.join(host.sysfs_root, "bus", "pci", "devices", "0000:db:00.0"))


def test_pcie_degraded(fake_gpu_host, nvml):
    fake_gpu_host("pcie-degraded")
    handles = opened(None)
    widths = [(nvml.nvmlDeviceGetCurrPcieLinkWidth(h), nvml.nvmlDeviceGetMaxPcieLinkWidth(h)) for h in handles]
    assert widths == [(16, 16)] * 3 + [(8, 16)] + [(16, 16)] * 4
    assert nvml.nvmlDeviceGetPciInfo(handles[3]).busId == "00000000:5D:00.0"


def test_no_driver(fake_gpu_host, nvml):
    fake_gpu_host("no-driver")
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded) as caught:
        nvml.nvmlInit()
    assert caught.value.value == 9


# --- mkroot: sysfs, procfs, kmsg ----------------------------------------------------------------

ACS_CAP_ID = 0x000D


def acs_control(config):
    offset = 0x100
    while offset:
        header = struct.unpack_from("<I", config, offset)[0]
        if header & 0xFFFF == ACS_CAP_ID:
            return struct.unpack_from("<H", config, offset + 6)[0]
        offset = (header >> 20) & 0xFFC
    return None


def read_config(host, bdf):
    with open(os.path.join(host.sysfs_root, "bus", "pci", "devices", bdf, "config"), "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_mkroot_tree_matches_nvml_bus_ids(fake_gpu_host, name):
    host = fake_gpu_host(name)
    cfg = host.config
    devices_dir = os.path.join(host.sysfs_root, "bus", "pci", "devices")
    for bdf in os.listdir(devices_dir):
        link = os.path.join(devices_dir, bdf)
        assert os.path.islink(link) and not os.path.isabs(os.readlink(link))
        target = os.path.realpath(link)
        assert target.startswith(os.path.realpath(os.path.join(host.sysfs_root, "devices", "pci")))
        assert os.path.basename(target) == bdf
        assert len(read_config(host, bdf)) == 4096
    for index in range(cfg.gpu_count()):
        bdf = cfg.gpu(index, "pci_bus_id")[-12:].lower()
        config = read_config(host, bdf)
        vendor, device = struct.unpack_from("<HH", config, 0)
        assert (vendor, device) == (0x10DE, int(cfg.gpu(index, "pci_device_id"), 0) >> 16)
        assert config[0x0B] == 0x03  # display controller
        chain = [p for p in os.path.realpath(os.path.join(devices_dir, bdf)).split(os.sep)
                 if re.match(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$", p)][:-1]
        assert len(chain) == 3  # root port, switch upstream, switch downstream
        for bridge in chain:
            header = read_config(host, bridge)
            assert header[0x0B] == 0x06 and header[0x0A] == 0x04 and header[0x0E] == 1  # PCI bridge, type 1


def test_mkroot_acs_bits_on_the_incident_ports(fake_gpu_host):
    host = fake_gpu_host("pcie-4-acs")
    chain = os.path.realpath(os.path.join(host.sysfs_root, "bus", "pci", "devices", "0000:1a:00.0")).split(os.sep)
    assert chain[-5:] == ["pci0000:15", "0000:15:01.0", "0000:16:00.0", "0000:17:02.0", "0000:1a:00.0"]
    controls = {bdf: acs_control(read_config(host, bdf)) for bdf in (
        "0000:15:01.0", "0000:16:00.0", "0000:17:00.0", "0000:17:01.0", "0000:17:02.0", "0000:17:03.0")}
    assert controls == {"0000:15:01.0": 0x1D, "0000:16:00.0": None, "0000:17:00.0": 0,
                        "0000:17:01.0": 0, "0000:17:02.0": 0x1D, "0000:17:03.0": 0x1D}
    config = read_config(host, "0000:17:02.0")
    # AER at 0x100 pointing at ACS at 0x148; ACS Control (cap + 6) = SrcValid|ReqRedir|CmpltRedir|UpstreamFwd
    assert struct.unpack_from("<I", config, 0x100)[0] == 0x0001 | (2 << 16) | (0x148 << 20)
    assert struct.unpack_from("<H", config, 0x148)[0] == ACS_CAP_ID
    assert struct.unpack_from("<H", config, 0x148 + 6)[0] == 0x0001 | 0x0004 | 0x0008 | 0x0010
    # the switch above all four GPUs: bus 0x16, secondary 0x17, subordinate 0x1b
    assert tuple(read_config(host, "0000:16:00.0")[0x18:0x1B]) == (0x16, 0x17, 0x1B)
    groups = os.listdir(os.path.join(host.sysfs_root, "kernel", "iommu_groups"))
    assert len(groups) == 10
    members = [os.listdir(os.path.join(host.sysfs_root, "kernel", "iommu_groups", g, "devices")) for g in groups]
    assert sorted(m[0] for m in members) == sorted(os.listdir(os.path.join(host.sysfs_root, "bus", "pci", "devices")))
    with open(os.path.join(host.procfs_root, "cmdline")) as handle:
        assert "intel_iommu=on" in handle.read().split()


@pytest.mark.parametrize("name", ["h100-sxm-8", "pcie-4-two-sockets"])
def test_mkroot_iommu_off_has_no_groups(fake_gpu_host, name):
    host = fake_gpu_host(name)
    assert os.listdir(os.path.join(host.sysfs_root, "kernel", "iommu_groups")) == []
    with open(os.path.join(host.procfs_root, "cmdline")) as handle:
        assert "iommu" not in handle.read()


def test_mkroot_procfs(fake_gpu_host):
    host = fake_gpu_host("h100-sxm-8")
    with open(os.path.join(host.procfs_root, "uptime")) as handle:
        assert handle.read() == "86400.00 170000.00\n"
    with open(os.path.join(host.procfs_root, "meminfo")) as handle:
        assert re.search(r"^MemTotal:\s+2147483648 kB$", handle.read(), re.M)
    with open(os.path.join(host.procfs_root, "cpuinfo")) as handle:
        assert "hypervisor" not in handle.read()


KMSG_RE = re.compile(r"^(\d+),(\d+),(\d+),-;(.*)$")
XID_RE = re.compile(r"NVRM: Xid \(PCI:([0-9a-fA-F:.]+)\): (\d+)")


def kmsg(host):
    with open(host.kernel_log) as handle:
        records = [KMSG_RE.match(line).groups() for line in handle.read().splitlines()]
    return [(int(p), int(s), int(t), m) for p, s, t, m in records]


def test_mkroot_kmsg_ecc_bad_has_a_recent_xid_79(fake_gpu_host):
    records = kmsg(fake_gpu_host("ecc-bad"))
    sequences = [r[1] for r in records]
    assert sequences == sorted(sequences)
    xids = [(XID_RE.search(m).groups(), t) for _p, _s, t, m in records if XID_RE.search(m)]
    assert xids == [(("0000:ab:00", "79"), (86400 - 1800) * 10 ** 6)]
    assert (4, 1201, 84600000000,
            "NVRM: Xid (PCI:0000:ab:00): 79, pid=48213, name=python3, GPU has fallen off the bus.") in records


@pytest.mark.parametrize("name", [n for n in TOPOLOGIES if not n.startswith("ecc-bad")])
def test_mkroot_kmsg_other_topologies_have_no_xid(fake_gpu_host, name):
    records = kmsg(fake_gpu_host(name))
    assert records and not [m for _p, _s, _t, m in records if XID_RE.search(m)]


def test_mkroot_runs_as_a_script(tmp_path):
    import subprocess
    import sys
    out = tmp_path / "root"
    proc = subprocess.run([sys.executable, mkroot.__file__, os.path.join(TOPOLOGY_DIR, "pcie-4-acs.conf"), str(out)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout
    assert os.path.islink(out / "sys" / "bus" / "pci" / "devices" / "0000:1b:00.0")
    # running again replaces the tree
    proc = subprocess.run([sys.executable, mkroot.__file__, os.path.join(TOPOLOGY_DIR, "pcie-4-acs.conf"), str(out)], check=False)
    assert proc.returncode == 0


def test_format_rules(monkeypatch, tmp_path, nvml, fake_nvml_library):
    """Specificity (literal > range > *), later line wins a tie, include then override, {i}, errors."""
    conf = tmp_path / "rules.conf"
    conf.write_text(
        "# Format rules exercised on a made-up three-GPU host.\n"
        "include %s\n"
        "gpu.count 3\n"
        "gpu.*.serial SN-{i}\n"
        "gpu.*.power.usage_mw 100\n"
        "gpu.0-1.power.usage_mw 200\n"
        "gpu.1.power.usage_mw 300\n"
        "gpu.*.power.usage_mw 400\n"          # later, but less specific than the two above
        "gpu.*.power.limit_mw 1\n"
        "gpu.*.power.limit_mw 2\n"            # later wins among equals
        "gpu.2.handle error:GPU_IS_LOST\n"
        "gpu.1.temperature error:NO_PERMISSION\n"
        "gpu.0.processes 11:1GiB 12:n/a\n"
        "topo.1.0 PXB\n"
        "p2p.0.1.read DISABLED_BY_REGKEY\n"
        "p2p.1.0.read error:TIMEOUT\n"        # same specificity as p2p.0.1: the later line wins both ways
        "# a comment with a key-like text gpu.0.name X\n"
        "kmsg.5 4 10 ignored # by the C library\n" % os.path.join(TOPOLOGY_DIR, "common", "h100-sxm5.inc"))
    monkeypatch.setenv("FAKE_NVML_TOPOLOGY", str(conf))
    nvml.nvmlInit()
    assert nvml.nvmlDeviceGetCount() == 3
    h0, h1 = nvml.nvmlDeviceGetHandleByIndex(0), nvml.nvmlDeviceGetHandleByIndex(1)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        nvml.nvmlDeviceGetHandleByIndex(2)
    assert [nvml.nvmlDeviceGetPowerUsage(h) for h in (h0, h1)] == [200, 300]
    assert nvml.nvmlDeviceGetEnforcedPowerLimit(h0) == 2
    assert nvml.nvmlDeviceGetSerial(h1) == "SN-1"
    assert nvml.nvmlDeviceGetName(h0) == "NVIDIA H100 80GB HBM3"  # from the include
    with pytest.raises(pynvml.NVMLError_NoPermission):
        nvml.nvmlDeviceGetTemperature(h1, 0)
    assert nvml.nvmlDeviceGetTemperature(h0, 0) == 33
    with pytest.raises(pynvml.NVMLError_NotSupported):  # no line at all
        nvml.nvmlDeviceGetPciInfo(h0)
    procs = nvml.nvmlDeviceGetComputeRunningProcesses(h0)
    assert [(p.pid, p.usedGpuMemory) for p in procs] == [(11, 1024 ** 3), (12, None)]
    assert nvml.nvmlDeviceGetTopologyCommonAncestor(h0, h1) == 20
    assert nvml.nvmlDeviceGetTopologyCommonAncestor(h1, h0) == 20
    assert nvml.nvmlDeviceGetTopologyCommonAncestor(h0, h0) == 0
    for a, b in ((h0, h1), (h1, h0)):
        with pytest.raises(pynvml.NVMLError_Timeout):
            nvml.nvmlDeviceGetP2PStatus(a, b, 0)
    # the Python resolver agrees
    cfg = mkroot.Topology(str(conf))
    assert cfg.gpu(0, "power.usage_mw") == "200" and cfg.gpu(2, "power.usage_mw") == "400"
    assert cfg.gpu(1, "power.limit_mw") == "2" and cfg.gpu(4, "serial") == "SN-4"
    assert cfg.description == "Format rules exercised on a made-up three-GPU host."
