# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the xinference role's container: the address a host advertises (and the supervisor
a worker connects to), and the container's environment with its precedence. On the controller.

Documentation: one <filter name>.yml beside this file per filter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

_IPV4 = re.compile(r"^[0-9]+(\.[0-9]+){3}\Z")


def xinference_address(host_vars):
    """The address a host's Xinference advertises and others connect to: its
    xinference_advertise_address, else ansible_host when that is an IP address, else its default
    IPv4 address ('' when none is known)."""
    if not isinstance(host_vars, Mapping):
        raise AnsibleFilterError("xinference_address expects one host's variables (hostvars[host]), got %s"
                                 % type(host_vars).__name__)
    own = host_vars.get("xinference_advertise_address") or ""
    if own:
        return str(own)
    ansible_host = str(host_vars.get("ansible_host") or "")
    if _IPV4.match(ansible_host) or ":" in ansible_host:
        return ansible_host
    ipv4 = (host_vars.get("ansible_facts") or {}).get("default_ipv4") or {}
    return str(ipv4.get("address") or "")


def xinference_container_env(role_env, operator_env=None, nccl_effective=None, nccl_env=None):
    """The container's environment, every value a string. Precedence, lowest first: the NCCL
    variables (nccl_tuning's exported nccl_tuning_effective.env when nccl_tuning ran on the host,
    else the operator's xinference_nccl_env), the role's own variables, the operator's
    xinference_env."""
    for name, value in (("role_env", role_env), ("operator_env", operator_env), ("nccl_env", nccl_env)):
        if value is not None and not isinstance(value, Mapping):
            raise AnsibleFilterError("xinference_container_env: %s must be a dict, got %s" % (name, type(value).__name__))
    if nccl_effective is not None and not (isinstance(nccl_effective, Mapping)
                                           and isinstance(nccl_effective.get("env") or {}, Mapping)):
        raise AnsibleFilterError("xinference_container_env: nccl_effective must be nccl_tuning_effective (a dict with env)")
    nccl = (nccl_effective.get("env") or {}) if nccl_effective is not None else (nccl_env or {})
    env = {}
    for layer in (nccl, role_env or {}, operator_env or {}):
        env.update((str(key), str(value)) for key, value in layer.items())
    return env


class FilterModule:
    """inferops.gpu xinference container filters."""

    def filters(self):
        return {
            "xinference_address": xinference_address,
            "xinference_container_env": xinference_container_env,
        }
