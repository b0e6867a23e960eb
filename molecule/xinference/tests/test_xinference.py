"""Testinfra checks of the xinference scenario.

Real state only: the container the role started (its environment, /dev/shm, capabilities,
ulimits, mounts, log rotation, health check), the API key file, and the API itself: an embedding
through the endpoint with the client API key returns a 384-dimension vector. The air-gapped paths:
the image was pulled from the test registry with the role's login (its digest is the registry's),
a wrong registry password stops the role before the container is touched, and the model's engine
virtualenv installed its package from the test index, whose credentials reach no log. Then drift: a
terminated model and a stopped container are reported by check mode and repaired by a run (the
model relaunched), and an image tag change recreates the container with XINFERENCE_HOME kept.
"""

import json
import os
import re
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

CONTAINER = "xinference"
REGISTRY = "registry.inferops.test:5000"
IMAGE = REGISTRY + "/inferops/xinference-cpu"
# The test registry and index (tests/harness/airgap_registry.sh): its container, login and CA.
AIRGAP = Path(__file__).resolve().parents[3] / ".cache" / "airgap"
SERVER = "inferops-airgap-registry"
URL = "http://127.0.0.1:9997"
KEY_FILE = "/etc/inferops/xinference-api-key"
MODEL_UID = "minilm"

# Runs on the test host: one HTTP request, prints "<status> <body>" (shared by the scenarios).
HTTP = (Path(__file__).resolve().parents[2] / "shared" / "http_request.py").read_text()


def api(host, method, path, token="", body=None):
    out = host.check_output("python3 -c %s %s %s %s %s", HTTP, method, URL + path, token,
                            json.dumps(body) if body is not None else "")
    status, text = out.split(" ", 1) if " " in out else (out, "")
    return int(status), (json.loads(text) if text.strip() else None)


def inspect(host):
    return json.loads(host.check_output("docker inspect %s", CONTAINER))[0]


def api_key(host):
    return host.file(KEY_FILE).content_string.strip()


def admin_token(host):
    status, body = api(host, "POST", "/token", body={"username": "admin", "password": "molecule-admin-pw"})
    assert status == 200, body
    return body["access_token"]


def embedding(host):
    status, body = api(host, "POST", "/v1/embeddings", api_key(host),
                       {"model": MODEL_UID, "input": ["GPU hosts that stay healthy"]})
    assert status == 200, body
    return body["data"][0]["embedding"]


def _playbook(playbook, *extra):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    scenario = os.environ["MOLECULE_SCENARIO_DIRECTORY"]
    return subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], os.path.join(scenario, playbook), *extra],
        env=env, capture_output=True, text=True, timeout=1200, check=False)


def _run(playbook, *extra):
    """Run a playbook of this scenario from the controller; return its recap's changed= count."""
    run = _playbook(playbook, *extra)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    recap = re.search(r"^xinference-debian13\s*:\s*ok=\d+\s+changed=(\d+)", run.stdout, re.M)
    assert recap, run.stdout[-4000:]
    return int(recap.group(1))


def test_container_runs_the_pinned_image_in_the_local_shape(host):
    data = inspect(host)
    assert data["State"]["Running"]
    assert data["Config"]["Image"] == IMAGE + ":4.1.0"
    assert data["Config"]["Cmd"][:5] == ["xinference-local", "--host", "0.0.0.0", "--port", "9997"]
    assert data["Config"]["Labels"]["org.inferops.shape"] == "local"
    assert data["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert data["HostConfig"]["PortBindings"]["9997/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "9997"}]


def test_container_environment(host):
    env = dict(item.split("=", 1) for item in inspect(host)["Config"]["Env"])
    assert env["XINFERENCE_HOME"] == "/data"
    assert env["XINFERENCE_MODEL_SRC"] == "huggingface"
    assert env["XINFERENCE_ENABLE_VIRTUAL_ENV"] == "1"
    # The index (credentials in its URL), the host's CA bundle (it trusts the test CA) and the index's name.
    assert env["UV_DEFAULT_INDEX"].endswith("@pypi.inferops.test/simple")
    assert env["SSL_CERT_FILE"] == env["PIP_CERT"] == "/etc/inferops/ca-bundle.pem"
    assert "/etc/ssl/certs/ca-certificates.crt:/etc/inferops/ca-bundle.pem:ro" in inspect(host)["HostConfig"]["Binds"]
    server_ip = _server()["NetworkSettings"]["IPAddress"]
    assert "pypi.inferops.test:" + server_ip in inspect(host)["HostConfig"]["ExtraHosts"]
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    # The operator's extra environment, and xinference_nccl_env (no nccl_tuning in converge), not the
    # env file prepare's nccl_tuning left on the host (NCCL_DEBUG=WARN there): the role reads no file.
    assert env["XINFERENCE_HEALTH_CHECK_INTERVAL"] == "5"
    assert env["NCCL_DEBUG"] == "INFO"
    assert "NCCL_DEBUG=WARN" in host.file("/etc/inferops/nccl.env").content_string
    # Auth stays on: the role never sets XINFERENCE_AUTH_ADVANCED=false unless told to.
    assert "XINFERENCE_AUTH_ADVANCED" not in env


def test_cpu_only_shm_caps_ulimits_logs(host):
    hc = inspect(host)["HostConfig"]
    # gpu_health sees 8 (simulated) GPUs, xinference_gpus: none keeps the CPU image off them.
    assert not hc.get("DeviceRequests")
    assert hc["ShmSize"] == 2 * 1024 ** 3
    assert "CAP_SYS_NICE" in hc["CapAdd"] or "SYS_NICE" in hc["CapAdd"]
    assert {"Name": "memlock", "Soft": 4194304, "Hard": 8388608} in hc["Ulimits"]
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "20m", "max-file": "2"}}
    assert "/var/lib/xinference:/data:rw" in hc["Binds"] or "/var/lib/xinference:/data" in hc["Binds"]
    assert "/srv/models:/models:ro" in hc["Binds"]
    shm = host.check_output("docker exec %s df -B1 --output=size /dev/shm", CONTAINER).split()[-1]
    assert int(shm) == 2 * 1024 ** 3


def test_health_check_turns_healthy(host):
    test = inspect(host)["Config"]["Healthcheck"]["Test"]
    assert test[0] == "CMD" and "http://127.0.0.1:9997/status" in test[-1]
    deadline = time.time() + 120
    while inspect(host)["State"]["Health"]["Status"] != "healthy" and time.time() < deadline:
        time.sleep(5)
    assert inspect(host)["State"]["Health"]["Status"] == "healthy"


def test_api_key_file(host):
    key = host.file(KEY_FILE)
    assert key.is_file
    assert key.mode == 0o600
    assert key.user == "root"
    assert api_key(host).startswith("xf-")


def test_auth_is_on_and_set_up(host):
    assert api(host, "GET", "/v1/models")[0] == 401
    status, body = api(host, "GET", "/v1/admin/setup/status")
    assert status == 200 and body["needs_setup"] is False
    # 4.x API keys may list and call models, not launch them.
    assert api(host, "GET", "/v1/models", api_key(host))[0] == 200


def test_embedding_through_the_api_with_the_api_key(host):
    vector = embedding(host)
    assert len(vector) == 384
    assert all(isinstance(x, float) for x in vector)


def test_model_registered_from_the_local_path(host):
    status, body = api(host, "GET", "/v1/model_registrations/embedding/inferops-minilm", admin_token(host))
    assert status == 200, body
    spec = body if isinstance(body, dict) else json.loads(body)
    assert spec["model_specs"][0]["model_uri"] in ("file:///models/all-MiniLM-L6-v2", "/models/all-MiniLM-L6-v2")
    assert spec["dimensions"] == 384


def test_terminated_model_is_reported_by_check_mode_and_relaunched(host):
    status, body = api(host, "DELETE", "/v1/models/" + MODEL_UID, admin_token(host))
    assert status == 200, body
    assert _run("role.yml", "--check") >= 1
    assert _run("role.yml") >= 1
    assert len(embedding(host)) == 384
    assert _run("role.yml", "--check") == 0


def test_stopped_container_is_reported_restarted_and_its_model_relaunched(host):
    host.check_output("docker stop %s", CONTAINER)
    assert _run("role.yml", "--check") >= 1
    assert not inspect(host)["State"]["Running"]
    assert _run("role.yml") >= 1
    assert inspect(host)["State"]["Running"]
    assert len(embedding(host)) == 384


def _server():
    return json.loads(subprocess.run(["docker", "inspect", SERVER], capture_output=True, text=True,
                                     check=True).stdout)[0]


def _password():
    return (AIRGAP / "registry" / "password").read_text().strip()


def test_image_pulled_from_the_registry_by_its_digest(host):
    # What the registry serves for the tag (the controller's loopback port of the same server).
    user = (AIRGAP / "registry" / "username").read_text().strip()
    port = _server()["HostConfig"]["PortBindings"]["5000/tcp"][0]["HostPort"]
    head = subprocess.run(
        ["curl", "-fsSI", "-K", "-", "--cacert", str(AIRGAP / "ca" / "ca.crt"),
         "-H", "Accept: application/vnd.docker.distribution.manifest.v2+json",
         "https://localhost:%s/v2/inferops/xinference-cpu/manifests/4.1.0" % port],
        input='user = "%s:%s"\n' % (user, _password()), capture_output=True, text=True, check=True).stdout
    digest = re.search(r"(?im)^docker-content-digest:\s*(sha256:[0-9a-f]{64})", head).group(1)
    image = json.loads(host.check_output("docker image inspect %s", IMAGE + ":4.1.0"))[0]
    assert IMAGE + "@" + digest in image["RepoDigests"]
    assert image["Id"] == inspect(host)["Image"]
    # The role's login is Docker's, for this registry only.
    auths = json.loads(host.file("/root/.docker/config.json").content_string)["auths"]
    assert list(auths) == [REGISTRY]
    assert host.file("/root/.docker/config.json").mode == 0o600


def test_wrong_registry_password_stops_the_role_before_the_container(host):
    before = inspect(host)
    run = _playbook("role.yml", "-vv", "-e", "xinference_registry_password=inferops-wrong-password")
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert re.search(r"docker login to xinference_registry_url=registry\.inferops\.test:5000 as\s+"
                     r"xinference_registry_username=inferops failed, the container was not\s+touched", out), out[-4000:]
    assert re.search(r"(?i)401|unauthori[sz]ed", out), out[-4000:]
    assert "inferops-wrong-password" not in out and _password() not in out
    after = inspect(host)
    assert (after["Id"], after["State"]["StartedAt"]) == (before["Id"], before["State"]["StartedAt"])
    assert after["State"]["Running"]


def test_engine_virtualenv_installed_from_the_index(host):
    # The model's virtualenv under XINFERENCE_HOME holds the package its registration names ...
    found = host.check_output("find /var/lib/xinference/virtualenv -maxdepth 9 -type d -name 'einops-0.8.1.dist-info'")
    assert found.strip(), "no einops-0.8.1.dist-info in the model's virtualenv"
    # ... fetched over HTTPS from the test index with its login (nginx logs the user, never the password).
    # Only this host's requests (its address on the default bridge, since it was created) count.
    me = json.loads(subprocess.run(["docker", "inspect", "xinference-debian13"], capture_output=True, text=True,
                                   check=True).stdout)[0]
    created = datetime.fromisoformat(me["Created"][:19]).replace(tzinfo=timezone.utc)
    log = subprocess.run(["docker", "exec", SERVER, "cat", "/var/log/nginx/access.log"],
                         capture_output=True, text=True, check=True).stdout
    fetched = [line for line in log.splitlines()
               if line.startswith(me["NetworkSettings"]["IPAddress"] + " - inferops [")
               and '"GET /packages/einops-0.8.1-py3-none-any.whl HTTP/1.1" 200 ' in line
               and datetime.strptime(line.split("[", 1)[1].split("]", 1)[0], "%d/%b/%Y:%H:%M:%S %z") >= created]
    assert fetched, log[-2000:]


def test_index_and_registry_credentials_reach_no_log(host):
    password = _password()
    logs = host.run("docker logs %s 2>&1; cat /var/lib/xinference/logs/*/*.log /var/lib/xinference/logs/*.log"
                    " 2>/dev/null; journalctl -u docker --no-pager 2>/dev/null", CONTAINER)
    assert logs.stdout.strip()
    assert password not in logs.stdout
    server_logs = subprocess.run(["docker", "logs", SERVER], capture_output=True, text=True, check=True)
    assert password not in server_logs.stdout + server_logs.stderr


def test_tag_change_recreates_the_container_and_keeps_xinference_home(host):
    # Another tag of the same release with its own image id: an upgrade as docker sees it.
    host.check_output("printf 'FROM %s:4.1.0\\nLABEL org.inferops.test=upgrade\\n'"
                      " | docker build -q -t %s:4.1.0-next -", IMAGE, IMAGE)
    before_id = inspect(host)["Id"]
    key_before = api_key(host)
    # The last test of the run (destroy follows): the host stays on the new tag.
    assert _run("role.yml", "-e", "xinference_image_tag=4.1.0-next") >= 1
    data = inspect(host)
    assert data["Id"] != before_id
    assert data["Config"]["Image"] == IMAGE + ":4.1.0-next"
    # Same auth database: no new setup, the clients' key still works, the model is back.
    assert api_key(host) == key_before
    assert len(embedding(host)) == 384
