"""Repair actions of the gpu_health checks: the fixed set, the action of each finding on the fake
topologies, escalation to rma from the previous report across a reboot (ecc-bad, then
ecc-bad-rebooted: the same GPU's ECC errors and Xid 79 after another boot_id), the GPU's own
temperature threshold, and the module's documentation of every check's action."""

import copy
import json
import re

import pytest
import yaml

from ansible_collections.inferops.gpu.plugins.module_utils import gpu_inventory
from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import (
    ACTION_NAMES,
    ACTION_RULES,
    CHECK_IDS,
    ESCALATING_CHECKS,
    evaluate,
    rebooted_since,
    run_health,
)
from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_render import render_prometheus, render_report
from ansible_collections.inferops.gpu.plugins.modules import gpu_health


def health(host, **kwargs):
    facts = run_health(sysfs_root=host.sysfs_root, procfs_root=host.procfs_root, kernel_log=host.kernel_log, **kwargs)
    # The shape a report has once written and read back (what the next run gets as previous).
    return json.loads(render_report(facts))


def actions(facts, verdicts=("warn", "fail")):
    return {(c["id"], c["gpu"], tuple(c["pair"]) if c["pair"] else None): (c["action"], c["escalated"])
            for c in facts["checks"] if c["verdict"] in verdicts}


def test_the_rules_cover_every_check_with_actions_of_the_set():
    assert set(ACTION_RULES) == set(CHECK_IDS)
    assert {action for rules in ACTION_RULES.values() for action in rules.values()} <= set(ACTION_NAMES)


def test_ansible_doc_documents_every_action_and_every_checks_action():
    doc = yaml.safe_load(gpu_health.DOCUMENTATION)
    items = doc["description"]
    for action in ACTION_NAMES:
        assert [item for item in items if item.startswith("V(%s), " % action)], action
    for check_id in CHECK_IDS:
        found = [item for item in items if item.startswith("Check V(%s), " % check_id)]
        assert len(found) == 1, check_id
        for action in set(ACTION_RULES[check_id].values()):
            assert "V(%s)" % action in found[0], (check_id, action)
        if check_id in ESCALATING_CHECKS:
            assert "V(rma)" in found[0] and "reboot" in found[0], check_id
    # The limit the temperature rule names is an option the module has.
    assert "temperature_slowdown_margin_c" in doc["options"]["limits"]["suboptions"]


@pytest.mark.parametrize("topology", ["h100-sxm-8", "pcie-4-acs", "pcie-4-two-sockets", "ecc-bad", "missing-gpu",
                                      "pcie-degraded", "no-driver"])
def test_every_check_carries_an_action_and_only_findings_have_one(fake_gpu_host, topology):
    facts = health(fake_gpu_host(topology), expected_gpu_count=8 if "pcie-4" not in topology else 4)
    for check in facts["checks"]:
        assert check["action"] in ACTION_NAMES and check["action_reason"], check
        assert check["escalated"] is False  # no previous report
        if check["verdict"] not in ("warn", "fail"):
            assert check["action"] == "none", check


def test_the_action_of_each_finding(fake_gpu_host):
    bad = actions(health(fake_gpu_host("ecc-bad"), expected_gpu_count=8))
    assert bad == {("ecc", 5, None): ("reset_gpu", False), ("row_remap", 5, None): ("reset_gpu", False),
                   ("xid", 5, None): ("reboot", False)}
    acs = actions(health(fake_gpu_host("pcie-4-acs"), expected_gpu_count=4))
    assert acs[("acs", None, (2, 3))] == ("disable_acs_or_nccl_p2p", False)
    assert acs[("iommu", None, None)] == ("disable_acs_or_nccl_p2p", False)
    assert set(actions(health(fake_gpu_host("pcie-degraded"))).values()) == {("reseat_or_check_riser", False)}
    missing = health(fake_gpu_host("missing-gpu"), expected_gpu_count=8)
    assert actions(missing) == {("gpu_count", None, None): ("reseat_or_check_riser", False)}
    nodriver = health(fake_gpu_host("no-driver"))
    assert actions(nodriver) == {("nvml_init", None, None): ("reboot", False)}
    assert nodriver["summary"]["action"] == "reboot"
    # No P2P across the host bridge is NCCL's normal case: a warning with nothing to repair.
    sockets = actions(health(fake_gpu_host("pcie-4-two-sockets")))
    assert sockets and set(sockets.values()) == {("none", False)}


def test_same_fatal_xid_and_ecc_errors_after_a_reboot_escalate_to_rma(fake_gpu_host):
    before = health(fake_gpu_host("ecc-bad"), expected_gpu_count=8)
    after = health(fake_gpu_host("ecc-bad-rebooted"), expected_gpu_count=8, previous=before)
    assert before["host"]["boot_id"] != after["host"]["boot_id"] and rebooted_since(before, after) is True
    assert actions(after) == {("ecc", 5, None): ("rma", True), ("xid", 5, None): ("rma", True),
                              # A pending remap is applied by the next reset: nothing to escalate.
                              ("row_remap", 5, None): ("reset_gpu", False)}
    xid = [c for c in after["checks"] if c["id"] == "xid"][0]
    assert xid["action_reason"].startswith("escalated from reboot:") and "after a reboot" in xid["action_reason"]
    assert after["summary"]["action"] == "rma"
    assert any(line.startswith("xid gpu5: Xid 79") and line.endswith("(action: rma, escalated)")
               for line in after["summary"]["failing"])


def test_escalation_stays_while_the_fault_persists_in_the_same_boot(fake_gpu_host):
    escalated = health(fake_gpu_host("ecc-bad-rebooted"), expected_gpu_count=8,
                       previous=health(fake_gpu_host("ecc-bad"), expected_gpu_count=8))
    again = health(fake_gpu_host("ecc-bad-rebooted"), expected_gpu_count=8, previous=escalated)
    assert rebooted_since(escalated, again) is False
    assert actions(again)[("xid", 5, None)] == ("rma", True)
    assert actions(again)[("ecc", 5, None)] == ("rma", True)
    # Once healthy, nothing is left to act on.
    healed = health(fake_gpu_host("h100-sxm-8"), expected_gpu_count=8, previous=again)
    assert actions(healed) == {} and healed["summary"]["action"] == "none"


def test_no_escalation_without_a_reboot_or_without_evidence(fake_gpu_host):
    before = health(fake_gpu_host("ecc-bad"), expected_gpu_count=8)
    # Same boot, not escalated before: the first remedy still stands.
    same_boot = health(fake_gpu_host("ecc-bad"), expected_gpu_count=8, previous=before)
    assert actions(same_boot)[("xid", 5, None)] == ("reboot", False)
    # A previous report that cannot say whether the host rebooted: no evidence, no escalation.
    blind = copy.deepcopy(before)
    blind["host"] = {}
    assert actions(health(fake_gpu_host("ecc-bad-rebooted"), expected_gpu_count=8, previous=blind))[
        ("xid", 5, None)] == ("reboot", False)
    # Without boot_ids, an uptime that went down is the reboot.
    no_boot_id = copy.deepcopy(before)
    no_boot_id["host"]["boot_id"] = None
    assert actions(health(fake_gpu_host("ecc-bad-rebooted"), expected_gpu_count=8, previous=no_boot_id))[
        ("xid", 5, None)] == ("rma", True)


def test_a_fault_on_another_gpu_before_the_reboot_does_not_escalate(fake_gpu_host):
    before = health(fake_gpu_host("ecc-bad"), expected_gpu_count=8)
    text = json.dumps(before)
    # The same faults, but on GPU 0 (bus 0000:18:00, GPU 0's UUID) in the previous report.
    uuid0, uuid5 = before["gpus"][0]["uuid"], before["gpus"][5]["uuid"]
    other = json.loads(text.replace("0000:ab:00", "0000:18:00").replace(uuid5, "moved").replace(uuid0, uuid5)
                       .replace("moved", uuid0))
    after = health(fake_gpu_host("ecc-bad-rebooted"), expected_gpu_count=8, previous=other)
    assert actions(after)[("xid", 5, None)] == ("reboot", False)
    assert actions(after)[("ecc", 5, None)] == ("reset_gpu", False)


def test_the_module_escalates_from_the_report_it_wrote_before(fake_gpu_host, module_main, tmp_path):
    def run(topology):
        host = fake_gpu_host(topology)
        return module_main(gpu_health.main, {
            "sysfs_root": host.sysfs_root, "procfs_root": host.procfs_root, "kernel_log": host.kernel_log,
            "expected_gpu_count": 8, "report_path": str(tmp_path / "report.json"),
            "textfile_path": str(tmp_path / "gpu_health.prom"), "fail_on": ["fail"]})

    first = run("ecc-bad")
    assert first.failed and "(action: reboot)" in first.result["msg"]
    second = run("ecc-bad-rebooted")
    assert second.failed and "Xid 79" in second.result["msg"] and "(action: rma, escalated)" in second.result["msg"]
    facts = second.result["ansible_facts"]["gpu_health"]
    assert facts["summary"]["action"] == "rma"
    report = json.loads((tmp_path / "report.json").read_text())
    assert [c["action"] for c in report["checks"] if c["id"] == "xid"] == ["rma"]
    textfile = (tmp_path / "gpu_health.prom").read_text()
    assert re.search(r'^inferops_gpu_health_check\{check="xid",gpu="5",pair="",verdict="fail",action="rma"\} 1$',
                     textfile, re.M)
    assert 'inferops_gpu_health_action{action="rma"} 1' in textfile
    # An unreadable previous report is no report: nothing escalates, nothing crashes.
    (tmp_path / "report.json").write_text("{not json")
    third = run("ecc-bad-rebooted")
    assert "(action: reboot)" in third.result["msg"]


@pytest.fixture
def h100_facts(fake_gpu_host):
    host = fake_gpu_host("h100-sxm-8")
    facts = gpu_inventory.collect(sysfs_root=host.sysfs_root, procfs_root=host.procfs_root, kernel_log=host.kernel_log)
    return lambda: copy.deepcopy(facts)


def temperature(facts):
    return [c for c in facts["checks"] if c["id"] == "temperature" and c["gpu"] == 0][0]


def test_temperature_warns_from_the_gpus_own_slowdown_threshold(h100_facts):
    facts = h100_facts()
    assert facts["gpus"][0]["temperature_slowdown_c"] == 89  # the topology's NVML threshold
    facts["gpus"][0]["temperature_c"] = 84
    check = temperature(evaluate(facts))
    # 84 C is under the fixed 85 C but within 5 C of this GPU's slowdown threshold.
    assert (check["verdict"], check["threshold_c"], check["threshold_source"]) == ("warn", 84, "nvml_slowdown")
    assert "slowdown threshold 89 C" in check["reason"] and check["action"] == "check_cooling_power"
    facts = h100_facts()
    facts["gpus"][0]["temperature_c"] = 83
    assert temperature(evaluate(facts))["verdict"] == "pass"
    facts = h100_facts()
    facts["gpus"][0]["temperature_c"] = 86
    check = temperature(evaluate(facts, limits={"temperature_slowdown_margin_c": 2}))
    assert (check["verdict"], check["threshold_c"]) == ("pass", 87)


def test_temperature_falls_back_to_the_fixed_limit_and_says_so(h100_facts):
    facts = h100_facts()
    facts["gpus"][0]["temperature_slowdown_c"] = None
    facts["gpus"][0]["temperature_c"] = 84
    check = temperature(evaluate(facts))
    assert (check["verdict"], check["threshold_c"], check["threshold_source"]) == ("pass", 85, "limit")
    assert "temperature_warn_c" in check["reason"]
    facts = h100_facts()
    facts["gpus"][0]["temperature_slowdown_c"] = None
    facts["gpus"][0]["temperature_c"] = 85
    assert temperature(evaluate(facts))["verdict"] == "warn"


def test_textfile_of_an_escalated_host_keeps_promtool_quiet(fake_gpu_host, tmp_path):
    import shutil
    import subprocess
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run `make setup`"
    after = health(fake_gpu_host("ecc-bad-rebooted"), expected_gpu_count=8,
                   previous=health(fake_gpu_host("ecc-bad"), expected_gpu_count=8))
    run = subprocess.run([promtool, "check", "metrics"], input=render_prometheus(after), capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0 and not (run.stdout + run.stderr).strip(), run.stdout + run.stderr


def test_the_timers_runner_escalates_like_the_module(fake_gpu_host, tmp_path):
    """The role's timer runner (templates/gpu_health_check.py.j2), installed as timer.yml installs it
    (the three module_utils under lib/ with package markers), run as a script by a fresh Python that
    loads the fake NVML by LD_LIBRARY_PATH: the second run, after the reboot, escalates from the
    report the first one wrote."""
    import os
    import shutil
    import subprocess
    import sys

    import jinja2

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    install = tmp_path / "opt"
    package = install / "lib" / "ansible_collections" / "inferops" / "gpu" / "plugins" / "module_utils"
    package.mkdir(parents=True)
    for level in (package, *list(package.parents)[:4]):
        (level / "__init__.py").write_text("")
    for name in ("gpu_inventory.py", "gpu_health_checks.py", "gpu_health_render.py"):
        shutil.copy(os.path.join(repo, "plugins", "module_utils", name), package / name)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["comment"] = lambda text: "#\n# %s\n#" % text
    env.filters["to_json"] = json.dumps
    template = open(os.path.join(repo, "roles", "gpu_health", "templates", "gpu_health_check.py.j2")).read()
    runner = tmp_path / "gpu_health_check.py"
    runner.write_text(env.from_string(template).render(
        ansible_managed="Ansible managed", __gpu_health_python=sys.executable, __gpu_health_timer_pkg_dir=str(package),
        gpu_health_timer_config_path=str(tmp_path / "config.json"), gpu_health_timer_install_dir=str(install)))
    report = tmp_path / "report.json"

    def run(topology):
        host = fake_gpu_host(topology)
        (tmp_path / "config.json").write_text(json.dumps({
            "sysfs_root": host.sysfs_root, "procfs_root": host.procfs_root, "kernel_log": host.kernel_log,
            "shm_path": "/dev/shm", "expected_gpu_count": 8, "report_path": str(report),
            "textfile_path": str(tmp_path / "gpu_health.prom"), "fail_on": ["fail"]}))
        done = subprocess.run(
            [sys.executable, str(runner), "--config", str(tmp_path / "config.json")], capture_output=True, text=True,
            check=False, env=dict(os.environ, LD_LIBRARY_PATH=os.path.join(repo, "tests", "fake_nvml", "build")))
        assert done.returncode == 3, done.stdout + done.stderr  # a fail verdict, reports written
        return done.stderr, json.loads(report.read_text())

    stderr, first = run("ecc-bad")
    assert first["nvml"]["available"] and "(action: reboot)" in stderr
    stderr, second = run("ecc-bad-rebooted")
    assert "(action: rma, escalated)" in stderr
    assert actions(second)[("xid", 5, None)] == ("rma", True) and second["summary"]["action"] == "rma"
