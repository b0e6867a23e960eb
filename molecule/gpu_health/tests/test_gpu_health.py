"""Verify the gpu_health role on every host of the scenario (pytest-testinfra).

Expectations follow each host's topology (molecule.yml host_vars): the JSON report's verdicts, the
recommendation, the Prometheus textfile, the gate messages recorded by converge.yml, the timer.
"""

import json
import re

import pytest

REPORT = "/var/lib/inferops/gpu_health/report.json"
TEXTFILE = "/var/lib/node_exporter/textfile_collector/inferops_gpu_health.prom"
GATE_ROLE = "/var/lib/inferops-test/gate-role.json"
GATE_PROBE = "/var/lib/inferops-test/gate-probe.json"
VENV = "/opt/inferops/gpu-health-venv"


@pytest.fixture(scope="module")
def hostvars(host):
    return host.ansible.get_variables()


@pytest.fixture(scope="module")
def topology(hostvars):
    return hostvars.get("fake_nvml_topology", "real")


@pytest.fixture(scope="module")
def release(host):
    return int(host.system_info.release.split(".")[0])


@pytest.fixture(scope="module")
def report(host):
    report_file = host.file(REPORT)
    assert report_file.is_file, REPORT
    assert report_file.mode == 0o644
    assert report_file.user == "root"
    return json.loads(report_file.content_string)


@pytest.fixture(scope="module")
def textfile(host):
    prom = host.file(TEXTFILE)
    assert prom.is_file, TEXTFILE
    assert prom.mode == 0o644
    return prom.content_string


def checks(report, check_id, verdict=None):
    return [c for c in report["checks"] if c["id"] == check_id and (verdict is None or c["verdict"] == verdict)]


def gate(host, path):
    record = host.file(path)
    assert record.is_file, path
    return json.loads(record.content_string)


# --- install: where pynvml comes from -------------------------------------------------------

def test_pynvml_source(host, hostvars, release):
    source = hostvars.get("gpu_health_pynvml_source", "auto")
    if source == "auto":
        source = "package" if release == 13 else "venv"
    if source == "package":
        # python3-pynvml from contrib (its libnvidia-ml1 from non-free), enabled on the host's
        # existing sources: deb822 on Debian 13, one-line sources.list on Debian 12.
        assert host.package("python3-pynvml").is_installed
        if release == 13:
            sources = host.file("/etc/apt/sources.list.d/debian.sources").content_string
            components = re.findall(r"^Components:(.*)$", sources, re.M)
        else:
            sources = host.file("/etc/apt/sources.list").content_string
            components = re.findall(r"^deb\s+\S+\s+\S+\s+(.*)$", sources, re.M)
        assert len(components) == 3, sources
        assert all(set(line.split()) == {"main", "contrib", "non-free", "non-free-firmware"}
                   for line in components), sources
        assert "deb.debian.org" in sources and "security.debian.org" in sources  # no mirror added
        assert not host.file(VENV).exists
        assert host.run("/usr/bin/python3 -c 'import pynvml'").rc == 0
    else:
        # A virtualenv with the pinned nvidia-ml-py, no distribution pynvml.
        assert not host.package("python3-pynvml").is_installed
        pip = host.run(f"{VENV}/bin/python -m pip show nvidia-ml-py")
        assert pip.rc == 0, pip.stderr
        assert "Version: 13.615.71" in pip.stdout
        assert host.run(f"{VENV}/bin/python -c 'import pynvml'").rc == 0


# --- report: verdicts per topology -----------------------------------------------------------

def test_report_matches_topology(report, topology, hostvars):
    summary = report["summary"]
    if topology == "h100-sxm-8":
        assert summary["verdict"] == "pass", summary
        assert summary["counts"]["fail"] == 0 and summary["counts"]["error"] == 0
        assert report["nvml"]["available"] is True
        assert report["gpu_count"] == 8
        assert report["driver"]["version"] == "550.127.05"
        assert {g["name"] for g in report["gpus"]} == {"NVIDIA H100 80GB HBM3"}
        assert len(report["pairs"]) == 28 and all(p["p2p_safe"] for p in report["pairs"])
        assert "NCCL_P2P_DISABLE" not in report["recommendation"]["nccl_env"]
        assert report["recommendation"]["vllm_disable_custom_all_reduce"] is False
        assert checks(report, "gpu_count", "pass")
        assert checks(report, "shm", "pass")
    elif topology == "pcie-4-acs":
        assert summary["verdict"] == "fail"
        assert report["gpu_count"] == 4
        acs_fail = checks(report, "acs", "fail")
        assert [2, 3] in [c["pair"] for c in acs_fail], acs_fail
        pair_23 = next(p for p in report["pairs"] if p["gpus"] == [2, 3])
        assert pair_23["p2p_safe"] is False
        assert pair_23["p2p"]["read"] == "OK"  # NVML says OK; the ACS redirect makes it unsafe
        pair_01 = next(p for p in report["pairs"] if p["gpus"] == [0, 1])
        assert pair_01["p2p_safe"] is True
        recommendation = report["recommendation"]
        assert recommendation["nccl_env"]["NCCL_P2P_DISABLE"] == "1"
        assert "ACS" in recommendation["reasons"]["NCCL_P2P_DISABLE"]
        assert recommendation["vllm_disable_custom_all_reduce"] is True
        assert checks(report, "iommu", "warn")
    elif topology == "ecc-bad":
        assert summary["verdict"] == "fail"
        failing = {(c["id"], c["gpu"]) for c in report["checks"] if c["verdict"] == "fail"}
        assert ("ecc", 5) in failing and ("xid", 5) in failing, failing
        assert all(gpu == 5 for _check, gpu in failing), failing
        assert "Xid 79" in checks(report, "xid", "fail")[0]["reason"]
        assert [(c["action"], c["escalated"]) for c in checks(report, "xid", "fail")] == [("reboot", False)]
        assert summary["action"] == "reboot"
        assert report["gpus"][5]["ecc"]["volatile_uncorrected"] == 4
        assert checks(report, "ecc", "pass") and all(c["gpu"] != 5 for c in checks(report, "ecc", "pass"))
    elif topology in ("no-driver", "real"):
        assert summary["verdict"] == "fail"
        assert report["nvml"]["available"] is False
        if topology == "no-driver":
            assert report["nvml"]["error"] == "DriverNotLoaded"
        else:
            # Debian's real libnvidia-ml1 in a container: NVML mknod's /dev/nvidiactl, Docker's
            # device cgroup denies opening it, and NVML says "Unknown Error" (on bare metal:
            # DriverNotLoaded). The module must still name the cause: no kernel driver.
            assert report["nvml"]["error"] in ("DriverNotLoaded", "Unknown")
        nvml_init = checks(report, "nvml_init")
        assert len(nvml_init) == 1 and nvml_init[0]["verdict"] == "fail"
        assert "driver not loaded" in nvml_init[0]["reason"]
        assert summary["counts"]["fail"] == 1
    else:
        pytest.fail(f"no expectation for topology {topology}")
    assert report["expected_gpu_count"] == hostvars.get("gpu_health_expected_gpu_count")


def test_report_on_real_library_names_it(host, topology):
    if topology != "real":
        pytest.skip("real libnvidia-ml1 hosts only")
    assert host.package("libnvidia-ml1").is_installed
    assert not host.file("/etc/fake-nvml").exists


# --- Prometheus textfile ---------------------------------------------------------------------

def test_textfile(textfile, topology):
    lines = textfile.splitlines()
    assert textfile.endswith("\n")
    assert "# TYPE inferops_gpu_health_verdict gauge" in lines
    verdict = {"h100-sxm-8": "pass"}.get(topology, "fail")
    assert f'inferops_gpu_health_verdict{{verdict="{verdict}"}} 1' in lines
    assert 'inferops_gpu_health_verdict{verdict="warn"} 0' in lines
    if topology == "h100-sxm-8":
        assert "inferops_gpu_health_nvml_up 1" in lines
        assert "inferops_gpu_health_gpus 8" in lines
        assert "inferops_gpu_health_gpus_expected 8" in lines
        assert "inferops_gpu_health_nccl_p2p_disable_recommended 0" in lines
        assert sum(line.startswith("inferops_gpu_temperature_celsius{") for line in lines) == 8
    elif topology == "pcie-4-acs":
        assert 'inferops_gpu_p2p_safe{gpu_a="2",gpu_b="3"} 0' in lines
        assert 'inferops_gpu_p2p_safe{gpu_a="0",gpu_b="1"} 1' in lines
        assert "inferops_gpu_health_nccl_p2p_disable_recommended 1" in lines
        assert ('inferops_gpu_health_check{check="acs",gpu="",pair="2-3",verdict="fail",'
                'action="disable_acs_or_nccl_p2p"} 1') in lines
    elif topology == "ecc-bad":
        assert any(re.match(r'inferops_gpu_ecc_uncorrected_volatile_errors\{gpu="5",.*\} 4$', line) for line in lines)
        assert 'inferops_gpu_xid_recent{pci="0000:ab:00",xid="79"} 1' in lines
        # Every converge of the scenario runs in one boot: the first remedy, no escalation.
        assert 'inferops_gpu_health_check{check="ecc",gpu="5",pair="",verdict="fail",action="reset_gpu"} 1' in lines
        assert 'inferops_gpu_health_action{action="reboot"} 1' in lines
    else:
        assert "inferops_gpu_health_nvml_up 0" in lines
        assert 'inferops_gpu_health_check{check="nvml_init",gpu="",pair="",verdict="fail",action="reboot"} 1' in lines


# --- the gate ---------------------------------------------------------------------------------

def test_gate(host, topology):
    if topology == "h100-sxm-8":
        assert not host.file(GATE_ROLE).exists and not host.file(GATE_PROBE).exists
        return
    if topology == "real":
        # The role's own run, default fail_on [fail], ended in the gate.
        record = gate(host, GATE_ROLE)
        assert not host.file(GATE_PROBE).exists
    else:
        # fail_on [] let the first run through; the probe with fail_on [fail] was stopped.
        assert not host.file(GATE_ROLE).exists
        record = gate(host, GATE_PROBE)
    assert record["task"].startswith("Gate |")
    msg = record["msg"]
    assert "GPU health gate on " in msg
    if topology == "no-driver":
        assert "1 check(s)" in msg
        assert "nvml_init: NVML DriverNotLoaded: driver not loaded" in msg
    elif topology == "real":
        assert "1 check(s)" in msg
        assert re.search(r"nvml_init: NVML (DriverNotLoaded|Unknown): driver not loaded", msg), msg
    elif topology == "pcie-4-acs":
        assert "5 check(s)" in msg
        assert "acs gpu2-gpu3: GPU2-GPU3: ACS redirect" in msg
    elif topology == "ecc-bad":
        assert "ecc gpu5:" in msg and "xid gpu5: Xid 79" in msg and "row_remap gpu5:" in msg
    assert REPORT in msg


# --- timer ------------------------------------------------------------------------------------

def test_timer(host, hostvars, release):
    timer = host.service("inferops-gpu-health.timer")
    unit = host.file("/etc/systemd/system/inferops-gpu-health.service")
    if not hostvars.get("gpu_health_timer_enabled"):
        assert not unit.exists
        assert not host.file("/etc/systemd/system/inferops-gpu-health.timer").exists
        assert not host.file("/opt/inferops/gpu_health").exists
        return
    assert timer.is_enabled and timer.is_running
    python = "/usr/bin/python3" if release == 13 else f"{VENV}/bin/python"
    assert f"ExecStart={python} /opt/inferops/gpu_health/bin/gpu_health_check.py" in unit.content_string
    assert "OnCalendar=*:0/15" in host.file("/etc/systemd/system/inferops-gpu-health.timer").content_string
    lib = "/opt/inferops/gpu_health/lib/ansible_collections/inferops/gpu/plugins/module_utils"
    for name in ("gpu_inventory.py", "gpu_health_checks.py", "gpu_health_render.py", "__init__.py"):
        assert host.file(f"{lib}/{name}").is_file
    for level in ("ansible_collections", "ansible_collections/inferops", "ansible_collections/inferops/gpu",
                  "ansible_collections/inferops/gpu/plugins"):
        assert host.file(f"/opt/inferops/gpu_health/lib/{level}/__init__.py").is_file
    config = json.loads(host.file("/etc/inferops/gpu_health.json").content_string)
    assert config["sysfs_root"] == "/opt/fake-nvml/root/sys"
    assert config["expected_gpu_count"] == 8
    assert config["fail_on"] == ["fail"]


def test_timer_service_rewrites_identical_reports(host, hostvars):
    """The runner (no Ansible) reproduces the role's reports byte for byte on the fake host."""
    if not hostvars.get("gpu_health_timer_enabled"):
        pytest.skip("timer not enabled on this host")
    before = host.file(REPORT).content_string, host.file(TEXTFILE).content_string
    with host.sudo():
        run = host.run("systemctl start inferops-gpu-health.service")
    assert run.rc == 0, host.run("journalctl -u inferops-gpu-health.service --no-pager -n 30").stdout
    result = host.run("systemctl show -p Result --value inferops-gpu-health.service").stdout.strip()
    assert result == "success"
    log = host.run("journalctl -u inferops-gpu-health.service --no-pager -n 20").stdout
    assert "gpu_health: verdict pass" in log
    after = host.file(REPORT).content_string, host.file(TEXTFILE).content_string
    assert after == before
