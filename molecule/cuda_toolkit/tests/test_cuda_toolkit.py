"""Testinfra checks of the cuda_toolkit role with Debian's packages.

Debian 13: CUDA 12.4 and NCCL 2.22. Debian 12: CUDA 11.8; bookworm has no NCCL package, so the
role installs none and says so. The mirror hosts (cuda-toolkit-mirror-*) install from the harness's
local mirror of NVIDIA's CUDA repository (stand-in packages, tests/harness/airgap_mirror.sh).
"""

import os
import re

import pytest

# Debian major release -> (CUDA release, NCCL release or None)
RELEASES = {"13": ("12.4", "2.22"), "12": ("11.8", None)}
PROFILE = "/etc/profile.d/inferops-cuda.sh"


# What each mirror host asked for (molecule.yml): the CUDA repository's defaults, and an older NCCL.
MIRROR_EXPECTED = {
    "cuda-toolkit-mirror-debian12": ("12.4.1-1", "2.22.3-1+cuda12.4"),
    "cuda-toolkit-mirror-debian13": ("12.4.1-1", "2.21.5-1+cuda12.4"),
}
MIRROR = "https://mirror.inferops.test/compute/cuda/repos/debian%s/x86_64/"


def _mirror(host):
    return host.backend.get_hostname() in MIRROR_EXPECTED


@pytest.fixture(name="pinned")
def fixture_pinned(host):
    if _mirror(host):
        pytest.skip("a host of NVIDIA's CUDA repository (mirror): test_mirror_* below")
    major = host.file("/etc/debian_version").content_string.strip().split(".")[0]
    major = {"trixie/sid": "13"}.get(major, major)
    return RELEASES[major]


def test_nvcc_reports_the_pinned_release(host, pinned):
    cuda = pinned[0]
    # Through a login shell, so /etc/profile.d is what puts the toolkit on PATH.
    out = host.check_output("bash -lc 'command -v nvcc && nvcc --version'")
    assert re.search(r"release %s, V%s\.\d+" % (re.escape(cuda), re.escape(cuda)), out), out


def test_nccl_library_present(host, pinned):
    nccl = pinned[1]
    if nccl is None:
        # Debian 12 ships no NCCL package: the role must not invent one.
        assert not host.package("libnccl2").is_installed
        assert "libnccl.so" not in host.check_output("ldconfig -p")
        return
    pkg = host.package("libnccl2")
    assert pkg.is_installed
    assert pkg.version.startswith(nccl + "."), pkg.version
    libs = host.check_output("ldconfig -p")
    assert re.search(r"^\s+libnccl\.so\.2 .*=> \S+$", libs, re.M), libs
    assert host.file("/usr/include/nccl.h").exists


@pytest.mark.parametrize("name,index", [
    ("nvidia-cuda-toolkit", 0), ("nvidia-cuda-dev", 0), ("libnccl2", 1), ("libnccl-dev", 1),
])
def test_packages_pinned_and_held(host, pinned, name, index):
    version = pinned[index]
    if version is None:
        pytest.skip("Debian 12 ships no NCCL package")
    assert host.package(name).version.startswith(version + ".")
    assert host.check_output("dpkg-query -W -f '${Status}' %s" % name).startswith("hold ")
    policy = host.check_output("apt-cache policy %s" % name)
    installed = re.search(r"Installed: (\S+)", policy).group(1)
    assert re.search(r"^\s+\*\*\* %s 1001$" % re.escape(installed), policy, re.M), policy


def test_profile_exports_the_toolkit(host):
    if _mirror(host):
        pytest.skip("a host of NVIDIA's CUDA repository (mirror): test_mirror_* below")
    script = host.file(PROFILE)
    assert script.is_file and script.mode == 0o644
    env = host.check_output("bash -lc 'echo $CUDA_HOME; echo $PATH; echo $LD_LIBRARY_PATH'").splitlines()
    assert env[0] == "/usr/lib/nvidia-cuda-toolkit"
    assert "/usr/lib/nvidia-cuda-toolkit/bin" in env[1].split(":")
    assert "/usr/lib/x86_64-linux-gnu" in env[2].split(":")
    # Sourcing it twice adds nothing twice.
    twice = host.check_output("bash -c '. %s; . %s; echo $PATH'" % (PROFILE, PROFILE))
    assert twice.split(":").count("/usr/lib/nvidia-cuda-toolkit/bin") == 1


def test_no_recommends_pulled(host):
    if _mirror(host):
        pytest.skip("a host of NVIDIA's CUDA repository (mirror)")
    # Installed without recommends: the documentation package and the visual profiler stay out.
    assert not host.package("nvidia-cuda-toolkit-doc").is_installed
    assert not host.package("nvidia-visual-profiler").is_installed


@pytest.fixture(name="mirror_expected")
def fixture_mirror_expected(host):
    if not _mirror(host):
        pytest.skip("a host of Debian's packages")
    return MIRROR_EXPECTED[host.backend.get_hostname()]


def test_mirror_repository_and_key(host, mirror_expected):
    """mirror.yml and the role: the one sources file both roles own, the mirror's key, accepted by apt."""
    major = host.system_info.release.split(".")[0]
    major = {"trixie/sid": "13"}.get(major, major)
    sources = host.file("/etc/apt/sources.list.d/nvidia-cuda.sources").content_string
    assert "URIs: %s\n" % (MIRROR % major) in sources, sources
    assert "Suites: /\n" in sources
    assert "Signed-By: /etc/apt/keyrings/nvidia-cuda.asc\n" in sources
    key = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], ".cache/airgap/mirror/www/inferops-test-mirror.asc")
    with open(key) as f:
        assert host.file("/etc/apt/keyrings/nvidia-cuda.asc").content_string == f.read()
    # apt fetched the mirror's signed index over HTTPS: the signature and the certificate were good.
    assert re.search(r"release o=NVIDIA,l=NVIDIA CUDA", host.check_output("apt-cache policy"))


def test_mirror_toolkit_and_nccl_installed_pinned_held(host, mirror_expected):
    cuda, nccl = mirror_expected
    assert host.package("cuda-toolkit-12-4").version == cuda
    assert host.package("libnccl2").version == nccl
    assert host.package("libnccl-dev").version == nccl
    # The newest NCCL of the repository is for CUDA 12.6: the pin keeps the +cuda12.4 build.
    assert "2.22.3-1+cuda12.6" in host.check_output("apt-cache madison libnccl2")
    for name in ("cuda-toolkit-12-4", "libnccl2", "libnccl-dev"):
        assert host.check_output("dpkg-query -W -f '${Status}' %s" % name).startswith("hold "), name
    policy = host.check_output("apt-cache policy libnccl2")
    assert re.search(r"^\s+\*\*\* %s 1001$" % re.escape(nccl), policy, re.M), policy
    # The stand-ins' files the checks look at: nvcc's release through the profile, NCCL's header.
    out = host.check_output("bash -lc 'echo $CUDA_HOME; nvcc --version'")
    assert out.splitlines()[0] == "/usr/local/cuda-12.4"
    assert "release 12.4, V12.4.1" in out
    major, minor, patch = nccl.split("-")[0].split(".")
    header = host.file("/usr/include/nccl.h").content_string
    assert "#define NCCL_MINOR %s" % minor in header and "#define NCCL_PATCH %s" % patch in header
    assert "test stand-in" in host.check_output("dpkg-query -W -f '${Description}' libnccl2")
