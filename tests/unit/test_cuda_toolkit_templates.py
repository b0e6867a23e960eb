"""Render the cuda_toolkit role's variables and templates for every supported platform.

Molecule runs the role on Debian 13 only (the toolkit is a 2 GB download); these tests render
what it would write on Debian 12, Ubuntu and the RHEL family with Ansible's own templating engine
and the role's variable files. NVIDIA's CUDA repository is inferops.gpu.package_repository's
(tests/unit/test_package_repository.py).
"""

import fnmatch
import os
import re

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE = os.path.join(REPO, "roles", "cuda_toolkit")

PLATFORMS = {
    "Debian-12": ("Debian", "Debian", "12", "debian12"),
    "Debian-13": ("Debian", "Debian", "13", "debian13"),
    "Ubuntu-22": ("Ubuntu", "Debian", "22", "ubuntu2204"),
    "Ubuntu-24": ("Ubuntu", "Debian", "24", "ubuntu2404"),
    "RedHat-8": ("RedHat", "RedHat", "8", "rhel8"),
    "RedHat-9": ("RedHat", "RedHat", "9", "rhel9"),
}


def _trust(data):
    if isinstance(data, str):
        return trust_as_template(data)
    if isinstance(data, dict):
        return {key: _trust(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_trust(value) for value in data]
    return data


class Role:
    def __init__(self, platform, role=ROLE, arch="x86_64", **overrides):
        loader = DataLoader()
        variables = {}
        for name in ("defaults/main.yml", "vars/main.yml", "vars/%s.yml" % platform):
            variables.update(_trust(loader.load_from_file(os.path.join(role, name))))
        distribution, family, major = PLATFORMS[platform][:3]
        variables["ansible_facts"] = {
            "distribution": distribution, "os_family": family, "distribution_major_version": major,
            "architecture": arch, "virtualization_role": "host", "virtualization_type": "kvm",
        }
        variables["ansible_managed"] = "Ansible managed"
        variables.update(_trust(overrides))
        self.role = role
        self.templar = Templar(loader=loader, variables=variables)

    def var(self, name):
        return self.templar.template(trust_as_template("{{ %s }}" % name))

    def render(self, template):
        with open(os.path.join(self.role, "templates", template)) as handle:
            return self.templar.template(trust_as_template(handle.read()))


@pytest.mark.parametrize("platform,toolkit,nccl", [
    ("Debian-12", "11.8", []),
    ("Debian-13", "12.4", ["libnccl2", "libnccl-dev"]),
])
def test_debian_distro_defaults(platform, toolkit, nccl):
    role = Role(platform)
    assert role.var("__cuda_toolkit_version") == toolkit
    assert role.var("__cuda_toolkit_packages") == ["nvidia-cuda-toolkit", "nvidia-cuda-dev"]
    assert role.var("__cuda_toolkit_nccl_packages") == nccl
    assert role.var("__cuda_toolkit_nccl_wanted") is bool(nccl)
    pref = role.render("cuda-toolkit.pref.j2")
    assert "Pin: version %s.*\n" % toolkit in pref
    assert ("libnccl2 libnccl-dev" in pref) is bool(nccl)
    assert pref.count("Pin-Priority: 1001") == (2 if nccl else 1)


def test_debian13_pin_matches_the_archive_versions():
    pref = Role("Debian-13").render("cuda-toolkit.pref.j2")
    stanzas = [s for s in pref.split("\n\n") if "Package:" in s]
    pins = {re.search(r"Package: (.*)", s).group(1): re.search(r"Pin: version (.*)", s).group(1) for s in stanzas}
    # The versions Debian 13 ships (testing-here.md): apt's glob must accept them.
    assert fnmatch.fnmatch("12.4.131~12.4.1-2", pins[next(k for k in pins if "nvidia-cuda-toolkit" in k)])
    assert fnmatch.fnmatch("2.22.3-1-1", pins["libnccl2 libnccl-dev"])


def test_profile_script_distro_and_repo():
    text = Role("Debian-13").render("inferops-cuda.sh.j2")
    assert "export CUDA_HOME=/usr/lib/nvidia-cuda-toolkit\n" in text
    assert "/usr/lib/x86_64-linux-gnu" in text
    text = Role("RedHat-9", cuda_toolkit_source="cuda_repo", cuda_toolkit_version="12.6").render("inferops-cuda.sh.j2")
    assert "export CUDA_HOME=/usr/local/cuda-12.6\n" in text
    assert "/usr/local/cuda-12.6/lib64" in text


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_cuda_repo_packages(platform):
    role = Role(platform, cuda_toolkit_source="cuda_repo", cuda_toolkit_version="12.6", cuda_toolkit_nccl_version="2.23.4")
    assert role.var("__cuda_toolkit_packages") == ["cuda-toolkit-12-6"]
    nccl = role.var("__cuda_toolkit_nccl_packages")
    if platform.startswith("RedHat"):
        assert nccl == ["libnccl-2.23.4*+cuda12.6", "libnccl-devel-2.23.4*+cuda12.6"]
    else:
        assert nccl == ["libnccl2", "libnccl-dev"]
        assert "Pin: version 2.23.4*+cuda12.6\n" in role.render("cuda-toolkit.pref.j2")


@pytest.mark.parametrize("platform", ["RedHat-8", "RedHat-9"])
def test_no_distro_toolkit_on_the_rhel_family(platform):
    assert Role(platform).var("__cuda_toolkit_set['toolkit']") == []
