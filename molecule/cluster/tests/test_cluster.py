"""Testinfra checks of the end-to-end cluster scenario (issue 5).

After site.yml converged the three hosts: the supervisor lists both workers, the embedding model
runs on e2e-worker-h100 and answers through the supervisor's endpoint, and the NCCL settings
follow each worker's (simulated) topology. Then drift: five kinds injected by hand, in two
rounds with at most one kind per host, each round followed by playbooks/drift.yml in remediate
mode, which detects first (the roles in check mode) and then applies the roles to the drifted hosts
only. Its JSON report must name on each host exactly the drift injected there (role, task; the
other hosts clean) and the fix; the real state must be back. The first round also runs detect mode
alone (exit status 2, nothing changed). A last detect run is clean.

Tests run in file order and build on each other (pytest without random ordering).
"""

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "harness"))

import canary  # noqa: E402

SUPERVISOR = "e2e-supervisor"
H100 = "e2e-worker-h100"
ACS = "e2e-worker-acs"
HOSTS = (SUPERVISOR, H100, ACS)
CONTAINER = "xinference"
MODEL_UID = "minilm"
KEY_FILE = "/etc/inferops/xinference-api-key"
PORT = 9997
WORKER_PORT = 30001

# Runs on the test host: one HTTP request, prints "<status> <body>" (shared by the scenarios).
HTTP = (Path(__file__).resolve().parents[2] / "shared" / "http_request.py").read_text()

_NODES = {}


def node(name):
    """A testinfra host for one inventory host (Molecule's inventory, its docker connection)."""
    if name not in _NODES:
        _NODES[name] = testinfra.get_host(
            "ansible://" + name, ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])
    return _NODES[name]


def inspect(name):
    return json.loads(node(name).check_output("docker inspect %s", CONTAINER))[0]


def address(name):
    """The address the host's Xinference advertises (--host of its command)."""
    cmd = inspect(name)["Config"]["Cmd"]
    return cmd[cmd.index("--host") + 1]


def api(method, path, token="", body=None):
    """A request to the supervisor's endpoint, sent from the supervisor host."""
    url = "http://%s:%d%s" % (address(SUPERVISOR), PORT, path)
    out = node(SUPERVISOR).check_output("python3 -c %s %s %s %s %s", HTTP, method, url, token,
                                        json.dumps(body) if body is not None else "")
    status, text = out.split(" ", 1) if " " in out else (out, "")
    return int(status), (json.loads(text) if text.strip() else None)


def inventory_vars(name):
    return node(name).ansible.get_variables()


def admin_token():
    password = inventory_vars(SUPERVISOR)["xinference_admin_password"]  # a canary
    status, body = api("POST", "/token", body={"username": "admin", "password": password})
    assert status == 200, body
    return body["access_token"]


def api_key():
    return node(SUPERVISOR).file(KEY_FILE).content_string.strip()


def embedding():
    status, body = api("POST", "/v1/embeddings", api_key(),
                       {"model": MODEL_UID, "input": ["GPU hosts that stay healthy"]})
    assert status == 200, body
    return body["data"][0]["embedding"]


def workers_listed():
    status, body = api("GET", "/v1/cluster/info", admin_token())
    assert status == 200, body
    return sorted(item["ip_address"] for item in body if item["node_type"] == "Worker")


def nccl_conf(name):
    f = node(name).file("/etc/nccl.conf")
    if not f.exists:
        return None
    return dict(line.split("=", 1) for line in f.content_string.splitlines()
                if line.strip() and not line.startswith("#"))


# --- the converged cluster ----------------------------------------------------------------

def test_shapes_from_the_inventory_groups():
    sup = inspect(SUPERVISOR)
    assert sup["State"]["Running"]
    assert sup["Config"]["Labels"]["org.inferops.shape"] == "supervisor"
    assert sup["Config"]["Cmd"][0] == "xinference-supervisor"
    for name in (H100, ACS):
        data = inspect(name)
        assert data["State"]["Running"]
        assert data["Config"]["Labels"]["org.inferops.shape"] == "worker"
        cmd = data["Config"]["Cmd"]
        assert cmd[0] == "xinference-worker"
        # Each worker found the supervisor through the inventory, not through a typed address.
        assert cmd[cmd.index("--endpoint") + 1] == "http://%s:%d" % (address(SUPERVISOR), PORT)
        assert data["HostConfig"]["NetworkMode"] == "host"
        # Simulated GPUs, an image without CUDA: no GPU requested from the engine.
        assert not data["HostConfig"].get("DeviceRequests")


def test_supervisor_lists_both_workers():
    assert workers_listed() == sorted("%s:%d" % (address(name), WORKER_PORT) for name in (H100, ACS))


def test_embedding_model_served_through_the_supervisor():
    vector = embedding()
    assert len(vector) == 384
    assert all(isinstance(x, float) for x in vector)


def test_model_runs_on_the_worker_that_declares_it():
    status, replicas = api("GET", "/v1/models/%s/replicas" % MODEL_UID, admin_token())
    assert status == 200, replicas
    assert [r["worker_address"] for r in replicas] == ["%s:%d" % (address(H100), WORKER_PORT)]


def test_nccl_settings_follow_each_topology():
    acs, h100 = nccl_conf(ACS), nccl_conf(H100)
    assert acs == {"NCCL_P2P_DISABLE": "1"}
    assert "NCCL_P2P_DISABLE" not in h100
    # The worker container gets the same settings through nccl_tuning's exported fact.
    assert container_env(ACS)["NCCL_P2P_DISABLE"] == "1"
    assert "NCCL_P2P_DISABLE" not in container_env(H100)
    # The supervisor is a CPU node: nccl_tuning is off there.
    assert nccl_conf(SUPERVISOR) is None


def test_gpu_health_reports_of_the_simulated_workers():
    for name, gpus in ((H100, 8), (ACS, 4)):
        report = json.loads(node(name).file("/var/lib/inferops/gpu_health/report.json").content_string)
        assert report["gpu_count"] == gpus
    assert not node(SUPERVISOR).file("/var/lib/inferops/gpu_health/report.json").exists


def test_driver_packages_pinned_and_held_on_the_h100_worker():
    h100 = node(H100)
    assert h100.package("nvidia-driver").is_installed
    assert h100.check_output("dpkg --get-selections nvidia-driver").split() == ["nvidia-driver", "hold"]
    assert not node(ACS).package("nvidia-driver").is_installed


# --- drift: each kind injected by hand, at most one kind per host and run -------------------
#
# Five kinds in two rounds. Within a round every host carries at most one injected kind, so each
# finding of the report belongs to exactly one injection: the report must name, per host, exactly
# the (role, task) pairs of that host's kind and nothing else, every other host clean. A remediate
# run takes two to three minutes here; two rounds instead of five keep the scenario inside the
# suite's budget without weakening what each report must prove.


# What every drift run left on the controller, searched for the canaries by test_no_canary_leaks:
# its full output (a file per run) and its report directory.
DRIFT_RUNS = []


def drift(mode, report_dir):
    """Run playbooks/drift.yml at -vvv (a canary run: the jsonfile fact cache of the provisioner's
    env is inherited); return (exit status, its JSON report, output)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_CALLBACKS_ENABLED="inferops.gpu.drift_report")
    playbook = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "playbooks", "drift.yml")
    run = subprocess.run(
        ["ansible-playbook", "-vvv", "-i", os.environ["MOLECULE_INVENTORY_FILE"], playbook,
         "-e", "drift_mode=" + mode, "-e", "drift_report_dir=" + str(report_dir)],
        env=env, capture_output=True, text=True, timeout=1800, check=False)
    log = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "drift-runs" / ("%02d-%s.log" % (len(DRIFT_RUNS), mode))
    log.parent.mkdir(exist_ok=True)
    log.write_text(run.stdout + run.stderr)
    DRIFT_RUNS.extend([log, Path(report_dir)])
    output = run.stdout[-8000:] + run.stderr[-3000:]
    path = os.path.join(str(report_dir), "drift.json")
    assert os.path.exists(path), output
    with open(path, encoding="utf-8") as stream:
        return run.returncode, json.load(stream), output


def named(entries, expected):
    """The (role, task) of each entry matches `expected` one to one (a task name may end with its
    templated detail, so the expected name is a prefix)."""
    found = sorted((c["role"], c["task"]) for c in entries)
    wanted = sorted(expected)
    return len(found) == len(wanted) and all(
        role == want_role and task.startswith(want_task)
        for (role, task), (want_role, want_task) in zip(found, wanted))


def assert_exactly(report, kinds, output):
    """The report names, on each host, exactly the findings of the kind injected there; the other
    hosts are clean; no host has health drift or errors."""
    for name in HOSTS:
        record = report["hosts"].get(name)
        assert record is not None, "no record of %s: %s" % (name, output)
        assert record["health"] == [] and record["errors"] == [], output
        if name in kinds:
            assert named(record["changes"], EXPECTED[kinds[name]]), (name, kinds[name], output)
        else:
            assert record["status"] == "clean" and record["changes"] == [] and record["remediated"] == [], output


def remediate(tmp_path, kinds):
    """A remediate run: a detect pass (the roles in check mode, recorded as `changes`), then the
    roles applied to the drifted hosts only (recorded as `remediated`). Its report must name each
    host's injected kind exactly, and the drifted tasks must have been applied for real (other
    tasks of the host may report changes too, an apt cache refresh for instance)."""
    rc, report, output = drift("remediate", tmp_path / "remediate")
    assert rc == 0, output
    assert report["mode"] == "remediate", output
    assert report["summary"]["remediated"] == sorted(kinds), output
    assert_exactly(report, kinds, output)
    for name, kind in kinds.items():
        assert report["hosts"][name]["status"] == "remediated", output
        fixed = [(c["role"], c["task"]) for c in report["hosts"][name]["remediated"]]
        for role, task in EXPECTED[kind]:
            assert any(r == role and t.startswith(task) for r, t in fixed), (name, kind, output)


DAEMON_JSON = "/etc/docker/daemon.json"


def shm_size(name):
    return json.loads(node(name).file(DAEMON_JSON).content_string)["default-shm-size"]


def hold_state(name):
    return node(name).check_output("dpkg --get-selections nvidia-driver").split()


NCCL_ENV = "/etc/inferops/nccl.env"


def nccl_env_file(name):
    return dict(line.split("=", 1) for line in node(name).file(NCCL_ENV).content_string.splitlines()
                if line.strip() and not line.startswith("#"))


def container_env(name):
    return dict(item.split("=", 1) for item in inspect(name)["Config"]["Env"])


def test_drift_round_1_shm_changed_hold_removed_nccl_files_edited(tmp_path):
    """daemon.json's shm size changed by hand on the supervisor, the driver package hold removed on
    e2e-worker-h100, /etc/nccl.conf deleted and the containers' NCCL env file hand-edited to
    NCCL_P2P_DISABLE=0 on e2e-worker-acs. Detect mode: exit status 2, each named on its host,
    nothing changed; then remediate.

    The env file edit (issue 10, finding 4): the Xinference container takes its NCCL variables from
    nccl_tuning's exported fact, not from that file, so the report names only nccl_tuning's file,
    with a diff back to the desired 1, and never the container going to the drifted 0."""
    assert shm_size(SUPERVISOR) == "1G"
    node(SUPERVISOR).check_output(
        "sed -i 's/\"default-shm-size\": *\"1G\"/\"default-shm-size\": \"64M\"/' %s", DAEMON_JSON)
    assert shm_size(SUPERVISOR) == "64M"
    node(H100).check_output("apt-mark unhold nvidia-driver")
    assert hold_state(H100) == ["nvidia-driver", "install"]
    node(ACS).check_output("rm /etc/nccl.conf")
    node(ACS).check_output("sed -i 's/^NCCL_P2P_DISABLE=1$/NCCL_P2P_DISABLE=0/' %s", NCCL_ENV)
    assert nccl_env_file(ACS) == {"NCCL_P2P_DISABLE": "0"}
    kinds = {SUPERVISOR: "daemon_json", H100: "driver_hold", ACS: "nccl_files"}

    rc, report, output = drift("detect", tmp_path / "detect")
    assert rc == 2, output
    assert report["mode"] == "detect" and report["drifted"], output
    assert report["summary"]["drifted"] == sorted(kinds), output
    assert all(report["hosts"][name]["status"] == "drifted" for name in kinds), output
    # On e2e-worker-acs exactly nccl_tuning's two files: no Xinference container change.
    assert_exactly(report, kinds, output)
    env_file = [c for c in report["hosts"][ACS]["changes"] if c["task"].startswith("Configure | container env file")]
    lines = [line.strip() for line in env_file[0]["changes"]]
    assert "-NCCL_P2P_DISABLE=0" in lines and "+NCCL_P2P_DISABLE=1" in lines, output
    # Detect mode changes nothing: the drift is still there, the container as it was.
    assert shm_size(SUPERVISOR) == "64M", output
    assert hold_state(H100) == ["nvidia-driver", "install"], output
    assert nccl_conf(ACS) is None, output
    assert nccl_env_file(ACS) == {"NCCL_P2P_DISABLE": "0"}, output
    assert container_env(ACS)["NCCL_P2P_DISABLE"] == "1", output

    remediate(tmp_path, kinds)
    assert shm_size(SUPERVISOR) == "1G"
    assert hold_state(H100) == ["nvidia-driver", "hold"]
    assert nccl_conf(ACS) == {"NCCL_P2P_DISABLE": "1"}
    assert nccl_env_file(ACS) == {"NCCL_P2P_DISABLE": "1"}
    assert container_env(ACS)["NCCL_P2P_DISABLE"] == "1"
    # The restarted engine kept the supervisor (live-restore) or the role brought it back.
    assert inspect(SUPERVISOR)["State"]["Running"]
    assert len(embedding()) == 384


def test_drift_round_2_model_terminated_and_worker_container_stopped(tmp_path):
    status, body = api("DELETE", "/v1/models/" + MODEL_UID, admin_token())
    assert status == 200, body
    node(ACS).check_output("docker stop %s", CONTAINER)
    assert not inspect(ACS)["State"]["Running"]

    remediate(tmp_path, {H100: "model_terminated", ACS: "worker_stopped"})
    assert len(embedding()) == 384
    assert inspect(ACS)["State"]["Running"]
    assert "%s:%d" % (address(ACS), WORKER_PORT) in workers_listed()


def test_final_detect_run_is_clean(tmp_path):
    rc, report, output = drift("detect", tmp_path)
    assert rc == 0, output
    assert not report["drifted"] and not report["errors"], output
    assert report["summary"]["clean"] == sorted(HOSTS), output


# --- rolling upgrade (issue 12): the image to a second tag, a client loop through it all ------
#
# playbooks/upgrade.yml with the inventory's image tag changed (an extra var, as an operator changes
# the pin): --check first (the plan, nothing changes), then the rollout while a client on the
# supervisor host sends embedding requests one after the other. The model gets a second replica on
# e2e-worker-acs first, so that each worker's drain leaves one replica serving. Only the image
# changes: the driver and engine roles are switched off for the run (nothing of theirs is pinned to
# a new version here, and they would add minutes). The figures go to .cache/logs/upgrade-cluster.json.

# The image as the inventory names it (pulled from the harness's registry).
IMAGE = "registry.inferops.test:5000/inferops/xinference-cpu"
UPGRADE_TAG = "4.1.0-upgrade"
UPGRADE_RUNS = []
LOOP = (Path(__file__).resolve().parents[2] / "shared" / "client_loop.py").read_text()
LOOP_STOP = "/tmp/inferops-upgrade-loop.stop"
UPGRADE_VARS = ["-e", "xinference_image_tag=" + UPGRADE_TAG, "-e", "inferops_nvidia_driver_enabled=false",
                "-e", "inferops_container_runtime_enabled=false"]


def upgrade(*args):
    """Run playbooks/upgrade.yml at -vvv (a canary run like the drift runs); return (rc, output)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    playbook = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "playbooks", "upgrade.yml")
    run = subprocess.run(["ansible-playbook", "-vvv", "-i", os.environ["MOLECULE_INVENTORY_FILE"], playbook,
                          *UPGRADE_VARS, *args], env=env, capture_output=True, text=True, timeout=1800, check=False)
    log = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "upgrade-runs" / ("%02d.log" % len(UPGRADE_RUNS))
    log.parent.mkdir(exist_ok=True)
    log.write_text(run.stdout + run.stderr)
    UPGRADE_RUNS.append(log)
    return run.returncode, run.stdout + run.stderr


def second_tag(name):
    """The test image under a second tag with an id of its own (docker tag alone keeps the id, and
    the container would not change): a commit of an unstarted container, one empty layer, made in
    the host's own engine under the registry's name, so no second image crosses the network (the
    role's pull policy, missing, finds it there)."""
    image = IMAGE
    node(name).check_output(
        "docker image inspect {image}:{tag} >/dev/null 2>&1 || {{ docker create --name inferops-upgrade-src "
        "{image}:4.1.0 true >/dev/null && docker commit --change 'LABEL org.inferops.test=upgrade' "
        "inferops-upgrade-src {image}:{tag} >/dev/null && docker rm inferops-upgrade-src >/dev/null; }}".format(
            image=image, tag=UPGRADE_TAG))


def replicas_by_worker():
    status, replicas = api("GET", "/v1/models/%s/replicas" % MODEL_UID, admin_token())
    assert status == 200, replicas
    return sorted((r["worker_address"], r["status"]) for r in replicas)


def recap(output):
    """{host: {ok, changed, failed, ...}} from the play recap."""
    found = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M):
        found[host] = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", counts))
    return found


def test_upgrade_check_mode_prints_the_plan_and_changes_nothing():
    for name in HOSTS:
        second_tag(name)
    before = dict((name, (inspect(name)["Id"], image_of(name))) for name in HOSTS)
    rc, output = upgrade("--check", "--diff")
    assert rc == 0, output[-6000:]
    old, new = IMAGE + ":4.1.0", IMAGE + ":" + UPGRADE_TAG
    # Supervisor first, then the canary (the first other host in inventory order), then the batch.
    assert '"1. supervisor: %s"' % SUPERVISOR in output, output[-6000:]
    assert '"2. canary: %s"' % ACS in output and '"3. batch 1: %s"' % H100 in output, output[-6000:]
    for name in HOSTS:
        assert '"   %s: xinference_image %s -> %s"' % (name, old, new) in output, output[-6000:]
    assert all(counts["changed"] == 0 and counts["failed"] == 0 for counts in recap(output).values()), output[-3000:]
    assert after_equals(before), output[-3000:]


def image_of(name):
    return inspect(name)["Config"]["Image"]


def after_equals(before):
    return all((inspect(name)["Id"], image_of(name)) == before[name] for name in HOSTS)


# Figures of its first run (2026-12-07, molecule verify beside other scenarios, load 7):
# 821 requests in 344 s; the supervisor's restart failed 256 of them over 55 s (its window 92 s),
# each worker's drain call one (HTTP 500; windows 120 s and 114 s), nothing failed between hosts.
# In the fresh-clone run of the test command: 850 in 362 s; 282 failed over 89 s in the
# supervisor's window (113 s), one in each drain call (worker windows 134 s and 93 s).
# After the worker readiness fix (the scenario alone; a worker started anew waits for a report newer than the
# supervisor's stale entry): 625 in 205 s; 153 failed over 32 s in the supervisor's 57 s window,
# none in the worker windows (69 s, 68 s) or their drain calls.
def test_upgrade_rolls_the_image_while_a_client_keeps_asking(tmp_path):
    acs = "%s:%d" % (address(ACS), WORKER_PORT)
    h100 = "%s:%d" % (address(H100), WORKER_PORT)
    status, body = api("POST", "/v1/models/%s/replicas" % MODEL_UID, admin_token(),
                       {"replica": 1, "replica_config": {"devices": [{"worker_ip": acs}]}})
    assert status == 200, body
    assert replicas_by_worker() == sorted([(h100, "READY"), (acs, "READY")])

    sup = node(SUPERVISOR)
    sup.check_output("rm -f %s", LOOP_STOP)
    url = "http://%s:%d/v1/embeddings" % (address(SUPERVISOR), PORT)
    # Its output goes to files: communicate() after closing stdin by hand fails ("I/O operation on
    # closed file"), and the key must be sent before the rollout starts.
    with open(tmp_path / "loop.out", "w") as stdout, open(tmp_path / "loop.err", "w") as stderr:
        loop = subprocess.Popen(["docker", "exec", "-i", SUPERVISOR, "python3", "-c", LOOP, url, LOOP_STOP, MODEL_UID],
                                stdin=subprocess.PIPE, stdout=stdout, stderr=stderr, text=True)
    loop.stdin.write(api_key() + "\n")
    loop.stdin.close()
    try:
        rc, output = upgrade("-e", "upgrade_report_dir=" + str(tmp_path))
    finally:
        sup.check_output("touch %s", LOOP_STOP)
        loop.wait(timeout=120)
    out, err = (tmp_path / "loop.out").read_text(), (tmp_path / "loop.err").read_text()
    assert loop.returncode == 0, err[-2000:]
    requests = json.loads(out)
    report = json.loads((tmp_path / "upgrade.json").read_text()) if (tmp_path / "upgrade.json").exists() else None

    # The figures: every failed request, attributed to the host being upgraded when it was sent.
    windows = dict((item["host"], (int(item["started"]), int(item["finished"]))) for item in
                   (report or {}).get("upgraded", []))
    # A worker's drain call (its replica deletes) within its window: Xinference 4.1.0 terminates a
    # replica before it takes it out of routing (playbooks/tasks/upgrade_host.yml).
    drains = dict((item["host"] + " drain", (int(item["drain"][0]), int(item["drain"][1]))) for item in
                  (report or {}).get("upgraded", []) if item.get("drain") and None not in item["drain"])

    def during(r):
        """Where a request falls: a drain call its time in flight overlaps (one sent just before the
        call still fails when its replica is terminated under it), else the host's window it was
        sent in, else between hosts (the report's times are whole seconds: one second of slack
        after each end)."""
        for spans, first, last in ((drains, r["t"], r["t"] + r["s"]), (windows, r["t"], r["t"])):
            found = [name for name, (start, end) in spans.items() if start <= last and first <= end + 1]
            if found:
                return found[:1]
        return ["between hosts"]

    failed = [r for r in requests if not r["ok"]]
    by_host = {}
    for r in failed:
        for host in during(r):
            by_host.setdefault(host, []).append(r)
    figures = {
        "requests": len(requests), "failed": len(failed),
        "seconds": round(requests[-1]["t"] + requests[-1]["s"] - requests[0]["t"], 1) if requests else 0,
        "failed_by_host": dict((host, {"failed": len(items), "from": items[0]["t"], "to": items[-1]["t"] + items[-1]["s"],
                                       "seconds": round(items[-1]["t"] + items[-1]["s"] - items[0]["t"], 1),
                                       "statuses": sorted(set(str(i["status"]) for i in items))})
                               for host, items in by_host.items()),
        "host_windows": dict((host, {"from": start, "seconds": end - start})
                             for host, (start, end) in list(windows.items()) + list(drains.items())),
    }
    canary.dump(Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / ".cache" / "logs" / "upgrade-cluster.json",
                {"figures": figures, "report": report,
                 "failed_outside_the_supervisor": [dict(r, host=during(r)[0]) for r in failed
                                                   if during(r)[0] != SUPERVISOR]})
    print("client loop during the rolling upgrade: %s" % json.dumps(figures, sort_keys=True))

    assert rc == 0, output[-8000:]
    assert sorted(item["host"] for item in report["upgraded"]) == sorted(HOSTS), report
    assert report["failed"] == [] and report["not_reached"] == [], report
    new = IMAGE + ":" + UPGRADE_TAG
    for name in HOSTS:
        assert image_of(name) == new and inspect(name)["State"]["Running"], name
        item = [i for i in report["upgraded"] if i["host"] == name][0]
        assert item["before"]["xinference_image"] == IMAGE + ":4.1.0", item
        assert item["after"]["xinference_image"] == new and item["changed"] == ["xinference_image"], item
    # Back as before: one replica on each worker, READY, answering.
    assert replicas_by_worker() == sorted([(h100, "READY"), (acs, "READY")])
    assert len(embedding()) == 384
    assert requests and requests[-1]["ok"], figures
    # With a replica on each worker, a worker's upgrade costs no request while it is stopped,
    # upgraded, started and its replica relaunched, nor between hosts: a failure falls in the
    # supervisor's window (its restart is the API's outage, measured in the figures) or in a worker's
    # drain call, where Xinference's own delete order can fail a request routed to the replica it
    # terminates (HTTP 500, counted in the figures).
    assert set(by_host) <= {SUPERVISOR, H100 + " drain", ACS + " drain"}, figures
    for name in (H100, ACS):
        assert all(str(r["status"]) == "500" for r in by_host.get(name + " drain", [])), figures


# --- canary secrets (issue 11) -------------------------------------------------------------
#
# The inventory (molecule.yml) gives every secret-bearing input a CANARY-<kind>-<hex> value, and
# every run above was at -vvv with --diff and a jsonfile fact cache: converge and idempotence
# (Molecule's provisioner options), the drift detect and remediate runs (drift()), the upgrade runs.
# The registry password is the harness's real one (the image is pulled from its registry with
# the role's login; Docker keeps it, base64, in /root/.docker/config.json, mode 0600), read back
# from the harness's 0600 file. Nothing may reach the pip index (.invalid, the virtualenv off). The
# API key and the cluster key are generated by the role: their values are read back from the
# supervisor's 0600 files and searched for like the rest.

CLUSTER_KEY_FILE = "/etc/inferops/xinference-cluster-auth-key"
# Docker's own data that is not configuration: image layers and container file systems.
HOST_PRUNE = ["/proc", "/sys", "/dev", "/var/lib/docker/overlay2", "/var/lib/docker/image",
              "/var/lib/docker/buildkit", "/srv/models"]
# Canaries the inventory holds (the rest the role generates).
INVENTORY_KINDS = {"admin-password", "pip-index", "xinference-env", "model-envs"}
# The registry's login (tests/harness/airgap_registry.sh): the inventory names the file, not the value.
REGISTRY_PASSWORD_FILE = Path(__file__).resolve().parents[3] / ".cache" / "airgap" / "registry" / "password"


def cluster_key_file():
    return inventory_vars(SUPERVISOR).get("xinference_cluster_auth_key_path", CLUSTER_KEY_FILE)


def canaries():
    """Every secret of the scenario by kind: the inventory's canaries, the harness's registry
    password, the role's API key and its generated cluster key (when there is one)."""
    h100 = inventory_vars(H100)
    found = {
        "admin-password": h100["xinference_admin_password"],
        "registry-password": REGISTRY_PASSWORD_FILE.read_text().strip(),
        "pip-index": urlsplit(h100["xinference_pip_index_url"]).password,
        "xinference-env": h100["xinference_env"]["INFEROPS_CANARY_TOKEN"],
        "model-envs": h100["xinference_models"][0]["envs"]["HF_TOKEN"],
        "api-key": api_key(),
    }
    key = node(SUPERVISOR).file(cluster_key_file())
    if key.exists:
        found["cluster-key"] = key.content_string.strip()
    assert all(value and len(value) >= 16 for value in found.values()), sorted(found)
    return found


def scan_host(name, secrets):
    """HOST_SCAN on one test host (its own docker exec, so the three run at once)."""
    args = json.dumps({"canaries": secrets, "prune": HOST_PRUNE})
    run = subprocess.run(["docker", "exec", name, "python3", "-c", canary.HOST_SCAN, args],
                         capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, canary.mask(run.stderr[-3000:], secrets)
    return json.loads(run.stdout)


def test_cluster_actor_authentication_by_default():
    """No key in the inventory: the role generated one, keeps it 0600 root on the supervisor, and
    every node's container runs with it (XOSCAR_AUTH_KEY)."""
    key = node(SUPERVISOR).file(cluster_key_file())
    assert key.exists, "no cluster key file %s on the supervisor" % cluster_key_file()
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    value = key.content_string.strip()
    assert len(value) >= 32
    for name in HOSTS:
        assert container_env(name).get("XOSCAR_AUTH_KEY") == value, name


def test_no_canary_leaks():
    """No secret anywhere it could be read: Molecule's log so far (converge and idempotence at
    -vvv), each drift run's output and report (json, md), the fact cache and the rest of the
    ephemeral directory, Ansible's controller temp directories; on each host every file a user
    other than its owner and group can read (outside /proc, /sys, /dev and Docker's image layers),
    the journal and every command line. Where Docker itself shows a secret (docker inspect: the
    container's environment) is recorded, not failed: that is Docker's, not the role's. The
    summary (kinds and places, no value) goes to .cache/logs/canary-cluster.json."""
    secrets = canaries()
    project = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    cache = Path(os.environ["ANSIBLE_CACHE_PLUGIN_CONNECTION"])

    # Not blind: the scanner finds every inventory canary in the inventory Molecule wrote (the
    # canaries' source, excluded below), the fact cache was written, the drift runs were kept.
    assert {h.kind for h in canary.scan_paths([inventory], secrets)} >= INVENTORY_KINDS
    # One file per host; ansible-core 2.19 prefixes the key with its schema version (s1_<host>).
    cached = {re.sub(r"^s[0-9]+_", "", p.name) for p in cache.iterdir()}
    assert cached >= set(HOSTS), (cache, sorted(cached))
    # The inventory's canaries all carry the prefix tests/integration/test_molecule.py looks for
    # in every Molecule log.
    assert all(secrets[kind].startswith(canary.PREFIX) for kind in INVENTORY_KINDS)
    assert len(DRIFT_RUNS) >= 8, DRIFT_RUNS

    log = project / ".cache" / "logs" / "molecule-cluster.log"  # absent when Molecule runs by hand
    # The canaries' sources are left out: the inventory Molecule wrote and its copy of molecule.yml
    # (this scenario's, or another checkout's run of it, in ~/.ansible/tmp/molecule.*).
    sources = [inventory, ephemeral / "molecule.yml", *ephemeral.parent.glob("molecule.*/inventory"),
               *ephemeral.parent.glob("molecule.*/molecule.yml")]
    controller = canary.scan_paths([ephemeral, Path.home() / ".ansible", log, *DRIFT_RUNS, *UPGRADE_RUNS], secrets,
                                   exclude=sources)

    with ThreadPoolExecutor(len(HOSTS)) as pool:
        scans = dict(zip(HOSTS, pool.map(lambda name: scan_host(name, secrets), HOSTS)))
    leaks, kept, docker_shows = list(controller), [], {}
    for name, result in scans.items():
        host_leaks, host_kept = canary.host_hits(name, result)
        leaks += host_leaks
        kept += host_kept
        docker_shows[name] = sorted(h.kind for h in canary.find(
            node(name).check_output("docker inspect %s", CONTAINER).encode(), secrets, name))

    canary.dump(project / ".cache" / "logs" / "canary-cluster.json", {
        "kinds": sorted(secrets), "molecule_log_scanned": log.exists(),
        "leaks": [h._asdict() for h in leaks], "kept_in_protected_files": [h._asdict() for h in kept],
        "docker_inspect_shows": docker_shows,
        "host_files_scanned": {name: result["scanned_files"] for name, result in scans.items()}})

    # Not blind on the hosts: the API key in its own 0600 file, the registry password base64 in
    # Docker's config.json, the container environment through docker inspect.
    assert any(h.kind == "api-key" and h.where.startswith("%s:%s " % (SUPERVISOR, KEY_FILE)) for h in kept), kept
    assert any(h.kind == "registry-password" and "/root/.docker/config.json" in h.where for h in kept), kept
    assert all("xinference-env" in kinds for kinds in docker_shows.values()), docker_shows
    assert not leaks, "canary secrets found (value shown as <kind>):\n" + canary.report(leaks)


# (role, task) the drift report must name for each kind, and nothing else.
EXPECTED = {
    "daemon_json": [("container_runtime", "Configure | daemon.json")],
    "nccl_files": [("nccl_tuning", "Configure | NCCL configuration file"),
                   ("nccl_tuning", "Configure | container env file")],
    "worker_stopped": [("xinference", "Container | the Xinference container")],
    "model_terminated": [("xinference", "Models | launch, relaunch or terminate the declared models")],
    "driver_hold": [("nvidia_driver", "Hold the driver packages")],
}
