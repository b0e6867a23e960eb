# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter for the xinference role: the bad-input rules of the xinference_model module, on the controller.

The role checks every declared model with the module's own validation (module_utils.model_preflight)
before it changes anything, so a model with n_gpu 0 or a duplicated gpu_idx stops the play in the
role's preflight with the same sentence the module would print later.
Documentation: xinference_model_errors.yml beside this file.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.gpu.plugins.module_utils.model_preflight import validate_launch


def xinference_model_errors(model, state_default="present"):
    """Messages for what is wrong with one xinference_model parameter dict (empty list when fine)."""
    if not isinstance(model, Mapping):
        raise AnsibleFilterError("xinference_model_errors expects a dict of xinference_model parameters, got %s"
                                 % type(model).__name__)
    launch = dict(model)
    launch["registration_only"] = launch.get("state", state_default) != "present"
    return validate_launch(launch)


class FilterModule:
    """inferops.gpu xinference filters."""

    def filters(self):
        return {"xinference_model_errors": xinference_model_errors}
