"""Testinfra checks of the cuda_toolkit role with Debian's packages.

Debian 13: CUDA 12.4 and NCCL 2.22. Debian 12: CUDA 11.8; bookworm has no NCCL package, so the
role installs none and says so.
"""

import re

import pytest

# Debian major release -> (CUDA release, NCCL release or None)
RELEASES = {"13": ("12.4", "2.22"), "12": ("11.8", None)}
PROFILE = "/etc/profile.d/inferops-cuda.sh"


@pytest.fixture(name="pinned")
def fixture_pinned(host):
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
    # Installed without recommends: the documentation package and the visual profiler stay out.
    assert not host.package("nvidia-cuda-toolkit-doc").is_installed
    assert not host.package("nvidia-visual-profiler").is_installed


def test_cuda_repository_from_the_mirror(host):
    """mirror.yml: the one sources file both roles own through package_repository, accepted by apt."""
    sources = host.file("/etc/apt/sources.list.d/nvidia-cuda.sources").content_string
    assert "URIs: file:///srv/inferops-cuda-mirror/\n" in sources
    assert "Suites: /\n" in sources
    assert "Signed-By: /etc/apt/keyrings/nvidia-cuda.asc\n" in sources
    assert host.file("/etc/apt/keyrings/nvidia-cuda.asc").content_string.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    # apt fetched the mirror's signed index: the signature was good.
    assert host.file("/var/lib/apt/lists/_srv_inferops-cuda-mirror_InRelease").exists
