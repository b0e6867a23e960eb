"""model_preflight: arithmetic and every refusal, against real gpu_health facts of the fake topologies."""

import pytest

from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import run_health
from ansible_collections.inferops.gpu.plugins.module_utils.model_preflight import (
    bytes_per_parameter, effective_envs, estimate_weights_bytes, normalize_n_gpu, parse_size_in_billions, preflight,
    validate_launch)

GIB = 1024 ** 3


@pytest.fixture
def facts(fake_gpu_host):
    def make(name, **kwargs):
        host = fake_gpu_host(name)
        return run_health(sysfs_root=host.sysfs_root, procfs_root=host.procfs_root, kernel_log=host.kernel_log,
                          **kwargs)
    return make


def llm(**kwargs):
    launch = {"model_name": "qwen2.5-instruct", "model_type": "LLM", "model_engine": "vLLM", "replica": 1}
    launch.update(kwargs)
    return launch


# -- arithmetic ---------------------------------------------------------------------------------

@pytest.mark.parametrize("quantization, model_format, expected", [
    (None, "pytorch", 2.0), ("none", "pytorch", 2.0), ("none", None, 2.0), ("bf16", None, 2.0),
    ("fp8", "fp8", 1.0), ("Int8", "gptq", 1.0), ("8-bit", None, 1.0), ("Q8_0", "ggufv2", 1.0),
    ("Int4", "awq", 0.5), ("4-bit", None, 0.5), ("Q4_K_M", "ggufv2", 0.5), ("none", "awq", 0.5),
    ("Q5_K_M", "ggufv2", 0.625), ("mystery", None, None), ("none", "ggufv2", None),
])
def test_bytes_per_parameter(quantization, model_format, expected):
    assert bytes_per_parameter(quantization, model_format) == expected


def test_weights_estimate():
    assert estimate_weights_bytes(72, "none", "pytorch") == 144 * 1000 ** 3
    assert estimate_weights_bytes("72", "Int4", "awq") == 36 * 1000 ** 3
    assert estimate_weights_bytes("0_5", None, "pytorch") == 1000 ** 3
    assert estimate_weights_bytes(None, "none") is None
    assert parse_size_in_billions("1_8") == 1.8


def test_normalize_n_gpu():
    assert normalize_n_gpu(None) is None
    assert normalize_n_gpu("2") == 2
    assert normalize_n_gpu("AUTO") == "auto"
    assert normalize_n_gpu("cpu") == "cpu"
    with pytest.raises(ValueError):
        normalize_n_gpu("two")


# -- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("change, expected", [
    ({"model_type": "chat"}, "model_type 'chat' is not one of"),
    ({"n_gpu": 0}, "n_gpu 0: a model needs at least one GPU"),
    ({"n_gpu": "-2"}, "n_gpu -2"),
    ({"n_gpu": "many"}, "n_gpu must be a whole number"),
    ({"gpu_idx": [1, 1]}, "names GPU 1 more than once"),
    ({"gpu_idx": [-1, 2]}, "-1 is negative"),
    ({"replica": 0}, "replica 0"),
    ({"gpu_idx": [0, 1, 2], "replica": 2}, "multiple of replica"),
    ({"n_gpu": 4, "gpu_idx": [0, 1]}, "n_gpu 4 contradicts gpu_idx"),
    ({"engine_kwargs": {"gpu_memory_utilization": 0}}, "gpu_memory_utilization 0"),
    ({"engine_kwargs": {"gpu_memory_utilization": 1.5}}, "gpu_memory_utilization 1.5"),
    ({"model_engine": None}, "model_engine is required"),
    ({"single_gpu": True, "n_gpu": 2}, "single_gpu: true contradicts"),
    ({"model_size_in_billions": "big"}, "model_size_in_billions 'big'"),
])
def test_bad_input(change, expected):
    errors = validate_launch(llm(**change))
    assert any(expected in error for error in errors), errors


def test_good_input_has_no_errors():
    assert validate_launch(llm(n_gpu="2", gpu_idx=[2, 3], engine_kwargs={"gpu_memory_utilization": 1})) == []
    assert validate_launch({"model_name": "bge", "model_type": "embedding"}) == []


# -- envs ---------------------------------------------------------------------------------------

def test_effective_envs_put_operator_over_recommendation(facts):
    health = facts("pcie-4-acs")
    assert effective_envs(health, {}) == {"NCCL_P2P_DISABLE": "1"}
    assert effective_envs(health, {"NCCL_DEBUG": "WARN"}) == {"NCCL_P2P_DISABLE": "1", "NCCL_DEBUG": "WARN"}
    assert effective_envs(health, {"NCCL_P2P_DISABLE": 0}) == {"NCCL_P2P_DISABLE": "0"}
    assert effective_envs(health, {"A": "b"}, apply_nccl_env=False) == {"A": "b"}
    assert effective_envs(None, None) == {}


# -- refusals against real facts ----------------------------------------------------------------

def test_pcie_4_acs_pair_2_3_without_p2p_disable_is_refused(facts):
    health = facts("pcie-4-acs")
    result = preflight(llm(n_gpu=2, gpu_idx=[2, 3], model_size_in_billions=7,
                           engine_kwargs={"disable_custom_all_reduce": True}, envs={}), gpu_health=health)
    assert len(result["refusals"]) == 1, result["refusals"]
    message = result["refusals"][0]
    assert "gpu_idx [2, 3]" in message
    assert "GPU2-GPU3 (ACS redirect on bridge 0000:17:02.0, 0000:17:03.0)" in message
    assert "NCCL_P2P_DISABLE: '1'" in message and "apply_nccl_env: true" in message


def test_pcie_4_acs_pair_2_3_with_derived_env_passes(facts):
    health = facts("pcie-4-acs")
    launch = llm(n_gpu=2, gpu_idx=[2, 3], model_size_in_billions=7, engine_kwargs={"disable_custom_all_reduce": True})
    launch["envs"] = effective_envs(health, {})
    result = preflight(launch, gpu_health=health, container_shm_bytes=health["recommendation"]["container_shm_bytes"])
    assert result["refusals"] == []
    assert result["gpus"] == [2, 3]


def test_pcie_4_acs_two_gpus_need_custom_all_reduce_off(facts):
    health = facts("pcie-4-acs")
    launch = llm(n_gpu=2, gpu_idx=[2, 3], model_size_in_billions=7, envs=effective_envs(health, {}))
    result = preflight(launch, gpu_health=health)
    assert len(result["refusals"]) == 1
    assert "add disable_custom_all_reduce: true to engine_kwargs" in result["refusals"][0]
    # Another engine does not have vLLM's custom all-reduce.
    launch["model_engine"] = "SGLang"
    assert preflight(launch, gpu_health=health)["refusals"] == []


def test_pcie_4_acs_safe_pair_0_1_needs_nothing(facts):
    health = facts("pcie-4-acs")
    result = preflight(llm(n_gpu=2, gpu_idx=[0, 1], model_size_in_billions=7, envs={}), gpu_health=health)
    assert result["refusals"] == []


def test_pcie_4_acs_n_gpu_without_gpu_idx_considers_every_pair(facts):
    health = facts("pcie-4-acs")
    result = preflight(llm(n_gpu=4, model_size_in_billions=7, envs={}), gpu_health=health)
    assert len(result["refusals"]) == 1
    assert "n_gpu 4 without gpu_idx" in result["refusals"][0]


def test_h100_72b_16bit_on_one_gpu_is_refused_for_memory(facts):
    health = facts("h100-sxm-8")
    result = preflight(llm(n_gpu=1, model_size_in_billions=72, quantization="none", model_format="pytorch"),
                       gpu_health=health)
    assert len(result["refusals"]) == 1, result["refusals"]
    message = result["refusals"][0]
    assert "144.0 GB of weights" in message
    assert "1 GPU x 85.5 GB x gpu_memory_utilization 0.90 = 77.0 GB" in message
    assert "set n_gpu: 2" in message
    assert result["estimate"]["weights_bytes"] == 144 * 1000 ** 3


def test_h100_72b_16bit_on_two_gpus_fits(facts):
    health = facts("h100-sxm-8")
    result = preflight(llm(n_gpu=2, model_size_in_billions=72, quantization="none"), gpu_health=health,
                       container_shm_bytes=health["recommendation"]["container_shm_bytes"])
    assert result["refusals"] == []
    assert result["estimate"]["capacity_bytes"] == int(2 * 85520809984 * 0.9)


def test_memory_refusal_follows_gpu_memory_utilization(facts):
    health = facts("h100-sxm-8")
    launch = llm(n_gpu=2, model_size_in_billions=72, quantization="none",
                 engine_kwargs={"gpu_memory_utilization": 0.8})
    result = preflight(launch, gpu_health=health)
    assert len(result["refusals"]) == 1 and "set n_gpu: 4" in result["refusals"][0]


def test_gpu_memory_utilization_above_092_warns(facts):
    health = facts("h100-sxm-8")
    result = preflight(llm(n_gpu=1, model_size_in_billions=7, engine_kwargs={"gpu_memory_utilization": 0.95}),
                       gpu_health=health)
    assert result["refusals"] == []
    assert len(result["warnings"]) == 1 and "0.95 is above 0.92" in result["warnings"][0]


def test_missing_gpu_n_gpu_8_is_refused(facts):
    health = facts("missing-gpu", expected_gpu_count=8)
    result = preflight(llm(n_gpu=8, model_size_in_billions=7), gpu_health=health)
    assert any("needs 8 GPUs" in r and "gpu_health finds 7 on the host" in r and "set n_gpu to at most 7" in r
               and "bring back the missing GPU" in r for r in result["refusals"]), result["refusals"]


def test_container_sees_fewer_gpus(facts):
    health = facts("h100-sxm-8")
    result = preflight(llm(n_gpu=4, model_size_in_billions=7), gpu_health=health, container_gpus=2)
    assert any("the container sees 2" in r and "start the container with more" in r for r in result["refusals"])


def test_gpu_idx_that_does_not_exist(facts):
    health = facts("missing-gpu")
    result = preflight(llm(n_gpu=2, gpu_idx=[6, 7], model_size_in_billions=7), gpu_health=health)
    assert any("GPU 7 does not exist" in r for r in result["refusals"]), result["refusals"]


def test_gpu_idx_naming_a_failed_gpu(facts):
    health = facts("ecc-bad", expected_gpu_count=8)
    result = preflight(llm(n_gpu=2, gpu_idx=[4, 5], model_size_in_billions=7), gpu_health=health)
    assert len(result["refusals"]) == 1, result["refusals"]
    message = result["refusals"][0]
    assert "GPU 5 failed its health check" in message and "ecc:" in message and "choose healthy GPUs" in message
    assert "5" not in message.split("healthy and unused here: ")[1].split("]")[0]


def test_incident_2_llm_without_n_gpu_on_multi_gpu_host(facts):
    health = facts("h100-sxm-8")
    result = preflight(llm(model_size_in_billions=72), gpu_health=health)
    assert any("n_gpu omitted on a host with 8 GPUs" in r and "ONE GPU" in r and "set n_gpu: 2" in r
               and "single_gpu: true" in r for r in result["refusals"]), result["refusals"]
    result = preflight(llm(n_gpu="auto", model_size_in_billions=7), gpu_health=health)
    assert any("n_gpu auto on a host with 8 GPUs" in r for r in result["refusals"])


def test_incident_2_allowed_on_purpose_or_with_gpu_idx(facts):
    health = facts("h100-sxm-8")
    assert preflight(llm(model_size_in_billions=7, single_gpu=True), gpu_health=health)["refusals"] == []
    assert preflight(llm(gpu_idx=[3], model_size_in_billions=7), gpu_health=health)["refusals"] == []
    # Not an LLM: embeddings fit on one GPU.
    assert preflight({"model_name": "bge", "model_type": "embedding"}, gpu_health=health)["refusals"] == []


def test_shm_below_recommendation_for_multi_gpu(facts):
    health = facts("h100-sxm-8")
    result = preflight(llm(n_gpu=2, model_size_in_billions=7), gpu_health=health, container_shm_bytes=64 * 1024 ** 2)
    assert len(result["refusals"]) == 1
    assert "container /dev/shm is 64m, below the 128g" in result["refusals"][0]
    assert "shm_size: 128g" in result["refusals"][0]
    # One GPU: NCCL is not involved.
    assert preflight(llm(n_gpu=1, model_size_in_billions=7), gpu_health=health,
                     container_shm_bytes=64 * 1024 ** 2)["refusals"] == []


def test_no_facts_only_container_rules():
    assert preflight(llm(n_gpu=2))["refusals"] == []
    result = preflight(llm(), container_gpus=4)
    assert any("n_gpu omitted on a host with 4 GPUs" in r for r in result["refusals"])


def test_auto_on_a_cpu_only_host_is_not_refused():
    # n_gpu omitted/auto: Xinference runs the model on CPU when the worker has no GPU.
    assert preflight({"model_name": "bge", "model_type": "embedding"}, container_gpus=0)["refusals"] == []
    assert preflight(llm(n_gpu=1), container_gpus=0)["refusals"] != []
