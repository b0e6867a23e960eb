"""plugins/module_utils/secrets.py: what looks secret is masked, drift information is kept."""

import json

import pytest

from ansible_collections.inferops.gpu.plugins.module_utils import secrets
from ansible_collections.inferops.gpu.plugins.module_utils.secrets import MASK, is_secret_name, mask_text, masked

CANARY = "canary-Zq8Xv1"


@pytest.mark.parametrize("name", [
    "HF_TOKEN", "XOSCAR_AUTH_KEY", "xinference_admin_password", "xinference_cluster_auth_key", "api_key",
    "xinference_registry_password", "AWS_SECRET_ACCESS_KEY", "apiKey", "authToken", "credentials", "passwd",
    "Authorization", "db.password", "MY-SECRET", "xinference_api_key", "vault_xinference_cluster_auth_key",
])
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", [
    "xinference_api_key_path", "xinference_auth_enabled", "xinference_auth_method", "api_key_name", "key_url",
    "xinference_cluster_auth_key_path", "monkey", "author", "keyboard", "PIP_INDEX_URL", "image", "NCCL_P2P_DISABLE",
    "xinference_cluster_auth_required", "signed_by_keyring", "key_fingerprint", "", "HF_ENDPOINT", "tokenizer",
])
def test_not_secret_names(name):
    assert not is_secret_name(name)


def test_masked_keeps_structure_and_non_secret_information():
    data = {
        "xinference_admin_password": CANARY,
        "xinference_api_key_path": "/etc/inferops/xinference-api-key",
        "xinference_auth_enabled": True,
        "nested": {"credentials": {"user": "u", "pass": CANARY, "n": 3}, "port": 9997},
        "env": {"HF_TOKEN": CANARY, "NCCL_P2P_DISABLE": "1", "XINFERENCE_HOME": "/data"},
        "list": ["XOSCAR_AUTH_KEY=" + CANARY, "PIP_INDEX_URL=https://bob:" + CANARY + "@index.example/simple",
                 "NCCL_DEBUG=INFO"],
        "api_key": None,
        "secret_count": 4,
    }
    out = masked(data)
    assert CANARY not in json.dumps(out)
    assert out["xinference_api_key_path"] == "/etc/inferops/xinference-api-key"
    assert out["xinference_auth_enabled"] is True
    assert out["nested"]["credentials"] == {"user": MASK, "pass": MASK, "n": 3}
    assert out["nested"]["port"] == 9997
    assert out["env"] == {"HF_TOKEN": MASK, "NCCL_P2P_DISABLE": "1", "XINFERENCE_HOME": "/data"}
    assert out["list"] == ["XOSCAR_AUTH_KEY=" + MASK, "PIP_INDEX_URL=https://bob:" + MASK + "@index.example/simple",
                           "NCCL_DEBUG=INFO"]
    assert out["api_key"] is None and out["secret_count"] == 4
    # The input is not changed.
    assert data["env"]["HF_TOKEN"] == CANARY


@pytest.mark.parametrize("text,expected", [
    ('"HF_TOKEN": "%s",' % CANARY, '"HF_TOKEN": "%s",' % MASK),
    ("HF_TOKEN=%s" % CANARY, "HF_TOKEN=%s" % MASK),
    ("  password: my %s phrase" % CANARY, "  password: %s" % MASK),
    ("password = '%s' # comment" % CANARY, "password = '%s' # comment" % MASK),
    ("HF_TOKEN=%s NCCL_DEBUG=INFO" % CANARY, "HF_TOKEN=%s NCCL_DEBUG=INFO" % MASK),
    ("git clone https://user:%s@git.example/x.git" % CANARY, "git clone https://user:%s@git.example/x.git" % MASK),
    ("Authorization: Bearer xf-%s" % CANARY, "Authorization: %s" % MASK),
    ("curl -H 'X-Auth: Bearer xf-%s'" % CANARY, "curl -H 'X-Auth: %s'" % MASK),
    ('{"api_key": "xf-%s", "model": "m"}' % CANARY, '{"api_key": "%s", "model": "m"}' % MASK),
])
def test_mask_text_hides_secret_values(text, expected):
    assert mask_text(text) == expected


@pytest.mark.parametrize("text", [
    '~xinference_api_key_path: /etc/a -> /etc/b',
    '"xinference_auth_enabled": false,',
    "auth_enabled: true",
    "image: xprobe/xinference:v4.1.0 -> xprobe/xinference:v4.1.1",
    "PIP_INDEX_URL=https://index.example/simple",
    "+DefaultLimitMEMLOCK=infinity",
    "key_url: https://download.docker.com/linux/debian/gpg",
    "api_key: ",
    "/etc/inferops/xinference-cluster-auth-key: +1",
])
def test_mask_text_keeps_drift_information(text):
    assert mask_text(text) == text


def test_secret_values_of_env():
    assert secrets.secret_values({"HF_TOKEN": CANARY, "NCCL_P2P_DISABLE": "1", "API_KEY": "", "AUTH": True}) == {CANARY}
