"""plugins/filter/package_repository.py: every vendor repository's definition, for every platform.

The package_repository role applies these definitions with deb822_repository / yum_repository;
only Debian runs in Molecule here (and no vendor repository is reachable), so the URIs, suites,
architecture names, key URLs and dnf baseurls of Ubuntu, the RHEL family and aarch64 are
checked here. Also: the retired variables of the consumer roles name their replacement.
"""

import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.gpu.plugins.filter import package_repository as filters

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CUDA = "https://developer.download.nvidia.com/compute/cuda/repos/"

# name: (distribution, os_family, major, version, release, CUDA repository directory)
PLATFORMS = {
    "Debian-12": ("Debian", "Debian", "12", "12", "bookworm", "debian12"),
    "Debian-13": ("Debian", "Debian", "13", "13.1", "trixie", "debian13"),
    "Ubuntu-22": ("Ubuntu", "Debian", "22", "22.04", "jammy", "ubuntu2204"),
    "Ubuntu-24": ("Ubuntu", "Debian", "24", "24.04", "noble", "ubuntu2404"),
    "RedHat-8": ("RedHat", "RedHat", "8", "8.10", "Ootpa", "rhel8"),
    "RedHat-9": ("RedHat", "RedHat", "9", "9.4", "Plow", "rhel9"),
    "Rocky-9": ("Rocky", "RedHat", "9", "9.4", "Blue Onyx", "rhel9"),
    "AlmaLinux-8": ("AlmaLinux", "RedHat", "8", "8.10", "Cerulean Leopard", "rhel8"),
}
APT = [name for name, value in PLATFORMS.items() if value[1] == "Debian"]
DNF = [name for name, value in PLATFORMS.items() if value[1] == "RedHat"]


def facts(platform, arch="x86_64"):
    distribution, family, major, version, release = PLATFORMS[platform][:5]
    return {"distribution": distribution, "os_family": family, "distribution_major_version": major,
            "distribution_version": version, "distribution_release": release, "architecture": arch}


# NVIDIA's RHEL key has no pinned fingerprint: the RHEL family must name one (any well-formed one here).
RHEL_CUDA_FINGERPRINT = "0123456789ABCDEF0123456789ABCDEF01234567"


def repo(platform, vendor, arch="x86_64", **kwargs):
    if vendor == "cuda" and platform in DNF:
        kwargs.setdefault("key_fingerprint", RHEL_CUDA_FINGERPRINT)
    return filters.package_repository(facts(platform, arch), vendor, **kwargs)


# --- NVIDIA's CUDA repository (nvidia_driver and cuda_toolkit) ---------------------------------

@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize("arch,cuda_arch", [("x86_64", "x86_64"), ("aarch64", "sbsa")])
def test_cuda_default_url_and_key(platform, arch, cuda_arch):
    r = repo(platform, "cuda", arch)
    base = CUDA + PLATFORMS[platform][5] + "/" + cuda_arch + "/"
    key = base + ("D42D0685.pub" if platform in DNF else "3bf863cc.pub")
    assert r["key_url"] == key
    assert r["name"] == "nvidia-cuda"
    if platform in APT:
        assert r["family"] == "apt"
        assert r["file"] == "/etc/apt/sources.list.d/nvidia-cuda.sources"
        # The same paths the roles wrote before, so an upgrade leaves nothing behind.
        # The key is verified and written by repository_key; the source names the file, never the URL.
        assert r["deb822"] == {"name": "nvidia-cuda", "types": ["deb"], "uris": [base], "suites": ["/"],
                               "signed_by": "/etc/apt/keyrings/nvidia-cuda.asc"}
        assert r["key_fingerprints"] == ["EB693B3035CD5710E231E123A4B469963BF863CC"]
        assert r["stale_files"] == []
    else:
        assert r["family"] == "dnf"
        assert r["file"] == "/etc/yum.repos.d/nvidia-cuda.repo"
        distro = PLATFORMS[platform][5]
        assert r["yum"] == {"name": "cuda-%s-%s" % (distro, cuda_arch), "description": "NVIDIA CUDA %s %s" % (distro, cuda_arch),
                            "file": "nvidia-cuda", "baseurl": base, "gpgcheck": True,
                            "gpgkey": "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-nvidia-cuda", "enabled": True}
        assert r["key_fingerprints"] == [RHEL_CUDA_FINGERPRINT]
    assert r["key_fingerprint_variable"] == "package_repository_cuda_key_fingerprint"


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_cuda_mirror_for_air_gapped_sites(platform):
    mirror = "https://mirror.example.internal/cuda/" + PLATFORMS[platform][5] + "/sbsa"
    r = repo(platform, "cuda", "aarch64", url=mirror)
    assert r["key_url"].startswith(mirror + "/")
    assert (r["deb822"]["uris"] if platform in APT else [r["yum"]["baseurl"]]) == [mirror + "/"]
    assert "developer.download.nvidia.com" not in repr(r)
    r = repo(platform, "cuda", url="file:///srv/mirror/cuda/", key_url="file:///srv/keys/cuda.asc")
    assert r["key_url"] == "file:///srv/keys/cuda.asc"
    assert (r["deb822"]["uris"] if platform in APT else [r["yum"]["baseurl"]]) == ["file:///srv/mirror/cuda/"]


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_cuda_mirror_placeholders_for_a_mixed_fleet(platform):
    r = repo(platform, "cuda", "aarch64", url="https://mirror.example.internal/cuda/repos/{distro}/{arch}")
    base = "https://mirror.example.internal/cuda/repos/%s/sbsa/" % PLATFORMS[platform][5]
    assert r["key_url"].startswith(base)
    assert (r["deb822"]["uris"] if platform in APT else [r["yum"]["baseurl"]]) == [base]


def test_cuda_definition_is_the_same_for_both_callers():
    """nvidia_driver and cuda_toolkit pass nothing but the vendor: one definition, one file content."""
    for platform in PLATFORMS:
        assert repo(platform, "cuda", url="http://m/cuda") == repo(platform, "cuda", url="http://m/cuda", channel="stable")


@pytest.mark.parametrize("variable,kwargs", [
    ("package_repository_cuda_url", {"url": "mirror.example.internal/cuda"}),
    ("package_repository_cuda_key_url", {"key_url": "ftp://mirror/key"}),
])
def test_cuda_refuses_what_is_not_a_url(variable, kwargs):
    with pytest.raises(AnsibleFilterError, match=variable):
        repo("Debian-13", "cuda", **kwargs)


# --- Docker's repository (container_runtime) ---------------------------------------------------

@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_docker_default(platform):
    r = repo(platform, "docker", "aarch64")
    distro = {"Debian": "debian", "Ubuntu": "ubuntu"}.get(PLATFORMS[platform][0], "rhel")
    base = "https://download.docker.com/linux/" + distro
    assert r["key_url"] == base + "/gpg"
    if platform in APT:
        assert r["file"] == "/etc/apt/sources.list.d/docker.sources"
        assert r["deb822"] == {"name": "docker", "types": ["deb"], "uris": [base], "suites": [PLATFORMS[platform][4]],
                               "components": ["stable"], "architectures": ["arm64"],
                               "signed_by": "/etc/apt/keyrings/docker.asc"}
        assert r["key_fingerprints"] == ["9DC858229FC7DD38854AE2D88D81803C0EBFCD88"]
        assert r["stale_files"] == ["/etc/apt/sources.list.d/docker.list"]
    else:
        assert r["file"] == "/etc/yum.repos.d/docker-ce.repo"
        assert r["yum"]["name"] == "docker-ce-stable"
        assert r["yum"]["baseurl"] == base + "/$releasever/$basearch/stable"
        assert r["yum"]["gpgkey"] == "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-docker" and r["yum"]["gpgcheck"] is True
        # Docker signs its rpm repositories with another key than its apt ones.
        assert r["key_fingerprints"] == ["060A61C51B558A7F742B77AAC52FEB6B621E9F35"]
        assert r["stale_files"] == []


def test_docker_mirror_and_channel():
    r = repo("Ubuntu-22", "docker", url="http://mirror.example.internal/docker/ubuntu/", channel="test")
    assert r["deb822"]["uris"] == ["http://mirror.example.internal/docker/ubuntu"]
    assert r["deb822"]["components"] == ["test"] and r["deb822"]["architectures"] == ["amd64"]
    assert r["key_url"] == "http://mirror.example.internal/docker/ubuntu/gpg"
    r = repo("Rocky-9", "docker", url="http://mirror.example.internal/docker/rhel", key_url="http://keys/docker.gpg")
    assert r["yum"]["baseurl"] == "http://mirror.example.internal/docker/rhel/$releasever/$basearch/stable"
    assert r["key_url"] == "http://keys/docker.gpg"


# --- NVIDIA's container toolkit repository (container_runtime) ---------------------------------

@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize("arch,deb_arch", [("x86_64", "amd64"), ("aarch64", "arm64")])
def test_nvidia_container_toolkit_default(platform, arch, deb_arch):
    r = repo(platform, "nvidia_container_toolkit", arch)
    base = "https://nvidia.github.io/libnvidia-container"
    assert r["key_url"] == base + "/gpgkey"
    if platform in APT:
        assert r["deb822"]["uris"] == [base + "/stable/deb/" + deb_arch]
        assert r["deb822"]["suites"] == ["/"]
        assert r["file"] == "/etc/apt/sources.list.d/nvidia-container-toolkit.sources"
        assert r["stale_files"] == ["/etc/apt/sources.list.d/nvidia-container-toolkit.list"]
    else:
        assert r["yum"]["baseurl"] == base + "/stable/rpm/$basearch"
        # NVIDIA signs the metadata, not the packages.
        assert r["yum"]["repo_gpgcheck"] is True and r["yum"]["gpgcheck"] is False
        assert r["file"] == "/etc/yum.repos.d/nvidia-container-toolkit.repo"


def test_nvidia_container_toolkit_mirror():
    r = repo("Debian-12", "nvidia_container_toolkit", url="http://mirror.example.internal/libnvidia-container/",
             channel="experimental")
    assert r["deb822"]["uris"] == ["http://mirror.example.internal/libnvidia-container/experimental/deb/amd64"]
    assert r["key_url"] == "http://mirror.example.internal/libnvidia-container/gpgkey"
    assert r["deb822"]["signed_by"] == "/etc/apt/keyrings/nvidia-container-toolkit.asc"


# --- refusals -----------------------------------------------------------------------------------

def test_refuses_unknown_vendor_platform_and_missing_facts():
    with pytest.raises(AnsibleFilterError, match="vendor must be one of"):
        repo("Debian-12", "cuda_toolkit")
    with pytest.raises(AnsibleFilterError, match="Debian and RedHat families"):
        filters.package_repository(dict(facts("Debian-12"), os_family="Suse"), "docker")
    with pytest.raises(AnsibleFilterError, match="architecture"):
        filters.package_repository({k: v for k, v in facts("Debian-12").items() if k != "architecture"}, "cuda")
    with pytest.raises(AnsibleFilterError, match="ppc64le"):
        repo("Debian-12", "cuda", "ppc64le")


def test_retired_variables_name_their_replacement():
    messages = filters.package_repository_retired(
        ["nvidia_driver_cuda_repo_url", "cuda_toolkit_cuda_repo_key_url", "container_runtime_docker_repo_base_url",
         "container_runtime_nvidia_toolkit_repo_base_url", "nvidia_driver_branch"])
    assert len(messages) == 4
    assert "nvidia_driver_cuda_repo_url is no longer read: set package_repository_cuda_url" in messages[0]
    assert "package_repository_cuda_key_url" in messages[1]
    assert "package_repository_docker_url" in messages[2]
    assert "package_repository_nvidia_container_toolkit_url" in messages[3]
    assert filters.package_repository_retired([]) == []


def test_retired_variables_are_gone_from_the_roles():
    for role in ("nvidia_driver", "cuda_toolkit", "container_runtime"):
        for name in ("defaults/main.yml", "meta/argument_specs.yml"):
            with open(os.path.join(REPO, "roles", role, name)) as handle:
                text = handle.read()
            for variable in filters.RETIRED:
                assert variable not in text, (role, name, variable)


def test_registered_and_documented():
    assert set(filters.FilterModule().filters()) == {"package_repository", "package_repository_retired",
                                                     "package_offer_error"}
    for name in ("package_repository", "package_repository_retired"):
        with open(os.path.join(REPO, "plugins", "filter", name + ".yml")) as handle:
            doc = yaml.safe_load(handle)
        assert doc["DOCUMENTATION"]["name"] == name
        assert doc["RETURN"]["_value"]


# `apt-cache madison cuda-drivers-550 nvidia-driver` as the local mirror answers it.
MADISON = """\
cuda-drivers-550 | 550.127.08-1 | https://mirror.inferops.test/compute/cuda/repos/debian12/x86_64  Packages
cuda-drivers-550 | 550.54.15-1 | https://mirror.inferops.test/compute/cuda/repos/debian12/x86_64  Packages
nvidia-driver | 570.124.06-1 | https://mirror.inferops.test/compute/cuda/repos/debian12/x86_64  Packages
nvidia-driver | 550.127.08-1 | https://mirror.inferops.test/compute/cuda/repos/debian12/x86_64  Packages
nvidia-driver | 550.127.08-1 | https://mirror.inferops.test/compute/cuda/repos/debian13/x86_64  Packages
"""
DRIVER = dict(variable="nvidia_driver_branch or nvidia_driver_version",
              source="nvidia_driver_source=cuda_repo", related="nvidia-driver")


@pytest.mark.parametrize("version", ["550.*", "550.54.15-1", "550.127.*", "5?0.54.15-1"])
def test_offered_version_is_no_refusal(version):
    assert filters.package_offer_error(MADISON, "cuda-drivers-550", version, **DRIVER) == ""
    # Also as Ansible's stdout_lines.
    assert filters.package_offer_error(MADISON.splitlines(), "cuda-drivers-550", version, **DRIVER) == ""


def test_missing_version_is_refused_with_what_the_sources_offer():
    message = filters.package_offer_error(MADISON, "cuda-drivers-550", "550.999.01-1", **DRIVER)
    assert message == (
        "cuda-drivers-550 550.999.01-1 is not in the package sources (nvidia_driver_source=cuda_repo); "
        "they offer cuda-drivers-550 550.127.08-1, 550.54.15-1; nvidia-driver 570.124.06-1, 550.127.08-1. "
        "Set nvidia_driver_branch or nvidia_driver_version to one of these; nothing was pinned or installed.")


def test_glob_matches_whole_versions_only():
    # Anchored at both ends like apt's pin matching: a prefix without a star matches nothing.
    assert filters.package_offer_error(MADISON, "cuda-drivers-550", "550.12", **DRIVER)
    assert filters.package_offer_error(MADISON, "cuda-drivers-550", "550.127.08", **DRIVER)
    assert not filters.package_offer_error(MADISON, "cuda-drivers-550", "550.1*", **DRIVER)


def test_unknown_package_lists_none():
    message = filters.package_offer_error(MADISON, "cuda-drivers-560", "560.*", **DRIVER)
    assert "they offer cuda-drivers-560 (none); nvidia-driver 570.124.06-1, 550.127.08-1." in message


def test_no_related_list_when_related_is_the_package():
    message = filters.package_offer_error(
        "libnccl2 | 2.21.5-1+cuda12.4 | https://m/ Packages\n", "libnccl2", "2.19.3*+cuda12.4",
        variable="cuda_toolkit_nccl_version", source="cuda_toolkit_source=cuda_repo", related="libnccl2")
    assert "they offer libnccl2 2.21.5-1+cuda12.4. Set cuda_toolkit_nccl_version" in message


def test_check_mode_without_package_lists_is_no_refusal():
    # A repository the check run has not written yet: apt knows no versions at all.
    assert filters.package_offer_error("", "cuda-drivers-550", "550.*", check_mode=True, **DRIVER) == ""
    assert "(none)" in filters.package_offer_error("", "cuda-drivers-550", "550.*", **DRIVER)
    # With lists, check mode refuses like a real run.
    assert filters.package_offer_error(MADISON, "cuda-drivers-550", "551.*", check_mode=True, **DRIVER)
