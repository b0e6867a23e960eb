# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The connection options of the modules that talk to Xinference's REST API; their spec is
    CONNECTION_SPEC in module_utils/xinference_api.py. Each module documents its own request_timeout."""

    DOCUMENTATION = r'''
options:
  url:
    description:
      - Xinference REST endpoint (the supervisor's in a cluster).
      - A password in it (C(https://user:password@host)) never appears in the module's output.
    type: str
    default: http://127.0.0.1:9997
  api_key:
    description:
      - Bearer API key. Xinference 4.x keys (C(xf-...)) may only list and call models, so launching,
        terminating, registering and moving replicas on 4.x need O(username) and O(password).
    type: str
  username:
    description: User to log in with (C(POST /token)); the token is used as Bearer for the other requests.
    type: str
  password:
    description: Password of O(username).
    type: str
  validate_certs:
    description: Verify the TLS certificate of an C(https) O(url).
    type: bool
    default: true
'''
