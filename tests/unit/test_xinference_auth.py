"""The xinference_auth module in-process against the fake Xinference's advanced auth (FakeXinferenceAuth)."""

import json
import os
import sqlite3
import stat
import sys

import pytest

from ansible.module_utils import basic

from ansible_collections.inferops.gpu.plugins.module_utils.xinference_api import (
    setup_token_from_db, setup_token_from_log)
from ansible_collections.inferops.gpu.plugins.modules import xinference_auth

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_xinference import FakeXinferenceAuth  # noqa: E402  pylint: disable=wrong-import-position

PASSWORD = "molecule-admin-pw"


@pytest.fixture
def fake():
    server = FakeXinferenceAuth(needs_setup=True).start()
    yield server
    server.stop()


def auth_db(path, token):
    """An auth database as Xinference 4.x leaves it before setup (system_config holds the token)."""
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE system_config (key TEXT PRIMARY KEY, value TEXT)")
    if token:
        conn.execute("INSERT INTO system_config VALUES ('setup_token', ?)", (token,))
    conn.commit()
    conn.close()
    return str(path)


@pytest.fixture
def run_module(module_main, fake, tmp_path):
    db = auth_db(tmp_path / "auth.db", fake.setup_token)

    def run(check_mode=False, diff=False, **args):
        params = {"url": fake.url, "username": "admin", "password": PASSWORD,
                  "api_key_path": str(tmp_path / "api-key"), "auth_db_path": db, "return_api_key": True}
        params.update(args)
        params = dict((key, value) for key, value in params.items() if value is not None)
        params["_ansible_check_mode"] = check_mode
        params["_ansible_diff"] = diff
        return module_main(xinference_auth.main, params)
    return run


def key_file(tmp_path):
    return tmp_path / "api-key"


def mutations(fake):
    return [r[:2] for r in fake.requests if r[0] in ("POST", "DELETE") and r[1] != "/token"]


def assert_no_secret(fake, result):
    """Nothing secret in the result but the key it was asked to return."""
    result = dict(result.result)
    result.pop("api_key", None)
    text = json.dumps(result, default=str)
    assert PASSWORD not in text and fake.setup_token not in text
    assert not any(item["key"] in text for item in fake.keys.values())
    assert "eyJ" not in text


def test_first_run_creates_admin_and_key_then_nothing(run_module, fake, tmp_path):
    first = run_module()
    assert not first.failed, first.result.get("msg")
    assert first.result["changed"] is True
    assert first.result["admin_created"] and first.result["key_created"] and not first.result["key_replaced"]
    assert first.result["setup_token_source"] == "database"
    assert first.result["actions"][:2] == ["created the admin admin", "created the API key inferops-clients"]
    setup = [r for r in fake.requests if r[:2] == ("POST", "/v1/admin/setup")][0][2]
    assert setup == {"username": "admin", "password": PASSWORD, "setup_token": fake.setup_token}
    (kid, created), = fake.keys.items()
    assert created["name"] == "inferops-clients"
    assert key_file(tmp_path).read_text() == created["key"] + "\n"
    assert stat.S_IMODE(os.stat(str(key_file(tmp_path))).st_mode) == 0o600
    assert first.result["api_key"] == created["key"]
    assert_no_secret(fake, first)

    before = len(fake.requests)
    second = run_module()
    assert not second.failed and second.result["changed"] is False
    assert second.result["actions"] == [] and not second.result["key_created"]
    assert second.result["api_key"] == created["key"]
    # A converged endpoint: the setup status and one call with the key, no login, nothing written.
    assert [r[:2] for r in fake.requests[before:]] == [("GET", "/v1/admin/setup/status"), ("GET", "/v1/models")]


def test_lost_key_file_replaces_the_key_of_that_name(run_module, fake, tmp_path):
    run_module()
    old = fake.keys[1]["key"]
    key_file(tmp_path).unlink()
    again = run_module()
    assert not again.failed, again.result.get("msg")
    assert again.result["changed"] and again.result["key_replaced"] and not again.result["admin_created"]
    assert ("DELETE", "/v1/admin/keys/1") in mutations(fake)
    assert [item["name"] for item in fake.keys.values()] == ["inferops-clients"]
    new = list(fake.keys.values())[0]["key"]
    assert new != old and key_file(tmp_path).read_text() == new + "\n"
    assert_no_secret(fake, again)


def test_refused_key_in_the_file_is_replaced(run_module, fake, tmp_path):
    run_module()
    key_file(tmp_path).write_text("xf-revokedkey\n")
    again = run_module()
    assert again.result["changed"] and again.result["key_replaced"]
    assert key_file(tmp_path).read_text() == list(fake.keys.values())[0]["key"] + "\n"


def test_wrong_password_fails_clearly_without_the_password(run_module, fake, tmp_path):
    run_module()
    key_file(tmp_path).unlink()
    result = run_module(password="not-the-password")
    assert result.failed
    assert "POST /token" in result.result["msg"] and "username/password were refused" in result.result["msg"]
    assert "not-the-password" not in json.dumps(result.result)
    assert not key_file(tmp_path).exists()


def test_check_mode_first_run_reports_and_changes_nothing(run_module, fake, tmp_path):
    result = run_module(check_mode=True, diff=True)
    assert not result.failed, result.result.get("msg")
    assert result.result["changed"] is True
    assert result.result["actions"] == ["created the admin admin", "created the API key inferops-clients",
                                        "wrote %s" % key_file(tmp_path)]
    assert result.result["diff"] == {"before": {"admin": "absent", "key_file": "absent"},
                                     "after": {"admin": "present", "key_file": "working"}}
    assert result.result["api_key"] == ""
    assert mutations(fake) == [] and fake.needs_setup and not key_file(tmp_path).exists()


def test_check_mode_converged_is_unchanged(run_module, fake, tmp_path):
    run_module()
    result = run_module(check_mode=True, diff=True)
    assert result.result["changed"] is False
    assert result.result["diff"]["before"] == result.result["diff"]["after"]


def test_key_file_mode_is_put_back(run_module, fake, tmp_path):
    run_module()
    os.chmod(str(key_file(tmp_path)), 0o644)
    checked = run_module(check_mode=True)
    assert checked.result["changed"] and checked.result["actions"] == ["wrote %s (mode)" % key_file(tmp_path)]
    fixed = run_module()
    assert fixed.result["changed"] and not fixed.result["key_created"]
    assert stat.S_IMODE(os.stat(str(key_file(tmp_path))).st_mode) == 0o600


def test_setup_token_from_the_container_log_when_the_database_has_none(run_module, fake, tmp_path, monkeypatch):
    calls = []

    def run_command(self, args, **kwargs):
        calls.append(args[1])
        if args[1] == "exec":
            return 1, "", "Error: No such container"
        return 0, "", "Auth is enabled\n  Setup token: %s\n" % fake.setup_token

    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: "/usr/bin/docker")
    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    result = run_module(auth_db_path=str(tmp_path / "absent.db"), container="xinference")
    assert not result.failed, result.result.get("msg")
    assert result.result["setup_token_source"] == "container log" and calls == ["exec", "logs"]
    assert not fake.needs_setup


def test_no_setup_token_anywhere_fails_with_where_to_look(run_module, fake, tmp_path):
    result = run_module(auth_db_path=auth_db(tmp_path / "empty.db", None))
    assert result.failed and fake.needs_setup
    assert "setup token was refused or missing (none was found)" in result.result["msg"]


def test_auth_off_is_named(module_main, tmp_path):
    from fake_xinference import FakeXinference
    with FakeXinference(auth=False) as plain:
        result = module_main(xinference_auth.main, {
            "url": plain.url, "username": "admin", "password": PASSWORD, "api_key_path": str(tmp_path / "k")})
    assert result.failed and "authentication is off" in result.result["msg"]


def test_legacy_key_is_only_written(run_module, fake, tmp_path):
    first = run_module(api_key="sk-legacy12345")
    assert first.result["changed"] and key_file(tmp_path).read_text() == "sk-legacy12345\n"
    second = run_module(api_key="sk-legacy12345", diff=True)
    assert second.result["changed"] is False and second.result["diff"]["before"] == {"key_file": "as given"}
    assert fake.requests == []


def test_setup_token_readers(tmp_path):
    assert setup_token_from_db(auth_db(tmp_path / "a.db", "tok-1")) == "tok-1"
    assert setup_token_from_db(auth_db(tmp_path / "b.db", None)) is None
    assert setup_token_from_db(str(tmp_path / "missing.db")) is None
    assert setup_token_from_log("x\nSetup token: old\n...\n  setup token:  new  \n") == "new"
    assert setup_token_from_log("no token here") is None
