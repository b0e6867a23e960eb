"""A tiny fake Xinference REST server (4.x shapes) for unit tests: stdlib http.server on 127.0.0.1.

    with FakeXinference(gpus=4, auth=True) as fake:
        fake.url                      # http://127.0.0.1:<ephemeral port>
        fake.requests                 # [(method, path, body or None, had_authorization)]
        fake.models["uid"]            # launch body + state
        fake.fail_next["POST /v1/models"] = (500, {"detail": "..."})   # one-shot fault
        fake.force_status = 500       # every request answers this status
        fake.landing = {"uid": [0]}   # override the GPUs a model lands on (placement faults)
        fake.replica_workers = {"uid": ["10.0.0.2:30001", ...]}   # each replica's worker_address

Only what the xinference_model module uses: /v1/cluster/auth, /token, /v1/models (+ /{uid},
/instances, /{uid}/replicas, DELETE /{uid}/replicas/{id}), /v1/cluster/devices, /v1/model_registrations/<type>[/<name>].
A launched model is CREATING for `ready_after` instance polls, then READY.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

MUTATING = ("POST /v1/models", "DELETE /v1/models/", "POST /v1/model_registrations/",
            "DELETE /v1/model_registrations/")


class FakeXinference(object):
    def __init__(self, gpus=4, auth=True, username="admin", password="s3cret-pass", api_key="xf-TESTKEY123456",
                 ready_after=1):
        self.gpus = gpus
        self.auth = auth
        self.username = username
        self.password = password
        self.api_key = api_key
        self.ready_after = ready_after
        self.tokens = set()
        self.issued = 0
        self.models = {}
        self.registrations = {}
        self.requests = []
        self.fail_next = {}
        self.force_status = None
        self.landing = {}
        self.replica_workers = {}
        self.launch_error = None
        self.lock = threading.Lock()
        self.server = None
        self.thread = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                fake.handle(self)

            do_GET = do_POST = do_DELETE = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def mutations(self):
        """Requests that would change Xinference's state."""
        return [r for r in self.requests if any(("%s %s" % (r[0], r[1])).startswith(m) for m in MUTATING)]

    def launch_direct(self, body):
        """Put a running model in place (as if launched earlier)."""
        self._launch(dict(body))
        self.models[body["model_uid"]]["polls"] = self.ready_after

    # -- behaviour -----------------------------------------------------------------------------

    def _authorized(self, handler):
        if not self.auth:
            return True
        header = handler.headers.get("Authorization") or ""
        if not header.startswith("Bearer "):
            return False
        token = header[len("Bearer "):]
        return token in self.tokens or token == self.api_key

    def _place(self, body):
        uid = body["model_uid"]
        if uid in self.landing:
            return list(self.landing[uid])
        replica = body.get("replica") or 1
        if body.get("gpu_idx") is not None:
            idx = body["gpu_idx"]
            return list(idx if isinstance(idx, list) else [idx])
        n_gpu = body.get("n_gpu", "auto")
        if n_gpu is None:
            return []
        per = 1 if n_gpu == "auto" else int(n_gpu)
        return list(range(min(per * replica, self.gpus)))

    def _launch(self, body):
        uid = body.get("model_uid") or body["model_name"]
        body["model_uid"] = uid
        self.models[uid] = {"body": body, "accelerators": self._place(body), "polls": 0,
                            "error": self.launch_error}

    def _status(self, model):
        if model["error"]:
            return "ERROR"
        return "READY" if model["polls"] >= self.ready_after else "CREATING"

    def _description(self, uid):
        model = self.models[uid]
        body = model["body"]
        desc = {"model_type": body.get("model_type", "LLM"), "address": "127.0.0.1:40001",
                "accelerators": [str(i) for i in model["accelerators"]], "model_name": body["model_name"],
                "model_format": body.get("model_format"), "model_size_in_billions": body.get("model_size_in_billions"),
                "quantization": body.get("quantization"), "model_engine": body.get("model_engine"),
                "replica": body.get("replica", 1), "n_worker": body.get("n_worker", 1)}
        return desc

    def handle(self, handler):
        parts = urlsplit(handler.path)
        path = parts.path
        query = parse_qs(parts.query)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with self.lock:
            self.requests.append((handler.command, path, body, bool(handler.headers.get("Authorization"))))
            status, answer = self.route(handler, handler.command, path, query, body)
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def route(self, handler, method, path, query, body):
        key = "%s %s" % (method, path)
        if self.force_status:
            return self.force_status, {"detail": "internal error; Authorization: Bearer %s" % (
                handler.headers.get("Authorization", "none")[7:])}
        for prefix, answer in list(self.fail_next.items()):
            if key.startswith(prefix):
                del self.fail_next[prefix]
                return answer
        if key == "GET /status":
            return 200, {"uptime": 1, "workers": {}}
        if key == "GET /v1/cluster/auth":
            return 200, {"auth": self.auth}
        if key == "POST /token":
            body = body or {}
            if body.get("username") == self.username and body.get("password") == self.password:
                self.issued += 1
                token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.tok%d" % self.issued
                self.tokens.add(token)
                return 200, {"access_token": token, "refresh_token": "r", "token_type": "bearer"}
            return 401, {"detail": "Incorrect username or password"}
        if not self._authorized(handler):
            return 401, {"detail": "Could not validate credentials"}
        if self.auth and handler.headers.get("Authorization") == "Bearer %s" % self.api_key and \
                any(key.startswith(m) for m in MUTATING):
            return 403, {"detail": "API keys can only access model query and inference endpoints"}
        segments = [unquote(s) for s in path.strip("/").split("/")]
        if segments[:2] == ["v1", "cluster"] and segments[2:] == ["devices"]:
            return 200, self.gpus
        if segments[:2] == ["v1", "models"]:
            return self.route_models(method, segments[2:], query, body)
        if segments[:2] == ["v1", "model_registrations"]:
            return self.route_registrations(method, segments[2:], body)
        return 404, {"detail": "Not Found"}

    def route_models(self, method, rest, query, body):
        if not rest:
            if method == "GET":
                return 200, {"object": "list", "data": [dict(self._description(uid), id=uid) for uid in self.models]}
            if method == "POST":
                uid = body.get("model_uid") or body.get("model_name")
                if uid in self.models:
                    return 400, {"detail": "Model is already in the model list, uid: %s" % uid}
                if body.get("model_type", "LLM") == "LLM" and not body.get("model_engine"):
                    return 400, {"detail": "model_engine is required for LLM"}
                self._launch(dict(body))
                return 200, {"model_uid": uid}
        if rest == ["instances"] and method == "GET":
            uid = (query.get("model_uid") or [None])[0]
            found = []
            for key, model in self.models.items():
                if uid and key != uid:
                    continue
                model["polls"] += 1
                status = self._status(model)
                found.append({"model_name": model["body"]["model_name"], "model_uid": key, "status": status,
                              "replica": model["body"].get("replica", 1),
                              "replica_statuses": [{"replica_id": 0, "status": status,
                                                    "error_message": model["error"]}]})
            return 200, found
        uid = rest[0]
        model = self.models.get(uid)
        if len(rest) == 1:
            if model is None:
                return 400, {"detail": "Model not found in the model list, uid: %s" % uid}
            if method == "GET":
                if self._status(model) != "READY":
                    return 503, {"detail": "Model is loading"}
                return 200, self._description(uid)
            if method == "DELETE":
                del self.models[uid]
                return 200, None
        if len(rest) == 3 and rest[1] == "replicas" and method == "DELETE" and model is not None:
            # A replica removed (xinference_drain): the others keep their workers.
            index = int(rest[2])
            model["body"]["replica"] = (model["body"].get("replica", 1) or 1) - 1
            workers = self.replica_workers.get(uid)
            if workers and index < len(workers):
                del workers[index]
            return 200, None
        if rest[1:] == ["replicas"] and method == "GET":
            if model is None:
                return 400, {"detail": "Model not found in the model list, uid: %s" % uid}
            replica = model["body"].get("replica", 1) or 1
            acc = model["accelerators"]
            per = len(acc) // replica if replica and acc else 0
            workers = self.replica_workers.get(uid) or []
            return 200, [dict({"replica_id": i, "replica_model_uid": "%s-rep%d" % (uid, i),
                               "accelerators": [str(a) for a in acc[i * per:(i + 1) * per]] if per else [],
                               "status": self._status(model)},
                              **({"worker_address": workers[i]} if i < len(workers) else {}))
                         for i in range(replica)]
        return 404, {"detail": "Not Found"}

    def route_registrations(self, method, rest, body):
        if len(rest) == 1 and method == "POST":
            spec = json.loads(body["model"])
            key = (rest[0], spec["model_name"])
            if key in self.registrations:
                return 400, {"detail": "Model %s already registered" % spec["model_name"]}
            if body.get("persist") is None:
                return 422, {"detail": "persist required"}
            self.registrations[key] = dict(spec, is_builtin=False)
            return 200, None
        if len(rest) == 2:
            key = tuple(rest)
            if method == "GET":
                if key not in self.registrations:
                    return 400, {"detail": "Model %s not found" % rest[1]}
                return 200, self.registrations[key]
            if method == "DELETE":
                self.registrations.pop(key, None)
                return 200, None
        return 404, {"detail": "Not Found"}


class FakeXinferenceAuth(FakeXinference):
    """The 3.0+ advanced auth on top: first-run setup with a one-time token, admin-managed API keys.

        with FakeXinferenceAuth(needs_setup=True) as fake:
            fake.setup_token              # what the instance stored and printed
            fake.keys                     # {id: {"name", "key", "description"}}

    /v1/admin/setup/status and POST /v1/admin/setup need no credentials; /v1/admin/keys needs the admin's
    Bearer token (an API key gets 403). Any key in `keys` opens GET /v1/models. Until setup there is no
    admin, so POST /token refuses everything.
    """

    def __init__(self, needs_setup=True, setup_token="XsetupTOKEN0042", **kwargs):
        super(FakeXinferenceAuth, self).__init__(auth=True, **kwargs)
        self.needs_setup = needs_setup
        self.setup_token = setup_token
        self.keys = {}
        self.next_key_id = 1

    def add_key(self, name, description=None):
        key = "xf-fakekey%04d" % self.next_key_id
        self.keys[self.next_key_id] = {"name": name, "key": key, "description": description}
        self.next_key_id += 1
        return key

    def _authorized(self, handler):
        header = handler.headers.get("Authorization") or ""
        if header[len("Bearer "):] in [item["key"] for item in self.keys.values()]:
            return True
        return super(FakeXinferenceAuth, self)._authorized(handler)

    def route(self, handler, method, path, query, body):
        key = "%s %s" % (method, path)
        if key == "GET /v1/admin/setup/status":
            return 200, {"needs_setup": self.needs_setup, "initialized": not self.needs_setup,
                         "password_min_length": 8}
        if key == "POST /v1/admin/setup":
            body = body or {}
            if not self.needs_setup:
                return 403, {"detail": "Setup already completed; an account already exists."}
            if body.get("setup_token") != self.setup_token:
                return 403, {"detail": "Invalid setup token."}
            if len(body.get("password") or "") < 8:
                return 400, {"detail": "Password must be at least 8 characters"}
            self.username, self.password, self.needs_setup = body["username"], body["password"], False
            return 201, {"id": 1, "username": body["username"]}
        if key == "POST /token" and self.needs_setup:
            return 401, {"detail": "Incorrect username or password"}
        if not path.startswith("/v1/admin/"):
            return super(FakeXinferenceAuth, self).route(handler, method, path, query, body)
        if (handler.headers.get("Authorization") or "")[len("Bearer "):] not in self.tokens:
            return 401, {"detail": "User session required"}
        rest = path[len("/v1/admin/"):].strip("/").split("/")
        if rest == ["keys"] and method == "GET":
            return 200, [{"id": kid, "name": item["name"], "key_prefix": item["key"][:7]}
                         for kid, item in sorted(self.keys.items())]
        if rest == ["keys"] and method == "POST":
            name = (body or {}).get("name")
            if any(item["name"] == name for item in self.keys.values()):
                return 409, {"detail": "API key name '%s' already exists" % name}
            new = self.add_key(name, (body or {}).get("description"))
            return 201, {"id": self.next_key_id - 1, "key": new, "name": name}
        if len(rest) == 2 and rest[0] == "keys" and method == "DELETE":
            if self.keys.pop(int(rest[1]), None) is None:
                return 404, {"detail": "API key not found"}
            return 200, {"ok": True}
        return 404, {"detail": "Not Found"}
