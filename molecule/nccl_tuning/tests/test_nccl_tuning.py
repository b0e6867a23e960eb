"""Testinfra checks of the nccl_tuning scenario: real file contents and effective settings.

Hosts (molecule.yml): acs-debian12 and nvlink-debian13 with the role's defaults on the fake
topologies pcie-4-acs and h100-sxm-8; pin-debian13 (pcie-4-acs, NCCL_P2P_DISABLE pinned to 0,
NCCL_DEBUG added, ACS unit on); forbid-debian12 (pcie-4-acs, NCCL_P2P_DISABLE forbidden,
NCCL_IB_DISABLE added, own shm size and memlock limit, no systemd DefaultLimitMEMLOCK).
"""

import os
import re
import subprocess

import pytest

CONF = "/etc/nccl.conf"
ENV_FILE = "/etc/inferops/nccl.env"
LIMITS = "/etc/security/limits.d/90-inferops-nccl.conf"
LOGIND = "/etc/systemd/logind.conf.d/90-inferops-nccl.conf"
SYSTEM = "/etc/systemd/system.conf.d/90-inferops-nccl.conf"
ACS_UNIT = "/etc/systemd/system/inferops-acs-clear.service"
ACS_BRIDGES = ["0000:17:02.0", "0000:17:03.0"]  # the switch ports with ACS redirect in pcie-4-acs

EXPECTED = {
    "nccl-tuning-acs-debian12": {
        "env": {"NCCL_P2P_DISABLE": "1"}, "shm": "64g", "memlock": "unlimited", "systemd_memlock": "infinity"},
    "nccl-tuning-nvlink-debian13": {
        "env": {}, "shm": "128g", "memlock": "unlimited", "systemd_memlock": None},
    "nccl-tuning-pin-debian13": {
        "env": {"NCCL_DEBUG": "WARN", "NCCL_P2P_DISABLE": "0"}, "shm": "64g", "memlock": "unlimited",
        "systemd_memlock": "infinity"},
    "nccl-tuning-forbid-debian12": {
        "env": {"NCCL_IB_DISABLE": "1"}, "shm": "8g", "memlock": "4096", "systemd_memlock": "4194304"},
}


@pytest.fixture()
def name(host):
    return host.backend.get_hostname()


@pytest.fixture()
def expected(name):
    return EXPECTED[name]


def assignments(text):
    """KEY=VALUE lines of an nccl.conf / env file (comments skipped)."""
    pairs = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=VALUE: {line!r}"
            pairs[key] = value
    return pairs


def comment_for(text, variable):
    """The '# NAME [source]: reason' comment the role writes above (or instead of) a variable."""
    match = re.search(rf"^# {variable} \[(\w+)\]: (.*)$", text, re.M)
    return match.groups() if match else (None, None)


@pytest.mark.parametrize("path", [CONF, ENV_FILE])
def test_nccl_files_hold_the_expected_variables(host, expected, path):
    f = host.file(path)
    assert f.is_file
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    assert assignments(f.content_string) == expected["env"]


@pytest.mark.parametrize("path", [CONF, ENV_FILE])
def test_the_reason_is_written_next_to_each_variable(host, name, path):
    text = host.file(path).content_string
    source, reason = comment_for(text, "NCCL_P2P_DISABLE")
    if name == "nccl-tuning-acs-debian12":
        assert source == "derived"
        assert reason.startswith("P2P unsafe on ")
        assert "GPU2-GPU3 (ACS redirect on bridge 0000:17:02.0, 0000:17:03.0)" in reason
    elif name == "nccl-tuning-nvlink-debian13":
        assert source is None
        assert "No NCCL variable is set" in text
        assert "gpu_health: 8 GPUs, 0 P2P-unsafe GPU pairs" in text
    elif name == "nccl-tuning-pin-debian13":
        assert source == "pinned"
        assert "overrides gpu_health derived NCCL_P2P_DISABLE=1" in reason
        assert comment_for(text, "NCCL_DEBUG")[0] == "extra"
    else:
        assert source == "forbidden"
        assert "gpu_health derived NCCL_P2P_DISABLE=1" in reason
        assert comment_for(text, "NCCL_IB_DISABLE")[0] == "extra"


def test_gpu_health_role_ran_where_no_facts_were_given(host, name):
    # forbid-debian12 had no gpu_health facts: nccl_tuning ran the gpu_health role (its report is
    # there) with the gate off, although pcie-4-acs fails the acs check.
    report = host.file("/var/lib/inferops/gpu_health/report.json")
    assert report.exists == (name == "nccl-tuning-forbid-debian12")
    if report.exists:
        assert '"acs"' in report.content_string


def test_vllm_advice_follows_gpu_health(host, name):
    text = host.file(CONF).content_string
    assert ("disable_custom_all_reduce=true" in text) == (name != "nccl-tuning-nvlink-debian13")


def test_dev_shm_fstab_entry(host, expected):
    entries = [line.split() for line in host.file("/etc/fstab").content_string.splitlines()
               if line.split()[1:2] == ["/dev/shm"]]
    assert entries == [["tmpfs", "/dev/shm", "tmpfs", f"nosuid,nodev,size={expected['shm']}", "0", "0"]]


def test_dev_shm_is_not_remounted_in_a_container(host):
    # The engine owns the container's /dev/shm: the role writes only the fstab entry there.
    # Docker's default is 64 MiB, far below every size the role asks for.
    assert host.mount_point("/dev/shm").exists
    size_kib = int(host.check_output("df -k --output=size /dev/shm | tail -1"))
    assert size_kib <= 64 * 1024


def test_memlock_limits(host, expected):
    f = host.file(LIMITS)
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    lines = [line.split() for line in f.content_string.splitlines() if line and not line.startswith("#")]
    limit = expected["memlock"]
    assert lines == [[domain, kind, "memlock", limit] for domain in ("*", "root") for kind in ("soft", "hard")]
    # The sandbox's hard memlock limit is 8192 KiB and its containers cannot raise it (no
    # CAP_SYS_RESOURCE), so "unlimited" cannot take effect here; a lower limit can, and proves that
    # pam_limits applies the file to a new login (root's own lines: "*" never matches root).
    if limit != "unlimited":
        assert host.check_output("su - root -s /bin/sh -c 'ulimit -l'") == limit


def test_systemd_default_memlock(host, expected):
    effective = host.check_output("systemctl show --property=DefaultLimitMEMLOCK --value")
    wanted = expected["systemd_memlock"]
    if wanted is None:
        assert not host.file(SYSTEM).exists
        assert effective != "infinity"
        return
    assert f"DefaultLimitMEMLOCK={wanted}" in host.file(SYSTEM).content_string
    assert effective == wanted  # systemd was re-executed, so the drop-in is in force
    if wanted != "infinity":  # see test_memlock_limits: only a lower limit can take effect here
        assert host.check_output("systemd-run --pipe --wait --quiet sh -c 'ulimit -l'") == expected["memlock"]


def test_logind_keeps_ipc(host):
    f = host.file(LOGIND)
    assert f.is_file and f.mode == 0o644
    assert re.search(r"^\[Login\]\nRemoveIPC=no$", f.content_string, re.M)
    # systemd-logind was restarted and now reports the setting itself.
    prop = host.check_output(
        "busctl get-property org.freedesktop.login1 /org/freedesktop/login1 "
        "org.freedesktop.login1.Manager RemoveIPC")
    assert prop == "b false"


def test_acs_unit_only_where_turned_on(host, name):
    unit = host.file(ACS_UNIT)
    if name != "nccl-tuning-pin-debian13":
        assert not unit.exists
        return
    text = unit.content_string
    execs = re.findall(r"^ExecStart=(.*)$", text, re.M)
    assert execs == [f"/usr/bin/setpci -s {bdf} ECAP_ACS+0x6.w=0000" for bdf in ACS_BRIDGES]
    assert "IOMMU" in text
    assert host.package("pciutils").is_installed
    assert host.service("inferops-acs-clear.service").is_enabled
    # ConditionVirtualization=!container: never started inside a container.
    assert not host.service("inferops-acs-clear.service").is_running


def _changed(playbook, limit, *extra):
    """Run a playbook of this scenario from the controller on one host; return its recap's changed=."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    scenario = os.environ["MOLECULE_SCENARIO_DIRECTORY"]
    run = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", limit,
         os.path.join(scenario, playbook), *extra],
        env=env, capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    recap = re.search(rf"^{re.escape(limit)}\s*:\s*ok=\d+\s+changed=(\d+)", run.stdout, re.M)
    assert recap, run.stdout[-4000:]
    return int(recap.group(1))


def test_hand_edit_is_restored_and_reported(host, name):
    if name != "nccl-tuning-acs-debian12":
        pytest.skip("one host is enough")
    before = host.file(CONF).content_string
    assert _changed("drift.yml", name) >= 1
    assert host.file(CONF).content_string == before
    # A check-mode run on the restored host then needs no change.
    assert _changed("converge.yml", name, "--check") == 0
