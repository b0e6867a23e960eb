# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A small Xinference REST client on Ansible's own URL helpers (open_url); no extra dependency.

Covers what the xinference_model module needs on Xinference 1.x and 4.x: authentication (API key,
or username/password -> POST /token -> Bearer JWT), running models, launch/terminate, readiness,
replicas and custom model registrations. Every failure is an XinferenceError whose message names
what failed, the method and path, the HTTP status and what to check, and never carries a token,
API key or password (error bodies are sanitised).
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode, urlsplit

from ansible.module_utils.urls import open_url

_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"\b(?:xf|sk)-[A-Za-z0-9_-]{4,}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),  # JWT
    re.compile(r"(?i)((?:access_token|refresh_token|token|api_key|password|setup_token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
)
MAX_DETAIL = 400
NOT_JSON = ("the answer is not the JSON Xinference sends: url must point at Xinference's REST API (not a web page, "
            "a proxy's login page or another service); nothing further was requested")
TLS_ADVICE = ("the TLS handshake failed: give the server a certificate this host trusts (or its CA), or set "
              "validate_certs=false only for a test endpoint")


class XinferenceError(Exception):
    """A failed request, with a message that is safe to show."""

    def __init__(self, message, status=None, path=None, method=None, detail=None):
        super().__init__(message)
        self.status = status
        self.path = path
        self.method = method
        self.detail = detail


def redact(text, secrets=()):
    """Remove tokens, API keys and passwords from text meant for output."""
    if text is None:
        return text
    text = str(text)
    for secret in secrets:
        if secret and len(str(secret)) >= 3:
            text = text.replace(str(secret), "********")
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda match: match.group(1) + "********", text)
        else:
            text = pattern.sub("********", text)
    return text


def _advice(status):
    if status == 401:
        return ("the credentials were refused: check username/password (a token from POST /token) or api_key, "
                "and that auth is configured as expected")
    if status == 403:
        return ("the credentials lack the permission: Xinference 4.x API keys (xf-...) may only list and call "
                "models; launching, terminating and registering need username/password")
    if status == 404:
        return "the path does not exist on this Xinference: check url and the Xinference version"
    if status is not None and status >= 500:
        return "Xinference failed on its side: check its log (docker logs <container>, $XINFERENCE_HOME/logs)"
    return "check the request parameters"


def url_problem(url):
    """Why url is not an http(s) URL of a server ('' when it is one)."""
    text = url if isinstance(url, str) else ""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        return "it does not parse (%s)" % exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "it needs http:// or https:// and a host, for example http://127.0.0.1:9997"
    if re.search(r"[\s\x00-\x1f\x7f]", text):
        return "it holds blanks or control characters"
    if port == 0:
        return "port 0 is not a port"
    return ""


def shown_url(url):
    """The URL without user:password@ (messages only)."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1********@", str(url))


class XinferenceClient(object):
    """REST calls to one Xinference endpoint. Raises XinferenceError."""

    def __init__(self, url, api_key=None, username=None, password=None, validate_certs=True,
                 request_timeout=60, opener=None):
        self.url = url.rstrip("/") if isinstance(url, str) else url
        self.api_key = api_key
        self.username = username
        self.password = password
        self.validate_certs = validate_certs
        self.request_timeout = request_timeout
        self._open = opener or open_url
        self._token = None
        self.requests = 0

    # -- plumbing ----------------------------------------------------------------------------

    def _secrets(self):
        return (self.api_key, self.password, self._token)

    def _json(self, method, path, status, response, raw):
        """The parsed body; fails unless it is JSON (an HTML page, an empty body or another content type)."""
        headers = getattr(response, "headers", None)
        content_type = headers.get("Content-Type") if headers is not None else None
        parsed = _parse(raw)
        if content_type is not None and "json" not in content_type.lower():
            self._fail(method, path, status, "Content-Type %s: %s" % (content_type, _snippet(raw)), NOT_JSON)
        if not raw or not isinstance(raw, (bytes, str)) or (isinstance(parsed, str) and not _is_json(raw)):
            self._fail(method, path, status, "an empty body" if not raw else _snippet(raw), NOT_JSON)
        return parsed

    def _headers(self, auth):
        headers = {"Accept": "application/json"}
        bearer = None
        if auth:
            bearer = self.api_key or self._token
        if bearer:
            headers["Authorization"] = "Bearer %s" % bearer
        return headers

    def _fail(self, method, path, status, detail, what=None):
        detail = redact(detail, self._secrets())
        if detail and len(detail) > MAX_DETAIL:
            detail = detail[:MAX_DETAIL] + "..."
        message = "Xinference at %s: %s %s %s" % (
            shown_url(self.url), method, path,
            "answered HTTP %s" % status if status is not None else "got no answer")
        if detail:
            message += " (%s)" % detail
        message += ": %s" % (what or _advice(status))
        raise XinferenceError(message, status=status, path=path, method=method, detail=detail)

    def request(self, method, path, body=None, query=None, auth=True, ok_statuses=(), timeout=None):
        """Returns (status, parsed JSON or None). Statuses in ok_statuses are returned, not raised."""
        full = path
        if query:
            full = "%s?%s" % (path, urlencode(query))
        problem = url_problem(self.url)
        if problem:
            raise XinferenceError("url=%s is not an Xinference URL: %s; nothing was requested"
                                  % (json.dumps(redact(shown_url(self.url), self._secrets())), problem))
        headers = self._headers(auth)
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        self.requests += 1
        try:
            response = self._open(self.url + full, data=data, headers=headers, method=method,
                                  validate_certs=self.validate_certs, timeout=timeout or self.request_timeout,
                                  follow_redirects="safe", use_proxy=False)
            status = response.getcode()
            raw = response.read()
        except HTTPError as exc:
            status = exc.code
            try:
                raw = exc.read()
            except Exception:  # pylint: disable=broad-except
                raw = b""
            if status in ok_statuses:
                # Xinference's own 404/400/... are JSON; a proxy's HTML error page is not an answer from it.
                return status, self._json(method, full, status, exc, raw)
            self._fail(method, full, status, _detail(_parse(raw), raw))
        except URLError as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLError) or "CERTIFICATE" in str(reason).upper():
                self._fail(method, full, None, str(reason), TLS_ADVICE)
            if isinstance(reason, (socket.timeout, TimeoutError)):
                self._fail(method, full, None, "timed out after %ss" % (timeout or self.request_timeout),
                           "Xinference accepted the connection but did not answer in time: check its load and "
                           "log, or raise request_timeout")
            self._fail(method, full, None, str(reason),
                       "check that Xinference is running and listening there (url, port, firewall, container "
                       "state); a refused connection means nothing listens on that port")
        except ssl.SSLError as exc:
            self._fail(method, full, None, str(exc), TLS_ADVICE)
        except (socket.timeout, TimeoutError) as exc:
            self._fail(method, full, None, "timed out after %ss" % (timeout or self.request_timeout),
                       "Xinference accepted the connection but did not answer in time: check its load and log, "
                       "or raise request_timeout (%s)" % exc.__class__.__name__)
        except (ConnectionError, OSError, HTTPException, ValueError) as exc:
            self._fail(method, full, None, "%s: %s" % (exc.__class__.__name__, exc),
                       "check that Xinference is running and listening there (url, port, firewall, container state)")
        return status, self._json(method, full, status, response, raw)

    # -- auth --------------------------------------------------------------------------------

    def auth_enabled(self):
        status, data = self.request("GET", "/v1/cluster/auth", auth=False, ok_statuses=(404,))
        if status == 404 or not isinstance(data, dict):
            return None
        return bool(data.get("auth"))

    def login(self):
        """Username/password -> Bearer token (POST /token, JSON body; 1.x and 4.x)."""
        if self.api_key or not self.username:
            return
        status, data = self.request("POST", "/token", body={"username": self.username, "password": self.password},
                                    auth=False, ok_statuses=(401, 403, 400, 422))
        if status in (401, 403, 400, 422):
            self._fail("POST", "/token", status, _detail(data, b""),
                       "the username/password were refused: check the credentials (Xinference 4.x: the admin "
                       "created at first-run setup; 1.x: the --auth-config user list)")
        token = data.get("access_token") if isinstance(data, dict) else None
        if not token:
            self._fail("POST", "/token", status, "no access_token in the answer",
                       "check that url points at Xinference's REST API")
        self._token = token

    # -- models ------------------------------------------------------------------------------

    def describe(self, uid):
        """The running model's description, or None when Xinference does not know the uid.

        4.x answers 503 while the model loads: reported as {"_loading": True}.
        """
        path = "/v1/models/%s" % quote(uid, safe="")
        status, data = self.request("GET", path, ok_statuses=(400, 404, 503))
        if status in (400, 404):
            return None
        if status == 503:
            return {"_loading": True}
        return data if isinstance(data, dict) else {}

    def instances(self, uid):
        """GET /v1/models/instances?model_uid=...: [] when unknown, None when the endpoint does not exist."""
        status, data = self.request("GET", "/v1/models/instances", query={"model_uid": uid}, ok_statuses=(404,))
        if status == 404:
            return None
        return data if isinstance(data, list) else []

    def replicas(self, uid):
        """GET /v1/models/{uid}/replicas (4.x): None when the release does not have it."""
        path = "/v1/models/%s/replicas" % quote(uid, safe="")
        status, data = self.request("GET", path, ok_statuses=(400, 404, 405))
        if status != 200 or not isinstance(data, list):
            return None
        return data

    def launch(self, body, wait_ready=False):
        status, data = self.request("POST", "/v1/models", body=body,
                                    query={"wait_ready": "true" if wait_ready else "false"})
        if isinstance(data, dict) and data.get("model_uid"):
            return data["model_uid"]
        return body.get("model_uid")

    def terminate(self, uid):
        """DELETE /v1/models/{uid}; False when it was not running (400/404)."""
        path = "/v1/models/%s" % quote(uid, safe="")
        status, data = self.request("DELETE", path, ok_statuses=(400, 404))
        return status not in (400, 404)

    def gpu_count(self):
        status, data = self.request("GET", "/v1/cluster/devices", ok_statuses=(403, 404))
        if status != 200:
            return None
        return data if isinstance(data, int) and not isinstance(data, bool) else None

    def wait_ready(self, uid, timeout, interval=2.0, clock=time.monotonic, sleep=time.sleep):
        """Poll until the model is READY. Returns the last instance dict (or description). Raises on ERROR/timeout."""
        deadline = clock() + timeout
        last = None
        while True:
            found = self.instances(uid)
            if found is None:
                # 1.x without /v1/models/instances: a description means it is up.
                described = self.describe(uid)
                if described is not None and not described.get("_loading"):
                    return {"status": "READY", "model_uid": uid}
                last = {"status": "LOADING" if described else "absent"}
            else:
                mine = [item for item in found if item.get("model_uid") == uid] or found
                last = mine[0] if mine else {"status": "absent"}
                status = str(last.get("status", "")).upper()
                if status == "READY":
                    return last
                if status in ("ERROR", "TERMINATED", "TERMINATING"):
                    errors = [r.get("error_message") for r in last.get("replica_statuses") or [] if r.get("error_message")]
                    raise XinferenceError(
                        "Xinference reports model %s as %s%s: read the Xinference log for the launch error "
                        "(docker logs <container>)" % (uid, status, ": " + redact("; ".join(errors), self._secrets())
                                                       if errors else ""), path="/v1/models/instances")
            if clock() >= deadline:
                raise XinferenceError(
                    "model %s not ready after %ss (last status %s): a first launch may download weights and "
                    "engine packages for a long time; raise timeout, or check GET /v1/models/%s/progress and the "
                    "Xinference log" % (uid, timeout, last.get("status") if last else "unknown", uid),
                    path="/v1/models/instances")
            sleep(interval)

    # -- registrations -----------------------------------------------------------------------

    def registration(self, model_type, name):
        """The registered spec, or None when the name is not registered."""
        path = "/v1/model_registrations/%s/%s" % (quote(model_type, safe=""), quote(name, safe=""))
        status, data = self.request("GET", path, ok_statuses=(400, 404))
        if status in (400, 404):
            return None
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                data = {}
        return data if isinstance(data, dict) else {}

    def register(self, model_type, spec, persist=True, worker_ip=None):
        body = {"model": json.dumps(spec), "persist": bool(persist)}
        if worker_ip:
            body["worker_ip"] = worker_ip
        self.request("POST", "/v1/model_registrations/%s" % quote(model_type, safe=""), body=body)

    def unregister(self, model_type, name):
        path = "/v1/model_registrations/%s/%s" % (quote(model_type, safe=""), quote(name, safe=""))
        status, data = self.request("DELETE", path, ok_statuses=(400, 404))
        return status not in (400, 404)

    # -- first-run setup and API keys (Xinference 3.0+ advanced auth) ------------------------

    def setup_status(self):
        """GET /v1/admin/setup/status: {"needs_setup": bool, ...}, or None when the release lacks it (auth off)."""
        status, data = self.request("GET", "/v1/admin/setup/status", auth=False, ok_statuses=(404,))
        if status == 404:
            return None
        return data if isinstance(data, dict) else {}

    def setup_admin(self, username, password, setup_token=None):
        """POST /v1/admin/setup: creates the first admin. The setup token is sent when one was found."""
        body = {"username": username, "password": password}
        if setup_token:
            body["setup_token"] = setup_token
        status, data = self.request("POST", "/v1/admin/setup", body=body, auth=False, ok_statuses=(400, 403))
        if status == 403:
            self._fail("POST", "/v1/admin/setup", status, _detail(data, b""),
                       "the one-time setup token was refused or missing%s: it is in the instance's auth database "
                       "($XINFERENCE_HOME/auth/auth.db, table system_config) and its first log lines ('Setup "
                       "token: ...'); if an admin already exists, its password must be the one given" % (
                           "" if setup_token else " (none was found)"))
        if status == 400:
            self._fail("POST", "/v1/admin/setup", status, _detail(data, b""),
                       "the admin was refused: check the username and the password (Xinference's minimum length)")

    def api_keys(self):
        """GET /v1/admin/keys: the keys' metadata (id, name, key_prefix ...); never the keys themselves."""
        status, data = self.request("GET", "/v1/admin/keys")
        if isinstance(data, dict):
            data = data.get("keys") or data.get("data") or []
        return [item for item in data or [] if isinstance(item, dict)]

    def create_api_key(self, name, description=None):
        """POST /v1/admin/keys: the new key (shown only once), or None when a key of that name exists (409)."""
        body = {"name": name}
        if description:
            body["description"] = description
        status, data = self.request("POST", "/v1/admin/keys", body=body, ok_statuses=(409,))
        if status == 409:
            return None
        key = data.get("key") if isinstance(data, dict) else None
        if not key:
            self._fail("POST", "/v1/admin/keys", status, "no key in the answer",
                       "check that url points at Xinference's REST API (3.0 or later)")
        return key

    def delete_api_key(self, key_id):
        path = "/v1/admin/keys/%s" % quote(str(key_id), safe="")
        status, data = self.request("DELETE", path, ok_statuses=(404,))
        return status != 404

    def key_opens_api(self, key):
        """Whether an API key is accepted (GET /v1/models answers 200 with it, not 401/403)."""
        probe = XinferenceClient(self.url, api_key=key, validate_certs=self.validate_certs,
                                 request_timeout=self.request_timeout, opener=self._open)
        try:
            status, data = probe.request("GET", "/v1/models", ok_statuses=(401, 403))
        finally:
            self.requests += probe.requests
        return status == 200


def _parse(raw):
    if not raw:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _is_json(raw):
    try:
        json.loads(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw)
    except ValueError:
        return False
    return True


def _snippet(raw):
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
    return " ".join(text.split())[:120] or "an empty body"


def _detail(parsed, raw):
    if isinstance(parsed, dict) and "detail" in parsed:
        detail = parsed["detail"]
        return detail if isinstance(detail, str) else json.dumps(detail)
    if isinstance(parsed, str):
        return parsed
    if parsed is None and raw:
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return json.dumps(parsed) if parsed is not None else ""


# -- the one-time setup token, read on the host (Xinference 3.0+) ---------------------------------

SETUP_TOKEN_QUERY = "SELECT value FROM system_config WHERE key = 'setup_token'"
SETUP_TOKEN_LOG = re.compile(r"[Ss]etup token:\s*(\S+)")


def setup_token_from_db(path):
    """The setup token stored in an auth database file, read-only; None when absent or unreadable."""
    try:
        import sqlite3
    except ImportError:
        return None
    try:
        conn = sqlite3.connect("file:%s?mode=ro" % quote(path), uri=True)
        try:
            row = conn.execute(SETUP_TOKEN_QUERY).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    value = str(row[0]).strip() if row and row[0] else ""
    return value or None


def setup_token_from_log(text):
    """The last setup token an instance printed in its log ("Setup token: ..."), or None."""
    found = SETUP_TOKEN_LOG.findall(text or "")
    return found[-1] if found else None


# The connection options of every module that talks to Xinference, documented once in the
# inferops.gpu.xinference_connection doc fragment; each module adds its own request_timeout.
CONNECTION_SPEC = {
    "url": {"type": "str", "default": "http://127.0.0.1:9997"},
    "api_key": {"type": "str", "no_log": True},
    "username": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "validate_certs": {"type": "bool", "default": True},
}


def client_from_params(params):
    """The XinferenceClient of a module's connection options (CONNECTION_SPEC plus request_timeout)."""
    return XinferenceClient(params["url"], api_key=params.get("api_key"), username=params.get("username"),
                            password=params.get("password"), validate_certs=params["validate_certs"],
                            request_timeout=params["request_timeout"])
