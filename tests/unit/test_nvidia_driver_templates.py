"""Render the nvidia_driver role's variables and templates for every supported platform.

Only Debian runs in Molecule here; NVIDIA's CUDA repository and the Ubuntu / RHEL-family hosts
are out of reach. These tests render what the role would write there with Ansible's own
templating engine (the role's defaults, vars/main.yml and vars/<OS>-<major>.yml, as the role
loads them) and check the package names, pins and the regular expressions that extend a host's
existing distribution sources. NVIDIA's CUDA repository is inferops.gpu.package_repository's
(tests/unit/test_package_repository.py).
"""

import os
import re

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE = os.path.join(REPO, "roles", "nvidia_driver")

PLATFORMS = {
    # vars file: (distribution, os_family, major, release codename, CUDA repo dir, default branch)
    "Debian-12": ("Debian", "Debian", "12", "bookworm", "debian12", "535"),
    "Debian-13": ("Debian", "Debian", "13", "trixie", "debian13", "550"),
    "Ubuntu-22": ("Ubuntu", "Debian", "22", "jammy", "ubuntu2204", "550"),
    "Ubuntu-24": ("Ubuntu", "Debian", "24", "noble", "ubuntu2404", "550"),
    "RedHat-8": ("RedHat", "RedHat", "8", "Ootpa", "rhel8", "550"),
    "RedHat-9": ("RedHat", "RedHat", "9", "Plow", "rhel9", "550"),
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
    """The role's variables for one platform, templated like Ansible does."""

    def __init__(self, platform, arch="x86_64", container=False, **overrides):
        loader = DataLoader()
        self.platform = platform
        variables = {}
        for name in ("defaults/main.yml", "vars/main.yml", "vars/%s.yml" % platform):
            variables.update(_trust(loader.load_from_file(os.path.join(ROLE, name))))
        distribution, family, major, release = PLATFORMS[platform][:4]
        variables["ansible_facts"] = {
            "distribution": distribution, "os_family": family, "distribution_major_version": major,
            "distribution_release": release, "architecture": arch, "kernel": "6.1.0-28-amd64",
            "virtualization_role": "guest" if container else "host",
            "virtualization_type": "docker" if container else "kvm",
        }
        variables["ansible_managed"] = "Ansible managed"
        variables.update(_trust(overrides))
        self.templar = Templar(loader=loader, variables=variables)

    def var(self, name):
        return self.templar.template(trust_as_template("{{ %s }}" % name))

    def render(self, template):
        with open(os.path.join(ROLE, "templates", template)) as handle:
            return self.templar.template(trust_as_template(handle.read()))

    def expr(self, text):
        return self.templar.template(trust_as_template(text))


def test_first_found_candidates_exist_for_every_platform():
    for platform in PLATFORMS:
        assert os.path.isfile(os.path.join(ROLE, "vars", platform + ".yml")), platform
    assert os.path.isfile(os.path.join(ROLE, "vars", "default.yml"))


@pytest.mark.parametrize("platform,modules,expected", [
    ("Debian-12", "proprietary", ["nvidia-driver", "nvidia-kernel-dkms", "nvidia-smi", "nvidia-persistenced", "libcuda1", "libnvidia-ml1"]),
    ("Debian-13", "open", ["nvidia-driver", "nvidia-open-kernel-dkms", "nvidia-smi", "nvidia-persistenced", "libcuda1", "libnvidia-ml1"]),
    ("Ubuntu-22", "proprietary", ["nvidia-headless-550-server", "nvidia-utils-550-server"]),
    ("Ubuntu-24", "open", ["nvidia-headless-550-server-open", "nvidia-utils-550-server"]),
])
def test_distro_packages(platform, modules, expected):
    role = Role(platform, nvidia_driver_kernel_modules=modules)
    assert role.var("__nvidia_driver_packages") == expected


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_cuda_repo_packages_follow_the_branch(platform):
    role = Role(platform, nvidia_driver_source="cuda_repo", nvidia_driver_branch="570")
    proprietary = role.var("__nvidia_driver_packages")
    role_open = Role(platform, nvidia_driver_source="cuda_repo", nvidia_driver_branch="570",
                     nvidia_driver_kernel_modules="open")
    if platform.startswith("RedHat"):
        assert proprietary == ["@nvidia-driver:570-dkms"]
        assert role_open.var("__nvidia_driver_packages") == ["@nvidia-driver:570-open"]
        assert role.var("__nvidia_driver_fabric_manager_packages") == ["nvidia-fabric-manager"]
    else:
        assert proprietary == ["cuda-drivers-570"]
        assert role_open.var("__nvidia_driver_packages") == ["nvidia-open-570"]
        assert role.var("__nvidia_driver_fabric_manager_packages") == ["nvidia-fabricmanager-570"]
        role_580 = Role(platform, nvidia_driver_source="cuda_repo", nvidia_driver_branch="580")
        assert role_580.var("__nvidia_driver_fabric_manager_packages") == ["nvidia-fabricmanager"]


@pytest.mark.parametrize("platform", ["RedHat-8", "RedHat-9"])
def test_no_distro_driver_on_the_rhel_family(platform):
    role = Role(platform)
    assert role.var("__nvidia_driver_package_sets['distro']['proprietary']") == []


@pytest.mark.parametrize("platform", [p for p in sorted(PLATFORMS) if not p.startswith("RedHat")])
def test_apt_pin_defaults_to_the_platform_branch(platform):
    role = Role(platform)
    text = role.render("nvidia-driver.pref.j2")
    assert "\nPin: version %s.*\n" % PLATFORMS[platform][5] in text
    assert "\nPin-Priority: 1001\n" in text
    package_line = next(line for line in text.splitlines() if line.startswith("Package: "))
    assert {"nvidia-*", "libnvidia-*", "libcuda1*", "cuda-drivers*"} <= set(package_line.split()[1:])


def test_apt_pin_exact_version():
    role = Role("Debian-12", nvidia_driver_version="535.247.01-1~deb12u1", nvidia_driver_extra_packages=["nvidia-cuda-mps"])
    text = role.render("nvidia-driver.pref.j2")
    assert "\nPin: version 535.247.01-1~deb12u1\n" in text
    assert " nvidia-cuda-mps" in text


def test_unattended_upgrades_blacklist_is_apt_syntax():
    text = Role("Debian-13").render("unattended-upgrades-nvidia.j2")
    body = [line for line in text.splitlines() if not line.startswith("//")]
    assert body[0] == "Unattended-Upgrade::Package-Blacklist {"
    assert body[-1] == "};"
    entries = [line.strip() for line in body[1:-1]]
    assert all(re.fullmatch(r'"[a-z0-9.+-]+";', entry) for entry in entries), entries
    assert '"nvidia-";' in entries and '"libnvidia-";' in entries


def test_container_detection():
    assert Role("Debian-13", container=True).var("__nvidia_driver_in_container") is True
    assert Role("Debian-13").var("__nvidia_driver_in_container") is False


# --- the regular expressions that extend the host's existing sources -----------------------

def _source_tasks():
    # package_repository's `components` entry point, which nvidia_driver calls with its components.
    with open(os.path.join(REPO, "roles", "package_repository", "tasks", "components.yml")) as handle:
        tasks = yaml.safe_load(handle)
    by_name = {task["name"]: task for task in tasks}
    return (by_name["Components | add them to the deb822 Components lines"]["ansible.builtin.replace"],
            by_name["Components | add them to the release's lines in sources.list"]["ansible.builtin.replace"])


def _apply(platform, text, which):
    """What the role's replace tasks make of a sources file (Python re, MULTILINE, like the module)."""
    role = Role(platform)
    task = _source_tasks()[which]
    for component in role.var("__nvidia_driver_components"):
        role.templar.available_variables = dict(role.templar.available_variables, item=component)
        regexp = role.expr(task["regexp"])
        replace = role.expr(task["replace"])
        text = re.compile(regexp, re.MULTILINE).sub(replace, text)
    return text


DEBIAN12_SOURCES = """\
deb http://deb.debian.org/debian bookworm main
# deb-src http://deb.debian.org/debian bookworm main

deb http://deb.debian.org/debian bookworm-updates main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.local/debian-security bookworm-security main non-free
deb http://other.example/repo stable main
"""

DEBIAN13_SOURCES = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.debian.org/debian-security
Suites: trixie-security
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def test_classic_sources_list_gets_components_on_the_release_lines_only():
    out = _apply("Debian-12", DEBIAN12_SOURCES, 1)
    lines = out.splitlines()
    assert lines[0] == "deb http://deb.debian.org/debian bookworm main contrib non-free non-free-firmware"
    assert lines[1] == "# deb-src http://deb.debian.org/debian bookworm main"
    assert lines[2] == ""
    assert lines[3] == "deb http://deb.debian.org/debian bookworm-updates main contrib non-free non-free-firmware"
    assert lines[4].endswith("bookworm-security main non-free contrib non-free-firmware")
    assert "mirror.local" in lines[4]
    assert lines[5] == "deb http://other.example/repo stable main"
    assert _apply("Debian-12", out, 1) == out  # idempotent


def test_deb822_sources_get_components():
    out = _apply("Debian-13", DEBIAN13_SOURCES, 0)
    comps = [line for line in out.splitlines() if line.startswith("Components:")]
    assert comps == ["Components: main contrib non-free non-free-firmware"] * 2
    assert out.count("\n\n") == 1 and out.endswith("debian-archive-keyring.gpg\n")
    assert _apply("Debian-13", out, 0) == out


def test_ubuntu_gets_restricted():
    text = "deb http://archive.ubuntu.com/ubuntu jammy main universe\ndeb http://archive.ubuntu.com/ubuntu jammy-updates main restricted\n"
    out = _apply("Ubuntu-22", text, 1)
    assert out.splitlines() == [
        "deb http://archive.ubuntu.com/ubuntu jammy main universe restricted",
        "deb http://archive.ubuntu.com/ubuntu jammy-updates main restricted",
    ]
