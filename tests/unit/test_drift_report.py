"""The inferops.gpu.drift_report callback driven with fake plays and task results.

The callback's options are registered from its own DOCUMENTATION, as the plugin loader does, so
the documented options are the ones exercised here.
"""

import json

import pytest
import yaml
from ansible import constants as C
from ansible.playbook.handler import Handler

from ansible_collections.inferops.gpu.plugins.callback import drift_report

NAME = "inferops.gpu.drift_report"


class FakeHost:
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name


class FakeRole:
    def __init__(self, name):
        self.name = name

    def get_name(self, include_role_fqcn=True):
        return "inferops.gpu." + self.name if include_role_fqcn else self.name


class FakeTask:
    def __init__(self, name, role=None, action="ansible.builtin.copy"):
        self.name = name
        self.action = action
        self._role = FakeRole(role) if role else None


class FakeResult:
    """Shape of ansible-core 2.19's CallbackTaskResult (host, task, result) for the callback."""

    def __init__(self, host, task, result):
        self.host = FakeHost(host)
        self.task = task
        self.result = result


class FakePlay:
    def __init__(self, name, phase=None):
        self.name = name
        self.vars = {"inferops_drift_phase": phase} if phase else {}

    def get_name(self):
        return self.name


@pytest.fixture
def callback(tmp_path, monkeypatch):
    monkeypatch.delenv("INFEROPS_DRIFT_REPORT_DIR", raising=False)
    monkeypatch.delenv("INFEROPS_DRIFT_DIFF_LINES", raising=False)
    options = yaml.safe_load(drift_report.DOCUMENTATION)["options"]
    C.config.initialize_plugin_configuration_definitions("callback", NAME, options)
    plugin = drift_report.CallbackModule()
    plugin._load_name = NAME
    plugin.set_options(direct={"report_dir": str(tmp_path / "unused")})
    return plugin


def arm(plugin, tmp_path, mode="detect"):
    plugin.v2_playbook_on_play_start(FakePlay("start"))
    plugin.v2_runner_on_ok(FakeResult("localhost", FakeTask("Drift | arm the report", action="ansible.builtin.set_fact"), {
        "changed": False,
        "ansible_facts": {"inferops_drift_run": {"id": "run-1", "mode": mode, "report_dir": str(tmp_path / "out")}}}))


def read(tmp_path):
    return json.loads((tmp_path / "out" / "drift.json").read_text()), (tmp_path / "out" / "drift.md").read_text()


DAEMON_DIFF = {
    "before_header": "/etc/docker/daemon.json", "after_header": "/etc/docker/daemon.json",
    "before": '{\n  "default-shm-size": "2G",\n  "live-restore": true\n}\n',
    "after": '{\n  "default-shm-size": "1G",\n  "live-restore": true\n}\n',
}


def test_idle_until_armed(callback, tmp_path):
    callback.v2_playbook_on_play_start(FakePlay("detect", "detect"))
    callback.v2_runner_on_ok(FakeResult("gpu-1", FakeTask("write", "nccl_tuning"), {"changed": True}))
    callback.v2_playbook_on_stats(None)
    assert not (tmp_path / "out").exists() and not (tmp_path / "unused").exists()
    assert callback.hosts == {}


def test_detect_records_host_role_task_and_diff(callback, tmp_path):
    arm(callback, tmp_path)
    callback.v2_playbook_on_play_start(FakePlay("Drift | detect", "detect"))
    callback.v2_runner_on_ok(FakeResult("gpu-1", FakeTask("Configure | daemon.json", "container_runtime"),
                                        {"changed": True, "diff": DAEMON_DIFF}))
    callback.v2_runner_on_ok(FakeResult("gpu-1", FakeTask("Configure | nccl.conf", "nccl_tuning"), {"changed": False}))
    callback.v2_runner_on_ok(FakeResult("gpu-2", FakeTask("Configure | nccl.conf", "nccl_tuning"), {"changed": False}))
    callback.v2_runner_on_skipped(FakeResult("gpu-3", FakeTask("Install", "nvidia_driver"), {"skipped": True}))
    callback.v2_playbook_on_stats(None)

    report, markdown = read(tmp_path)
    assert report["run_id"] == "run-1" and report["mode"] == "detect" and report["drifted"] is True
    assert report["summary"]["drifted"] == ["gpu-1"] and report["summary"]["clean"] == ["gpu-2", "gpu-3"]
    change = report["hosts"]["gpu-1"]["changes"][0]
    assert change["role"] == "container_runtime" and change["task"] == "Configure | daemon.json"
    assert change["changes"] == ["/etc/docker/daemon.json: +1, -1",
                                 '  -  "default-shm-size": "2G",', '  +  "default-shm-size": "1G",']
    assert "| gpu-1 | drifted | 1 | 0 | 0 |" in markdown
    assert "| container_runtime | Configure \\| daemon.json | /etc/docker/daemon.json: +1, -1<br>" in markdown
    assert "## gpu-2" not in markdown


def test_nothing_changed_is_clean(callback, tmp_path):
    arm(callback, tmp_path)
    callback.v2_playbook_on_play_start(FakePlay("Drift | detect", "detect"))
    callback.v2_runner_on_ok(FakeResult("gpu-1", FakeTask("Configure", "nccl_tuning"), {"changed": False}))
    callback.v2_playbook_on_stats(None)
    report, markdown = read(tmp_path)
    assert report["drifted"] is False and report["errors"] is False
    assert report["hosts"]["gpu-1"]["status"] == "clean"
    assert "1 host(s): 1 clean, 0 drifted, 0 with errors." in markdown


def test_no_log_results_and_items_hide_their_details(callback, tmp_path):
    arm(callback, tmp_path)
    callback.v2_playbook_on_play_start(FakePlay("Drift | detect", "detect"))
    censored = {"changed": True, "_ansible_no_log": True,
                "censored": "the output has been hidden due to the fact that 'no_log: true' was specified for this result"}
    callback.v2_runner_on_ok(FakeResult("gpu-1", FakeTask("Auth | admin password", "xinference"), censored))
    callback.v2_runner_on_ok(FakeResult("gpu-1", FakeTask("Registry login", "xinference"), {
        "changed": True, "results": [
            {"changed": True, "_ansible_no_log": True, "censored": "hidden"},
            {"changed": True, "item": "nccl.env", "diff": {"before": "A=1\n", "after": "A=2\n"}},
            {"changed": False, "item": "unchanged"}]}))
    callback.v2_playbook_on_stats(None)
    report, markdown = read(tmp_path)
    changes = report["hosts"]["gpu-1"]["changes"]
    assert changes[0]["changes"] == ["details hidden (no_log)"]
    assert changes[1]["changes"] == ["item: details hidden (no_log)", "item nccl.env", "  +1, -1", "    -A=1", "    +A=2"]
    text = json.dumps(report) + markdown
    assert "hidden due to the fact" not in text and "unchanged" not in text


def test_remediate_phase_is_kept_apart_and_handlers_ignored(callback, tmp_path):
    arm(callback, tmp_path, mode="remediate")
    callback.v2_playbook_on_play_start(FakePlay("Drift | detect", "detect"))
    callback.v2_runner_on_ok(FakeResult("gpu-1", FakeTask("Configure | nccl.conf", "nccl_tuning"),
                                        {"changed": True, "diff": {"before": "", "after": "NCCL_P2P_DISABLE=1\n",
                                                                   "after_header": "/etc/nccl.conf"}}))
    handler = Handler()
    handler.name, handler.action = "restart docker", "ansible.builtin.systemd_service"
    callback.v2_runner_on_ok(FakeResult("gpu-1", handler, {"changed": True}))
    callback.v2_playbook_on_play_start(FakePlay("Drift | remediate", "remediate"))
    callback.v2_runner_on_ok(FakeResult("gpu-1", FakeTask("Configure | nccl.conf", "nccl_tuning"), {"changed": True}))
    # Plays without a phase (the verdict) are not recorded.
    callback.v2_playbook_on_play_start(FakePlay("Drift | verdict"))
    callback.v2_runner_on_ok(FakeResult("localhost", FakeTask("verdict"), {"changed": True}))
    callback.v2_playbook_on_stats(None)
    report, markdown = read(tmp_path)
    host = report["hosts"]["gpu-1"]
    assert len(host["changes"]) == 1 and host["changes"][0]["changes"] == ["/etc/nccl.conf: +1", "  +NCCL_P2P_DISABLE=1"]
    assert [change["task"] for change in host["remediated"]] == ["Configure | nccl.conf"]
    assert host["status"] == "remediated" and "localhost" not in report["hosts"]
    assert "1 host(s): 0 clean, 1 remediated, 0 still drifted, 0 with errors." in markdown
    assert "Remediated:\n\n- nccl_tuning: Configure \\| nccl.conf" in markdown


def test_health_drift_and_errors(callback, tmp_path):
    arm(callback, tmp_path)
    callback.v2_playbook_on_play_start(FakePlay("Drift | detect", "detect"))
    callback.v2_runner_on_ok(FakeResult("gpu-1", FakeTask("Drift | health", action="ansible.builtin.set_fact"), {
        "changed": False, "ansible_facts": {"inferops_health_drift": [
            {"kind": "gpu_missing", "detail": "GPU7 NVIDIA H100 80GB HBM3 is gone: 7 GPU(s) now, 8 before"}]}}))
    callback.v2_runner_on_failed(FakeResult("gpu-2", FakeTask("Install", "nvidia_driver"), {"msg": "apt broke"}))
    callback.v2_runner_on_failed(FakeResult("gpu-3", FakeTask("Install", "nvidia_driver"), {"msg": "x"}), ignore_errors=True)
    callback.v2_runner_on_unreachable(FakeResult("gpu-4", FakeTask("Gathering Facts"), {"msg": "ssh: no route"}))
    callback.v2_playbook_on_stats(None)
    report, markdown = read(tmp_path)
    assert report["hosts"]["gpu-1"]["status"] == "drifted"
    assert report["hosts"]["gpu-1"]["health"][0]["kind"] == "gpu_missing"
    assert report["summary"]["error"] == ["gpu-2", "gpu-4"] and report["errors"] is True
    assert report["hosts"]["gpu-2"]["errors"] == [{"phase": "detect", "role": "nvidia_driver", "task": "Install",
                                                  "kind": "failed", "msg": "apt broke"}]
    assert "gpu-3" in report["summary"]["clean"]
    assert "- **gpu_missing**: GPU7 NVIDIA H100 80GB HBM3 is gone" in markdown
    assert "- detect Gathering Facts: ssh: no route (unreachable)" in markdown


def test_report_written_at_every_play_start(callback, tmp_path):
    arm(callback, tmp_path)
    callback.v2_playbook_on_play_start(FakePlay("Drift | detect", "detect"))
    callback.v2_runner_on_ok(FakeResult("gpu-1", FakeTask("x", "nccl_tuning"), {"changed": True}))
    callback.v2_playbook_on_play_start(FakePlay("Drift | verdict"))
    report, _markdown = read(tmp_path)
    assert report["summary"]["drifted"] == ["gpu-1"]
    assert report["hosts"]["gpu-1"]["changes"][0]["changes"] == ["changed (the module reported no diff)"]
    assert oct((tmp_path / "out" / "drift.json").stat().st_mode & 0o777) == "0o640"


def test_report_dir_option_when_the_arm_names_none(callback, tmp_path, monkeypatch):
    monkeypatch.setenv("INFEROPS_DRIFT_REPORT_DIR", str(tmp_path / "from-env"))
    callback.set_options()
    callback.v2_playbook_on_play_start(FakePlay("start"))
    callback.v2_runner_on_ok(FakeResult("localhost", FakeTask("arm"), {
        "ansible_facts": {"inferops_drift_run": {"id": "r", "mode": "detect"}}}))
    callback.v2_playbook_on_stats(None)
    assert (tmp_path / "from-env" / "drift.json").is_file()


@pytest.mark.parametrize("diff, expected", [
    ({"before": {"path": "/etc/nccl.conf", "state": "absent"}, "after": {"path": "/etc/nccl.conf", "state": "file"}},
     ["~1", "  ~state: absent -> file"]),
    ({"prepared": "--- before\n+++ after\n@@ -1 +1 @@\n-old\n+new\n"}, ["+1, -1", "  -old", "  +new"]),
    ([{"before": "a\n", "after": "a\n", "before_header": "x"}], ["x: no line changes"]),
    ("not a diff", []),
])
def test_summarize_diff_shapes(diff, expected):
    assert drift_report.summarize_diff(diff) == expected


def test_summarize_diff_cuts_long_diffs():
    before = "".join("line %d\n" % number for number in range(30))
    lines = drift_report.summarize_diff({"before": before, "after": ""}, max_lines=3)
    assert lines[0] == "-30" and len(lines) == 5 and lines[-1] == "  ... 27 more changed line(s)"
    assert drift_report.summarize_diff({"before": before, "after": ""}, max_lines=0) == ["-30"]


CANARY = "canary-Zq8Xv1"


def test_secrets_masked_even_without_no_log(callback, tmp_path):
    """Issue 11: a docker_container --diff without no_log wrote an HF_TOKEN= line into drift.json/md."""
    arm(callback, tmp_path)
    callback.v2_playbook_on_play_start(FakePlay("Drift | detect", "detect"))
    container_diff = {
        "before": {"image": "xprobe/xinference:v4.1.0", "env": ["HF_TOKEN=old-" + CANARY, "NCCL_P2P_DISABLE=1"]},
        "after": {"image": "xprobe/xinference:v4.1.1",
                  "env": ["HF_TOKEN=" + CANARY, "NCCL_P2P_DISABLE=1", "XOSCAR_AUTH_KEY=" + CANARY,
                          "PIP_INDEX_URL=https://bob:" + CANARY + "@index.example/simple"],
                  "xinference_admin_password": CANARY}}
    container = FakeTask("Container", "xinference", action="community.docker.docker_container")
    callback.v2_runner_on_ok(FakeResult("gpu-1", container, {"changed": True, "diff": container_diff}))
    callback.v2_runner_on_ok(FakeResult("gpu-1", FakeTask("Config file", "xinference"), {
        "changed": True, "diff": {"before_header": "/etc/app.conf", "before": "api_key = old\nport = 1\n",
                                  "after": "api_key = %s\nport = 2\n" % CANARY}}))
    callback.v2_runner_on_ok(FakeResult("gpu-1", FakeTask("Models token=" + CANARY, "xinference"), {
        "changed": True, "results": [{"changed": True, "item": {"model_name": "m", "envs": {"HF_TOKEN": CANARY}}}]}))
    callback.v2_runner_on_failed(FakeResult("gpu-1", FakeTask("Login", "xinference"),
                                            {"failed": True, "msg": "login to https://u:%s@reg.example failed" % CANARY}))
    callback.v2_playbook_on_stats(None)
    report, markdown = read(tmp_path)
    text = json.dumps(report) + markdown
    assert CANARY not in text
    changes = report["hosts"]["gpu-1"]["changes"]
    # What is not secret is still there: the image tag, the NCCL variable, the file path and the port.
    shown = "\n".join(changes[0]["changes"])
    assert "xprobe/xinference:v4.1.1" in shown and "XOSCAR_AUTH_KEY=********" in shown
    assert "https://bob:********@index.example/simple" in shown
    # A secret that only changed its value is masked on both sides (no digest of it either).
    assert "HF_TOKEN" not in shown
    assert changes[1]["changes"] == ["/etc/app.conf: +1, -1", "  -port = 1", "  +port = 2"]
    assert report["hosts"]["gpu-1"]["errors"][0]["msg"] == "login to https://u:********@reg.example failed"


def test_masking_keeps_paths_and_booleans(callback, tmp_path):
    arm(callback, tmp_path)
    callback.v2_playbook_on_play_start(FakePlay("Drift | detect", "detect"))
    callback.v2_runner_on_ok(FakeResult("gpu-1", FakeTask("Auth | key file", "xinference", action="ansible.builtin.file"), {
        "changed": True, "diff": {"before": {"path": "/etc/inferops/xinference-api-key", "mode": "0644",
                                             "auth_enabled": False},
                                  "after": {"path": "/etc/inferops/xinference-api-key", "mode": "0600",
                                            "auth_enabled": True}}}))
    callback.v2_playbook_on_stats(None)
    report = read(tmp_path)[0]
    assert report["hosts"]["gpu-1"]["changes"][0]["changes"] == [
        "~2", "  ~auth_enabled: False -> True", "  ~mode: 0644 -> 0600"]
