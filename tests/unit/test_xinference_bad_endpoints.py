"""xinference_model and xinference_auth against endpoints that are not the Xinference they expect.

A local HTTP(S) server on 127.0.0.1 answers every request the same bad way: an HTML page with 200, an
empty body, JSON under another content type, 401, 403, 500 echoing the Authorization header and a
canary, a proxy's HTML 404, no answer in time, a self-signed certificate; and a url that is not one.
Each run must fail with a clear message, hold no secret (api_key, password, token) and have sent
nothing that could change Xinference's state (POST/DELETE) after the first bad answer.
"""

import datetime
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.inferops.gpu.plugins.modules import xinference_auth, xinference_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

API_KEY = "xf-CANARYapikey0123456789"
PASSWORD = "CANARY-password-4711"
SECRETS = (API_KEY, PASSWORD, "CANARY")  # the server echoes both back in its 500 page

# name: (status, content type, body, seconds before answering)
ANSWERS = {
    "html_200": (200, "text/html; charset=utf-8", "<html><body>Please log in</body></html>", 0),
    "empty_200": (200, "application/json", "", 0),
    "json_as_text": (200, "text/plain", '{"data": []}', 0),
    "unauthorized_401": (401, "application/json", '{"detail": "Invalid credentials"}', 0),
    "forbidden_403": (403, "application/json", '{"detail": "Permission denied"}', 0),
    "error_500_echo": (500, "text/html", "<pre>boom; Authorization: {auth}; api_key={key}; password={password}</pre>", 0),
    "proxy_html_404": (404, "text/html", "<html><h1>404 Not Found</h1>nginx</html>", 0),
    "timeout": (200, "application/json", "{}", 3),
}
EXPECT = {
    "html_200": "not the JSON Xinference sends", "empty_200": "not the JSON Xinference sends",
    "json_as_text": "not the JSON Xinference sends", "unauthorized_401": "HTTP 401",
    "forbidden_403": "HTTP 403", "error_500_echo": "HTTP 500", "proxy_html_404": "not the JSON Xinference sends",
    "timeout": "timed out", "tls": "TLS", "not_a_url": "is not an Xinference URL",
}


class BadServer(object):
    def __init__(self, answer, tls_dir=None):
        self.answer = answer
        self.requests = []
        bad = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                bad.requests.append((self.command, self.path))
                status, ctype, body, delay = bad.answer
                if delay:
                    time.sleep(delay)
                data = body.replace("{auth}", self.headers.get("Authorization", "")).replace("{key}", API_KEY).replace(
                    "{password}", PASSWORD).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            do_GET = do_POST = do_DELETE = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls_dir:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self_signed(tls_dir))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.server.server_address[1])

    def mutations(self):
        return [request for request in self.requests if request[0] in ("POST", "DELETE", "PUT")]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def self_signed(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(params=sorted(ANSWERS) + ["tls", "not_a_url"])
def endpoint(request, tmp_path):
    case = request.param
    if case == "not_a_url":
        yield case, None, "not a url"
        return
    server = BadServer(ANSWERS.get(case, ANSWERS["html_200"]), tls_dir=str(tmp_path) if case == "tls" else None)
    yield case, server, server.url
    server.stop()


def _check(case, server, result):
    text = json.dumps(result.result, default=str)
    assert result.failed, (case, result.result)
    assert EXPECT[case] in result.result["msg"], (case, result.result["msg"])
    for secret in SECRETS:
        assert secret not in text, (case, secret, result.result["msg"])
    if server is not None:
        assert server.mutations() == [], (case, server.requests)


MODEL = {"model_name": "qwen2.5-instruct", "model_uid": "qwen", "model_engine": "vLLM", "model_format": "pytorch",
         "model_size_in_billions": 7, "quantization": "none", "n_gpu": "1", "container_gpus": 1,
         "request_timeout": 1}


@pytest.mark.parametrize("state", ["present", "absent"])
def test_xinference_model_fails_clearly_and_changes_nothing(module_main, endpoint, state):
    case, server, url = endpoint
    params = dict(MODEL, url=url, api_key=API_KEY, state=state, _ansible_check_mode=False, _ansible_diff=False)
    _check(case, server, module_main(xinference_model.main, params))


def test_xinference_model_with_password_fails_clearly_and_changes_nothing(module_main, endpoint):
    case, server, url = endpoint
    params = dict(MODEL, url=url, username="admin", password=PASSWORD, _ansible_check_mode=False, _ansible_diff=False)
    result = module_main(xinference_model.main, params)
    text = json.dumps(result.result, default=str)
    assert result.failed and PASSWORD not in text and "CANARY" not in text, result.result
    if server is not None:
        # The login itself is a POST; nothing after it.
        assert [r for r in server.mutations() if r[1] != "/token"] == [], server.requests


def test_xinference_auth_fails_clearly_and_changes_nothing(module_main, endpoint, tmp_path):
    case, server, url = endpoint
    params = {"url": url, "username": "admin", "password": PASSWORD, "api_key_path": str(tmp_path / "key"),
              "request_timeout": 1, "_ansible_check_mode": False, "_ansible_diff": False}
    result = module_main(xinference_auth.main, params)
    text = json.dumps(result.result, default=str)
    assert result.failed, (case, result.result)
    assert PASSWORD not in text and "CANARY" not in text, result.result
    assert not (tmp_path / "key").exists()
    if server is not None:
        assert server.mutations() == [], (case, server.requests)
