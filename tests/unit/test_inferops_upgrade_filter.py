"""Filters of plugins/filter/inferops_upgrade.py: the rolling upgrade's plan, versions, changes,
container view and report (playbooks/upgrade.yml)."""

import os

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.gpu.plugins.filter import inferops_upgrade as f

HOSTS = ["sup", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "w9"]


def test_every_filter_is_registered_and_documented():
    here = os.path.dirname(f.__file__)
    for name in f.FilterModule().filters():
        assert os.path.exists(os.path.join(here, name + ".yml")), name


def test_plan_supervisor_first_then_canary_then_batches_like_serial():
    plan = f.upgrade_plan(HOSTS, ["sup"], "", 25)
    assert plan[0] == {"name": "supervisor", "hosts": ["sup"]}
    assert plan[1] == {"name": "canary", "hosts": ["w1"]}
    # 8 hosts left, 25 % -> batches of 2 (Ansible's pct_to_int: floor, at least one).
    assert [step["hosts"] for step in plan[2:]] == [["w2", "w3"], ["w4", "w5"], ["w6", "w7"], ["w8", "w9"]]
    assert [step["name"] for step in plan[2:]] == ["batch 1", "batch 2", "batch 3", "batch 4"]


def test_plan_named_canary_small_percentages_and_no_supervisor():
    plan = f.upgrade_plan(["a", "b", "c"], [], "c", 10)
    assert plan == [{"name": "canary", "hosts": ["c"]}, {"name": "batch 1", "hosts": ["a"]},
                    {"name": "batch 2", "hosts": ["b"]}]
    assert f.upgrade_plan(["sup"], ["sup"]) == [{"name": "supervisor", "hosts": ["sup"]}]
    assert f.upgrade_plan(["a", "b", "c"], [], "", 100)[1] == {"name": "batch 1", "hosts": ["b", "c"]}


@pytest.mark.parametrize("args, message", [
    ((HOSTS, ["sup"], "sup", 25), "it is the supervisor"),
    ((HOSTS, ["sup"], "nope", 25), "not one of the hosts"),
    ((HOSTS, ["sup"], "", 0), "1-100"),
    ((HOSTS, ["sup"], "", "ten"), "whole percentage"),
    (("sup", ["sup"], "", 25), "list of hosts"),
])
def test_plan_refuses_bad_input(args, message):
    with pytest.raises(AnsibleFilterError, match=message):
        f.upgrade_plan(*args)


def test_plan_lines_name_each_step_and_the_changes():
    plan = f.upgrade_plan(["sup", "w1"], ["sup"])
    lines = f.upgrade_plan_lines(plan, {"w1": [{"component": "xinference_image", "before": "x:1", "after": "x:2"}]})
    assert lines == ["1. supervisor: sup",
                     "   sup: up to date, left alone (upgrade_force=true runs it)",
                     "2. canary: w1", "   w1: xinference_image x:1 -> x:2"]
    with pytest.raises(AnsibleFilterError):
        f.upgrade_plan_lines({"hosts": []})


PACKAGES = {
    "nvidia-driver": [{"version": "550.163.01-2", "arch": "amd64"}],
    "libnccl2": [{"version": "2.22.3-1"}],
    "docker.io": [{"version": "1:26.1.5+dfsg1-9"}],
    "nvidia-container-toolkit": [{"version": "1.17.8", "release": "1"}],
    "bash": [{"version": "5.2"}],
}


def test_versions_from_package_facts_and_the_image():
    versions = f.upgrade_versions(PACKAGES, "inferops/xinference-cpu:4.1.0")
    assert versions == {"driver": "550.163.01-2", "cuda": None, "nccl": "2.22.3-1", "container_toolkit": "1.17.8-1",
                        "engine": "26.1.5+dfsg1-9", "xinference_image": "inferops/xinference-cpu:4.1.0"}
    ubuntu = f.upgrade_versions({"nvidia-driver-570-server": [{"version": "570.1-0ubuntu1"}],
                                 "cuda-toolkit-12-8": [{"version": "12.8.1-1"}]})
    assert ubuntu["driver"] == "570.1-0ubuntu1" and ubuntu["cuda"] == "12.8.1-1"
    assert ubuntu["xinference_image"] is None
    with pytest.raises(AnsibleFilterError):
        f.upgrade_versions(["nvidia-driver"])


def test_changes_only_what_the_pins_move():
    versions = f.upgrade_versions(PACKAGES, "inferops/xinference-cpu:4.1.0")
    # Pins that match what runs, or empty pins, change nothing.
    assert f.upgrade_changes(versions, {"driver": "550.163.01", "nccl": "2.22.*", "driver_branch": "",
                                        "xinference_image": "inferops/xinference-cpu:4.1.0"}) == []
    assert f.upgrade_changes(versions, {"driver_branch": "550"}) == []
    changes = f.upgrade_changes(versions, {"driver_branch": "580", "cuda": "12.4*",
                                           "xinference_image": "inferops/xinference-cpu:4.1.0-upgrade"})
    assert changes == [
        {"component": "driver", "before": "550.163.01-2", "after": "branch 580"},
        {"component": "cuda", "before": "not installed", "after": "12.4*"},
        {"component": "xinference_image", "before": "inferops/xinference-cpu:4.1.0",
         "after": "inferops/xinference-cpu:4.1.0-upgrade"}]
    # An exact version says more than the branch.
    assert f.upgrade_changes(versions, {"driver": "580.65.06", "driver_branch": "550"}) == [
        {"component": "driver", "before": "550.163.01-2", "after": "580.65.06"}]
    with pytest.raises(AnsibleFilterError, match="unknown pins kernel"):
        f.upgrade_changes(versions, {"kernel": "6.1"})


def test_container_view_of_each_shape():
    worker = {"Config": {"Cmd": ["xinference-worker", "--endpoint", "http://10.0.0.1:9997", "--host", "10.0.0.2",
                                 "--worker-port", "30001"], "Image": "x:1",
                         "Labels": {"org.inferops.shape": "worker"}}, "State": {"Running": True}}
    assert f.upgrade_container([worker]) == {"present": True, "running": True, "image": "x:1", "shape": "worker",
                                             "url": "http://10.0.0.1:9997", "worker": "10.0.0.2:30001"}
    sup = {"Config": {"Cmd": ["xinference-supervisor", "--host", "10.0.0.1", "--port", "9997"], "Image": "x:1"},
           "State": {"Running": False}}
    assert f.upgrade_container(sup)["url"] == "http://10.0.0.1:9997"
    assert f.upgrade_container(sup)["shape"] == "supervisor" and not f.upgrade_container(sup)["running"]
    local = {"Config": {"Cmd": ["xinference-local", "--host", "0.0.0.0"], "Image": "x:1"}, "State": {}}
    assert f.upgrade_container(local)["url"] == "http://127.0.0.1:9997"
    assert f.upgrade_container(None)["present"] is False and f.upgrade_container([])["url"] is None
    with pytest.raises(AnsibleFilterError, match="docker inspect"):
        f.upgrade_container({"Id": "abc"})


def test_report_and_lines():
    before = {"xinference_image": "x:1", "driver": "550"}
    hostvars = {
        "sup": {"upgrade_done": True, "upgrade_versions_before": before, "upgrade_started": "100",
                "upgrade_finished": "160", "upgrade_versions_after": dict(before, xinference_image="x:2")},
        "w1": {"upgrade_done": True, "upgrade_versions_before": before, "upgrade_versions_after": before,
               "upgrade_models": [{"model_uid": "minilm"}], "upgrade_reboot_pending": ["no module loaded"],
               "upgrade_drain_started": "170", "upgrade_drain_finished": "172"},
        "w2": {"upgrade_failure": {"step": "compare", "reason": "7 GPU(s) now, 8 before", "drained": True},
               "upgrade_versions_before": before},
        "w3": {"upgrade_step": "drain"},
        "w4": {},
        "w5": {"upgrade_current": True, "upgrade_versions_before": before},
    }
    report = f.upgrade_report(hostvars, ["w5", "w4", "w3", "w2", "w1", "sup"])
    assert [item["host"] for item in report["upgraded"]] == ["sup", "w1"]
    assert report["upgraded"][0]["changed"] == ["xinference_image"]
    # The drain's own seconds (the replica deletes), none where nothing was drained.
    assert report["upgraded"][1]["drain"] == ["170", "172"] and report["upgraded"][0]["drain"] == [None, None]
    assert report["failed"] == [
        {"host": "w2", "step": "compare", "reason": "7 GPU(s) now, 8 before", "before": before, "drained": True},
        {"host": "w3", "step": "drain", "reason": "see the output above", "before": {}, "drained": True}]
    assert report["not_reached"] == ["w4"]
    assert report["current"] == [{"host": "w5", "versions": before}]
    assert f.upgrade_summary_lines(report) == [
        "sup: UPGRADED in 60 s (xinference_image x:1 -> x:2)",
        "w1: UPGRADED (nothing to change); models back: minilm; REBOOT PENDING: no module loaded",
        "w5: UP TO DATE (the pinned versions run already; upgrade_force=true runs it all the same)",
        "w2: FAILED at compare: 7 GPU(s) now, 8 before (left drained)",
        "w3: FAILED at drain: see the output above (left drained)",
        "w4: NOT REACHED (the rollout stopped before its batch, or unreachable)"]
    with pytest.raises(AnsibleFilterError):
        f.upgrade_summary_lines({"upgraded": []})
    with pytest.raises(AnsibleFilterError):
        f.upgrade_report([], [])
