"""The gpu_health module on every fake topology: verdicts, recommendations, failure paths.

The fake NVML is loaded by the unmodified pynvml (see conftest.py); nothing here patches pynvml.
"""

import json
import re
import shutil
import subprocess

import pytest

from ansible_collections.inferops.gpu.plugins.module_utils import gpu_inventory
from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import run_health
from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_render import render_prometheus, render_report
from ansible_collections.inferops.gpu.plugins.modules import gpu_health


@pytest.fixture
def run_module(module_main):
    def run(host, **args):
        params = {"sysfs_root": host.sysfs_root, "procfs_root": host.procfs_root,
                  "kernel_log": host.kernel_log}
        params.update(args)
        return module_main(gpu_health.main, params)
    return run


def health(host, **kwargs):
    return run_health(sysfs_root=host.sysfs_root, procfs_root=host.procfs_root,
                      kernel_log=host.kernel_log, **kwargs)


def verdicts(facts, check_id):
    return {(c["gpu"], tuple(c["pair"]) if c["pair"] else None): c["verdict"]
            for c in facts["checks"] if c["id"] == check_id}


def not_passing(facts):
    return sorted({(c["id"], c["verdict"]) for c in facts["checks"] if c["verdict"] not in ("pass", "skip")})


def test_h100_sxm_8_is_healthy_and_forces_nothing(fake_gpu_host):
    facts = health(fake_gpu_host("h100-sxm-8"), expected_gpu_count=8)
    assert facts["summary"]["verdict"] == "pass", facts["summary"]
    assert facts["gpu_count"] == 8 and len(facts["pairs"]) == 28
    assert all(pair["nvlink"] and pair["p2p_safe"] for pair in facts["pairs"])
    assert all(gpu["nvlink"]["active"] == 18 and not gpu["nvlink"]["inactive"] for gpu in facts["gpus"])
    assert facts["driver"]["cuda_version"] == "12.4"
    rec = facts["recommendation"]
    assert rec["nccl_env"] == {}
    assert rec["vllm_disable_custom_all_reduce"] is False
    # 8 GPUs x 16 GiB, well under half of 2 TiB of RAM
    assert rec["container_shm_size"] == "128g"


def test_pcie_4_acs_flags_pair_2_3_and_derives_p2p_disable(fake_gpu_host):
    facts = health(fake_gpu_host("pcie-4-acs"), expected_gpu_count=4)
    # The redirecting ports sit above GPUs 2 and 3: every pair whose traffic crosses them is unsafe.
    involving_2_or_3 = [[0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    acs = verdicts(facts, "acs")
    assert sorted(list(pair) for (_gpu, pair), verdict in acs.items() if verdict == "fail") == involving_2_or_3
    assert acs[(None, (0, 1))] == "pass"
    # NVML itself says P2P is fine everywhere: only the ACS walk finds incident 1.
    assert set(verdicts(facts, "p2p").values()) == {"pass"}
    unsafe = [pair["gpus"] for pair in facts["pairs"] if not pair["p2p_safe"]]
    assert unsafe == involving_2_or_3
    rec = facts["recommendation"]
    assert rec["nccl_env"] == {"NCCL_P2P_DISABLE": "1"}
    assert "GPU2-GPU3" in rec["reasons"]["NCCL_P2P_DISABLE"] and "ACS" in rec["reasons"]["NCCL_P2P_DISABLE"]
    assert rec["vllm_disable_custom_all_reduce"] is True
    assert "two GPUs" in rec["vllm_reason"]
    assert verdicts(facts, "iommu")[(None, None)] == "warn"
    assert facts["summary"]["verdict"] == "fail"


def test_pcie_4_two_sockets_warns_across_sockets_without_forcing(fake_gpu_host):
    facts = health(fake_gpu_host("pcie-4-two-sockets"), expected_gpu_count=4)
    p2p = verdicts(facts, "p2p")
    assert p2p[(None, (0, 1))] == "pass" and p2p[(None, (2, 3))] == "pass"
    for pair in ((0, 2), (0, 3), (1, 2), (1, 3)):
        assert p2p[(None, pair)] == "warn"
    # Unsupported across the host bridge is NCCL's normal case, not a fault to work around.
    assert facts["recommendation"]["nccl_env"] == {}
    assert facts["summary"]["verdict"] == "warn"


def test_ecc_bad_fails_the_bad_gpu_only(fake_gpu_host):
    facts = health(fake_gpu_host("ecc-bad"), expected_gpu_count=8)
    failing = {(c["id"], c["gpu"]) for c in facts["checks"] if c["verdict"] == "fail"}
    assert failing == {("ecc", 5), ("row_remap", 5), ("xid", 5)}
    xid = [c for c in facts["checks"] if c["id"] == "xid"][0]
    assert "Xid 79" in xid["reason"]


def test_ecc_bad_xid_outside_window_is_ignored(fake_gpu_host):
    facts = health(fake_gpu_host("ecc-bad"), expected_gpu_count=8, limits={"xid_window_s": 60})
    assert verdicts(facts, "xid") == {(None, None): "pass"}


def test_missing_gpu_fails_count(fake_gpu_host):
    facts = health(fake_gpu_host("missing-gpu"), expected_gpu_count=8)
    assert facts["gpu_count"] == 7
    check = [c for c in facts["checks"] if c["id"] == "gpu_count"][0]
    assert check["verdict"] == "fail" and "7 GPUs, 8 expected" in check["reason"]
    # Without an expectation, 7 healthy GPUs pass.
    assert verdicts(health(fake_gpu_host("missing-gpu")), "gpu_count") == {(None, None): "pass"}


def test_pcie_degraded_fails_the_narrow_link(fake_gpu_host):
    facts = health(fake_gpu_host("pcie-degraded"))
    failing = [(c["id"], c["gpu"]) for c in facts["checks"] if c["verdict"] == "fail"]
    assert len(failing) == 1 and failing[0][0] == "pcie_link"
    reason = [c["reason"] for c in facts["checks"] if c["verdict"] == "fail"][0]
    assert "x8, maximum x16" in reason


def test_no_driver_fails_nvml_init_and_skips_the_rest(fake_gpu_host):
    facts = health(fake_gpu_host("no-driver"), expected_gpu_count=8)
    assert facts["nvml"] == {"available": False, "error": "DriverNotLoaded", "message": facts["nvml"]["message"]}
    init = [c for c in facts["checks"] if c["id"] == "nvml_init"][0]
    assert init["verdict"] == "fail" and "driver not loaded" in init["reason"]
    assert {c["verdict"] for c in facts["checks"] if c["id"] != "nvml_init"} == {"skip"}
    assert facts["summary"]["verdict"] == "fail"


def test_unsupported_items_skip_instead_of_crashing(fake_gpu_host):
    facts = health(fake_gpu_host("pcie-4-acs"))
    gpu = facts["gpus"][0]
    assert gpu["nvlink"] is None and gpu["errors"]["nvlink"] == "NotSupported"
    assert verdicts(facts, "nvlink")[(0, None)] == "skip"


def test_module_returns_facts_unchanged(run_module, fake_gpu_host):
    result = run_module(fake_gpu_host("h100-sxm-8"), expected_gpu_count=8).result
    assert result["changed"] is False
    assert result["summary"]["verdict"] == "pass"
    assert result["ansible_facts"]["gpu_health"]["gpu_count"] == 8
    json.dumps(result)  # facts must be plain JSON


def test_module_fail_on_names_every_failing_check(run_module, fake_gpu_host):
    caught = run_module(fake_gpu_host("ecc-bad"), expected_gpu_count=8, fail_on=["fail"])
    assert caught.failed
    assert "3 check(s) with verdict fail" in caught.result["msg"]
    for name in ("ecc gpu5", "row_remap gpu5", "xid gpu5"):
        assert name in caught.result["msg"]
    assert caught.result["ansible_facts"]["gpu_health"]["summary"]["verdict"] == "fail"


def test_module_without_fail_on_never_fails(run_module, fake_gpu_host):
    assert not run_module(fake_gpu_host("ecc-bad"), expected_gpu_count=8).failed


def test_skip_checks_turns_a_failure_into_skip(run_module, fake_gpu_host):
    caught = run_module(fake_gpu_host("pcie-4-acs"), skip_checks=["acs", "iommu"], fail_on=["fail", "warn"])
    assert not caught.failed, caught.result.get("msg")
    checks = caught.result["ansible_facts"]["gpu_health"]["checks"]
    assert {c["verdict"] for c in checks if c["id"] == "acs"} == {"skip"}


def test_negative_limit_is_refused(run_module, fake_gpu_host):
    caught = run_module(fake_gpu_host("h100-sxm-8"), limits={"temperature_warn_c": -1})
    assert caught.failed and "temperature_warn_c" in caught.result["msg"]


def test_module_writes_both_reports_and_creates_their_directories(run_module, fake_gpu_host, tmp_path):
    report, textfile = tmp_path / "lib" / "report.json", tmp_path / "prom" / "gpu.prom"
    host = fake_gpu_host("pcie-4-acs")
    first = run_module(host, report_path=str(report), textfile_path=str(textfile), _ansible_diff=True).result
    facts = json.loads(json.dumps(first["ansible_facts"]["gpu_health"]))
    assert report.read_text() == render_report(facts) and json.loads(report.read_text()) == facts
    assert textfile.read_text() == render_prometheus(facts)
    assert oct(report.stat().st_mode & 0o7777) == "0o644" and oct(report.parent.stat().st_mode & 0o7777) == "0o755"
    # New directories are configuration (a change); the reports themselves are observations.
    assert first["changed"] is True and "diff" not in first
    report.write_text("stale\n")
    report.chmod(0o600)
    again = run_module(host, report_path=str(report), textfile_path=str(textfile)).result
    assert again["changed"] is False
    assert report.read_text() == render_report(facts) and oct(report.stat().st_mode & 0o7777) == "0o644"
    assert not list(report.parent.glob(".gpu_health.*"))


def test_module_report_changes_counts_and_diffs_and_check_mode_writes_nothing(run_module, fake_gpu_host, tmp_path):
    report = tmp_path / "report.json"
    report.write_text("stale\n")
    host = fake_gpu_host("h100-sxm-8")
    checked = run_module(host, report_path=str(report), report_changes=True,
                         _ansible_check_mode=True, _ansible_diff=True).result
    assert checked["changed"] is True and report.read_text() == "stale\n"
    assert checked["diff"][0]["before"] == "stale\n" and '"gpu_count": 8' in checked["diff"][0]["after"]
    assert run_module(host, report_path=str(report), report_changes=True).result["changed"] is True
    missing = tmp_path / "new" / "report.json"
    assert run_module(host, report_path=str(missing), _ansible_check_mode=True).result["changed"] is True
    assert not missing.parent.exists()


def test_missing_pynvml_gives_missing_required_lib(run_module, fake_gpu_host, monkeypatch):
    monkeypatch.setattr(gpu_inventory, "HAS_PYNVML", False)
    monkeypatch.setattr(gpu_inventory, "PYNVML_IMPORT_ERROR", "ImportError: No module named 'pynvml'")
    caught = run_module(fake_gpu_host("h100-sxm-8"))
    assert caught.failed
    assert "Failed to import the required Python library (pynvml" in caught.result["msg"]


PROM_LINE = re.compile(r'^[a-z_][a-z0-9_]*(\{([a-z_][a-z0-9_]*="[^"]*",?)*\})? -?[0-9.]+(e[+-]?\d+)?$')


@pytest.mark.parametrize("topology", ["h100-sxm-8", "pcie-4-acs", "ecc-bad", "no-driver"])
def test_prometheus_text_is_valid_exposition(fake_gpu_host, topology):
    text = render_prometheus(health(fake_gpu_host(topology)))
    for line in text.splitlines():
        assert line.startswith("# ") or PROM_LINE.match(line), line
    assert text.endswith("\n")


def test_prometheus_text_carries_verdict_and_recommendation(fake_gpu_host):
    text = render_prometheus(health(fake_gpu_host("pcie-4-acs")))
    assert 'inferops_gpu_health_verdict{verdict="fail"} 1' in text
    assert ('inferops_gpu_health_check{check="acs",gpu="",pair="2-3",verdict="fail",'
            'action="disable_acs_or_nccl_p2p"} 1') in text
    assert 'inferops_gpu_health_check{check="acs",gpu="",pair="0-1",verdict="pass",action="none"} 1' in text
    assert 'inferops_gpu_health_action{action="disable_acs_or_nccl_p2p"} 1' in text
    assert 'inferops_gpu_health_action{action="none"} 0' in text
    # L40S: NVML reports the slowdown threshold (89 C in the topology)
    assert 'inferops_gpu_temperature_slowdown_celsius{gpu="0",' in text and '"NVIDIA L40S"} 89' in text
    assert "inferops_gpu_health_nccl_p2p_disable_recommended 1" in text
    assert 'inferops_gpu_p2p_safe{gpu_a="2",gpu_b="3"} 0' in text


def test_unknown_nvml_error_without_kernel_module_says_driver_not_loaded():
    """Debian's real libnvidia-ml1 without the kernel module answers Unknown, not DriverNotLoaded."""
    from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import evaluate

    def facts(module_loaded):
        return {"nvml": {"available": False, "error": "Unknown", "message": "Unknown Error"},
                "driver": {}, "gpu_count": None, "gpus": [], "pairs": [],
                "host": {"uptime_s": 1.0, "memory_total_bytes": None, "nvidia_module_loaded": module_loaded},
                "shm": {"path": "/dev/shm", "size_bytes": None, "free_bytes": None, "error": None},
                "pci": {"gpu_paths": {}, "bridges": {}},
                "iommu": {"enabled": False, "groups": 0, "passthrough": False, "cmdline": [], "hypervisor": False},
                "xids": {"available": False, "error": "n/a", "events": []}}
    init = evaluate(facts(False))["checks"][0]
    assert init["id"] == "nvml_init" and init["verdict"] == "fail"
    assert "driver not loaded" in init["reason"] and "Unknown Error" in init["reason"]
    assert "driver not loaded" not in evaluate(facts(True))["checks"][0]["reason"]


@pytest.mark.parametrize("topology", ["h100-sxm-8", "pcie-4-acs", "ecc-bad", "no-driver", "pcie-degraded"])
def test_promtool_check_metrics_finds_nothing(fake_gpu_host, topology):
    """Prometheus' own linter (Debian's `prometheus` package, installed by `make setup`) on the
    textfile: no metric named against its type (a gauge ending in _total or _count...)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run `make setup` (it installs Debian's prometheus package)"
    text = render_prometheus(health(fake_gpu_host(topology)))
    run = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert run.returncode == 0 and not (run.stdout + run.stderr).strip(), run.stdout + run.stderr
