# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the container_runtime role: the Docker API is never opened on TCP without TLS.

container_runtime_daemon_exposure returns one message per `hosts` entry of the daemon.json the role
is about to write that opens the Docker API on TCP without client-certificate verification (anyone
who reaches that port controls every container and, through them, the host). The role's preflight
stops on any message before it changes anything. Documentation: container_runtime_daemon_exposure.yml.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

VARIABLE = "container_runtime_daemon_extra_options"
# Local sockets only: a Unix socket, a socket systemd passes in, a Windows named pipe.
_LOCAL_SCHEMES = ("unix", "fd", "npipe")
_TLS_FILES = ("tlscacert", "tlscert", "tlskey")


def _missing_tls(merged):
    missing = [] if merged.get("tlsverify") is True else ["tlsverify: true"]
    missing += [key for key in _TLS_FILES if not (isinstance(merged.get(key), str) and merged.get(key).strip())]
    return missing


def container_runtime_daemon_exposure(merged, extra_options=None, path="/etc/docker/daemon.json"):
    """One message per `hosts` entry of `merged` (the daemon.json to write) that exposes the API without TLS."""
    if not isinstance(merged, Mapping):
        raise AnsibleFilterError("container_runtime_daemon_exposure expects the merged daemon.json (a dict), got %s"
                                 % type(merged).__name__)
    extra = extra_options if isinstance(extra_options, Mapping) else {}
    if "hosts" not in merged:
        return []
    # Where the entries come from: the role's variable, or the host's current file that the merge keeps
    # (the role would restart Docker with it).
    source = ("%s.hosts" % VARIABLE if "hosts" in extra
              else "hosts in %s (the current file, kept by the role's merge)" % path)
    hosts = merged["hosts"]
    if isinstance(hosts, str):
        hosts = [hosts]
    if not isinstance(hosts, list):
        return ["%s=%r must be a list of sockets (unix:///run/docker.sock, fd://, or tcp:// with TLS verification)"
                % (source, hosts)]
    messages = []
    for entry in hosts:
        if not isinstance(entry, str) or not entry.strip():
            messages.append("%s entry %r is not a socket address: use unix:///run/docker.sock, fd://, or tcp://HOST:2376 "
                            "with TLS verification" % (source, entry))
            continue
        # Docker reads an address without a scheme (0.0.0.0:2375, :2375) as tcp.
        scheme = entry.split("://", 1)[0].strip().lower() if "://" in entry else "tcp"
        if scheme in _LOCAL_SCHEMES:
            continue
        if scheme != "tcp":
            messages.append("%s entry '%s': Docker listens on unix://, fd:// or tcp:// only, not %s://"
                            % (source, entry, scheme))
            continue
        missing = _missing_tls(merged)
        if missing:
            messages.append(
                "%s entry '%s' opens the Docker API on TCP without TLS client verification: whoever reaches the port "
                "is root on the host. Allowed: unix:// or fd:// sockets, or tcp:// together with tlsverify: true and "
                "tlscacert, tlscert and tlskey in %s (missing: %s)" % (source, entry, VARIABLE, ", ".join(missing)))
    return messages


class FilterModule:
    """inferops.gpu container_runtime filters."""

    def filters(self):
        return {"container_runtime_daemon_exposure": container_runtime_daemon_exposure}
