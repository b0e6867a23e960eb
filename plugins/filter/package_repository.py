# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the package_repository role: every vendor repository's definition, derived once.

package_repository turns a vendor (NVIDIA's CUDA repository, Docker's, NVIDIA's container
toolkit) and the host's platform into the parameters of ansible.builtin.deb822_repository or
ansible.builtin.yum_repository: URIs, suites, components, architectures, key URL, baseurl.
package_repository_retired names the replacement of a repository variable the consumer roles
no longer read, so their preflight refuses it instead of silently using the vendor's URL.
package_offer_error decides, from `apt-cache madison`, whether the sources offer the version an
apt pin asks for, and words the refusal (nvidia_driver and cuda_toolkit stop on it before any
pin or install).
Documentation: package_repository.yml, package_repository_retired.yml and
package_offer_error.yml beside this file.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.gpu.plugins.filter.url_policy import warn_plain_http
from ansible_collections.inferops.gpu.plugins.module_utils.openpgp import normalize_fingerprint

VENDORS = ("cuda", "docker", "nvidia_container_toolkit")
RHEL_FAMILY = ("RedHat", "Rocky", "AlmaLinux", "CentOS", "OracleLinux")

# The variable that replaced each retired one (package_repository owns every repository now).
RETIRED = {
    "nvidia_driver_cuda_repo_url": "package_repository_cuda_url",
    "nvidia_driver_cuda_repo_key_url": "package_repository_cuda_key_url",
    "cuda_toolkit_cuda_repo_url": "package_repository_cuda_url",
    "cuda_toolkit_cuda_repo_key_url": "package_repository_cuda_key_url",
    "container_runtime_docker_repo_base_url": "package_repository_docker_url",
    "container_runtime_nvidia_toolkit_repo_base_url": "package_repository_nvidia_container_toolkit_url",
}

# Files the roles wrote before package_repository owned the repositories (one-line sources):
# removed so apt does not see a repository twice after an upgrade of the collection.
_STALE_APT = {
    "cuda": [],
    "docker": ["/etc/apt/sources.list.d/docker.list"],
    "nvidia_container_toolkit": ["/etc/apt/sources.list.d/nvidia-container-toolkit.list"],
}

_DEB_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "ppc64le": "ppc64el"}
# NVIDIA's CUDA repository names aarch64 servers `sbsa`.
_CUDA_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "sbsa", "arm64": "sbsa"}
_URL = re.compile(r"^(https?|file)://\S+\Z")

# The vendors' signing keys, pinned by primary-key fingerprint (checked on the host by
# inferops.gpu.repository_key before a repository is written). Docker signs its rpm repositories
# with another key than its apt ones. NVIDIA's RHEL key (D42D0685.pub) is not pinned here: no
# public reference of its full fingerprint was at hand, so package_repository_cuda_key_fingerprint
# must be set on the RHEL family (the repository is refused until it is).
PINNED = {
    ("cuda", "apt"): "EB693B3035CD5710E231E123A4B469963BF863CC",
    ("docker", "apt"): "9DC858229FC7DD38854AE2D88D81803C0EBFCD88",
    ("docker", "dnf"): "060A61C51B558A7F742B77AAC52FEB6B621E9F35",
    ("nvidia_container_toolkit", "apt"): "C95B321B61E88C1809C4F759DDCAE044F796ECB0",
    ("nvidia_container_toolkit", "dnf"): "C95B321B61E88C1809C4F759DDCAE044F796ECB0",
}


def _platform(platform):
    if not isinstance(platform, Mapping):
        raise AnsibleFilterError("package_repository expects ansible_facts (or a dict of the same keys), got %s"
                                 % type(platform).__name__)
    missing = [k for k in ("distribution", "distribution_major_version", "os_family", "architecture")
               if not platform.get(k)]
    if missing:
        raise AnsibleFilterError("package_repository needs the facts %s" % ", ".join(missing))
    family = platform["os_family"]
    if family not in ("Debian", "RedHat"):
        raise AnsibleFilterError("package_repository supports the Debian and RedHat families, not %s" % family)
    return family


def _url(value, default, variable):
    value = (value or "").strip()
    if not value:
        return default
    if not _URL.match(value):
        raise AnsibleFilterError("%s must be an http(s):// or file:// URL, got '%s'" % (variable, value))
    # Accepted, never silently (shown once per run).
    warn_plain_http(value, variable)
    return value


def _cuda_distro(platform):
    distribution = platform["distribution"]
    major = str(platform["distribution_major_version"])
    if distribution == "Debian":
        return "debian" + major
    if distribution == "Ubuntu":
        # LTS releases only: 22.04 -> ubuntu2204.
        version = str(platform.get("distribution_version") or major + ".04")
        return "ubuntu" + version.replace(".", "")
    if distribution in RHEL_FAMILY or platform["os_family"] == "RedHat":
        return "rhel" + major
    raise AnsibleFilterError("NVIDIA's CUDA repository has no directory for %s %s" % (distribution, major))


def _cuda(platform, family, url, key_url, channel):
    distro = _cuda_distro(platform)
    arch = _CUDA_ARCH.get(platform["architecture"])
    if arch is None:
        raise AnsibleFilterError("NVIDIA's CUDA repository has no %s packages" % platform["architecture"])
    base = _url(url, "https://developer.download.nvidia.com/compute/cuda/repos/%s/%s/" % (distro, arch),
                "package_repository_cuda_url")
    # One mirror URL for a mixed fleet: {distro} and {arch} stand for the host's directory names.
    base = base.replace("{distro}", distro).replace("{arch}", arch)
    base = base if base.endswith("/") else base + "/"
    key = _url(key_url, base + ("D42D0685.pub" if family == "RedHat" else "3bf863cc.pub"),
               "package_repository_cuda_key_url")
    return {
        "name": "nvidia-cuda",
        "key_url": key,
        # Flat repository: the directory itself is the suite.
        "deb822": {"uris": [base], "suites": ["/"]},
        "yum": {"name": "cuda-%s-%s" % (distro, arch), "description": "NVIDIA CUDA %s %s" % (distro, arch),
                "baseurl": base, "gpgcheck": True},
    }


def _docker(platform, family, url, key_url, channel):
    distribution = platform["distribution"]
    distro = "ubuntu" if distribution == "Ubuntu" else "debian" if family == "Debian" else "rhel"
    base = _url(url, "https://download.docker.com/linux/" + distro, "package_repository_docker_url").rstrip("/")
    key = _url(key_url, base + "/gpg", "package_repository_docker_key_url")
    release = platform.get("distribution_release") or ""
    if family == "Debian" and not release:
        raise AnsibleFilterError("package_repository needs the fact distribution_release for Docker's repository")
    return {
        "name": "docker",
        "key_url": key,
        "deb822": {"uris": [base], "suites": [release], "components": [channel],
                   "architectures": [_DEB_ARCH.get(platform["architecture"], platform["architecture"])]},
        "yum": {"name": "docker-ce-" + channel, "description": "Docker CE %s - $basearch" % channel.capitalize(),
                "baseurl": "%s/$releasever/$basearch/%s" % (base, channel), "gpgcheck": True},
    }


def _nvidia_container_toolkit(platform, family, url, key_url, channel):
    base = _url(url, "https://nvidia.github.io/libnvidia-container",
                "package_repository_nvidia_container_toolkit_url").rstrip("/")
    key = _url(key_url, base + "/gpgkey", "package_repository_nvidia_container_toolkit_key_url")
    deb_arch = _DEB_ARCH.get(platform["architecture"], platform["architecture"])
    return {
        "name": "nvidia-container-toolkit",
        "key_url": key,
        "deb822": {"uris": ["%s/%s/deb/%s" % (base, channel, deb_arch)], "suites": ["/"]},
        # NVIDIA signs the repository metadata, not the packages.
        "yum": {"name": "nvidia-container-toolkit", "description": "NVIDIA container toolkit",
                "baseurl": "%s/%s/rpm/$basearch" % (base, channel), "gpgcheck": False, "repo_gpgcheck": True,
                "sslverify": True, "sslcacert": "/etc/pki/tls/certs/ca-bundle.crt"},
    }


_BUILDERS = {"cuda": _cuda, "docker": _docker, "nvidia_container_toolkit": _nvidia_container_toolkit}


def _fingerprint(vendor, family, value):
    variable = "package_repository_%s_key_fingerprint" % vendor
    given = str(value or "").strip()
    if not given:
        pinned = PINNED.get((vendor, family))
        if pinned is None:
            raise AnsibleFilterError(
                "%s is empty and no fingerprint is pinned for this repository's key on the %s family: set it to the "
                "fingerprint of the key the repository is signed with (40 hexadecimal digits, checked out of band)"
                % (variable, "RHEL" if family == "dnf" else "Debian"))
        return pinned, variable
    normalized = normalize_fingerprint(given)
    if normalized is None:
        raise AnsibleFilterError("%s='%s' is not an OpenPGP fingerprint: use the 40 hexadecimal digits gpg prints "
                                 "(spaces allowed), or leave it empty for the vendor's pinned key" % (variable, given))
    return normalized, variable


def package_repository(platform, vendor, url="", key_url="", channel="stable", key_fingerprint=""):
    """The definition of one vendor repository for this platform (see package_repository.yml)."""
    if vendor not in VENDORS:
        raise AnsibleFilterError("package_repository: vendor must be one of %s, got '%s'" % (", ".join(VENDORS), vendor))
    family = _platform(platform)
    repo = _BUILDERS[vendor](platform, family, url, key_url, channel or "stable")
    name = repo["name"]
    repo["vendor"] = vendor
    repo["family"] = "apt" if family == "Debian" else "dnf"
    fingerprint, variable = _fingerprint(vendor, repo["family"], key_fingerprint)
    repo["key_fingerprints"] = [fingerprint]
    repo["key_fingerprint_variable"] = variable
    # The key is downloaded and checked against the pin by inferops.gpu.repository_key, which writes it
    # here; the repository then names this file, never the URL (nothing unverified is fetched later).
    # The apt path is the one deb822_repository used for a key URL, so existing sources do not change.
    repo["key_file"] = ("/etc/apt/keyrings/%s.asc" % name if family == "Debian"
                        else "/etc/pki/rpm-gpg/RPM-GPG-KEY-%s" % name)
    repo["deb822"].update({"name": name, "types": ["deb"], "signed_by": repo["key_file"]})
    repo["yum"].update({"file": name if vendor != "docker" else "docker-ce", "gpgkey": "file://" + repo["key_file"],
                        "enabled": True})
    repo["file"] = ("/etc/apt/sources.list.d/%s.sources" % name if family == "Debian"
                    else "/etc/yum.repos.d/%s.repo" % repo["yum"]["file"])
    repo["stale_files"] = list(_STALE_APT[vendor]) if family == "Debian" else []
    return repo


def package_repository_retired(names):
    """One sentence per retired repository variable in `names`, naming the variable that replaced it."""
    if isinstance(names, str):
        names = [names]
    return ["%s is no longer read: set %s instead (inferops.gpu.package_repository owns the repositories)."
            % (name, RETIRED[name]) for name in names if name in RETIRED]


def _madison(output):
    """{package: [versions in madison's order, once each]} from `apt-cache madison` output."""
    if isinstance(output, str):
        output = output.splitlines()
    offered = {}
    for line in output or []:
        fields = [field.strip() for field in str(line).split("|")]
        if len(fields) >= 3 and fields[0] and fields[1]:
            versions = offered.setdefault(fields[0], [])
            if fields[1] not in versions:
                versions.append(fields[1])
    return offered


def package_offer_error(madison, package, version, variable, source, related="", check_mode=False):
    """'' when the sources offer `package` at a version the apt pin glob `version` matches (apt
    matches pin versions with fnmatch), else one sentence that lists what they offer of `package`
    (and of `related`, the package whose versions name the choices, e.g. nvidia-driver).

    In check mode a repository the run has not written yet has no package lists: nothing to
    compare, so no refusal."""
    offered = _madison(madison)
    if check_mode and not offered:
        return ""
    mine = offered.get(package, [])
    if any(fnmatch.fnmatchcase(candidate, version) for candidate in mine):
        return ""
    listed = "%s %s" % (package, ", ".join(mine) or "(none)")
    if related and related != package:
        listed += "; %s %s" % (related, ", ".join(offered.get(related, [])) or "(none)")
    return ("%s %s is not in the package sources (%s); they offer %s. Set %s to one of these; "
            "nothing was pinned or installed." % (package, version, source, listed, variable))


class FilterModule:
    """inferops.gpu package repository filters."""

    def filters(self):
        return {"package_repository": package_repository, "package_repository_retired": package_repository_retired,
                "package_offer_error": package_offer_error}
