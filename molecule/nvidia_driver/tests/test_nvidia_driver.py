"""Testinfra checks of the nvidia_driver role on Debian 12 (driver 535) and Debian 13 (driver 550)."""

import re

import pytest

COMPONENTS = ("contrib", "non-free", "non-free-firmware")
PREF = "/etc/apt/preferences.d/inferops-nvidia-driver.pref"
UNATTENDED = "/etc/apt/apt.conf.d/51inferops-nvidia-driver-unattended"
HELD = ("nvidia-driver", "nvidia-kernel-dkms", "nvidia-smi", "nvidia-persistenced", "libcuda1", "libnvidia-ml1")


def _major(host):
    return int(host.system_info.release.split(".")[0])


def _branch(host):
    return "535" if _major(host) == 12 else "550"


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


def test_container_outcome_of_nvml(host):
    # The real libnvidia-ml loads, and without a kernel module NVML says DriverNotLoaded.
    out = host.run("python3 -c 'import pynvml; pynvml.nvmlInit()'")
    assert out.rc != 0
    assert "DriverNotLoaded" in out.stderr, out.stderr
