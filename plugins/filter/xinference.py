# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter for the xinference role: the xinference_model module's validation, on the controller.

The role checks every declared model with the module's own function
(module_utils.xinference_model_state.validate_declaration: argument spec, value rules, registration)
before it changes anything, so a declaration the module would refuse stops the play in the role's
preflight with the same sentence.
Documentation: xinference_model_errors.yml beside this file.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.gpu.plugins.module_utils.xinference_model_state import validate_declaration


def xinference_model_errors(model, state_default="present", states=None):
    """Messages for what is wrong with one xinference_model parameter dict (empty list when fine)."""
    if not isinstance(model, Mapping):
        raise AnsibleFilterError("xinference_model_errors expects a dict of xinference_model parameters, got %s"
                                 % type(model).__name__)
    declaration = dict(model)
    declaration.setdefault("state", state_default)
    errors = []
    if states and declaration["state"] not in states:
        # A caller that runs the module with one state (the role's registrations) says which it accepts.
        errors.append("state %s: only %s here" % (declaration["state"], " or ".join(states)))
    return errors + validate_declaration(declaration)


class FilterModule:
    """inferops.gpu xinference filters."""

    def filters(self):
        return {"xinference_model_errors": xinference_model_errors}
