"""The xinference_model module in-process against the fake Xinference (tests/unit/fake_xinference.py)."""

import json
import os
import socket
import sys

import pytest


from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import run_health
from ansible_collections.inferops.gpu.plugins.module_utils.xinference_api import XinferenceClient, redact
from ansible_collections.inferops.gpu.plugins.modules import xinference_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_xinference import FakeXinference  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture
def fake():
    server = FakeXinference(gpus=4).start()
    yield server
    server.stop()


@pytest.fixture
def run_module(module_main, monkeypatch, fake):
    monkeypatch.setattr(XinferenceClient, "wait_ready", fast_wait_ready)

    def run(check_mode=False, diff=False, **args):
        params = {"url": fake.url, "username": fake.username, "password": fake.password}
        params.update(args)
        params = dict((key, value) for key, value in params.items() if value is not None)
        params["_ansible_check_mode"] = check_mode
        params["_ansible_diff"] = diff
        return module_main(xinference_model.main, params)
    return run


ORIGINAL_WAIT = XinferenceClient.wait_ready


def fast_wait_ready(self, uid, timeout, interval=2.0, **kwargs):
    return ORIGINAL_WAIT(self, uid, timeout, interval=0.01, **kwargs)


def qwen(**kwargs):
    args = {"model_name": "qwen2.5-instruct", "model_uid": "qwen", "model_engine": "vLLM", "model_format": "pytorch",
            "model_size_in_billions": 7, "quantization": "none", "n_gpu": "2"}
    args.update(kwargs)
    return args


def assert_no_secret(fake, result):
    text = json.dumps(result.result, default=str)
    assert fake.password not in text
    assert fake.api_key not in text
    for token in fake.tokens:
        assert token not in text
    assert "eyJ" not in text


# -- launch and idempotence -------------------------------------------------------------------------

def test_launch_then_unchanged(run_module, fake):
    first = run_module(**qwen())
    assert not first.failed, first.result["msg"] if first.failed else ""
    assert first.result["changed"] is True
    assert first.result["actions"] == ["launched qwen"]
    sent = [r for r in fake.requests if r[:2] == ("POST", "/v1/models")][0][2]
    assert sent["model_size_in_billions"] == 7 and "size_in_billions" not in sent
    assert sent["n_gpu"] == 2 and sent["model_engine"] == "vLLM" and sent["model_uid"] == "qwen"
    assert first.result["placement"] == {"asked": 2, "gpu_idx": None, "reported": [0, 1], "verified": True}
    assert all(r[3] for r in fake.requests if r[1].startswith("/v1/models"))   # Bearer on every model call
    assert_no_secret(fake, first)

    before = len(fake.mutations())
    second = run_module(**qwen())
    assert not second.failed and second.result["changed"] is False
    assert len(fake.mutations()) == before


def test_envs_carry_the_nccl_recommendation(run_module, fake, fake_gpu_host):
    host = fake_gpu_host("pcie-4-acs")
    health = run_health(sysfs_root=host.sysfs_root, procfs_root=host.procfs_root, kernel_log=host.kernel_log)
    result = run_module(**qwen(gpu_idx=[2, 3], gpu_health=health, envs={"HF_TOKEN": "hf_secret", "NCCL_DEBUG": "WARN"},
                               engine_kwargs={"disable_custom_all_reduce": True, "gpu_memory_utilization": 0.9},
                               container_shm_bytes=health["recommendation"]["container_shm_bytes"]))
    assert not result.failed, result.result.get("msg")
    sent = [r for r in fake.requests if r[:2] == ("POST", "/v1/models")][0][2]
    assert sent["envs"] == {"NCCL_P2P_DISABLE": "1", "HF_TOKEN": "hf_secret", "NCCL_DEBUG": "WARN"}
    assert sent["gpu_idx"] == [2, 3] and sent["disable_custom_all_reduce"] is True
    assert sent["gpu_memory_utilization"] == 0.9
    assert result.result["launch"]["envs"]["HF_TOKEN"] == "********"
    assert result.result["preflight"]["envs_from_gpu_health"] == {"NCCL_P2P_DISABLE": "1"}
    assert result.result["placement"]["reported"] == [2, 3]


def test_preflight_refusal_makes_no_request(run_module, fake, fake_gpu_host):
    host = fake_gpu_host("pcie-4-acs")
    health = run_health(sysfs_root=host.sysfs_root, procfs_root=host.procfs_root, kernel_log=host.kernel_log)
    result = run_module(**qwen(gpu_idx=[2, 3], gpu_health=health, apply_nccl_env=False,
                               engine_kwargs={"disable_custom_all_reduce": True}))
    assert result.failed
    assert "preflight refused launching qwen" in result.result["msg"]
    assert "NCCL_P2P_DISABLE" in result.result["msg"]
    assert fake.requests == []


def test_warning_for_high_gpu_memory_utilization(run_module, fake):
    result = run_module(**qwen(engine_kwargs={"gpu_memory_utilization": 0.95}))
    assert not result.failed
    assert any("0.95 is above 0.92" in w for w in result.result["preflight"]["warnings"])


# -- drift ----------------------------------------------------------------------------------------

def test_drift_refused_without_recreate_then_relaunched_with_it(run_module, fake):
    assert run_module(**qwen()).result["changed"] is True
    mutations = len(fake.mutations())
    refused = run_module(**qwen(n_gpu="4"))
    assert refused.failed
    assert "runs with other parameters" in refused.result["msg"]
    assert "gpus_per_replica running 2, desired 4" in refused.result["msg"]
    assert "recreate: true" in refused.result["msg"]
    assert len(fake.mutations()) == mutations

    relaunched = run_module(diff=True, **qwen(n_gpu="4", recreate=True))
    assert not relaunched.failed, relaunched.result.get("msg")
    assert relaunched.result["changed"] is True
    methods = [(r[0], r[1]) for r in fake.mutations()[mutations:]]
    assert methods == [("DELETE", "/v1/models/qwen"), ("POST", "/v1/models")]
    assert relaunched.result["diff"]["before"]["gpus_per_replica"] == 2
    assert relaunched.result["diff"]["after"]["gpus_per_replica"] == 4
    assert fake.models["qwen"]["accelerators"] == [0, 1, 2, 3]


def test_drift_in_quantization(run_module, fake):
    run_module(**qwen())
    refused = run_module(**qwen(quantization="Int4", model_format="awq"))
    assert refused.failed
    assert "quantization running none, desired Int4" in refused.result["msg"]
    assert "model_format running pytorch, desired awq" in refused.result["msg"]


# -- absent ---------------------------------------------------------------------------------------

def test_absent_terminates_and_is_idempotent(run_module, fake):
    run_module(**qwen())
    gone = run_module(state="absent", model_name="qwen2.5-instruct", model_uid="qwen", diff=True)
    assert not gone.failed and gone.result["changed"] is True
    assert "qwen" not in fake.models
    assert gone.result["diff"]["before"]["model_uid"] == "qwen" and gone.result["diff"]["after"] == {}
    again = run_module(state="absent", model_name="qwen2.5-instruct", model_uid="qwen")
    assert not again.failed and again.result["changed"] is False


# -- check mode and diff ---------------------------------------------------------------------------

def test_check_mode_launch_changes_nothing(run_module, fake):
    result = run_module(check_mode=True, diff=True, **qwen())
    assert not result.failed and result.result["changed"] is True
    assert result.result["actions"] == ["launched qwen"]
    assert fake.mutations() == []
    assert fake.models == {}
    diff = result.result["diff"]
    assert diff["before"] == {}
    assert diff["after"]["model_name"] == "qwen2.5-instruct" and diff["after"]["gpus_per_replica"] == 2
    assert diff["after"]["launch"]["n_gpu"] == 2


def test_check_mode_recreate_and_absent_change_nothing(run_module, fake):
    run_module(**qwen())
    mutations = len(fake.mutations())
    relaunch = run_module(check_mode=True, diff=True, **qwen(n_gpu="4", recreate=True))
    assert relaunch.result["changed"] is True and relaunch.result["differences"]["gpus_per_replica"] == {
        "running": 2, "desired": 4}
    absent = run_module(check_mode=True, state="absent", model_name="qwen2.5-instruct", model_uid="qwen")
    assert absent.result["changed"] is True and absent.result["actions"] == ["terminated qwen"]
    assert len(fake.mutations()) == mutations
    assert fake.models["qwen"]["accelerators"] == [0, 1]


# -- registration ----------------------------------------------------------------------------------

def embedding(**kwargs):
    args = {"model_name": "my-minilm", "model_type": "embedding",
            "registration": {"model_uri": "/models/all-MiniLM-L6-v2", "dimensions": 384, "max_tokens": 256}}
    args.update(kwargs)
    return args


def test_registration_and_launch_idempotent(run_module, fake):
    first = run_module(**embedding())
    assert not first.failed, first.result.get("msg")
    assert first.result["actions"] == ["registered embedding my-minilm", "launched my-minilm"]
    posted = [r for r in fake.requests if r[:2] == ("POST", "/v1/model_registrations/embedding")][0][2]
    assert posted["persist"] is True and isinstance(posted["model"], str)
    spec = json.loads(posted["model"])
    assert spec["model_specs"][0]["model_uri"] == "file:///models/all-MiniLM-L6-v2"
    assert spec["dimensions"] == 384 and spec["version"] == 2
    sent = [r for r in fake.requests if r[:2] == ("POST", "/v1/models")][0][2]
    assert "n_gpu" not in sent and sent["model_type"] == "embedding"

    mutations = len(fake.mutations())
    second = run_module(**embedding())
    assert not second.failed and second.result["changed"] is False
    assert len(fake.mutations()) == mutations


def test_state_registered_only_registers_and_updates_on_change(run_module, fake):
    first = run_module(state="registered", **embedding())
    assert first.result["changed"] is True and fake.models == {}
    assert run_module(state="registered", **embedding()).result["changed"] is False
    changed = embedding()
    changed["registration"]["dimensions"] = 768
    updated = run_module(state="registered", **changed)
    assert updated.result["changed"] is True
    assert "dimensions" in updated.result["registration"]["differences"]
    assert fake.registrations[("embedding", "my-minilm")]["dimensions"] == 768


def test_registration_check_mode(run_module, fake):
    result = run_module(check_mode=True, state="registered", **embedding())
    assert result.result["changed"] is True and fake.registrations == {} and fake.mutations() == []


# -- faults ----------------------------------------------------------------------------------------

def test_wrong_password_is_a_clear_401(run_module, fake):
    result = run_module(password="wrong-password-123", **qwen())
    assert result.failed
    assert "POST /token answered HTTP 401" in result.result["msg"]
    assert "check the credentials" in result.result["msg"]
    assert "wrong-password-123" not in json.dumps(result.result)


def test_bad_api_key_is_a_clear_401(run_module, fake):
    result = run_module(username=None, password=None, api_key="xf-WRONGKEY98765", **qwen())
    assert result.failed
    assert "GET /v1/cluster/devices answered HTTP 401 (Could not validate credentials)" in result.result["msg"]
    assert "xf-WRONGKEY98765" not in json.dumps(result.result)


def test_api_key_cannot_launch_on_4x(run_module, fake):
    result = run_module(username=None, password=None, api_key=fake.api_key, **qwen())
    assert result.failed
    msg = result.result["msg"]
    assert "POST /v1/models?wait_ready=false answered HTTP 403" in msg
    assert "API keys (xf-...) may only list and call models" in msg and "username/password" in msg
    assert_no_secret(fake, result)


def test_5xx_names_path_and_status_without_token(run_module, fake):
    fake.force_status = 500
    result = run_module(username=None, password=None, api_key=fake.api_key, **qwen())
    assert result.failed
    msg = result.result["msg"]
    assert "GET /v1/cluster/devices answered HTTP 500" in msg and "check its log" in msg
    assert_no_secret(fake, result)
    assert "Traceback" not in msg


def test_5xx_on_launch(run_module, fake):
    fake.fail_next["POST /v1/models"] = (503, {"detail": "No available slot found for the model"})
    result = run_module(**qwen())
    assert result.failed
    assert "POST /v1/models?wait_ready=false answered HTTP 503 (No available slot found for the model)" in \
        result.result["msg"]
    assert_no_secret(fake, result)


def test_connection_refused(run_module, fake):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_module(url="http://127.0.0.1:%d" % port, **qwen())
    assert result.failed
    msg = result.result["msg"]
    assert "POST /token got no answer" in msg and "refused" in msg.lower()
    assert "check that Xinference is running" in msg
    assert fake.password not in msg


def test_launch_error_reported(run_module, fake):
    fake.launch_error = "CUDA out of memory"
    result = run_module(**qwen())
    assert result.failed
    assert "reports model qwen as ERROR: CUDA out of memory" in result.result["msg"]


def test_landed_on_fewer_gpus_fails(run_module, fake):
    fake.landing["qwen"] = [0]
    result = run_module(**qwen())
    assert result.failed
    assert "landed on 1 GPU ([0]) while 2 were asked for" in result.result["msg"]


def test_landed_on_other_gpus_than_gpu_idx_fails(run_module, fake):
    fake.landing["qwen"] = [0, 1]
    result = run_module(**qwen(gpu_idx=[2, 3]))
    assert result.failed
    assert "runs on GPUs [0, 1] while gpu_idx asked for [2, 3]" in result.result["msg"]


def test_auth_off_needs_no_credentials(run_module, fake):
    fake.auth = False
    result = run_module(username=None, password=None, **qwen())
    assert not result.failed and result.result["changed"] is True


# -- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, expected", [
    ({"model_type": "chat"}, "model_type"),
    ({"n_gpu": "0"}, "n_gpu 0"),
    ({"n_gpu": "-1"}, "n_gpu -1"),
    ({"gpu_idx": [1, 1], "n_gpu": None}, "more than once"),
    ({"gpu_idx": [-1], "n_gpu": None}, "negative"),
    ({"replica": 0}, "replica 0"),
    ({"engine_kwargs": {"gpu_memory_utilization": 1.2}}, "gpu_memory_utilization 1.2"),
    ({"engine_kwargs": {"gpu_memory_utilization": 0}}, "gpu_memory_utilization 0"),
    ({"engine_kwargs": {"n_gpu": 2}}, "engine_kwargs may not set n_gpu"),
])
def test_bad_input_stops_before_any_request(run_module, fake, change, expected):
    result = run_module(**qwen(**change))
    assert result.failed
    assert expected in result.result["msg"]
    assert fake.requests == []


def test_redact():
    text = "Authorization: Bearer eyJa.eyJb.c and xf-abcdef123 and password=hunter2 {\"access_token\": \"abc\"}"
    clean = redact(text, ("hunter2",))
    assert "eyJ" not in clean and "xf-abcdef123" not in clean and "hunter2" not in clean and "abc\"" not in clean


# -- incident 2 without facts, waiting ------------------------------------------------------------

def test_incident_2_from_the_server_gpu_count(run_module, fake):
    result = run_module(**qwen(n_gpu=None))
    assert result.failed
    msg = result.result["msg"]
    assert "Xinference reports 4 GPUs, GET /v1/cluster/devices" in msg
    assert "n_gpu omitted on a host with 4 GPUs" in msg and "single_gpu: true" in msg
    assert fake.mutations() == []
    on_purpose = run_module(**qwen(n_gpu=None, single_gpu=True))
    assert not on_purpose.failed, on_purpose.result.get("msg")
    sent = [r for r in fake.requests if r[:2] == ("POST", "/v1/models")][0][2]
    assert sent["n_gpu"] == 1


def test_n_gpu_above_server_gpus(run_module, fake):
    result = run_module(**qwen(n_gpu="8"))
    assert result.failed and "needs 8 GPUs" in result.result["msg"] and "the container sees 4" in result.result["msg"]
    assert fake.mutations() == []


def test_wait_timeout_is_clear(run_module, fake):
    fake.ready_after = 10 ** 6
    result = run_module(timeout=0, **qwen())
    assert result.failed
    assert "model qwen not ready after 0s (last status CREATING)" in result.result["msg"]
    assert "raise timeout" in result.result["msg"]


def test_running_model_still_loading_is_waited_for(run_module, fake):
    fake.ready_after = 3
    fake.launch_direct({"model_uid": "qwen", "model_name": "qwen2.5-instruct", "model_type": "LLM",
                        "model_engine": "vLLM", "model_format": "pytorch", "model_size_in_billions": 7,
                        "quantization": "none", "n_gpu": 2, "replica": 1})
    fake.models["qwen"]["polls"] = 0
    result = run_module(**qwen())
    assert not result.failed, result.result.get("msg")
    assert result.result["changed"] is False and fake.mutations() == []


def test_replicas_with_gpu_idx(run_module, fake):
    result = run_module(**qwen(n_gpu=None, gpu_idx=[0, 1, 2, 3], replica=2))
    assert not result.failed, result.result.get("msg")
    assert result.result["placement"] == {"asked": 4, "gpu_idx": [0, 1, 2, 3], "reported": [0, 1, 2, 3],
                                          "verified": True}
    assert run_module(**qwen(n_gpu=None, gpu_idx=[0, 1, 2, 3], replica=2)).result["changed"] is False


def test_embedding_on_a_cpu_only_xinference(run_module, fake):
    fake.gpus = 0
    result = run_module(**embedding())
    assert not result.failed, result.result.get("msg")
    assert result.result["placement"]["reported"] == [] and result.result["placement"]["verified"] is True
    assert "the CPU" in result.result["placement"]["note"]


def test_registration_virtualenv_filled_with_defaults_is_no_difference(run_module, fake):
    args = embedding()
    args["registration"]["spec"] = {"virtualenv": {"packages": ["einops==0.8.1"]}}
    assert run_module(state="registered", **args).result["changed"] is True
    # Xinference answers with every field of its VirtualEnvSettings, the defaults included.
    stored = fake.registrations[("embedding", "my-minilm")]
    assert stored["virtualenv"] == {"packages": ["einops==0.8.1"]}
    stored["virtualenv"].update(inherit_pip_config=True, index_url=None, extra_index_url=None, find_links=None,
                                trusted_host=None, no_build_isolation=None)
    mutations = len(fake.mutations())
    assert run_module(state="registered", **args).result["changed"] is False
    assert len(fake.mutations()) == mutations
    # Another package list is a difference.
    args["registration"]["spec"] = {"virtualenv": {"packages": ["einops==0.8.0"]}}
    updated = run_module(state="registered", **args)
    assert updated.result["changed"] is True
    assert "virtualenv" in updated.result["registration"]["differences"]
