# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Desired state of one Xinference model: the xinference_model module's argument spec, the validation
of a declaration, the launch body, running vs desired parameters, the registration spec, and the
manager that brings the model to its state through module_utils.xinference_api.

validate_declaration() is the one home of "is this declaration acceptable": the module refuses with
it before any request, and the xinference role's preflight (filter xinference_model_errors) calls it
on each declared model before anything changes on the host, so both refuse the same cases with the
same sentences. The host-dependent rules (GPUs, shm, memory) stay in model_preflight.preflight().
"""

from __future__ import annotations

import copy
import re

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError

from ansible_collections.inferops.gpu.plugins.module_utils.model_preflight import (
    MODEL_TYPES, effective_envs, gpus_per_replica, normalize_n_gpu, parse_size_in_billions, preflight,
    validate_launch)
from ansible_collections.inferops.gpu.plugins.module_utils.secrets import MASK, is_secret_name
from ansible_collections.inferops.gpu.plugins.module_utils.xinference_api import (
    CONNECTION_SPEC, XinferenceError, client_from_params, redact)

REGISTRATION_SPEC = {
    "model_uri": {"type": "str", "required": True},
    "persist": {"type": "bool", "default": True},
    "dimensions": {"type": "int"},
    "max_tokens": {"type": "int", "default": 512, "no_log": False},
    "language": {"type": "list", "elements": "str", "default": ["en"]},
    "context_length": {"type": "int", "default": 2048},
    "model_ability": {"type": "list", "elements": "str"},
    "model_family": {"type": "str"},
    "worker_ip": {"type": "str"},
    "spec": {"type": "dict", "default": {}},
}
ARGUMENT_SPEC = {
    "state": {"type": "str", "default": "present", "choices": ["present", "absent", "registered"]},
    **CONNECTION_SPEC,
    "request_timeout": {"type": "int", "default": 60},
    "timeout": {"type": "int", "default": 1800},
    "wait": {"type": "bool", "default": True},
    "model_uid": {"type": "str"},
    "model_name": {"type": "str", "required": True},
    "model_type": {"type": "str", "default": "LLM", "choices": list(MODEL_TYPES)},
    "model_engine": {"type": "str"},
    "model_format": {"type": "str"},
    "model_size_in_billions": {"type": "raw"},
    "quantization": {"type": "str"},
    "n_gpu": {"type": "str"},
    "gpu_idx": {"type": "list", "elements": "int"},
    "replica": {"type": "int", "default": 1},
    "worker_ip": {"type": "str"},
    "n_worker": {"type": "int"},
    # no_log so that a failure while the arguments are parsed shows none of its values; the module
    # then keeps hidden only the values of secret-looking names (secrets.py), see modules/xinference_model.py.
    "envs": {"type": "dict", "default": {}, "no_log": True},
    "apply_nccl_env": {"type": "bool", "default": True},
    "engine_kwargs": {"type": "dict", "default": {}},
    "model_path": {"type": "str"},
    "recreate": {"type": "bool", "default": False},
    "single_gpu": {"type": "bool", "default": False},
    "gpu_health": {"type": "dict"},
    "container_gpus": {"type": "int"},
    "container_shm_bytes": {"type": "int"},
    "check_placement": {"type": "bool", "default": True},
    "registration": {"type": "dict", "options": REGISTRATION_SPEC},
}
MUTUALLY_EXCLUSIVE = [("api_key", "username")]
REQUIRED_TOGETHER = [("username", "password")]
INVALID = "invalid parameters, nothing was requested: "
# Launch keys the module sets from its own options: engine_kwargs may not override them.
EXPLICIT_KEYS = ("model_uid", "model_name", "model_type", "model_engine", "model_format", "model_size_in_billions",
                 "quantization", "replica", "n_gpu", "gpu_idx", "worker_ip", "n_worker", "envs", "model_path",
                 "request_limits", "peft_model_config", "download_hub", "replica_config")
# Parameters Xinference reports for a running model, compared for idempotence.
REPORTED = ("model_name", "model_type", "model_engine", "model_format", "model_size_in_billions", "quantization",
            "replica", "n_worker")


def validate_declaration(declaration):
    """Everything wrong with one xinference_model declaration, found without any request.

    Returns the messages, first the argument spec's own (the ones AnsibleModule fails with: types,
    choices, required options such as registration.model_uri), then the value rules, which run on the
    validated parameters (defaults filled in, as the module sees them). Empty when the module accepts it.
    """
    result = ArgumentSpecValidator(copy.deepcopy(ARGUMENT_SPEC), mutually_exclusive=MUTUALLY_EXCLUSIVE,
                                   required_together=REQUIRED_TOGETHER).validate(declaration)
    if result.error_messages:
        return ["Unsupported parameters: %s" % error.msg if isinstance(error, UnsupportedError) else error.msg
                for error in result.errors]
    params = result.validated_parameters
    launch = dict(params)
    launch["registration_only"] = params["state"] != "present"
    errors = validate_launch(launch)
    clash = sorted(set(params.get("engine_kwargs") or {}) & set(EXPLICIT_KEYS))
    if clash:
        errors.append("engine_kwargs may not set %s: use the module options of the same name" % ", ".join(clash))
    registration = params.get("registration")
    if params["state"] == "registered" and not registration:
        errors.append("state: registered needs registration (model_uri and the spec of the custom model)")
    if registration and params["model_type"] not in ("LLM", "embedding", "rerank") and not registration.get("spec"):
        errors.append("registration of a %s model needs the whole spec in registration.spec" % params["model_type"])
    if registration:
        uri = registration["model_uri"]
        if not (uri.startswith(("file:///", "/")) or re.match(r"^[a-z0-9]+://", uri)):
            errors.append("registration.model_uri %r must be an absolute path (Xinference rejects relative ones)"
                          % uri)
    return errors


def mask_envs(envs):
    return dict((key, MASK if is_secret_name(key) else value) for key, value in (envs or {}).items())


def _size_for_body(value):
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value) if float(value).is_integer() else value
    text = str(value).strip()
    if re.match(r"^\d+\Z", text):
        return int(text)
    return text


def build_body(params, envs):
    body = {"model_uid": params["model_uid"], "model_name": params["model_name"], "model_type": params["model_type"],
            "replica": params["replica"]}
    for key in ("model_engine", "model_format", "quantization", "gpu_idx", "worker_ip", "n_worker", "model_path"):
        if params.get(key) is not None:
            body[key] = params[key]
    if params.get("model_size_in_billions") is not None:
        body["model_size_in_billions"] = _size_for_body(params["model_size_in_billions"])
    n_gpu = normalize_n_gpu(params.get("n_gpu"))
    if n_gpu == "cpu":
        body["n_gpu"] = None
    elif n_gpu is not None:
        body["n_gpu"] = n_gpu
    elif params.get("single_gpu") and not params.get("gpu_idx"):
        body["n_gpu"] = 1
    if envs:
        body["envs"] = envs
    for key, value in (params.get("engine_kwargs") or {}).items():
        body[key] = value
    return body


def _norm(key, value):
    if value is None:
        return None
    if key == "model_size_in_billions":
        try:
            return parse_size_in_billions(value)
        except ValueError:
            return str(value)
    if key in ("model_engine", "quantization", "model_format"):
        return str(value).lower()
    return value


def reported_gpus(description, replicas):
    """Worker-local GPU indexes Xinference reports for the model, per replica; None when it reports none."""
    per_replica = []
    for replica in replicas or []:
        accelerators = replica.get("accelerators")
        if accelerators is None:
            accelerators = replica.get("gpu_idx")
        if accelerators is not None:
            per_replica.append(_indexes(accelerators))
    if per_replica:
        return per_replica
    if description and description.get("accelerators") is not None:
        return [_indexes(description["accelerators"])]
    return None


def _indexes(value):
    if isinstance(value, (int, str)):
        value = [value]
    found = []
    for item in value or []:
        try:
            found.append(int(item))
        except (TypeError, ValueError):
            continue
    return sorted(found)


def running_params(description, gpus):
    params = dict((key, description.get(key)) for key in REPORTED if description.get(key) is not None)
    if gpus is not None:
        params["gpus"] = sorted(set(i for replica in gpus for i in replica))
        params["gpus_per_replica"] = max(len(replica) for replica in gpus) if gpus else 0
    return params


def desired_params(params, body):
    wanted = dict((key, body.get(key)) for key in REPORTED if body.get(key) is not None)
    n_gpu = normalize_n_gpu(params.get("n_gpu"))
    if params.get("gpu_idx"):
        wanted["gpus"] = sorted(params["gpu_idx"])
        wanted["gpus_per_replica"] = gpus_per_replica(params)
    elif n_gpu == "cpu":
        wanted["gpus_per_replica"] = 0
    elif isinstance(n_gpu, int) or params.get("single_gpu"):
        wanted["gpus_per_replica"] = gpus_per_replica(params)
    return wanted


def differences(running, wanted):
    found = {}
    for key, value in wanted.items():
        if key not in running:
            continue
        if _norm(key, running[key]) != _norm(key, value):
            found[key] = {"running": running[key], "desired": value}
    return found


def build_registration_spec(params):
    reg = params["registration"]
    uri = reg["model_uri"]
    if not uri.startswith(("file://", "http://", "https://", "s3://")):
        uri = "file://" + uri
    model_type = params["model_type"]
    name = params["model_name"]
    quant = params.get("quantization") or "none"
    fmt = params.get("model_format") or "pytorch"
    spec_item = {"model_format": fmt, "model_hub": "huggingface", "model_id": None, "model_uri": uri,
                 "model_revision": None, "quantization": quant}
    if model_type == "embedding":
        spec = {"version": 2, "model_name": name, "dimensions": reg.get("dimensions"), "max_tokens": reg["max_tokens"],
                "language": reg["language"], "model_specs": [spec_item], "cache_config": None, "virtualenv": None}
    elif model_type == "rerank":
        spec = {"version": 2, "model_name": name, "max_tokens": reg["max_tokens"], "language": reg["language"],
                "model_specs": [spec_item], "cache_config": None, "virtualenv": None}
    elif model_type == "LLM":
        size = _size_for_body(params.get("model_size_in_billions"))
        spec_item["model_size_in_billions"] = size if size is not None else 1
        spec = {"version": 2, "model_name": name, "context_length": reg["context_length"], "model_lang": reg["language"],
                "model_ability": reg.get("model_ability") or ["generate"], "model_description": None,
                "model_specs": [spec_item], "cache_config": None, "virtualenv": None}
        if reg.get("model_family"):
            spec["model_family"] = reg["model_family"]
    else:
        spec = {"model_name": name}
    spec.update(reg.get("spec") or {})
    return spec


def _uri(value):
    if isinstance(value, str) and value.startswith("file://"):
        return value[len("file://"):].rstrip("/")
    return value.rstrip("/") if isinstance(value, str) else value


def _holds(actual, desired):
    """Whether a registered value holds the desired one: Xinference fills a nested object (a spec's
    virtualenv) with the defaults of its other fields, which are no difference."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(v is None or _holds(actual.get(k), v) for k, v in desired.items())
    return actual == desired


def registration_differences(actual, desired):
    found = {}
    for key, value in desired.items():
        if value is None:
            continue
        if key == "model_specs":
            for wanted in value:
                match = False
                for have in actual.get("model_specs") or []:
                    if all(v is None or _uri(have.get(k)) == _uri(v) if k == "model_uri" else v is None or have.get(k) == v
                           for k, v in wanted.items()):
                        match = True
                        break
                if not match:
                    found["model_specs"] = {"registered": actual.get("model_specs"), "desired": value}
        elif not _holds(actual.get(key), value):
            found[key] = {"registered": actual.get(key), "desired": value}
    return found


class ModelManager(object):
    def __init__(self, module):
        self.module = module
        self.params = dict(module.params)
        if not self.params.get("model_uid"):
            self.params["model_uid"] = self.params["model_name"]
        self.check_mode = module.check_mode
        self.result = {"changed": False, "model_uid": self.params["model_uid"], "actions": []}
        self.before = {}
        self.after = {}
        self.client = None

    def fail(self, msg, **extra):
        secrets = (self.params.get("api_key"), self.params.get("password"))
        if self.client is not None:
            secrets += (self.client._token,)  # pylint: disable=protected-access
        self.result.update(extra)
        self.module.fail_json(msg=redact(msg, secrets), **self.result)

    def run(self):
        params = self.params
        state = params["state"]
        # The declaration's rules are the role preflight's too (filter xinference_model_errors).
        # module.params holds every option (None when not given); the spec's checks count given ones.
        given = dict((key, value) for key, value in self.module.params.items() if value is not None)
        errors = validate_declaration(given)
        if errors:
            self.fail(INVALID + "; ".join(errors))
        launch = dict(params)
        launch["registration_only"] = state != "present"

        envs = effective_envs(params.get("gpu_health"), params.get("envs"), params["apply_nccl_env"])
        body = build_body(params, envs)
        if state == "present":
            launch["envs"] = envs
            checked = preflight(launch, gpu_health=params.get("gpu_health"), container_gpus=params.get("container_gpus"),
                                container_shm_bytes=params.get("container_shm_bytes"))
            from_health = dict((k, v) for k, v in envs.items()
                               if k not in (params.get("envs") or {}) and params.get("gpu_health"))
            self.result["preflight"] = {"warnings": checked["warnings"], "envs_from_gpu_health": from_health,
                                        "estimate": checked["estimate"], "visible_gpus": checked["visible_gpus"]}
            for warning in checked["warnings"]:
                self.module.warn(warning)
            if checked["refusals"]:
                self.fail("preflight refused launching %s, nothing was requested: %s" % (
                    params["model_uid"], " | ".join(checked["refusals"])), refusals=checked["refusals"])
            shown = dict(body)
            if "envs" in shown:
                shown["envs"] = mask_envs(shown["envs"])
            self.result["launch"] = shown

        self.client = client_from_params(params)
        try:
            self.client.login()
            if state == "present" and params.get("gpu_health") is None and params.get("container_gpus") is None:
                self.preflight_with_server_gpus(launch)
            if params.get("registration") and state in ("present", "registered"):
                self.ensure_registration()
            if state == "present":
                self.ensure_present(body)
            elif state == "absent":
                self.ensure_absent()
        except XinferenceError as exc:
            self.fail(str(exc))
        if self.module._diff:  # pylint: disable=protected-access
            self.result["diff"] = {"before": self.before, "after": self.after}
        self.module.exit_json(**self.result)

    def preflight_with_server_gpus(self, launch):
        """Without gpu_health or container_gpus, the worker's GPU count (GET /v1/cluster/devices) still
        catches incident 2 and n_gpu above the GPUs Xinference sees, before anything changes."""
        devices = self.client.gpu_count()
        if devices is None:
            return
        checked = preflight(launch, container_gpus=devices)
        self.result["preflight"]["visible_gpus"] = devices
        if checked["refusals"]:
            self.fail("preflight refused launching %s (Xinference reports %d GPU%s, GET /v1/cluster/devices), nothing "
                      "was changed: %s" % (self.params["model_uid"], devices, "" if devices == 1 else "s",
                                           " | ".join(checked["refusals"])), refusals=checked["refusals"])

    def ensure_registration(self):
        params = self.params
        spec = build_registration_spec(params)
        model_type = params["model_type"]
        actual = self.client.registration(model_type, params["model_name"])
        info = {"changed": False, "spec": spec}
        self.result["registration"] = info
        if actual is None:
            info["changed"] = True
            self.result["actions"].append("registered %s %s" % (model_type, params["model_name"]))
            self.before["registration"] = None
            self.after["registration"] = spec
            if not self.check_mode:
                self.client.register(model_type, spec, params["registration"]["persist"],
                                     params["registration"].get("worker_ip"))
        else:
            if actual.get("is_builtin"):
                self.fail("model_name %s is a built-in %s model: give the custom model another name (letters, digits, "
                          "_ and -)" % (params["model_name"], model_type))
            diff = registration_differences(actual, spec)
            if diff:
                info["changed"] = True
                info["differences"] = diff
                self.result["actions"].append("re-registered %s %s (%s changed)" % (
                    model_type, params["model_name"], ", ".join(sorted(diff))))
                self.before["registration"] = actual
                self.after["registration"] = spec
                if not self.check_mode:
                    self.client.unregister(model_type, params["model_name"])
                    self.client.register(model_type, spec, params["registration"]["persist"],
                                         params["registration"].get("worker_ip"))
        if info["changed"]:
            self.result["changed"] = True

    def _current(self, uid):
        description = self.client.describe(uid)
        if description is not None and description.get("_loading"):
            # 4.x answers 503 while loading: wait for it before comparing.
            self.client.wait_ready(uid, self.params["timeout"])
            description = self.client.describe(uid)
        if description is None:
            return None, None
        return description, reported_gpus(description, self.client.replicas(uid))

    def ensure_present(self, body):
        params = self.params
        uid = params["model_uid"]
        wanted = desired_params(params, body)
        after = dict(wanted)
        after["launch"] = self.result["launch"]
        description, gpus = self._current(uid)
        if description is not None:
            running = running_params(description, gpus)
            diff = differences(running, wanted)
            self.result["model"] = description
            if not diff:
                self.result["placement"] = self._placement(gpus)
                self.before.update(running)
                self.after.update(running)
                return
            self.result["differences"] = diff
            listing = ", ".join("%s running %s, desired %s" % (key, value["running"], value["desired"])
                                for key, value in sorted(diff.items()))
            if not params["recreate"]:
                self.fail("model %s runs with other parameters (%s): set recreate: true to terminate and relaunch "
                          "it (its clients lose it meanwhile), or align the task with the running model" % (uid, listing))
            self.before.update(running)
            self.after.update(after)
            self.result["actions"].append("terminated %s to relaunch it (%s)" % (uid, listing))
            if not self.check_mode:
                self.client.terminate(uid)
        else:
            self.after.update(after)
        self.result["changed"] = True
        self.result["actions"].append("launched %s" % uid)
        if self.check_mode:
            return
        self.client.launch(body, wait_ready=False)
        if not params["wait"]:
            return
        self.client.wait_ready(uid, params["timeout"])
        description, gpus = self._current(uid)
        self.result["model"] = description
        placement = self._placement(gpus)
        self.result["placement"] = placement
        if params["check_placement"] and placement.get("problem"):
            self.fail("model %s is READY but %s: it is still running; terminate it (state: absent) or fix the launch "
                      "(free the GPUs, gpu_idx, XINFERENCE_ALLOW_MULTI_REPLICA_PER_GPU) and relaunch with recreate: true"
                      % (uid, placement["problem"]))

    def _placement(self, gpus):
        params = self.params
        per_replica = gpus_per_replica(params)
        asked = len(params["gpu_idx"]) if params.get("gpu_idx") else per_replica * params["replica"]
        placement = {"asked": asked, "gpu_idx": params.get("gpu_idx"), "reported": None, "verified": False}
        if gpus is None:
            placement["note"] = "Xinference reports no accelerators for this model: placement not verified"
            if asked:
                self.module.warn("model %s: %s" % (params["model_uid"], placement["note"]))
            return placement
        reported = sorted(set(i for replica in gpus for i in replica))
        placement["reported"] = reported
        count = sum(len(replica) for replica in gpus)
        explicit = bool(params.get("gpu_idx")) or isinstance(normalize_n_gpu(params.get("n_gpu")), int) or \
            params.get("single_gpu")
        if not explicit:
            # n_gpu omitted/auto: Xinference takes one GPU when it has one, or runs on CPU (a CPU-only worker).
            placement["verified"] = True
            placement["note"] = "n_gpu not set: Xinference chose %s" % ("GPUs %s" % reported if reported else "the CPU")
        elif count < asked:
            placement["problem"] = "landed on %d GPU%s (%s) while %d were asked for" % (
                count, "" if count == 1 else "s", reported, asked)
        elif params.get("gpu_idx") and reported != sorted(params["gpu_idx"]):
            placement["problem"] = "runs on GPUs %s while gpu_idx asked for %s" % (reported, sorted(params["gpu_idx"]))
        else:
            placement["verified"] = True
        return placement

    def ensure_absent(self):
        uid = self.params["model_uid"]
        description = self.client.describe(uid)
        if description is None:
            return
        self.before.update(running_params(description, None) if not description.get("_loading") else {"model_uid": uid})
        self.before["model_uid"] = uid
        self.result["changed"] = True
        self.result["actions"].append("terminated %s" % uid)
        if not self.check_mode:
            self.client.terminate(uid)
