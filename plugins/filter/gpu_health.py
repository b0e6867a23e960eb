# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over the gpu_health fact: the node_exporter textfile and the checks that fail a gate.

Both run on the controller and reuse the module's own code (module_utils.gpu_health_checks), so
the role's reports, its gate message and the timer's runner on the host agree byte for byte.
Documentation: gpu_health_prometheus.yml and gpu_health_failing.yml beside this file.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import (
    VERDICTS,
    checks_matching,
    render_prometheus,
)

_REQUIRED = ("summary", "checks", "nvml", "gpus", "pairs", "xids", "recommendation")


def _facts(value, filter_name):
    if not isinstance(value, Mapping):
        raise AnsibleFilterError("%s expects the gpu_health fact (a dict), got %s" % (filter_name, type(value).__name__))
    missing = [key for key in _REQUIRED if key not in value]
    if missing:
        raise AnsibleFilterError("%s: not a gpu_health fact, keys missing: %s" % (filter_name, ", ".join(missing)))
    return value


def gpu_health_prometheus(facts):
    """The gpu_health fact as node_exporter textfile-collector text."""
    return render_prometheus(_facts(facts, "gpu_health_prometheus"))


def gpu_health_failing(facts, verdicts=("fail",)):
    """One line per check whose verdict is in verdicts: 'ecc gpu5: <reason>'."""
    if isinstance(verdicts, str):
        verdicts = [verdicts]
    unknown = sorted(set(verdicts) - set(VERDICTS))
    if unknown:
        raise AnsibleFilterError("gpu_health_failing: unknown verdicts %s (valid: %s)" % (
            ", ".join(unknown), ", ".join(VERDICTS)))
    return checks_matching(_facts(facts, "gpu_health_failing"), list(verdicts))


class FilterModule:
    """inferops.gpu gpu_health filters."""

    def filters(self):
        return {
            "gpu_health_prometheus": gpu_health_prometheus,
            "gpu_health_failing": gpu_health_failing,
        }
