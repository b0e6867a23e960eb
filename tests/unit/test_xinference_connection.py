"""The connection options every Xinference module shares (CONNECTION_SPEC in module_utils/xinference_api,
the inferops.gpu.xinference_connection doc fragment): a password in the URL is one of each module's
no_log values, so Ansible masks it wherever the result or the error shows the URL."""

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.testing import patch_module_args

from ansible_collections.inferops.gpu.plugins.modules import xinference_auth, xinference_drain, xinference_model

SECRET = "url-secret-7f3a"
URL = "http://admin:%s@127.0.0.1:9/" % SECRET  # the discard port: refused at once

CASES = {
    "xinference_model": (xinference_model.main, {"model_name": "m", "model_type": "embedding"}),
    "xinference_drain": (xinference_drain.main, {}),
    "xinference_auth": (xinference_auth.main, {"username": "admin", "password": "pw-0b1c", "api_key_path": "/nonexistent/key"}),
}


class Stopped(Exception):
    pass


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_password_in_the_url_is_hidden(name, monkeypatch):
    main, params = CASES[name]
    seen = {}

    def stop(self, msg=None, **result):
        seen.update(no_log=set(self.no_log_values), shown=dict(result, msg=msg))
        raise Stopped()

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", stop)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", stop)
    with patch_module_args(dict(params, url=URL, request_timeout=2)):
        with pytest.raises(Stopped):
            main()
    assert SECRET in seen["no_log"], name
    assert SECRET not in repr(remove_values(seen["shown"], seen["no_log"])), name
