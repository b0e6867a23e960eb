"""Testinfra checks of the container_runtime scenario.

Real state only: the engine that the role installed answers `docker info` with the configured
values, and a container started with no options gets the configured /dev/shm and limits. The
distro hosts run Debian's docker.io and check the files the role's `render` entry point wrote for
the toolkit path (the engine itself judges that daemon.json). The mirror hosts run docker-ce and the
NVIDIA container toolkit from the local mirror of Docker's and NVIDIA's repositories (stand-in
packages carrying Debian's real engine, tests/harness/airgap_mirror.sh), pinned below the newest
versions the mirror has: held, left alone by unattended-upgrades and `apt-get upgrade`, upgraded
by the role on purpose.
"""

import base64
import json
import os
import re
import subprocess

import pytest

RENDER = "/tmp/container_runtime_render"
IMAGE = "inferops-test/busybox:1"
SCENARIO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIRROR = "https://mirror.inferops.test"
ENGINE = ("docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin", "docker-compose-plugin")
TOOLKIT = ("nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools", "libnvidia-container1")
# The versions molecule.yml pins, and the newer ones the mirror has too.
PINNED = {"docker-ce": "5:27.3.1-1~debian.%s", "nvidia-container-toolkit": "1.17.3-1"}
NEWER = {"docker-ce": "5:27.5.1-1~debian.%s", "nvidia-container-toolkit": "1.17.4-1"}


def _major(host):
    return host.system_info.release.split(".")[0]


def _json(host, path):
    return json.loads(host.file(path).content_string)


def _mirror(host):
    """A docker_mirror host: docker-ce and the toolkit from the local mirror."""
    return "-mirror-" in host.backend.get_hostname()


def _release(host, version):
    """A version of PINNED/NEWER on this host's release (Docker's carry it: ~debian.12~bookworm)."""
    return version % {"12": "12~bookworm", "13": "13~trixie"}[_major(host)] if "%s" in version else version


def _version(host, name):
    return host.check_output(f"dpkg-query -W -f '${{Version}}' {name}")


@pytest.fixture()
def distro_host(host):
    if _mirror(host):
        pytest.skip("a distro host's check (docker.io, rendered toolkit files)")
    return host


@pytest.fixture()
def mirror_host(host):
    if not _mirror(host):
        pytest.skip("a docker_mirror host's check (docker-ce and the toolkit from the local mirror)")
    return host


def test_engine_installed_and_running(host):
    if _mirror(host):
        for name in ENGINE:
            assert host.package(name).is_installed, name
        assert not host.package("docker.io").is_installed
        # The engine is Debian's real one repackaged by the harness, and says so.
        assert "test stand-in" in host.check_output("dpkg-query -W -f '${Description}' docker-ce")
    else:
        assert host.package("docker.io").is_installed
    svc = host.service("docker")
    assert svc.is_running
    assert svc.is_enabled


def test_daemon_json_merged(host):
    data = _json(host, "/etc/docker/daemon.json")
    # The operator's own keys (prepare.yml) survive, the managed ones are set.
    assert data["debug"] is True
    assert data["log-opts"]["labels"] == "team"
    assert data["default-shm-size"] == "1G"
    assert data["live-restore"] is True
    assert data["log-driver"] == "json-file"
    assert data["log-opts"]["max-size"] == "50m"
    assert data["log-opts"]["max-file"] == "5"
    assert data["default-ulimits"]["memlock"] == {"Name": "memlock", "Soft": 4194304, "Hard": 8388608}
    assert data["default-ulimits"]["stack"] == {"Name": "stack", "Soft": 67108864, "Hard": 67108864}
    if _mirror(host):
        # The toolkit's runtime entry, next to the operator's keys; not the default runtime.
        assert data["runtimes"] == {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}
    else:
        # Toolkit off on this host: no nvidia runtime.
        assert "runtimes" not in data
    assert "default-runtime" not in data


def test_docker_info_shows_configuration(host):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LiveRestoreEnabled"] is True
    assert info["LoggingDriver"] == "json-file"
    assert info["DefaultRuntime"] == "runc"
    assert "runc" in info["Runtimes"]
    assert ("nvidia" in info["Runtimes"]) == _mirror(host)
    assert info["Debug"] is True


@pytest.fixture(scope="module")
def image(host):
    """A one-file image (static busybox): no registry is reachable, so nothing can be pulled."""
    if host.run(f"docker image inspect {IMAGE}").rc != 0:
        host.check_output(f"tar -C / -c bin/busybox | docker import - {IMAGE}")
    return IMAGE


def test_container_gets_configured_shm_and_limits(host, image):
    out = host.check_output(
        f"docker run --rm {image} /bin/busybox sh -c "
        "'/bin/busybox df -k /dev/shm | /bin/busybox tail -n 1; ulimit -l; ulimit -Hl; ulimit -s'"
    )
    df_line, memlock_soft, memlock_hard, stack = out.strip().splitlines()
    assert df_line.split()[1] == str(1024 * 1024), df_line  # 1G in 1K blocks
    assert memlock_soft == str(4194304 // 1024)
    assert memlock_hard == str(8388608 // 1024)
    assert stack == str(67108864 // 1024)


def test_mirror_repositories_and_keys(mirror_host):
    host = mirror_host
    codename = {"12": "bookworm", "13": "trixie"}[_major(host)]
    docker = host.file("/etc/apt/sources.list.d/docker.sources").content_string
    assert f"URIs: {MIRROR}/linux/debian\n" in docker and f"Suites: {codename}\n" in docker
    nvidia = host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.sources").content_string
    assert f"URIs: {MIRROR}/libnvidia-container/stable/deb/amd64\n" in nvidia
    # Each source names its key file, which holds the mirror's key (the fingerprint pinned in molecule.yml).
    with open(os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], ".cache/airgap/mirror/fingerprint")) as f:
        fingerprint = f.read().strip()
    for text in (docker, nvidia):
        key = re.search(r"^Signed-By: (\S+)$", text, re.M).group(1)
        out = host.check_output(f"gpg --show-keys --with-colons {key}")
        assert f"fpr:::::::::{fingerprint}:" in out
    # apt took the packages from the mirror.
    assert f"{MIRROR}/linux/debian {codename}/stable" in host.check_output("apt-cache policy docker-ce")


def test_engine_restarted_once(mirror_host):
    """Installed (the package starts the engine), then daemon.json merged: one restart; the
    idempotence and check runs restarted nothing."""
    log = mirror_host.check_output("journalctl -u docker.service --no-pager -o cat")
    assert sum(1 for line in log.splitlines() if line.startswith("Stopping")) == 1, log[-2000:]


def test_nvidia_runtime_runs_a_container(mirror_host, image):
    # The toolkit stand-in's runtime is runc underneath (no GPU here): the engine really uses the entry.
    out = mirror_host.check_output(f"docker run --rm --runtime nvidia {image} /bin/busybox echo via-nvidia")
    assert out.strip() == "via-nvidia"


def test_pinned_versions_held_and_not_upgraded(mirror_host):
    host = mirror_host
    held = host.check_output("apt-mark showhold").split()
    for name in ENGINE + TOOLKIT:
        assert name in held, held
    for name, version in PINNED.items():
        assert _version(host, name) == _release(host, version)
        # The mirror offers a newer one: only the hold keeps it out.
        assert f"Candidate: {_release(host, NEWER[name])}" in host.check_output(f"apt-cache policy {name}")
    # unattended-upgrades allowed to take packages from Docker's and NVIDIA's origins still leaves them.
    origins = ('Unattended-Upgrade::Origins-Pattern { "origin=Docker"; '
               '"origin=https://nvidia.github.io/libnvidia-container/stable"; };')
    host.check_output(f"echo '{origins}' >/etc/apt/apt.conf.d/52inferops-test-origins")
    out = host.check_output("unattended-upgrade --dry-run --debug 2>&1")
    assert "origin=Docker" in out and "libnvidia-container" in out, out[-3000:]
    should = re.search(r"^pkgs that look like they should be upgraded: ?(.*)$", out, re.M)
    assert should, out[-3000:]
    for name in ENGINE + TOOLKIT:
        assert name not in should.group(1).split(), should.group(0)
    host.check_output("rm -f /etc/apt/apt.conf.d/52inferops-test-origins")
    # A plain upgrade leaves them at the pinned versions, held.
    host.check_output("DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -q")
    for name, version in PINNED.items():
        assert _version(host, name) == _release(host, version)
    assert set(ENGINE + TOOLKIT) <= set(host.check_output("apt-mark showhold").split())


def test_role_upgrades_on_purpose(mirror_host):
    """A new pinned version is the role's to install, through its own hold; still held after."""
    host = mirror_host
    if host.backend.get_hostname() != "container-runtime-mirror-debian13":
        pytest.skip("one host is enough: the install is the same apt call on both releases")
    assert _playbook(host, "-e", "container_runtime_docker_version=27.5.1",
                     "-e", "container_runtime_nvidia_toolkit_version=1.17.4") > 0
    for name, version in NEWER.items():
        assert _version(host, name) == _release(host, version)
    assert set(ENGINE + TOOLKIT) <= set(host.check_output("apt-mark showhold").split())
    assert host.service("docker").is_running


def test_unattended_upgrades_exclusion(host):
    dropin = host.file("/etc/apt/apt.conf.d/51inferops-container-runtime")
    assert dropin.is_file
    dump = host.check_output("apt-config dump Unattended-Upgrade::Package-Blacklist")
    for pattern in ("^docker\\.io$", "^containerd", "^nvidia-container-", "^libnvidia-container"):
        assert pattern in dump, dump


def test_rendered_toolkit_files_for_this_host(distro_host):
    host = distro_host
    codename = {"12": "bookworm", "13": "trixie"}[_major(host)]
    # The repositories as inferops.gpu.package_repository would write them (deb822_repository parameters).
    docker, nvidia = _json(host, f"{RENDER}/host/repositories.json")
    assert docker["file"] == "/etc/apt/sources.list.d/docker.sources"
    assert docker["deb822"]["uris"] == ["https://download.docker.com/linux/debian"]
    assert docker["deb822"]["suites"] == [codename] and docker["deb822"]["components"] == ["stable"]
    assert docker["deb822"]["architectures"] == ["amd64"]
    # The key is fetched and checked against Docker's pinned fingerprint, then the source names the file.
    assert docker["key_url"] == "https://download.docker.com/linux/debian/gpg"
    assert docker["deb822"]["signed_by"] == "/etc/apt/keyrings/docker.asc"
    assert docker["key_fingerprints"] == ["9DC858229FC7DD38854AE2D88D81803C0EBFCD88"]
    assert nvidia["key_fingerprints"] == ["C95B321B61E88C1809C4F759DDCAE044F796ECB0"]
    assert docker["stale_files"] == ["/etc/apt/sources.list.d/docker.list"]
    assert nvidia["deb822"]["uris"] == ["https://nvidia.github.io/libnvidia-container/stable/deb/amd64"]
    assert nvidia["deb822"]["suites"] == ["/"]
    rule = host.file(f"{RENDER}/host/71-nvidia-dev-char.rules").content_string
    assert 'DEVPATH=="/bus/pci/drivers/nvidia"' in rule
    assert "/usr/bin/nvidia-ctk system create-dev-char-symlinks --create-all" in rule
    packages = _json(host, f"{RENDER}/host/packages.json")
    assert "docker-ce" in packages["engine"] and "nvidia-container-toolkit" in packages["toolkit"]


def test_rendered_daemon_json_has_nvidia_runtime(distro_host):
    host = distro_host
    data = _json(host, f"{RENDER}/host/daemon.json")
    # The keys `nvidia-ctk runtime configure` writes, so the two never disagree.
    assert data["runtimes"] == {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}
    assert data["default-runtime"] == "nvidia"
    assert data["debug"] is True  # merged over the host's file
    assert data["default-shm-size"] == "1G"


def test_engine_accepts_rendered_daemon_json(distro_host):
    host = distro_host
    path = f"{RENDER}/host/daemon.json"
    if _major(host) == "12":
        # docker.io 20.10 has no --validate: start a throw-away engine on that file, on its own
        # socket and directories, and ask it for its runtimes.
        script = (
            "d=$(mktemp -d)\n"
            f"dockerd --config-file {path} --data-root $d/data --exec-root $d/exec --pidfile $d/pid "
            "-H unix://$d/sock --bridge none --iptables=false >$d/log 2>&1 &\n"
            "pid=$!\n"
            "for i in $(seq 90); do docker -H unix://$d/sock info >/dev/null 2>&1 && break; sleep 1; done\n"
            "docker -H unix://$d/sock info --format '{{json .Runtimes}} {{.DefaultRuntime}}' || cat $d/log\n"
            "kill $pid; wait $pid; rm -rf $d\n"
        )
        encoded = base64.b64encode(script.encode()).decode()
        out = host.check_output(f"echo {encoded} | base64 -d | bash")
        assert '"nvidia"' in out and out.strip().endswith("nvidia"), out
    else:
        res = host.run(f"dockerd --validate --config-file {path}")
        assert res.rc == 0, res.stderr
        assert "configuration OK" in res.stdout + res.stderr


def test_rendered_other_platforms(host):
    if not host.file(f"{RENDER}/rocky9").exists:
        pytest.skip("the other platforms are rendered on the last host only")
    docker, nvidia = _json(host, f"{RENDER}/ubuntu2204-mirror/repositories.json")
    assert docker["deb822"]["uris"] == ["http://mirror.example.internal/docker/ubuntu"]
    assert docker["deb822"]["suites"] == ["jammy"] and docker["key_url"] == "http://mirror.example.internal/docker/ubuntu/gpg"
    assert nvidia["deb822"]["uris"] == ["http://mirror.example.internal/libnvidia-container/stable/deb/amd64"]
    docker, nvidia = _json(host, f"{RENDER}/ubuntu2404/repositories.json")
    assert docker["deb822"]["uris"] == ["https://download.docker.com/linux/ubuntu"]
    assert docker["deb822"]["suites"] == ["noble"] and docker["deb822"]["architectures"] == ["arm64"]
    assert nvidia["deb822"]["uris"][0].endswith("/deb/arm64")
    for name in ("rhel8", "rocky9"):
        docker, nvidia = _json(host, f"{RENDER}/{name}/repositories.json")
        assert docker["file"] == "/etc/yum.repos.d/docker-ce.repo"
        assert docker["yum"]["baseurl"] == "https://download.docker.com/linux/rhel/$releasever/$basearch/stable"
        assert docker["key_url"] == "https://download.docker.com/linux/rhel/gpg"
        assert docker["yum"]["gpgkey"] == "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-docker"
        assert docker["key_fingerprints"] == ["060A61C51B558A7F742B77AAC52FEB6B621E9F35"]
        assert nvidia["yum"]["baseurl"] == "https://nvidia.github.io/libnvidia-container/stable/rpm/$basearch"
        assert nvidia["yum"]["repo_gpgcheck"] is True
        # No unattended-upgrades on the RHEL family.
        assert not host.file(f"{RENDER}/{name}/51inferops-container-runtime").exists
    assert _json(host, f"{RENDER}/rhel8/packages.json")["engine"][0] == "docker-ce"


def _playbook(host, *args):
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        pytest.skip("runs under Molecule only (needs its inventory)")
    name = host.backend.get_hostname()
    cmd = ["ansible-playbook", "-i", inventory, "--limit", name, os.path.join(SCENARIO_DIR, "role.yml"), *args]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    stdout = re.sub(r"\x1b\[[0-9;]*m", "", res.stdout)
    recap = re.search(rf"{re.escape(name)}\s*:\s*ok=\d+\s+changed=(\d+)", stdout)
    assert recap, res.stdout[-2000:]
    return int(recap.group(1))


def test_hand_edit_is_restored_and_operator_key_survives(distro_host):
    host = distro_host
    # Hand-edit a managed key and drop another; `debug` (prepare.yml) is the operator's own key.
    host.check_output(
        "python3 -c \"import json; p='/etc/docker/daemon.json'; d=json.load(open(p)); "
        "d['default-shm-size']='64M'; d.pop('live-restore'); json.dump(d, open(p, 'w'))\""
    )
    assert _playbook(host) > 0
    data = _json(host, "/etc/docker/daemon.json")
    assert data["default-shm-size"] == "1G"
    assert data["live-restore"] is True
    assert data["debug"] is True
    assert data["log-opts"]["labels"] == "team"
    # A check-mode run on the converged host changes nothing.
    assert _playbook(host, "--check") == 0
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LiveRestoreEnabled"] is True


def _engine_stops(host):
    """How many times systemd has stopped the engine (each restart stops it once)."""
    log = host.check_output("journalctl -u docker.service --no-pager -o cat")
    return sum(1 for line in log.splitlines() if line.startswith("Stopping"))


def test_same_meaning_is_not_drift_and_a_managed_change_restarts_once(host):
    """daemon.json is compared as data: the file rewritten as `nvidia-ctk runtime configure` writes
    it (sorted keys, 4 spaces) with an operator key added is left alone and the engine keeps running;
    a managed value changed by hand is one rewrite and one restart."""
    if host.backend.get_hostname() != "container-runtime-debian13":
        pytest.skip("one host is enough: the comparison is the role's, the same on both engines")
    path = "/etc/docker/daemon.json"
    host.check_output(
        "python3 -c \"import json; p='%s'; d=json.load(open(p)); d['max-concurrent-downloads']=4; "
        "open(p, 'w').write(json.dumps(d, sort_keys=True, indent=4))\"" % path)
    reformatted, stops = host.file(path).content_string, _engine_stops(host)
    assert _playbook(host, "--check") == 0
    assert _playbook(host) == 0
    assert host.file(path).content_string == reformatted
    assert _engine_stops(host) == stops
    assert host.service("docker").is_running

    host.check_output(
        "python3 -c \"import json; p='%s'; d=json.load(open(p)); d['default-shm-size']='64M'; "
        "open(p, 'w').write(json.dumps(d, sort_keys=True, indent=4))\"" % path)
    assert _playbook(host) > 0
    data = _json(host, path)
    assert data["default-shm-size"] == "1G" and data["max-concurrent-downloads"] == 4
    assert _engine_stops(host) == stops + 1
    assert host.service("docker").is_running
