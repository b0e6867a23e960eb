# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""masked_secrets: a copy of any data with its secrets masked, for what a task shows (a masked
diff of a no_log task). The rule lives in plugins/module_utils/secrets.py, shared with the
drift_report callback.

Documentation: masked_secrets.yml beside this file.
"""

from __future__ import annotations

from ansible_collections.inferops.gpu.plugins.module_utils.secrets import masked


def masked_secrets(value):
    """value with the values of secret-looking keys, NAME=VALUE pairs, URL passwords and
    Authorization headers replaced by ********."""
    return masked(value)


class FilterModule:
    """inferops.gpu secret masking filter."""

    def filters(self):
        return {"masked_secrets": masked_secrets}
