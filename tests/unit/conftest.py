"""Shared fixtures for the unit suite: a simulated GPU host behind the unmodified pynvml.

The fake NVML (tests/fake_nvml) is built if needed and preloaded once, RTLD_GLOBAL, so that
pynvml's later CDLL("libnvidia-ml.so.1") resolves to it by SONAME: LD_LIBRARY_PATH cannot change
after the process started, and the loader reuses an already loaded object whose SONAME matches.

    def test_x(fake_gpu_host):
        host = fake_gpu_host("pcie-4-acs")   # sets FAKE_NVML_TOPOLOGY, writes the fake root
        host.sysfs_root, host.procfs_root, host.kernel_log   # for the module's path parameters
        host.topology                         # the .conf path; host.config.lookup("gpu.0.name")

Between tests the fake's init refcount and pynvml's cached state are reset, so every test starts
from "NVML not initialised" whatever the previous one left behind.
"""

import ctypes
import importlib.util
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_DIR = os.path.join(REPO, "tests", "fake_nvml")
TOPOLOGY_DIR = os.path.join(FAKE_DIR, "topologies")
LIBRARY = os.path.join(FAKE_DIR, "build", "libnvidia-ml.so.1")
MKROOT = os.path.join(FAKE_DIR, "mkroot.py")


def topology_names():
    """Every shipped topology (tests/fake_nvml/topologies/*.conf), sorted."""
    return sorted(name[:-5] for name in os.listdir(TOPOLOGY_DIR) if name.endswith(".conf"))


def _stale():
    if not os.path.exists(LIBRARY):
        return True
    built = os.path.getmtime(LIBRARY)
    return any(os.path.getmtime(os.path.join(FAKE_DIR, name)) > built for name in ("fake_nvml.c", "Makefile"))


def _build_and_preload():
    if _stale():
        proc = subprocess.run(["make", "-C", FAKE_DIR], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, check=False)
        if proc.returncode != 0 and not os.path.exists(LIBRARY):
            return None, "building the fake NVML failed:\n%s" % proc.stdout
    try:
        return ctypes.CDLL(LIBRARY, mode=ctypes.RTLD_GLOBAL), None
    except OSError as exc:
        return None, "cannot load %s: %s" % (LIBRARY, exc)


FAKE_LIB, FAKE_LIB_ERROR = _build_and_preload()
if FAKE_LIB is not None:
    FAKE_LIB.fake_nvml_topology_path.restype = ctypes.c_char_p


def _load_mkroot():
    spec = importlib.util.spec_from_file_location("fake_nvml_mkroot", MKROOT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mkroot = _load_mkroot()


class FakeGpuHost(object):
    """What one topology brings: the NVML answers (via FAKE_NVML_TOPOLOGY) and a fake root."""

    def __init__(self, name, root):
        self.name = name
        self.topology = os.path.join(TOPOLOGY_DIR, name + ".conf")
        self.root = root
        self.sysfs_root = os.path.join(root, "sys")
        self.procfs_root = os.path.join(root, "proc")
        self.kernel_log = os.path.join(root, "kmsg")
        self.config = mkroot.Topology(self.topology)
        self.description = self.config.description

    def __repr__(self):
        return "FakeGpuHost(%r, root=%r)" % (self.name, self.root)


def _reset_nvml():
    """Drop every NVML init, in the fake and in pynvml's own bookkeeping."""
    if FAKE_LIB is not None:
        FAKE_LIB.fake_nvml_reset()
    try:
        import pynvml
    except ImportError:
        return
    # pynvml keeps the loaded library (harmless: it is the preloaded fake) and a refcount.
    if hasattr(pynvml, "_nvmlLib_refcount"):
        pynvml._nvmlLib_refcount = 0


@pytest.fixture(autouse=True)
def _nvml_clean_state():
    _reset_nvml()
    yield
    _reset_nvml()


@pytest.fixture
def fake_nvml_library():
    """The preloaded fake NVML (ctypes.CDLL); fails the test when it could not be built."""
    if FAKE_LIB is None:
        pytest.fail(FAKE_LIB_ERROR)
    return FAKE_LIB


@pytest.fixture
def fake_gpu_host(fake_nvml_library, monkeypatch, tmp_path):
    """Factory: fake_gpu_host(name) -> FakeGpuHost, with FAKE_NVML_TOPOLOGY pointing at it.

    Each call writes a fresh fake root under the test's tmp_path and makes that topology the
    one the next nvmlInit reads; calling it again switches topology within the test.
    """
    known = topology_names()

    def make(name):
        if name not in known:
            raise ValueError("unknown topology %r (have: %s)" % (name, ", ".join(known)))
        root = str(tmp_path / ("root-" + name))
        mkroot.make_root(os.path.join(TOPOLOGY_DIR, name + ".conf"), root)
        host = FakeGpuHost(name, root)
        monkeypatch.setenv("FAKE_NVML_TOPOLOGY", host.topology)
        return host

    return make


class ModuleExit(Exception):
    """What an in-process module run ended with: its result and whether it failed."""

    def __init__(self, result, failed):
        super().__init__(result.get("msg"))
        self.result = result
        self.failed = failed


@pytest.fixture
def module_main(monkeypatch):
    """module_main(main, params) runs a module's main() in-process and returns its ModuleExit."""
    from ansible.module_utils import basic
    from ansible.module_utils.testing import patch_module_args

    def exit_json(self, **result):
        raise ModuleExit(result, failed=False)

    def fail_json(self, msg, **result):
        result["msg"] = msg
        raise ModuleExit(result, failed=True)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def run(main, params):
        with patch_module_args(params):
            with pytest.raises(ModuleExit) as caught:
                main()
        return caught.value
    return run
