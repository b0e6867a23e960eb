# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What inferops.gpu.nccl_tuning derives from the gpu_health fact: the NCCL variables with their
precedence (forbidden > pinned > derived > extra), the host /dev/shm size, the ACS bridges and the
one-line note on gpu_health, and the checks of the role's variables its preflight runs. The role's derive phase and the site's pre-flight health gate call the
same filters with the same inputs, so the gate judges exactly the environment the role writes.
Documentation: one <filter name>.yml beside this file per filter.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

_GIB = 1024 ** 3


def _health(value, filter_name):
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AnsibleFilterError("%s expects the gpu_health fact (a dict) or nothing, got %s" % (
            filter_name, type(value).__name__))
    return value


def _recommendation(health):
    return health.get("recommendation") or {}


def nccl_tuning_env(health, pinned=None, extra=None, forbidden=None):
    """{variables: [{name, value, source, reason}], env: {name: value}} from the gpu_health fact.

    A name is forbidden (never written), else pinned (the operator's value), else derived (gpu_health's
    recommendation), else extra (the operator's addition). Values are strings; rows sorted by name.
    """
    health = _health(health, "nccl_tuning_env")
    for label, value in (("pinned", pinned), ("extra", extra)):
        if value is not None and not isinstance(value, Mapping):
            raise AnsibleFilterError("nccl_tuning_env: %s must be a dict, got %s" % (label, type(value).__name__))
    if isinstance(forbidden, (str, Mapping)):
        raise AnsibleFilterError("nccl_tuning_env: forbidden must be a list of names")
    pinned = dict((str(key), value) for key, value in (pinned or {}).items())
    extra = dict((str(key), value) for key, value in (extra or {}).items())
    forbidden = [str(name) for name in forbidden or []]
    recommendation = _recommendation(health)
    derived = dict((str(key), value) for key, value in (recommendation.get("nccl_env") or {}).items())
    why = recommendation.get("reasons") or {}
    rows = []
    for name in sorted(set(derived) | set(extra) | set(pinned) | set(forbidden)):
        from_health = ("gpu_health derived %s=%s (%s)" % (name, derived[name], why.get(name, "no reason given"))
                       if name in derived else "")
        if name in forbidden:
            row = {"value": None, "source": "forbidden",
                   "reason": "never written (nccl_tuning_env_forbidden)" + ("; " + from_health if from_health else "")}
        elif name in pinned:
            row = {"value": str(pinned[name]), "source": "pinned",
                   "reason": "pinned by the operator (nccl_tuning_env_pinned)"
                             + ("; overrides " + from_health if from_health else "")}
        elif name in derived:
            row = {"value": str(derived[name]), "source": "derived",
                   "reason": why.get(name, "recommended by gpu_health")}
        else:
            row = {"value": str(extra[name]), "source": "extra", "reason": "added by the operator (nccl_tuning_env_extra)"}
        rows.append(dict(name=name, **row))
    return {"variables": rows, "env": dict((row["name"], row["value"]) for row in rows if row["source"] != "forbidden")}


def nccl_tuning_host_shm_size(health, size="auto"):
    """The host /dev/shm tmpfs size: the operator's O(size), else gpu_health's container size in whole
    GiB ('128g'), else '50%' (of RAM) when gpu_health recommends less than 1 GiB or nothing."""
    if str(size) != "auto":
        return str(size)
    shm_bytes = _recommendation(_health(health, "nccl_tuning_host_shm_size")).get("container_shm_bytes") or 0
    try:
        shm_bytes = int(shm_bytes)
    except (TypeError, ValueError):
        shm_bytes = 0
    return "%dg" % (shm_bytes // _GIB) if shm_bytes >= _GIB else "50%"


def nccl_tuning_acs_bridges(health, enabled=False, bridges=None):
    """PCI bridges whose ACS redirect the boot unit clears: the operator's list, else every bridge
    gpu_health names on a GPU pair; lower case, sorted, unique; none when clearing is off."""
    if not enabled:
        return []
    found = list(bridges or [])
    if not found:
        for pair in _health(health, "nccl_tuning_acs_bridges").get("pairs") or []:
            found.extend(pair.get("acs_redirect_bridges") or [])
    return sorted(set(str(bridge).lower() for bridge in found))


def nccl_tuning_health_note(health):
    """One line on what nccl_tuning could derive from (nccl_tuning_effective.gpu_health)."""
    health = _health(health, "nccl_tuning_health_note")
    if not health:
        return "no gpu_health facts on this host: nothing derived"
    nvml = health.get("nvml") or {}
    if not nvml.get("available"):
        return "gpu_health: NVML unavailable (%s): nothing derived" % nvml.get("error", "unknown")
    unsafe = [pair for pair in health.get("pairs") or [] if pair.get("p2p_safe") is not True]
    return "gpu_health: %s GPUs, %d P2P-unsafe GPU pairs" % (health.get("gpu_count"), len(unsafe))


_SHM_SIZE = re.compile(r"^([1-9][0-9]*[kKmMgGtT]?|([1-9][0-9]?|100)%)\Z")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_BDF = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]\Z")
_UNIT = re.compile(r"^[A-Za-z0-9:_.\-]+\.service\Z")


def _json(value):
    return json.dumps(value)


def _env_value_ok(value):
    return (isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool))) \
        and not re.search(r"[\r\n]", str(value))


def nccl_tuning_preflight_errors(settings):
    """Every problem with the role's variables (keyed by name) that argument_specs cannot express,
    one message per problem naming the variable; [] when all is well. One preflight task calls it."""
    if not isinstance(settings, Mapping):
        raise AnsibleFilterError("nccl_tuning_preflight_errors expects the role's variables as a dict")
    errors = []
    shm_size = str(settings["nccl_tuning_host_shm_size"])
    if shm_size != "auto" and not _SHM_SIZE.match(shm_size):
        errors.append("nccl_tuning_host_shm_size=%s is not a tmpfs size: use a number with an optional k, m, g or "
                      "t suffix (64g), a percentage of RAM (50%%), or auto" % _json(shm_size))
    options = [str(option) for option in settings["nccl_tuning_host_shm_options"]]
    if any(option == "" or re.match(r"^(size=|.*[,\s])", option) for option in options):
        errors.append("nccl_tuning_host_shm_options=%s: one option per item, no commas or blanks, and no size= "
                      "(set nccl_tuning_host_shm_size instead)" % _json(options))
    pinned = settings["nccl_tuning_env_pinned"]
    extra = settings["nccl_tuning_env_extra"]
    forbidden = [str(name) for name in settings["nccl_tuning_env_forbidden"]]
    for var, names in (("nccl_tuning_env_pinned", [str(name) for name in pinned]),
                       ("nccl_tuning_env_extra", [str(name) for name in extra]),
                       ("nccl_tuning_env_forbidden", forbidden)):
        bad = [name for name in names if not _ENV_NAME.match(name)]
        if bad:
            errors.append("%s holds names that are not valid environment variable names (%s): letters, digits "
                          "and underscores, not starting with a digit" % (var, _json(bad)))
    for var, values in (("nccl_tuning_env_pinned", pinned), ("nccl_tuning_env_extra", extra)):
        for key, value in values.items():
            if not _env_value_ok(value):
                errors.append('%s[%s]=%s must be a single-line string or a number (quote booleans, e.g. "1" or "0")'
                              % (var, _json(key), _json(value)))
    both = [str(name) for name in pinned if str(name) in forbidden]
    if both:
        errors.append("nccl_tuning_env_pinned and nccl_tuning_env_forbidden both name %s: keep one" % _json(both))
    memlock = str(settings["nccl_tuning_memlock_limit"])
    if not re.match(r"^(unlimited|infinity|[0-9]+)\Z", memlock):
        errors.append("nccl_tuning_memlock_limit=%s must be unlimited or a non-negative number of KiB" % _json(memlock))
    domains = [str(domain) for domain in settings["nccl_tuning_memlock_domains"]]
    if not domains or any(not re.match(r"^\S+\Z", domain) for domain in domains):
        errors.append("nccl_tuning_memlock_domains=%s must list one or more single-word domains "
                      "(*, root, a user, @group, uid range)" % _json(domains))
    conf, env_file = str(settings["nccl_tuning_conf_path"]), str(settings["nccl_tuning_env_file_path"])
    if not (os.path.isabs(conf) and os.path.isabs(env_file) and conf != env_file):
        errors.append("nccl_tuning_conf_path=%s and nccl_tuning_env_file_path=%s must be two different absolute "
                      "paths" % (_json(conf), _json(env_file)))
    if boolean(settings["nccl_tuning_acs_clear_enabled"], strict=False) \
            and not boolean(settings["nccl_tuning_acs_clear_iommu_risk_accepted"], strict=False):
        errors.append("nccl_tuning_acs_clear_enabled=true needs nccl_tuning_acs_clear_iommu_risk_accepted=true: "
                      "clearing ACS on a PCIe switch removes IOMMU isolation between the devices behind it "
                      "(no VM passthrough, no untrusted tenants on this host)")
    bridges = [str(bridge) for bridge in settings["nccl_tuning_acs_clear_bridges"] if not _BDF.match(str(bridge))]
    if bridges:
        errors.append("nccl_tuning_acs_clear_bridges holds values that are not PCI addresses like 0000:17:02.0: %s"
                      % _json(bridges))
    unit = str(settings["nccl_tuning_acs_clear_unit_name"])
    if not _UNIT.match(unit):
        errors.append("nccl_tuning_acs_clear_unit_name=%s must be a systemd unit name ending in .service" % _json(unit))
    return errors


class FilterModule:
    """inferops.gpu nccl_tuning filters."""

    def filters(self):
        return {
            "nccl_tuning_env": nccl_tuning_env,
            "nccl_tuning_host_shm_size": nccl_tuning_host_shm_size,
            "nccl_tuning_acs_bridges": nccl_tuning_acs_bridges,
            "nccl_tuning_health_note": nccl_tuning_health_note,
            "nccl_tuning_preflight_errors": nccl_tuning_preflight_errors,
        }
