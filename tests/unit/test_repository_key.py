"""Pinned repository keys (issue 11, exposure): fingerprints computed without gpg, the repository_key module.

Keys are generated here with gpg (RSA and Ed25519, the kinds vendors and mirrors use) and gpg's own
fingerprint is the reference for plugins/module_utils/openpgp.py, armored and binary. The module is
run in-process against file:// URLs: a matching key is written, a swapped key or one with an extra
key beside the pinned one is refused with both fingerprints and the variable named, nothing written.
"""

import os
import subprocess

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.gpu.plugins.filter import package_repository as filters
from ansible_collections.inferops.gpu.plugins.module_utils import openpgp
from ansible_collections.inferops.gpu.plugins.modules import repository_key

VARIABLE = "package_repository_cuda_key_fingerprint"


def _gpg(home, *args, data=None):
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--quiet", *args], input=data,
                          capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """name -> (fingerprint by gpg, armored export, binary export), for three freshly generated keys."""
    home = tmp_path_factory.mktemp("gnupg")
    os.chmod(home, 0o700)
    out = {}
    for name, algo in (("rsa", "rsa2048"), ("ed25519", "ed25519"), ("other", "ed25519")):
        _gpg(home, "--passphrase", "", "--quick-gen-key", "%s <%s@inferops.invalid>" % (name, name), algo, "sign", "never")
        colons = _gpg(home, "--with-colons", "--fingerprint", "%s@inferops.invalid" % name).decode()
        fpr = [line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:")][0]
        # A subkey too, so the file has more than one key packet.
        _gpg(home, "--passphrase", "", "--quick-add-key", fpr, "cv25519" if algo == "ed25519" else "rsa2048", "encr", "never")
        out[name] = (fpr, _gpg(home, "--armor", "--export", fpr), _gpg(home, "--export", fpr))
    return out


@pytest.mark.parametrize("name", ["rsa", "ed25519"])
def test_fingerprint_agrees_with_gpg_armored_and_binary(keys, name):
    fpr, armored, binary = keys[name]
    assert openpgp.primary_fingerprints(armored) == [fpr]
    assert openpgp.primary_fingerprints(binary) == [fpr]
    # A binary key armored by us reads back the same (apt's .asc keyrings).
    assert openpgp.primary_fingerprints(openpgp.armor(binary)) == [fpr]
    assert openpgp.dearmor(openpgp.armor(binary)) == binary


def test_fixed_v4_packet():
    """RFC 4880 12.2 by hand: SHA-1 over 0x99, a two-byte length and the packet body."""
    import hashlib
    body = bytes([4, 0, 0, 0, 0, 22, 0, 8, 0xFF]) + b"\x00" * 32
    packet = bytes([0x99]) + len(body).to_bytes(2, "big") + body  # old format, tag 6, two-byte length
    assert openpgp.primary_fingerprints(packet) == [hashlib.sha1(packet).hexdigest().upper()]


def test_normalize_fingerprint():
    assert openpgp.normalize_fingerprint("eb69 3b30 35cd 5710 e231  e123 a4b4 6996 3bf8 63cc") == \
        "EB693B3035CD5710E231E123A4B469963BF863CC"
    for bad in ("", "3BF863CC", "EB693B3035CD5710E231E123A4B469963BF863CC\nX", "G" * 40, None):
        assert openpgp.normalize_fingerprint(bad) is None


def test_verify_refuses_another_key_and_an_extra_key(keys):
    fpr, armored, binary = keys["ed25519"]
    other_fpr, other_armored, other_binary = keys["other"]
    assert openpgp.verify(armored, [fpr.lower()], VARIABLE) == [fpr]
    with pytest.raises(openpgp.OpenPGPError) as caught:
        openpgp.verify(other_armored, [fpr], VARIABLE)
    message = str(caught.value)
    assert fpr in message and other_fpr in message and VARIABLE in message
    # apt trusts every key in a Signed-By file: the pinned key plus another one is refused.
    with pytest.raises(openpgp.OpenPGPError, match=other_fpr):
        openpgp.verify(binary + other_binary, [fpr], VARIABLE)


@pytest.mark.parametrize("data,reason", [
    (b"<html>404 Not Found</html>", "not the start of an OpenPGP packet"),
    (b"", "no public key"),
    (b"-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n", "not a public key block"),
])
def test_verify_refuses_what_is_not_a_key(data, reason):
    with pytest.raises(openpgp.OpenPGPError, match=reason):
        openpgp.verify(data, ["EB693B3035CD5710E231E123A4B469963BF863CC"], VARIABLE)


def test_damaged_armor_is_refused(keys):
    fpr, armored = keys["rsa"][:2]
    lines = armored.decode().splitlines()
    index = len(lines) // 2
    lines[index] = ("A" if lines[index][0] != "A" else "B") + lines[index][1:]
    with pytest.raises(openpgp.OpenPGPError, match="checksum"):
        openpgp.verify("\n".join(lines), [fpr], VARIABLE)


# --- the module ---------------------------------------------------------------------------------

def run_key(module_main, tmp_path, data, fingerprints, check_mode=False, diff=False, dest=None):
    source = tmp_path / "served.key"
    source.write_bytes(data)
    params = {"url": "file://%s" % source, "dest": str(dest or tmp_path / "keyrings" / "vendor.asc"),
              "fingerprints": fingerprints, "variable": VARIABLE,
              "_ansible_check_mode": check_mode, "_ansible_diff": diff}
    return module_main(repository_key.main, params)


def test_module_writes_the_verified_key_then_changes_nothing(module_main, tmp_path, keys):
    fpr, armored, binary = keys["rsa"]
    dest = tmp_path / "keyrings" / "vendor.asc"
    result = run_key(module_main, tmp_path, armored, [fpr], check_mode=True, diff=True)
    assert not result.failed and result.result["changed"] and not dest.exists()
    assert "BEGIN PGP PUBLIC KEY BLOCK" in result.result["diff"]["after"]
    result = run_key(module_main, tmp_path, armored, [fpr])
    assert not result.failed and result.result["changed"] and result.result["fingerprints"] == [fpr]
    assert dest.read_bytes() == armored and oct(dest.stat().st_mode & 0o777) == "0o644"
    assert not run_key(module_main, tmp_path, armored, [fpr]).result["changed"]
    # A mirror serving the binary form: written armored, apt reads it from the .asc file.
    binary_dest = tmp_path / "binary.asc"
    assert run_key(module_main, tmp_path, binary, [fpr], dest=binary_dest).result["changed"]
    assert openpgp.primary_fingerprints(binary_dest.read_bytes()) == [fpr]
    assert binary_dest.read_bytes().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")


def test_module_refuses_a_swapped_key_and_writes_nothing(module_main, tmp_path, keys):
    fpr = keys["rsa"][0]
    other_fpr, other_armored = keys["other"][:2]
    dest = tmp_path / "keyrings" / "vendor.asc"
    result = run_key(module_main, tmp_path, other_armored, [fpr])
    assert result.failed and not dest.exists()
    assert fpr in result.result["msg"] and other_fpr in result.result["msg"] and VARIABLE in result.result["msg"]
    # An existing good key is not replaced by a bad download.
    run_key(module_main, tmp_path, keys["rsa"][1], [fpr])
    before = dest.read_bytes()
    assert run_key(module_main, tmp_path, other_armored, [fpr]).failed
    assert dest.read_bytes() == before


def test_module_refuses_a_missing_key_file(module_main, tmp_path):
    params = {"url": "file://%s" % (tmp_path / "absent.pub"), "dest": str(tmp_path / "k.asc"),
              "fingerprints": ["EB693B3035CD5710E231E123A4B469963BF863CC"]}
    result = module_main(repository_key.main, params)
    assert result.failed and "absent.pub" in result.result["msg"]


# --- the filter: pins, overrides, refusals -------------------------------------------------------

def facts(family="Debian"):
    if family == "Debian":
        return {"distribution": "Debian", "os_family": "Debian", "distribution_major_version": "12",
                "distribution_release": "bookworm", "architecture": "x86_64"}
    return {"distribution": "RedHat", "os_family": "RedHat", "distribution_major_version": "9",
            "distribution_release": "Plow", "architecture": "x86_64"}


@pytest.mark.parametrize("vendor,fingerprint", [
    ("cuda", "EB693B3035CD5710E231E123A4B469963BF863CC"),
    ("docker", "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"),
    ("nvidia_container_toolkit", "C95B321B61E88C1809C4F759DDCAE044F796ECB0"),
])
def test_vendor_keys_are_pinned_and_a_mirror_overrides(vendor, fingerprint):
    repo = filters.package_repository(facts(), vendor)
    assert repo["key_fingerprints"] == [fingerprint]
    assert repo["key_fingerprint_variable"] == "package_repository_%s_key_fingerprint" % vendor
    assert repo["deb822"]["signed_by"] == repo["key_file"]
    mirror = filters.package_repository(facts(), vendor, url="https://mirror.internal/x",
                                        key_fingerprint="0123 4567 89ab cdef 0123 4567 89AB CDEF 0123 4567")
    assert mirror["key_fingerprints"] == ["0123456789ABCDEF0123456789ABCDEF01234567"]


@pytest.mark.parametrize("value", ["3BF863CC", "not a fingerprint", "EB693B3035CD5710E231E123A4B469963BF863CC\nX"])
def test_filter_refuses_a_malformed_fingerprint(value):
    with pytest.raises(AnsibleFilterError, match="package_repository_docker_key_fingerprint"):
        filters.package_repository(facts(), "docker", key_fingerprint=value)


def test_cuda_on_rhel_needs_a_fingerprint():
    with pytest.raises(AnsibleFilterError, match="package_repository_cuda_key_fingerprint"):
        filters.package_repository(facts("RedHat"), "cuda")
    repo = filters.package_repository(facts("RedHat"), "cuda", key_fingerprint="0123456789ABCDEF0123456789ABCDEF01234567")
    assert repo["yum"]["gpgkey"] == "file://" + repo["key_file"]


def test_the_role_tasks_verify_before_writing():
    """In the role, the key task comes before the source and the rpm import uses the verified file."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "roles", "package_repository", "tasks", "main.yml")) as handle:
        text = handle.read()
    assert text.index("inferops.gpu.repository_key:") < text.index("ansible.builtin.deb822_repository:")
    assert text.index("inferops.gpu.repository_key:") < text.index("ansible.builtin.rpm_key:")
    assert "fingerprint: \"{{ __package_repository.key_fingerprints }}\"" in text
