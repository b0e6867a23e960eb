# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the shared Molecule create/destroy playbooks (molecule/shared/create.yml).

Molecule merges .config/molecule/config.yml into each scenario's molecule.yml, but not lists:
`platforms` would be copied into every scenario. Instead a scenario's platform entry names only
what is particular to it, and create.yml fills in the rest from molecule/shared/vars/platform.yml
with inferops_molecule_platforms (rules in its docstring; .config/molecule/README.md).
"""

from __future__ import annotations

import copy
import os


def _target(volume):
    """The container path of a `source:target[:mode]` volume, or the volume itself (anonymous)."""
    parts = volume.split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def platforms(entries, shared, project_dir):
    """Each platform entry with the shared keys filled in.

    - A key the entry does not set takes the shared value.
    - capabilities: the shared list; an entry's "-NAME" removes NAME from it, any other name adds it.
    - volumes: the shared volumes, where an entry's volume with the same container path replaces the
      shared one, then the entry's other volumes. In a shared volume, {project} is the repository
      root and {name} the platform's name (each host its own apt archive directory: apt locks it for
      a whole install and fails at once when another host holds it).
    """
    result = []
    for entry in entries:
        entry = copy.deepcopy(entry)
        merged = {key: copy.deepcopy(value) for key, value in shared.items()
                  if key not in ("capabilities", "volumes")}
        merged.update({key: value for key, value in entry.items() if key not in ("capabilities", "volumes")})

        capabilities = list(shared.get("capabilities", []))
        for cap in entry.get("capabilities", []):
            if cap.startswith("-"):
                if cap[1:] not in capabilities:
                    raise ValueError("platform %s: %s is not a shared capability" % (entry.get("name"), cap[1:]))
                capabilities.remove(cap[1:])
            elif cap not in capabilities:
                capabilities.append(cap)
        if capabilities:
            merged["capabilities"] = capabilities

        own = list(entry.get("volumes", []))
        own_targets = {_target(volume): volume for volume in own}
        volumes = []
        for volume in shared.get("volumes", []):
            volume = volume.format(project=project_dir, name=entry["name"])
            volumes.append(own_targets.pop(_target(volume), volume))
        volumes.extend(volume for volume in own if _target(volume) in own_targets)
        if volumes:
            merged["volumes"] = volumes
        result.append(merged)
    return result


def docker_playbook(step):
    """molecule-plugins' own docker playbook for `step` (create, destroy), from the installed package."""
    import molecule_plugins.docker  # pylint: disable=import-outside-toplevel

    return os.path.join(os.path.dirname(molecule_plugins.docker.__file__), "playbooks", step + ".yml")


class FilterModule:
    """Filters of molecule/shared/create.yml and destroy.yml."""

    def filters(self):
        return {
            "inferops_molecule_platforms": platforms,
            "inferops_molecule_docker_playbook": docker_playbook,
        }
