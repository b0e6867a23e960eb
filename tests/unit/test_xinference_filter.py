"""plugins/filter/xinference.py: the role's preflight applies the module's own validation.

The value rules themselves are tested in test_model_preflight.py; here that the filter reaches all
of them (argument spec, value rules, registration), assumes `present` unless told, refuses what the
xinference_model module refuses with the same sentence, and is registered and documented.
"""

import os

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.gpu.plugins.filter import xinference as filters
from ansible_collections.inferops.gpu.plugins.module_utils.xinference_model_state import INVALID
from ansible_collections.inferops.gpu.plugins.modules import xinference_model
from ansible_collections.inferops.gpu.plugins.module_utils.xinference_model_state import INVALID
from ansible_collections.inferops.gpu.plugins.modules import xinference_model

HERE = os.path.dirname(os.path.abspath(__file__))
FILTER_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "plugins", "filter")


def test_registered_and_documented():
    assert set(filters.FilterModule().filters()) == {"xinference_model_errors"}
    assert os.path.isfile(os.path.join(FILTER_DIR, "xinference_model_errors.yml"))


@pytest.mark.parametrize("model, expected", [
    ({"model_name": "m", "model_type": "chat"}, "value of model_type must be one of: LLM, embedding"),
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
    registration = {"model_name": "m", "model_type": "embedding", "registration": {"model_uri": "/models/m"}}
    assert filters.xinference_model_errors(registration, "registered") == []
    assert filters.xinference_model_errors({"model_name": "m", "state": "absent"}) == []
    # The role's registrations list accepts only state registered (its task runs the module with it).
    assert filters.xinference_model_errors(dict(registration, state="present"), "registered", ["registered"]) == [
        "state present: only registered here"]
    assert filters.xinference_model_errors(registration, "registered", ["registered"]) == []


def test_not_a_dict():
    with pytest.raises(AnsibleFilterError):
        filters.xinference_model_errors(["m"])


# -- the filter and the module refuse the same declarations with the same sentence ------------------

LLM = {"model_name": "m", "model_engine": "vLLM"}
REGISTERED = {"model_name": "m", "model_type": "embedding", "state": "registered"}
BAD_DECLARATIONS = [
    # argument spec (AnsibleModule's own messages)
    dict(LLM, model_type="chat"),
    dict(LLM, replica="two"),
    dict(LLM, gpu_idx=["a"]),
    dict(REGISTERED, registration={"dimensions": 384}),
    dict(LLM, api_key="k", username="u", password="p"),
    dict(LLM, username="u"),
    # value rules of model_preflight.validate_launch
    dict(LLM, n_gpu="0"),
    dict(LLM, n_gpu=-1),
    dict(LLM, n_gpu="two"),
    dict(LLM, gpu_idx=[1, 1]),
    dict(LLM, gpu_idx=[-1]),
    dict(LLM, gpu_idx=[0, 1, 2], replica=2),
    dict(LLM, gpu_idx=[0, 1], n_gpu="1"),
    dict(LLM, gpu_idx=[0], n_gpu="cpu"),
    dict(LLM, replica=0),
    dict(LLM, single_gpu=True, n_gpu="2"),
    dict(LLM, engine_kwargs={"gpu_memory_utilization": 1.2}),
    dict(LLM, engine_kwargs={"gpu_memory_utilization": 0}),
    dict(LLM, model_size_in_billions="big"),
    dict(LLM, model_size_in_billions=-7),
    {"model_name": "m"},
    # rules the module alone held before: engine_kwargs clash and the registration
    dict(LLM, engine_kwargs={"n_gpu": 2}),
    dict(LLM, engine_kwargs={"model_uid": "x", "envs": {}}),
    {"model_name": "m", "state": "registered"},
    dict(REGISTERED, registration={"model_uri": "models/m"}),
    dict(REGISTERED, model_type="image", registration={"model_uri": "/models/m"}),
    dict(LLM, registration={"model_uri": "relative/dir"}),
]


@pytest.mark.parametrize("declaration", BAD_DECLARATIONS, ids=lambda d: ",".join(sorted(d)))
def test_filter_and_module_refuse_the_same(module_main, declaration):
    errors = filters.xinference_model_errors(declaration)
    assert errors, declaration
    # Nothing listens on port 9: a declaration the module let through would fail on the connection.
    result = module_main(xinference_model.main, dict(declaration, url="http://127.0.0.1:9"))
    assert result.failed
    message = result.result["msg"]
    if message.startswith(INVALID):
        assert message == INVALID + "; ".join(errors)
    else:   # AnsibleModule stops at the argument spec's first message
        assert errors == [message]
