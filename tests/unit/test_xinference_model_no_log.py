"""xinference_model prints no secret of its envs, with Ansible's real output path (exit_json and
fail_json, which censor no_log values and add the invocation shown at -vvv), against the fake
Xinference. Issue 11: an HF_TOKEN in envs was printed in the module's arguments."""

import json
import os
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.inferops.gpu.plugins.module_utils.xinference_api import XinferenceClient
from ansible_collections.inferops.gpu.plugins.modules import xinference_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_xinference import FakeXinference  # noqa: E402  pylint: disable=wrong-import-position

CANARY = "hf_canaryZq8Xv1"


@pytest.fixture
def fake():
    server = FakeXinference(gpus=4).start()
    yield server
    server.stop()


def run(fake, capsys, monkeypatch, **args):
    original = XinferenceClient.wait_ready
    monkeypatch.setattr(XinferenceClient, "wait_ready",
                        lambda self, uid, timeout, interval=2.0, **kw: original(self, uid, timeout, interval=0.01, **kw))
    params = {"url": fake.url, "username": fake.username, "password": fake.password, "model_name": "qwen2.5-instruct",
              "model_uid": "qwen-1", "model_engine": "vLLM", "model_format": "pytorch", "model_size_in_billions": 7,
              "quantization": "none", "n_gpu": "1"}
    params.update(args)
    with patch_module_args(params):
        with pytest.raises(SystemExit):
            xinference_model.main()
    return json.loads(capsys.readouterr().out)


def test_secret_envs_hidden_other_values_kept(fake, capsys, monkeypatch):
    result = run(fake, capsys, monkeypatch, envs={"HF_TOKEN": CANARY, "NCCL_DEBUG": "WARN", "NCCL_P2P_DISABLE": "1"})
    assert not result.get("failed"), result.get("msg")
    sent = [r for r in fake.requests if r[:2] == ("POST", "/v1/models")][0][2]
    assert sent["envs"]["HF_TOKEN"] == CANARY  # the server gets it
    text = json.dumps(result)
    assert CANARY not in text and fake.password not in text
    # The invocation (-vvv) still shows the envs that are not secret, and a "1" elsewhere is not masked.
    assert result["invocation"]["module_args"]["envs"]["NCCL_DEBUG"] == "WARN"
    assert result["invocation"]["module_args"]["envs"]["NCCL_P2P_DISABLE"] == "1"
    assert result["invocation"]["module_args"]["model_uid"] == "qwen-1"
    assert result["actions"] == ["launched qwen-1"]


def test_secret_envs_hidden_when_the_arguments_fail_to_parse(fake, capsys, monkeypatch):
    result = run(fake, capsys, monkeypatch, envs={"MY_SETTING": CANARY}, replica="not a number")
    assert result["failed"] and "replica" in result["msg"]
    assert CANARY not in json.dumps(result)
    assert fake.requests == []


@pytest.mark.parametrize("module", ["xinference_model", "xinference_auth"])
def test_password_in_the_url_hidden(module, capsys):
    """Nothing listens on the port: the failure message names the URL, without its password."""
    from ansible_collections.inferops.gpu.plugins.modules import xinference_auth
    main = {"xinference_model": xinference_model.main, "xinference_auth": xinference_auth.main}[module]
    params = {"url": "http://admin:%s@127.0.0.1:9" % CANARY, "username": "admin", "password": "pw-12345678",
              "request_timeout": 2}
    params.update({"model_name": "m"} if module == "xinference_model" else {"api_key_path": "/nonexistent/key"})
    with patch_module_args(params):
        with pytest.raises(SystemExit):
            main()
    out = capsys.readouterr().out
    result = json.loads(out)
    assert result.get("failed"), result
    assert CANARY not in out and "127.0.0.1:9" in out
