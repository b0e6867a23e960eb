"""plugins/filter/xinference.py: the role's preflight applies the module's own bad-input rules.

The rules themselves are tested in test_model_preflight.py; here only that the filter reaches
them, assumes `present` unless told, and is registered and documented.
"""

import os

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.gpu.plugins.filter import xinference as filters

HERE = os.path.dirname(os.path.abspath(__file__))
FILTER_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "plugins", "filter")


def test_registered_and_documented():
    assert set(filters.FilterModule().filters()) == {"xinference_model_errors"}
    assert os.path.isfile(os.path.join(FILTER_DIR, "xinference_model_errors.yml"))


@pytest.mark.parametrize("model, expected", [
    ({"model_name": "m", "model_type": "chat"}, "model_type 'chat' is not one of"),
    ({"model_name": "m", "model_engine": "vLLM", "n_gpu": 0}, "n_gpu 0: a model needs at least one GPU"),
    ({"model_name": "m", "model_engine": "vLLM", "n_gpu": -2}, "n_gpu -2"),
    ({"model_name": "m", "model_engine": "vLLM", "gpu_idx": [1, 1]}, "names GPU 1 more than once"),
    ({"model_name": "m"}, "model_engine is required for an LLM"),
])
def test_bad_models(model, expected):
    errors = filters.xinference_model_errors(model)
    assert any(expected in error for error in errors), errors


def test_good_model_and_registration_only():
    assert filters.xinference_model_errors({"model_name": "m", "model_engine": "vLLM", "n_gpu": 2}) == []
    # A registration needs no engine: the state decides, from the item or the caller's default.
    assert filters.xinference_model_errors({"model_name": "m"}, "registered") == []
    assert filters.xinference_model_errors({"model_name": "m", "state": "absent"}) == []


def test_not_a_dict():
    with pytest.raises(AnsibleFilterError):
        filters.xinference_model_errors(["m"])
