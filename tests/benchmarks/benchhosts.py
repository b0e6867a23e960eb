"""Shared by noop_bench.py and fleet_drift_bench.py: simulated GPU hosts and timed playbook runs.

A host is a Debian 13 systemd container (inferops/debian:13) named bench-*, with the capability
list of molecule/container_runtime's platforms (no --privileged), fake NVML topology pcie-4-acs
(tests/fake_nvml/install.yml, through prepare.yml) and the Docker connection. Hosts carry the label
inferops.bench=<run id>; remove() (and the signal handlers of the scripts) take them away again.
"""

import argparse
import configparser
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(REPO, "tests", "benchmarks")
VENV_BIN = os.path.join(REPO, ".venv", "bin")
IMAGE = "inferops/debian:13"
LOGS = os.path.join(REPO, ".cache", "logs")
# The demo host's apt archive holds every .deb the cheap roles install (Docker included): each
# bench host gets its own archive directory (apt locks it) with hard links to those files.
APT_SEED = os.path.join(REPO, ".cache", "apt-archives", "demo")

# molecule/container_runtime's platform entry: everything but SYS_RESOURCE (not granted here).
CAPABILITIES = (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
    "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE "
    "AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ"
).split()

# The roles of site.yml a plain container runs cheaply; the others are switched off per host.
ALL_ROLES = ("nvidia_driver", "cuda_toolkit", "container_runtime", "nccl_tuning", "gpu_health", "xinference")

# Host variables: the demo host's (inventory/demo/host_vars), without Xinference.
HOST_VARS = {
    "ansible_connection": "community.docker.docker",
    "ansible_python_interpreter": "/usr/bin/python3",
    "gpu_health_sysfs_root": "/opt/fake-nvml/root/sys",
    "gpu_health_procfs_root": "/opt/fake-nvml/root/proc",
    "gpu_health_kernel_log": "/opt/fake-nvml/root/kmsg",
    "gpu_health_expected_gpu_count": 4,
    "container_runtime_nvidia_toolkit_enabled": False,
    "container_runtime_docker_source": "distro",
    # sandbox: no memlock limit above the outer engine's 8 MiB, no CAP_SYS_RESOURCE.
    "container_runtime_ulimit_memlock": {"soft": 4194304, "hard": 8388608},
    "nccl_tuning_memlock_systemd_default": False,
}


class Interrupted(Exception):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C so that the finally clauses remove the hosts."""


def _raise_interrupted(signum, _frame):
    raise Interrupted("signal %d" % signum)


def trap_signals():
    """Ctrl-C raises KeyboardInterrupt already; make SIGTERM and SIGHUP unwind the same way."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupted)


def loadavg():
    """The 1, 5 and 15 minute load averages, as text."""
    return "%.2f %.2f %.2f" % os.getloadavg()


def machine_line():
    """Cores and load average: the figures mean little without them on a shared machine."""
    return "controller: %d cores, load average %s (1/5/15 min) at %s" % (
        os.cpu_count(), loadavg(), time.strftime("%Y-%m-%d %H:%M:%S"))


def check_prerequisites():
    """Stop early with the command that fixes a missing piece."""
    problems = []
    if not os.path.exists(os.path.join(VENV_BIN, "ansible-playbook")):
        problems.append(".venv is missing (make setup)")
    if subprocess.run(["docker", "image", "inspect", IMAGE], check=False, capture_output=True).returncode:
        problems.append("image %s is missing (make images)" % IMAGE)
    if not os.path.exists(os.path.join(REPO, "tests", "fake_nvml", "build", "libnvidia-ml.so.1")):
        problems.append("fake NVML is not built (make -C tests/fake_nvml)")
    if problems:
        sys.exit("benchmark prerequisites: " + "; ".join(problems))


class Fleet:
    """Simulated GPU hosts bench-<tag>-<n>, their inventory and the playbook runs against them."""

    def __init__(self, tag, roles):
        self.tag = tag
        self.run_id = "%s-%d" % (tag, os.getpid())
        self.roles = tuple(roles)
        self.hosts = []
        self.workdir = tempfile.mkdtemp(prefix="inferops-bench-")
        os.makedirs(LOGS, exist_ok=True)

    def host_name(self, index):
        """Unique per run: two benchmark runs never share a container name."""
        return "bench-%s-%d" % (self.run_id, index)

    def apt_dir(self, name):
        """The per-host apt archive (under .cache, removed with the host)."""
        return os.path.join(REPO, ".cache", "apt-archives", name)

    def start(self, count):
        """Start hosts until there are `count` of them."""
        for index in range(len(self.hosts) + 1, count + 1):
            name = self.host_name(index)
            archive = self.apt_dir(name)
            os.makedirs(os.path.join(archive, "partial"), exist_ok=True)
            # Hard links of the .deb files only: a linked `lock` would be one lock for all hosts.
            for deb in os.listdir(APT_SEED) if os.path.isdir(APT_SEED) else ():
                if deb.endswith(".deb") and not os.path.exists(os.path.join(archive, deb)):
                    os.link(os.path.join(APT_SEED, deb), os.path.join(archive, deb))
            args = ["docker", "run", "-d", "--name", name, "--hostname", name,
                    "--label", "inferops.bench=" + self.run_id, "--label", "inferops.simulated=true",
                    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
                    "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                    "--tmpfs", "/run", "--tmpfs", "/run/lock",
                    "-v", archive + ":/var/cache/apt/archives:rw"]
            if "container_runtime" in self.roles:
                args += ["-v", "/var/lib/docker"]  # Docker-in-Docker: anonymous, removed with -v
            for cap in CAPABILITIES:
                args += ["--cap-add", cap]
            self.hosts.append(name)  # before the run: a half-started container is removed too
            subprocess.run(args + [IMAGE, "/lib/systemd/systemd"], check=True, capture_output=True)
        # Until boot has finished, systemd-tmpfiles may empty /tmp under a running module. Polled:
        # `is-system-running --wait` returns at once while systemd's bus is not up yet.
        deadline = time.monotonic() + 300
        for name in self.hosts:
            while time.monotonic() < deadline:
                state = subprocess.run(["docker", "exec", name, "systemctl", "is-system-running"],
                                       check=False, capture_output=True, text=True).stdout.strip()
                if state in ("running", "degraded"):
                    break
                time.sleep(1)

    def remove(self):
        """Remove every host of this run (and its volumes and apt archive). Safe to call twice."""
        names = subprocess.run(
            ["docker", "ps", "-aq", "--filter", "label=inferops.bench=" + self.run_id],
            check=False, capture_output=True, text=True).stdout.split()
        if names:
            subprocess.run(["docker", "rm", "-f", "-v"] + names, check=False, capture_output=True)
        for name in self.hosts:
            shutil.rmtree(self.apt_dir(name), ignore_errors=True)
        self.hosts = []
        shutil.rmtree(self.workdir, ignore_errors=True)

    def inventory(self, count):
        """An inventory of the first `count` hosts (JSON is YAML), the roles off that are not on."""
        host_vars = dict(HOST_VARS)
        for role in ALL_ROLES:
            host_vars["inferops_%s_enabled" % role] = role in self.roles
        path = os.path.join(self.workdir, "hosts-%d.yml" % count)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"all": {"vars": host_vars, "children": {"inferops_bench": {
                "hosts": {name: {} for name in self.hosts[:count]}}}}}, handle, indent=2)
        return path

    def config(self):
        """The checkout's ansible.cfg without the profile_tasks callback (its timing is not the job's)."""
        path = os.path.join(self.workdir, "ansible.cfg")
        if not os.path.exists(path):
            parser = configparser.ConfigParser(interpolation=None)
            parser.read(os.path.join(REPO, "ansible.cfg"))
            parser.remove_option("defaults", "callbacks_enabled")
            for key in ("collections_path", "roles_path"):
                parser.set("defaults", key, os.path.join(REPO, parser.get("defaults", key)))
            with open(path, "w", encoding="utf-8") as handle:
                parser.write(handle)
        return path

    def env(self, **overrides):
        """ansible.cfg as config() writes it; overrides as ANSIBLE_<KEY> variables."""
        env = dict(os.environ, ANSIBLE_CONFIG=self.config(), ANSIBLE_NOCOLOR="1",
                   PATH=VENV_BIN + os.pathsep + os.environ["PATH"])
        env.update({"ANSIBLE_" + key.upper(): str(value) for key, value in overrides.items()})
        return env

    def playbook(self, log_name, playbook, count, extra_args=(), env=None, ok_rcs=(0,)):
        """Run one playbook on the first `count` hosts. Returns (wall seconds, controller CPU seconds,
        rc, recap). Controller CPU: user + system time of ansible-playbook and everything it waited
        for (forked workers, docker CLI calls), from getrusage(RUSAGE_CHILDREN) deltas."""
        log = os.path.join(LOGS, "bench-%s.log" % log_name)
        cmd = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", self.inventory(count), playbook] + list(extra_args)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        with open(log, "w", encoding="utf-8") as handle:
            proc = subprocess.run(cmd, cwd=REPO, env=env or self.env(), stdout=handle, stderr=subprocess.STDOUT,
                                  check=False)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        with open(log, encoding="utf-8") as handle:
            recap = recap_totals(handle.read())
        if proc.returncode not in ok_rcs:
            raise RuntimeError("%s failed (rc %d), log: %s" % (" ".join(cmd[1:]), proc.returncode, log))
        return wall, cpu, proc.returncode, recap

    def prepare(self, count):
        """Wait for systemd, simulate the GPUs (fake NVML pcie-4-acs) on the first `count` hosts."""
        self.playbook(self.tag + "-prepare", os.path.join(HERE, "prepare.yml"), count,
                      ["-e", "bench_docker_inside=%s" % ("container_runtime" in self.roles)],
                      env=self.env(forks=16))


def start(name, description, runs_default, roles_default, add_arguments=None):
    """Parse the common options (--runs, --roles and the caller's own), check the machine, trap
    signals and return (args, Fleet) for the benchmark called `name`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=runs_default,
                        help="timed runs per figure, median (default %(default)s)")
    parser.add_argument("--roles", default=roles_default,
                        help="roles of site.yml left on, comma-separated (default: %(default)s)")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args()
    roles = [role for role in args.roles.split(",") if role]
    unknown = sorted(set(roles) - set(ALL_ROLES))
    if unknown:
        parser.error("unknown roles: %s" % ", ".join(unknown))
    check_prerequisites()
    trap_signals()
    return args, Fleet(name, roles)


def recap_totals(output):
    """Sum of ok/changed/unreachable/failed/skipped over the PLAY RECAP lines of an ansible-playbook run."""
    totals = {"ok": 0, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 0}
    for key, value in re.findall(r"\b(ok|changed|unreachable|failed|skipped)=(\d+)", output.split("PLAY RECAP")[-1]):
        totals[key] += int(value)
    return totals


def median(values):
    """Median, and the spread as text."""
    return statistics.median(values), "min %.1f, max %.1f" % (min(values), max(values))
