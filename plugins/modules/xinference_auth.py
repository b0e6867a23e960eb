#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: xinference_auth
short_description: First-run admin and the clients' API key of an Xinference endpoint, kept in a 0600 file
version_added: 0.2.0
description:
  - Bootstraps Xinference 3.0+ advanced authentication on the host that runs the endpoint, and keeps the
    clients' API key in O(api_key_path) (mode C(0600), owner root when run as root).
  - On a first start (C(GET /v1/admin/setup/status) says C(needs_setup)), creates the admin O(username) with
    the one-time setup token. The token is read from the instance's auth database on the host
    (O(auth_db_path), the C(XINFERENCE_HOME) volume), else from the database inside O(container)
    (C(docker exec), which follows the container's C(XINFERENCE_HOME) and C(XINFERENCE_AUTH_DB_PATH)),
    else from the last C(Setup token:) line of the container's log (C(docker logs)).
  - A key in O(api_key_path) that still opens the API (C(GET /v1/models) answers 200) is kept; nothing is
    sent then, so a converged endpoint costs two requests (setup status, the key check).
  - Otherwise the module logs in as O(username) (C(POST /token)) and creates the key O(api_key_name).
    Xinference shows a key only once, so a key of that name whose file was lost or refused is deleted and
    created again.
  - With O(api_key) (Xinference 1.x/2.x, where the C(--auth-config) file fixes the key), the module only
    writes that key to O(api_key_path) and sends nothing.
  - Passwords, tokens and keys never appear in the output, and error bodies are sanitised. The key is
    returned only with O(return_api_key=true); the task must then be C(no_log).
author:
  - inferops.gpu maintainers (@inferops)
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Only reads (setup status, the key file, whether the key opens the API); reports what it would do.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The diff shows whether the admin and a working key file exist, before and after; never a secret.
options:
  url:
    description:
      - Xinference REST endpoint (the supervisor's in a cluster).
      - A password in it (C(https://user:password@host)) never appears in the module's output.
    type: str
    required: true
  username:
    description: The admin created at first-run setup, used to log in for key management.
    type: str
    required: true
  password:
    description: The admin's password.
    type: str
    required: true
  api_key_name:
    description: Name of the clients' API key in Xinference.
    type: str
    default: inferops-clients
  api_key_description:
    description: Description given to a key the module creates.
    type: str
    default: clients of this endpoint (inferops.gpu.xinference)
  api_key_path:
    description: File on the host that holds the clients' API key (written C(0600)).
    type: path
    required: true
  api_key:
    description:
      - A key fixed by the server's configuration (Xinference 1.x/2.x C(--auth-config)). When set, the module
        writes it to O(api_key_path) and sends no request.
    type: str
  auth_db_path:
    description:
      - The instance's auth database as seen from the host, normally C(<XINFERENCE_HOME volume>/auth/auth.db).
        Read (read-only) only for the first-run setup token.
    type: path
  container:
    description:
      - Name of the Xinference container, for the setup token fallbacks (C(docker exec), then C(docker logs)).
        Needs the C(docker) command on the host; without it or this option only O(auth_db_path) is read.
    type: str
  return_api_key:
    description: Return the key as RV(api_key), for a later export. The task must be C(no_log) then.
    type: bool
    default: false
  validate_certs:
    description: Verify the endpoint's TLS certificate.
    type: bool
    default: true
  request_timeout:
    description: Seconds one request may take.
    type: int
    default: 60
notes:
  - Runs on the host of the endpoint (O(auth_db_path) and O(container) are local to it); O(url) may be any
    address of the endpoint that host reaches.
"""

EXAMPLES = r"""
- name: Xinference admin and the clients' API key
  inferops.gpu.xinference_auth:
    url: http://127.0.0.1:9997
    username: admin
    password: "{{ vault_xinference_admin_password }}"
    api_key_path: /etc/inferops/xinference-api-key
    auth_db_path: /var/lib/xinference/auth/auth.db
    container: xinference
    return_api_key: true
  register: xinference_auth
  no_log: true

- name: Xinference 1.x, the key of the --auth-config file kept on the host
  inferops.gpu.xinference_auth:
    url: http://127.0.0.1:9997
    username: admin
    password: "{{ vault_xinference_admin_password }}"
    api_key: "{{ vault_xinference_legacy_key }}"
    api_key_path: /etc/inferops/xinference-api-key
  no_log: true
"""

RETURN = r"""
actions:
  description: What was done (or would be done in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [created the admin admin, created the API key inferops-clients, wrote /etc/inferops/xinference-api-key]
admin_created:
  description: Whether the first-run setup created the admin (would, in check mode).
  returned: always
  type: bool
key_created:
  description: Whether a new API key was created (would, in check mode), replacing a lost one of that name or not.
  returned: always
  type: bool
key_replaced:
  description: Whether a key of O(api_key_name) whose file was lost or refused was deleted first.
  returned: always
  type: bool
setup_token_source:
  description: Where the setup token was found at first-run setup; null when no setup ran.
  returned: always
  type: str
  sample: database
api_key_path:
  description: The key file.
  returned: always
  type: str
api_key:
  description:
    - The clients' API key; only with O(return_api_key=true).
    - Empty in check mode when it would be created, and with O(api_key) (the caller has that key already).
  returned: when O(return_api_key=true)
  type: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_text

from ansible_collections.inferops.gpu.plugins.module_utils.secrets import hide_url_password
from ansible_collections.inferops.gpu.plugins.module_utils.xinference_api import (
    XinferenceClient, XinferenceError, redact, setup_token_from_db, setup_token_from_log)

# Same read as from the host, inside the container: follows its own XINFERENCE_HOME/XINFERENCE_AUTH_DB_PATH.
_EXEC_READ = """
import os, sqlite3
home = os.environ.get("XINFERENCE_HOME") or os.path.join(os.environ.get("HOME") or "/root", ".xinference")
path = os.environ.get("XINFERENCE_AUTH_DB_PATH") or os.path.join(home, "auth", "auth.db")
row = sqlite3.connect("file:%s?mode=ro" % path, uri=True).execute(
    "SELECT value FROM system_config WHERE key = 'setup_token'").fetchone()
print(row[0] if row else "")
"""


class AuthBootstrap(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check = module.check_mode
        self.client = XinferenceClient(self.params["url"], username=self.params["username"],
                                       password=self.params["password"],
                                       validate_certs=self.params["validate_certs"],
                                       request_timeout=self.params["request_timeout"])
        self.actions = []
        self.changed = False
        self.result = {"admin_created": False, "key_created": False, "key_replaced": False,
                       "setup_token_source": None, "api_key_path": self.params["api_key_path"]}

    def secrets(self):
        return (self.params["password"], self.params["api_key"])

    def did(self, action):
        self.actions.append(action)
        self.changed = True

    # -- the key file --------------------------------------------------------------------------

    def read_key(self):
        path = self.params["api_key_path"]
        try:
            with open(path, "rb") as handle:
                return to_text(handle.read()).strip() or None
        except (IOError, OSError):
            return None

    def file_needs(self, key):
        """What the key file lacks for `key`: content, mode or owner (empty when it is right)."""
        path = self.params["api_key_path"]
        try:
            stat = os.stat(path)
            with open(path, "rb") as handle:
                content = handle.read()
        except (IOError, OSError):
            return ["content"]
        needs = []
        if content != to_bytes(key + "\n"):
            needs.append("content")
        if stat.st_mode & 0o7777 != 0o600:
            needs.append("mode")
        if os.geteuid() == 0 and (stat.st_uid, stat.st_gid) != (0, 0):
            needs.append("owner")
        return needs

    def write_key(self, key):
        needs = self.file_needs(key)
        if not needs:
            return
        path = self.params["api_key_path"]
        self.did("wrote %s (%s)" % (path, ", ".join(needs)))
        if self.check:
            return
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            self.module.fail_json(msg="the directory of api_key_path (%s) does not exist: create it first" % directory,
                                  **self.result)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".xinference-api-key.")  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(to_bytes(key + "\n"))
            if os.geteuid() == 0:
                os.chown(tmp, 0, 0)
            os.chmod(tmp, 0o600)
            os.rename(tmp, path)
        except (IOError, OSError) as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            self.module.fail_json(msg="writing the API key to %s failed: %s" % (path, exc), **self.result)

    # -- the setup token -----------------------------------------------------------------------

    def setup_token(self):
        """(token, where it came from); (None, None) when no source had one."""
        db_path = self.params["auth_db_path"]
        if db_path and os.path.exists(db_path):
            token = setup_token_from_db(db_path)
            if token:
                return token, "database"
        container = self.params["container"]
        docker = self.module.get_bin_path("docker") if container else None
        if docker:
            rc, out, err = self.module.run_command([docker, "exec", container, "python3", "-c", _EXEC_READ])
            if rc == 0 and out.strip():
                return out.strip(), "container database"
            rc, out, err = self.module.run_command([docker, "logs", container])
            token = setup_token_from_log((out or "") + (err or ""))
            if token:
                return token, "container log"
        return None, None

    # -- run -----------------------------------------------------------------------------------

    def run(self):
        if self.params["api_key"]:
            # 1.x/2.x: the --auth-config file fixes the key; only the file on the host is ours.
            before = {"key_file": "different" if self.file_needs(self.params["api_key"]) else "as given"}
            self.write_key(self.params["api_key"])
            self.finish(None, before)
            return
        status = self.client.setup_status()
        if status is None:
            self.module.fail_json(
                msg="Xinference at %s has no /v1/admin/setup/status (404): its advanced authentication is off "
                    "(XINFERENCE_AUTH_ADVANCED) or it predates 3.0; turn authentication on in the server's "
                    "environment, or use the --auth-config key (api_key) for 1.x/2.x" % self.client.url,
                **self.result)
        needs_setup = bool(status.get("needs_setup"))
        before = {"admin": "absent" if needs_setup else "present"}
        if needs_setup:
            self.result["admin_created"] = True
            token, source = self.setup_token()
            self.result["setup_token_source"] = source
            self.did("created the admin %s" % self.params["username"])
            if not self.check:
                self.client.setup_admin(self.params["username"], self.params["password"], token)

        key = self.read_key()
        # A fresh admin has no keys yet; an old file cannot open a fresh instance, so it is not asked.
        valid = bool(key) and not (needs_setup and self.check) and self.client.key_opens_api(key)
        before["key_file"] = "working" if valid else ("refused" if key else "absent")
        if not valid:
            key = self.create_key()
        self.write_key(key or "")
        self.finish(key, before)

    def create_key(self):
        name = self.params["api_key_name"]
        self.result["key_created"] = True
        if self.check:
            self.did("created the API key %s" % name)
            return None
        self.client.login()
        key = self.client.create_api_key(name, self.params["api_key_description"])
        if key is None:
            # Shown only once: a key of that name whose file was lost is replaced.
            for item in self.client.api_keys():
                if item.get("name") == name and item.get("id") is not None:
                    self.client.delete_api_key(item["id"])
            self.result["key_replaced"] = True
            self.did("deleted the API key %s (its file was lost or refused)" % name)
            key = self.client.create_api_key(name, self.params["api_key_description"])
            if key is None:
                self.module.fail_json(msg="Xinference at %s still has an API key named %s after deleting it: "
                                          "delete it by hand (DELETE /v1/admin/keys/<id>) or choose another "
                                          "api_key_name" % (self.client.url, name), **self.result)
        self.did("created the API key %s" % name)
        return key

    def finish(self, key, before):
        if self.check and self.result["key_created"]:
            # write_key("") cannot predict the file: say what would happen instead.
            self.actions = [a for a in self.actions if not a.startswith("wrote ")]
            self.actions.append("wrote %s" % self.params["api_key_path"])
        result = dict(self.result, changed=self.changed, actions=self.actions)
        if self.module._diff and before is not None:
            after = {"admin": "present", "key_file": "working"} if "admin" in before else {"key_file": "as given"}
            result["diff"] = {"before": before, "after": after if self.changed else before}
        if self.params["return_api_key"]:
            # Not the given api_key: Ansible masks a no_log parameter's value in every result anyway.
            result["api_key"] = key or ""
        self.module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "username": {"type": "str", "required": True},
            "password": {"type": "str", "required": True, "no_log": True},
            "api_key_name": {"type": "str", "default": "inferops-clients", "no_log": False},
            "api_key_description": {"type": "str", "default": "clients of this endpoint (inferops.gpu.xinference)",
                                    "no_log": False},
            "api_key_path": {"type": "path", "required": True, "no_log": False},
            "api_key": {"type": "str", "no_log": True},
            "auth_db_path": {"type": "path"},
            "container": {"type": "str"},
            "return_api_key": {"type": "bool", "default": False, "no_log": False},
            "validate_certs": {"type": "bool", "default": True},
            "request_timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    # A password in the URL (scheme://user:password@host) is hidden like the password option.
    hide_url_password(module)
    bootstrap = AuthBootstrap(module)
    try:
        bootstrap.run()
    except XinferenceError as exc:
        module.fail_json(msg=redact(str(exc), bootstrap.secrets()), **bootstrap.result)


if __name__ == "__main__":
    main()
