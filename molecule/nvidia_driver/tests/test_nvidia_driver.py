"""Testinfra checks of the nvidia_driver role on Debian 12 (driver 535) and Debian 13 (driver 550)
from Debian non-free, and on the mirror hosts (nvidia-driver-mirror-*) from the harness's local
mirror of NVIDIA's CUDA repository (stand-in packages, branch 550, tests/harness/airgap_mirror.sh)."""

import os
import re

import pytest

COMPONENTS = ("contrib", "non-free", "non-free-firmware")
PREF = "/etc/apt/preferences.d/inferops-nvidia-driver.pref"
UNATTENDED = "/etc/apt/apt.conf.d/51inferops-nvidia-driver-unattended"
HELD = ("nvidia-driver", "nvidia-kernel-dkms", "nvidia-smi", "nvidia-persistenced", "libcuda1", "libnvidia-ml1")


MIRROR = "https://mirror.inferops.test/compute/cuda/repos/debian%d/x86_64/"
# What each mirror host asked for (molecule.yml): the newest 550 (550.127.08-1 as the harness builds
# the mirror, or the newer release test_upgrade_safety.py publishes once a run on this machine left it
# there), and an exact older 550 release.
MIRROR_VERSION = {"nvidia-driver-mirror-debian12": "550.127.08-1", "nvidia-driver-mirror-debian13": "550.54.15-1"}


def _major(host):
    return int(host.system_info.release.split(".")[0])


def _mirror(host):
    return host.backend.get_hostname() in MIRROR_VERSION


def _branch(host):
    return "550" if _mirror(host) or _major(host) >= 13 else "535"


distro_only = pytest.mark.usefixtures("_distro_host")
mirror_only = pytest.mark.usefixtures("_mirror_host")


@pytest.fixture()
def _distro_host(host):
    if _mirror(host):
        pytest.skip("a host of NVIDIA's CUDA repository (mirror)")


@pytest.fixture()
def _mirror_host(host):
    if not _mirror(host):
        pytest.skip("a host of Debian non-free")


@distro_only
def test_driver_packages_installed_on_the_branch(host):
    branch = _branch(host)
    for name in ("nvidia-driver", "nvidia-kernel-dkms", "nvidia-smi", "libcuda1", "libnvidia-ml1"):
        pkg = host.package(name)
        assert pkg.is_installed, name
        assert pkg.version.startswith(branch + "."), (name, pkg.version)
    assert host.package("nvidia-persistenced").is_installed
    # The real user-space library the container toolkit injects into containers is there.
    assert host.run("ldconfig -p | grep -q 'libnvidia-ml.so.1 '").rc == 0
    # Fabric manager only on NVSwitch systems; these hosts have none.
    assert not host.package("nvidia-fabricmanager-" + branch).is_installed


@distro_only
def test_components_added_to_existing_sources_only(host):
    if _major(host) >= 13:
        text = host.file("/etc/apt/sources.list.d/debian.sources").content_string
        lines = [line for line in text.splitlines() if line.startswith("Components:")]
        assert len(lines) == 3
        for line in lines:
            assert line.split(":", 1)[1].split() == ["main", *COMPONENTS], line
    else:
        text = host.file("/etc/apt/sources.list").content_string
        lines = [line for line in text.splitlines() if line.startswith("deb ")]
        assert len(lines) == 3
        for line in lines:
            assert line.split()[3:] == ["main", *COMPONENTS], line
    # No mirror of our own: the URIs are the ones the image came with, no CUDA repository.
    assert "deb.debian.org" in text
    assert not host.file("/etc/apt/sources.list.d/nvidia-cuda.sources").exists


@distro_only
def test_apt_pin_to_branch(host):
    pref = host.file(PREF)
    assert pref.is_file and pref.mode == 0o644
    assert re.search(r"^Pin: version %s\.\*$" % _branch(host), pref.content_string, re.M)
    assert re.search(r"^Pin-Priority: 1001$", pref.content_string, re.M)
    policy = host.check_output("apt-cache policy nvidia-driver")
    installed = re.search(r"Installed: (\S+)", policy).group(1)
    candidate = re.search(r"Candidate: (\S+)", policy).group(1)
    assert installed == candidate
    assert re.search(r"^\s+\*\*\* %s 1001$" % re.escape(installed), policy, re.M), policy


@pytest.mark.parametrize("name", HELD)
def test_driver_packages_held(host, name):
    assert host.check_output("dpkg-query -W -f '${Status}' %s" % name).startswith("hold ")


def test_unattended_upgrades_exclusion(host):
    drop_in = host.file(UNATTENDED)
    assert drop_in.is_file
    dump = host.check_output("apt-config dump Unattended-Upgrade::Package-Blacklist")
    for pattern in ("nvidia-", "libnvidia-", "libcuda1"):
        assert '"%s"' % pattern in dump, dump


def test_nouveau_blacklisted(host):
    conf = host.file("/etc/modprobe.d/inferops-blacklist-nouveau.conf")
    assert conf.is_file
    assert "blacklist nouveau" in conf.content_string.splitlines()
    assert "options nouveau modeset=0" in conf.content_string.splitlines()
    # modprobe reads it as a blacklist entry.
    assert "blacklist nouveau" in host.check_output("modprobe --showconfig | grep -w nouveau")


def test_persistenced_enabled(host):
    assert host.service("nvidia-persistenced").is_enabled


@distro_only
def test_container_outcome_of_nvml(host):
    # The real libnvidia-ml loads, and without a kernel module NVML says DriverNotLoaded.
    out = host.run("python3 -c 'import pynvml; pynvml.nvmlInit()'")
    assert out.rc != 0
    assert "DriverNotLoaded" in out.stderr, out.stderr


@mirror_only
def test_mirror_repository_and_key(host):
    sources = host.file("/etc/apt/sources.list.d/nvidia-cuda.sources").content_string
    assert re.search(r"^URIs: %s$" % re.escape(MIRROR % _major(host)), sources, re.M), sources
    assert re.search(r"^Suites: /$", sources, re.M), sources
    assert re.search(r"^Signed-By: /etc/apt/keyrings/nvidia-cuda.asc$", sources, re.M), sources
    # The key apt checks the repository with is the mirror's own (the role was told its fingerprint).
    with open(os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], ".cache/airgap/mirror/www/inferops-test-mirror.asc")) as f:
        assert host.file("/etc/apt/keyrings/nvidia-cuda.asc").content_string == f.read()
    # apt reads the signed repository over HTTPS (the test CA is trusted), NVIDIA's Release fields.
    policy = host.check_output("apt-cache policy")
    assert re.search(r"release o=NVIDIA,l=NVIDIA CUDA", policy), policy
    # No Debian non-free on these hosts: every driver package comes from the mirror.
    debian = "/etc/apt/sources.list.d/debian.sources" if _major(host) >= 13 else "/etc/apt/sources.list"
    assert "non-free" not in host.file(debian).content_string


@mirror_only
def test_mirror_metapackage_held(host):
    # The package the role installs from NVIDIA's repository; the Debian-named ones it pulls in are
    # held too (test_driver_packages_held).
    assert host.check_output("dpkg-query -W -f '${Status}' cuda-drivers-550").startswith("hold ")


@mirror_only
def test_mirror_requested_version_installed_and_pinned(host):
    want = MIRROR_VERSION[host.backend.get_hostname()]
    if host.backend.get_hostname().endswith("12"):
        # The branch pin installs the newest 550 the sources offer (madison lists the newest first).
        newest = host.check_output("apt-cache madison cuda-drivers-550").splitlines()[0].split("|")[1].strip()
        assert host.run("dpkg --compare-versions %s ge %s" % (newest, want)).rc == 0, newest
        want = newest
    for name in ("cuda-drivers-550", "nvidia-driver", "nvidia-kernel-dkms", "nvidia-smi", "libcuda1", "libnvidia-ml1",
                 "nvidia-persistenced"):
        assert host.package(name).version == want, name
    # NVIDIA's cuda-drivers-550 only sets lower bounds: without the pin apt would take 570.
    assert not host.package("cuda-drivers-570").is_installed
    assert "570.124.06-1" in host.check_output("apt-cache madison nvidia-driver")
    pref = host.file(PREF).content_string
    pin = want if host.backend.get_hostname().endswith("13") else "550.*"
    assert re.search(r"^Pin: version %s$" % re.escape(pin), pref, re.M), pref
    policy = host.check_output("apt-cache policy nvidia-driver")
    assert re.search(r"Candidate: %s$" % re.escape(want), policy, re.M), policy
    # The stand-in's binary reports the version it stands for.
    assert "Driver Version: %s" % want.rsplit("-", 1)[0] in host.check_output("nvidia-smi")
    assert "test stand-in" in host.check_output("dpkg-query -W -f '${Description}' nvidia-driver")
