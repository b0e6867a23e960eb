# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rolling upgrade's logic (playbooks/upgrade.yml): the order and batches, the versions a host
runs and what the pinned ones change, the Xinference container a host runs, and the report at the
end. Controller-side only. Documentation: one <filter name>.yml beside this file per filter.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

# Component -> the package names that carry it, in the order they are looked for (Debian/Ubuntu and
# EL names, NVIDIA's and the distributions' own). A name ending in a regular expression is matched.
COMPONENT_PACKAGES = (
    ("driver", ("nvidia-driver", "cuda-drivers", re.compile(r"^nvidia-driver-[0-9]+(-server)?$"))),
    ("cuda", ("nvidia-cuda-toolkit", "cuda-toolkit", re.compile(r"^cuda-toolkit-[0-9]+-[0-9]+$"))),
    ("nccl", ("libnccl2", "libnccl")),
    ("container_toolkit", ("nvidia-container-toolkit",)),
    ("engine", ("docker-ce", "docker.io", "moby-engine")),
)
COMPONENTS = tuple(name for name, _packages in COMPONENT_PACKAGES) + ("xinference_image",)
PIN_KEYS = ("driver", "driver_branch", "cuda", "nccl", "container_toolkit", "xinference_image")


def _pct_to_int(percent, count):
    """Ansible's batch size for serial: "N%" (ansible.utils.helpers.pct_to_int: floor, at least 1)."""
    return max(int(percent / 100.0 * count), 1)


def upgrade_plan(hosts, supervisors=None, canary="", batch_percent=25):
    """The rollout order: [{"name", "hosts"}], the supervisor(s) first, then the canary, then batches.

    The supervisor goes first because Xinference 4.x's supervisor accepts older workers during a
    rolling upgrade (core/supervisor.py add_worker) and not the reverse. The canary is the first
    other host unless named. The batches are those Ansible makes of the remaining hosts with
    serial "<batch_percent>%".
    """
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError("upgrade_plan expects the list of hosts to upgrade")
    try:
        batch_percent = int(batch_percent)
    except (TypeError, ValueError):
        raise AnsibleFilterError("upgrade_plan: the batch size must be a whole percentage, got %r" % (batch_percent,))
    if not 1 <= batch_percent <= 100:
        raise AnsibleFilterError("upgrade_plan: the batch size must be 1-100 %%, got %d" % batch_percent)
    supervisors = [host for host in hosts if host in set(supervisors or [])]
    others = [host for host in hosts if host not in supervisors]
    if canary and canary not in others:
        raise AnsibleFilterError("upgrade_plan: the canary %r is not one of the hosts to upgrade%s" % (
            canary, " (it is the supervisor, which always goes first)" if canary in supervisors else
            ": %s" % ", ".join(others)))
    plan = [{"name": "supervisor", "hosts": [host]} for host in supervisors]
    if others:
        canary = canary or others[0]
        plan.append({"name": "canary", "hosts": [canary]})
        rest = [host for host in others if host != canary]
        size = _pct_to_int(batch_percent, len(rest)) if rest else 1
        for index in range(0, len(rest), size):
            plan.append({"name": "batch %d" % (index // size + 1), "hosts": rest[index:index + size]})
    return plan


def _version(entry):
    if not isinstance(entry, Mapping):
        return None
    version = str(entry.get("version") or "")
    version = version.split(":", 1)[1] if ":" in version else version
    release = entry.get("release")
    return "%s-%s" % (version, release) if release else version or None


def upgrade_versions(packages, image=None):
    """{component: version or None}: driver, cuda, nccl, container_toolkit, engine from package_facts'
    packages, xinference_image from the running container's image reference."""
    if packages is not None and not isinstance(packages, Mapping):
        raise AnsibleFilterError("upgrade_versions expects ansible_facts['packages'] (package_facts)")
    packages = packages or {}
    versions = {}
    for component, names in COMPONENT_PACKAGES:
        found = None
        for name in names:
            matches = [key for key in sorted(packages) if key == name] if isinstance(name, str) else \
                [key for key in sorted(packages) if name.match(key)]
            for key in matches:
                entries = packages[key] if isinstance(packages[key], list) else [packages[key]]
                found = _version(entries[0]) if entries else None
                if found:
                    break
            if found:
                break
        versions[component] = found
    versions["xinference_image"] = image or None
    return versions


def _pinned(installed, pin):
    if installed is None:
        return False
    return fnmatch.fnmatchcase(installed, pin) or fnmatch.fnmatchcase(installed, pin + "*")


def upgrade_changes(versions, pins):
    """What the pinned versions change on a host: [{"component", "before", "after"}].

    pins: {driver, driver_branch, cuda, nccl, container_toolkit, xinference_image}; an empty pin is
    not an upgrade (the roles keep what is installed). A driver version pin is an apt/dnf version
    (a glob, or a prefix of the installed version); a branch pin compares the major version.
    """
    if not isinstance(versions, Mapping) or not isinstance(pins, Mapping):
        raise AnsibleFilterError("upgrade_changes expects the host's versions (upgrade_versions) and the pins (dict)")
    unknown = sorted(set(pins) - set(PIN_KEYS))
    if unknown:
        raise AnsibleFilterError("upgrade_changes: unknown pins %s (valid: %s)" % (", ".join(unknown), ", ".join(PIN_KEYS)))
    changes = []
    for key in PIN_KEYS:
        pin = str(pins.get(key) or "").strip()
        if not pin:
            continue
        component = "driver" if key == "driver_branch" else key
        before = versions.get(component)
        if key == "driver_branch":
            if pins.get("driver"):
                continue  # the exact version says more
            same = before is not None and before.split(".", 1)[0] == pin
            after = "branch %s" % pin
        elif key == "xinference_image":
            same = before == pin
            after = pin
        else:
            same = _pinned(before, pin)
            after = pin
        if not same:
            changes.append({"component": component, "before": before or "not installed", "after": after})
    return changes


def _option(cmd, name, default=None):
    if name in cmd and cmd.index(name) + 1 < len(cmd):
        return cmd[cmd.index(name) + 1]
    return default


def upgrade_container(inspect):
    """The Xinference container as `docker inspect` shows it: present, image, shape, the API url the
    host's models are managed through and, on a worker, its address as the supervisor lists it."""
    if isinstance(inspect, list):
        inspect = inspect[0] if inspect else None
    if not inspect:
        return {"present": False, "image": None, "shape": None, "url": None, "worker": None, "running": False}
    if not isinstance(inspect, Mapping) or not isinstance(inspect.get("Config"), Mapping):
        raise AnsibleFilterError("upgrade_container expects the output of docker inspect (a container)")
    config = inspect["Config"]
    cmd = [str(item) for item in config.get("Cmd") or []]
    labels = config.get("Labels") or {}
    program = cmd[0] if cmd else ""
    shape = labels.get("org.inferops.shape") or {
        "xinference-worker": "worker", "xinference-supervisor": "supervisor"}.get(program, "local")
    host = _option(cmd, "--host", "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    host = "[%s]" % host if ":" in host else host
    if shape == "worker":
        url = _option(cmd, "--endpoint")
        worker = "%s:%s" % (_option(cmd, "--host"), _option(cmd, "--worker-port")) \
            if _option(cmd, "--worker-port") else None
    else:
        url = "http://%s:%s" % (host, _option(cmd, "--port", "9997"))
        worker = None
    return {"present": True, "image": config.get("Image"), "shape": shape, "url": url, "worker": worker,
            "running": bool((inspect.get("State") or {}).get("Running"))}


def upgrade_plan_lines(plan, changes=None):
    """The plan in lines: each step with its hosts, then per host what the pins change."""
    if not isinstance(plan, (list, tuple)) or not all(isinstance(step, Mapping) and "hosts" in step for step in plan):
        raise AnsibleFilterError("upgrade_plan_lines expects the output of upgrade_plan")
    changes = changes or {}
    lines = []
    for number, step in enumerate(plan, 1):
        lines.append("%d. %s: %s" % (number, step["name"], ", ".join(step["hosts"])))
        for host in step["hosts"]:
            found = changes.get(host) or []
            what = "; ".join("%s %s -> %s" % (c["component"], c["before"], c["after"]) for c in found)
            lines.append("   %s: %s" % (host, what or "up to date, left alone (upgrade_force=true runs it)"))
    return lines


def upgrade_report(hostvars, hosts):
    """The rollout's outcome: upgraded, failed (step, reason), not reached, versions before and after."""
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError("upgrade_report expects hostvars")
    report = {"upgraded": [], "current": [], "failed": [], "not_reached": []}
    for host in sorted(hosts or []):
        hv = hostvars[host]
        before = hv.get("upgrade_versions_before") or {}
        after = hv.get("upgrade_versions_after") or {}
        if hv.get("upgrade_failure"):
            failure = hv["upgrade_failure"]
            report["failed"].append({"host": host, "step": failure.get("step"), "reason": failure.get("reason"),
                                     "before": before, "drained": bool(failure.get("drained"))})
        elif hv.get("upgrade_done"):
            report["upgraded"].append({
                "host": host, "before": before, "after": after,
                "changed": [c for c in COMPONENTS if before.get(c) != after.get(c)],
                "started": hv.get("upgrade_started"), "finished": hv.get("upgrade_finished"),
                "drain": [hv.get("upgrade_drain_started"), hv.get("upgrade_drain_finished")],
                "models": [m.get("model_uid") for m in hv.get("upgrade_models") or []],
                "reboot_pending": hv.get("upgrade_reboot_pending") or []})
        elif hv.get("upgrade_current"):
            report["current"].append({"host": host, "versions": before})
        elif hv.get("upgrade_step"):
            report["failed"].append({"host": host, "step": hv["upgrade_step"], "reason": "see the output above",
                                     "before": before, "drained": True})
        else:
            report["not_reached"].append(host)
    return report


def upgrade_summary_lines(report):
    """The report in lines: one per host."""
    if not isinstance(report, Mapping) or not all(key in report for key in ("upgraded", "failed", "not_reached")):
        raise AnsibleFilterError("upgrade_summary_lines expects the output of upgrade_report")
    lines = []
    for item in report["upgraded"]:
        changed = ", ".join("%s %s -> %s" % (c, item["before"].get(c), item["after"].get(c)) for c in item["changed"])
        seconds = ""
        if item.get("started") and item.get("finished"):
            seconds = " in %d s" % (int(item["finished"]) - int(item["started"]))
        lines.append("%s: UPGRADED%s (%s)%s%s" % (
            item["host"], seconds, changed or "nothing to change",
            "; models back: %s" % ", ".join(item["models"]) if item["models"] else "",
            "; REBOOT PENDING: %s" % "; ".join(item["reboot_pending"]) if item["reboot_pending"] else ""))
    for item in report.get("current") or []:
        lines.append("%s: UP TO DATE (the pinned versions run already; upgrade_force=true runs it all the same)" % item["host"])
    for item in report["failed"]:
        drained = " (left drained)" if item.get("drained") else ""
        lines.append("%s: FAILED at %s: %s%s" % (item["host"], item["step"], item["reason"], drained))
    for host in report["not_reached"]:
        lines.append("%s: NOT REACHED (the rollout stopped before its batch, or unreachable)" % host)
    return lines


class FilterModule:
    """inferops.gpu rolling upgrade filters."""

    def filters(self):
        return {
            "upgrade_plan": upgrade_plan,
            "upgrade_plan_lines": upgrade_plan_lines,
            "upgrade_versions": upgrade_versions,
            "upgrade_changes": upgrade_changes,
            "upgrade_container": upgrade_container,
            "upgrade_report": upgrade_report,
            "upgrade_summary_lines": upgrade_summary_lines,
        }
