# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of inferops.gpu.check_mode (documented in plugins/modules/check_mode.py)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    """Report whether this task runs in check mode, on the controller, without a host round trip.

    ansible_check_mode only reflects --check; a play's, block's or task's check_mode keyword
    leaves it false (ansible/ansible#61689). The play context carries the effective value:
    the task's check_mode (inherited from its block and play) when set, --check otherwise.
    """

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset()
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        check_mode = bool(self._play_context.check_mode)
        result.update(changed=False, check_mode=check_mode)
        return result
