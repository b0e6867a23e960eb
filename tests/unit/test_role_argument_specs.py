"""Every role's argument_specs and defaults stay in step (the prometheus.prometheus habit).

Each public variable is prefixed with the role's name, typed, described, and documented with the
same default as defaults/main.yml; lists name their element type.
"""

import os

import pytest
import yaml

ROLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "roles")


def _load(role, *path):
    with open(os.path.join(ROLES, role, *path)) as handle:
        return yaml.safe_load(handle) or {}


@pytest.mark.parametrize("role", sorted(name for name in os.listdir(ROLES) if os.path.isdir(os.path.join(ROLES, name))))
def test_every_variable_is_typed_described_and_defaulted(role):
    options = _load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    defaults = _load(role, "defaults", "main.yml")
    assert set(defaults) <= set(options), "defaults without a spec: %s" % sorted(set(defaults) - set(options))
    for name, spec in options.items():
        assert name.startswith(role + "_"), name
        assert spec.get("type") and spec.get("description"), name
        if name in defaults:
            assert spec.get("default") == defaults[name], name
        if spec["type"] == "list":
            assert spec.get("elements"), name
