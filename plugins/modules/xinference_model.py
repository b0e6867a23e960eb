#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: xinference_model
short_description: Launch, relaunch, terminate and register one model on a running Xinference, with a GPU preflight
version_added: 0.1.0
description:
  - Brings one model on an Xinference endpoint (1.x or 4.x, C(xinference-local) or a supervisor) to the
    desired state through its REST API, idempotent by O(model_uid) and the launch parameters Xinference
    reports back (name, type, engine, format, size, quantization, replica and the GPUs the model runs on).
  - A running model whose parameters differ is relaunched only with O(recreate=true); otherwise the task
    fails and names every difference.
  - Per-model O(envs) carry the NCCL settings C(gpu_health) derived for the host
    (C(recommendation.nccl_env), for example C(NCCL_P2P_DISABLE=1)) merged under the operator's own, so a
    model gets them even when the container was started without them (Xinference 1.8.1 and later).
  - Before any request, a preflight against the host's C(gpu_health) facts refuses launches that cannot
    work, each with the fix in the message. More GPUs than the container sees; O(gpu_idx) naming a GPU that
    does not exist or failed its health check; tensor parallel across a pair whose P2P is unsafe without
    C(NCCL_P2P_DISABLE=1) in the effective envs, and on exactly two such GPUs with vLLM's custom all-reduce
    still on; a container C(/dev/shm) below the recommendation for a multi-GPU launch; estimated weights
    (size in billions x bytes per weight, 2 at 16 bits, 1 at 8 bits, 0.5 at 4 bits) above the selected GPUs'
    memory x C(gpu_memory_utilization) (default 0.9).
  - Xinference's O(n_gpu=auto) means one GPU, whatever the host has (incident 2). An V(LLM) on a host with
    more than one visible GPU and neither an explicit O(n_gpu) nor O(gpu_idx) is refused unless
    O(single_gpu=true) says one GPU is intended.
  - C(gpu_memory_utilization) above 0.92 in O(engine_kwargs) only warns.
  - After a launch the module waits until Xinference reports the model V(READY), then checks placement, the
    GPUs Xinference reports for the model (C(accelerators)) against the GPUs asked for. A model that landed on
    fewer GPUs, or on other GPUs than O(gpu_idx), fails the task.
  - Custom models from a local directory (V(LLM), V(embedding), V(rerank)) are registered idempotently with
    O(registration); O(state=registered) only registers, O(state=present) registers then launches.
  - Tokens, passwords and API keys never appear in the output, and error bodies are sanitised.
author:
  - inferops.gpu maintainers (@inferops)
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Only reads (and logs in); reports what would be launched, relaunched, registered or terminated.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The diff shows the model's launch parameters before and after.
options:
  state:
    description:
      - V(present) launches the model (registering it first when O(registration) is set).
      - V(absent) terminates it; a registration stays.
      - V(registered) only makes sure the custom model in O(registration) is registered.
    type: str
    default: present
    choices: [present, absent, registered]
  url:
    description: Xinference REST endpoint (the supervisor's in a cluster).
    type: str
    default: http://127.0.0.1:9997
  api_key:
    description:
      - Bearer API key. Xinference 4.x keys (C(xf-...)) may only list and call models, so launching,
        terminating and registering on 4.x need O(username) and O(password).
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
  request_timeout:
    description: Seconds one HTTP request may take.
    type: int
    default: 60
  timeout:
    description:
      - Seconds to wait for a launched model to become V(READY). A first launch may download weights and
        engine packages.
    type: int
    default: 1800
  wait:
    description: Wait for the model to be ready and check its placement after a launch.
    type: bool
    default: true
  model_uid:
    description: The model's uid on Xinference. Defaults to O(model_name).
    type: str
  model_name:
    description: Built-in model family name, or the name of the custom model in O(registration).
    type: str
    required: true
  model_type:
    description: Xinference model type.
    type: str
    default: LLM
    choices: [LLM, embedding, rerank, image, audio, video]
  model_engine:
    description: Engine, for example V(vLLM), V(SGLang), V(llama.cpp), V(Transformers). Required for an V(LLM).
    type: str
  model_format:
    description: Weight format, for example V(pytorch), V(awq), V(gptq), V(fp8), V(ggufv2).
    type: str
  model_size_in_billions:
    description:
      - Parameters in billions, as Xinference reads it (C(model_size_in_billions), not the docs'
        C(size_in_billions)), for example V(72) or V(0_5).
      - Also the base of the memory preflight.
    type: raw
  quantization:
    description:
      - Quantization, for example V(none), V(Int4), V(Q4_K_M), V(fp8). Sets the bytes per weight of the memory
        preflight (16 bits 2, 8 bits 1, 4 bits 0.5); an unknown one skips it with a warning.
    type: str
  n_gpu:
    description:
      - GPUs per replica (per worker with O(n_worker)), a whole number, V(auto) (Xinference's default, which
        means B(one) GPU), or V(cpu) to run without a GPU.
      - On a host with more than one GPU an V(LLM) needs it (or O(gpu_idx)), or O(single_gpu=true).
    type: str
  gpu_idx:
    description:
      - GPU indexes as the Xinference worker sees them (inside the container). Its length must be a multiple of
        O(replica). The preflight takes them as the host's C(gpu_health) indexes, which holds when the container
        gets the host's GPUs in order.
    type: list
    elements: int
  replica:
    description: Replicas of the model.
    type: int
    default: 1
  worker_ip:
    description: Cluster mode, the worker to launch on.
    type: str
  n_worker:
    description: Cluster mode, workers one replica spans (multi-node vLLM/SGLang).
    type: int
  envs:
    description:
      - Environment of the model's process (Xinference 1.8.1 and later). Values are strings.
      - Merged over the NCCL variables of O(gpu_health) C(recommendation.nccl_env) (see O(apply_nccl_env)).
    type: dict
    default: {}
  apply_nccl_env:
    description: Merge O(gpu_health) C(recommendation.nccl_env) under O(envs).
    type: bool
    default: true
  engine_kwargs:
    description:
      - Extra launch keys passed to the engine, for example C(gpu_memory_utilization), C(max_model_len),
        C(disable_custom_all_reduce), C(enforce_eager).
      - C(gpu_memory_utilization) must lie in (0, 1]; above 0.92 warns.
    type: dict
    default: {}
  model_path:
    description: Launch a built-in model family from this local directory (or GGUF file) instead of downloading it.
    type: str
  recreate:
    description:
      - Relaunch (terminate then launch) a running model whose parameters differ. Without it such a model
        fails the task.
    type: bool
    default: false
  single_gpu:
    description: An V(LLM) with O(n_gpu) omitted or V(auto) on a multi-GPU host runs on one GPU on purpose.
    type: bool
    default: false
  gpu_health:
    description:
      - The host's C(gpu_health) facts, C(ansible_facts['gpu_health']) from P(inferops.gpu.gpu_health#module).
        Enables the preflight and the NCCL envs. Without it and without O(container_gpus), the GPU count
        Xinference reports (C(GET /v1/cluster/devices)) still drives the rules on GPU counts (incident 2 and
        O(n_gpu) above the GPUs visible), checked before anything changes.
    type: dict
  container_gpus:
    description: GPUs visible to the Xinference container, when fewer than the host's.
    type: int
  container_shm_bytes:
    description: Size of the container's C(/dev/shm) in bytes, compared with the C(gpu_health) recommendation.
    type: int
  check_placement:
    description: After a launch, fail when Xinference reports the model on fewer or other GPUs than asked.
    type: bool
    default: true
  registration:
    description:
      - A custom model to register from a local path before launching (O(state=present)) or alone
        (O(state=registered)), named O(model_name), of O(model_type). Idempotent, the registered spec is
        compared with the desired one and replaced when it differs.
      - The generated spec is Xinference's version 2 family format (1.8.0 and later). For other formats give
        the whole spec in O(registration.spec).
    type: dict
    suboptions:
      model_uri:
        description:
          - Absolute path of the model directory where the Xinference supervisor runs (inside its container),
            or a C(file://) URI.
        type: str
        required: true
      persist:
        description: Keep the registration across restarts (under C(XINFERENCE_HOME)).
        type: bool
        default: true
      dimensions:
        description: Embedding dimensions (V(embedding)).
        type: int
      max_tokens:
        description: Maximum input tokens (V(embedding), V(rerank)).
        type: int
        default: 512
      language:
        description: Languages of the model.
        type: list
        elements: str
        default: [en]
      context_length:
        description: Context length (V(LLM)).
        type: int
        default: 2048
      model_ability:
        description: Abilities (V(LLM)), for example V(generate) or V(chat).
        type: list
        elements: str
      model_family:
        description: Built-in family whose chat template an V(LLM) reuses.
        type: str
      worker_ip:
        description: Cluster mode, register on this worker only (the path exists there).
        type: str
      spec:
        description: Keys merged over the generated spec (top level), or a whole spec of another format.
        type: dict
        default: {}
seealso:
  - module: inferops.gpu.gpu_health
  - name: Xinference launch parameters
    description: Model launch, GPUs, replicas and per-model environment variables.
    link: https://inference.readthedocs.io/en/latest/user_guide/launch.html
notes:
  - Xinference does not report the O(envs) or O(engine_kwargs) of a running model, so a change only there is
    not detected; terminate the model (O(state=absent)) or change a reported parameter to relaunch it.
  - Xinference 4.x answers 503 while a model loads; the module waits for it before comparing.
"""

EXAMPLES = r"""
---
- name: Gather GPU facts first
  inferops.gpu.gpu_health:

- name: Qwen2.5 72B across GPUs 2 and 3 of a PCIe host (the preflight adds NCCL_P2P_DISABLE=1 if needed)
  inferops.gpu.xinference_model:
    url: http://127.0.0.1:9997
    username: admin
    password: "{{ vault_xinference_admin_password }}"
    model_name: qwen2.5-instruct
    model_uid: qwen2.5-72b
    model_engine: vLLM
    model_format: awq
    model_size_in_billions: 72
    quantization: Int4
    n_gpu: 2
    gpu_idx: [2, 3]
    engine_kwargs:
      gpu_memory_utilization: 0.9
      disable_custom_all_reduce: true
    gpu_health: "{{ ansible_facts['gpu_health'] }}"
    container_shm_bytes: "{{ ansible_facts['gpu_health']['recommendation']['container_shm_bytes'] }}"

- name: A small chat model on one GPU of an 8-GPU host, on purpose
  inferops.gpu.xinference_model:
    username: admin
    password: "{{ vault_xinference_admin_password }}"
    model_name: qwen2.5-instruct
    model_engine: vLLM
    model_size_in_billions: 7
    single_gpu: true
    gpu_health: "{{ ansible_facts['gpu_health'] }}"

- name: Register an embedding model from a local directory and launch it
  inferops.gpu.xinference_model:
    username: admin
    password: "{{ vault_xinference_admin_password }}"
    model_name: my-minilm
    model_type: embedding
    registration:
      model_uri: /models/all-MiniLM-L6-v2
      dimensions: 384
      max_tokens: 256

- name: Relaunch when the parameters changed
  inferops.gpu.xinference_model:
    username: admin
    password: "{{ vault_xinference_admin_password }}"
    model_name: qwen2.5-instruct
    model_uid: qwen2.5-72b
    model_engine: vLLM
    model_size_in_billions: 72
    n_gpu: 4
    recreate: true
    gpu_health: "{{ ansible_facts['gpu_health'] }}"

- name: Terminate a model
  inferops.gpu.xinference_model:
    username: admin
    password: "{{ vault_xinference_admin_password }}"
    model_name: qwen2.5-instruct
    model_uid: qwen2.5-72b
    state: absent
"""

RETURN = r"""
---
model_uid:
  description: The model's uid.
  returned: always
  type: str
  sample: qwen2.5-72b
actions:
  description: What was done (or, in check mode, would be done).
  returned: always
  type: list
  elements: str
  sample: ["registered embedding my-minilm", "launched my-minilm"]
launch:
  description: The launch body sent (or that would be sent); values of secret-looking O(envs) keys are masked.
  returned: when O(state=present)
  type: dict
  sample: {model_uid: qwen2.5-72b, model_name: qwen2.5-instruct, model_type: LLM, model_engine: vLLM, n_gpu: 2,
           gpu_idx: [2, 3], replica: 1, envs: {NCCL_P2P_DISABLE: "1"}, gpu_memory_utilization: 0.9}
differences:
  description: Parameters of the running model that differ from the desired ones, each with both values.
  returned: when the model was running with other parameters
  type: dict
  sample: {n_gpu: {running: 1, desired: 2}}
model:
  description: Xinference's description of the running model (C(GET /v1/models/<uid>)).
  returned: when the model runs after the task
  type: dict
placement:
  description: GPUs asked for and GPUs Xinference reports the model on (C(accelerators), worker-local indexes).
  returned: when O(state=present) and the model runs
  type: dict
  sample: {asked: 2, gpu_idx: [2, 3], reported: [2, 3], verified: true}
registration:
  description: The custom model registration, whether it changed and the spec.
  returned: when O(registration) is set
  type: dict
preflight:
  description: Preflight warnings, the effective envs added from C(gpu_health), and the memory estimate.
  returned: when O(state=present)
  type: dict
  sample:
    warnings: []
    envs_from_gpu_health: {NCCL_P2P_DISABLE: "1"}
    estimate: {weights_bytes: 36000000000, capacity_bytes: 86950438502, gpu_memory_utilization: 0.9,
               gpus_per_replica: 2, bytes_per_parameter: 0.5}
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.gpu.plugins.module_utils.model_preflight import (
    MODEL_TYPES, effective_envs, gpus_per_replica, normalize_n_gpu, parse_size_in_billions, preflight,
    validate_launch)
from ansible_collections.inferops.gpu.plugins.module_utils.xinference_api import (
    XinferenceClient, XinferenceError, redact)

EXPLICIT_KEYS = ("model_uid", "model_name", "model_type", "model_engine", "model_format", "model_size_in_billions",
                 "quantization", "replica", "n_gpu", "gpu_idx", "worker_ip", "n_worker", "envs", "model_path",
                 "request_limits", "peft_model_config", "download_hub", "replica_config")
SECRET_ENV = re.compile(r"(?i)(token|secret|password|passwd|key|credential)")
# Parameters Xinference reports for a running model, compared for idempotence.
REPORTED = ("model_name", "model_type", "model_engine", "model_format", "model_size_in_billions", "quantization",
            "replica", "n_worker")


def mask_envs(envs):
    return dict((key, "********" if SECRET_ENV.search(key) else value) for key, value in (envs or {}).items())


def _size_for_body(value):
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value) if float(value).is_integer() else value
    text = str(value).strip()
    if re.match(r"^\d+$", text):
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
        elif actual.get(key) != value:
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
        launch = dict(params)
        launch["registration_only"] = state != "present"
        errors = validate_launch(launch)
        clash = sorted(set(params.get("engine_kwargs") or {}) & set(EXPLICIT_KEYS))
        if clash:
            errors.append("engine_kwargs may not set %s: use the module options of the same name" % ", ".join(clash))
        if state == "registered" and not params.get("registration"):
            errors.append("state: registered needs registration (model_uri and the spec of the custom model)")
        if params.get("registration") and params["model_type"] not in ("LLM", "embedding", "rerank") and \
                not params["registration"].get("spec"):
            errors.append("registration of a %s model needs the whole spec in registration.spec" % params["model_type"])
        if params.get("registration"):
            uri = params["registration"]["model_uri"]
            if not (uri.startswith(("file:///", "/")) or re.match(r"^[a-z0-9]+://", uri)):
                errors.append("registration.model_uri %r must be an absolute path (Xinference rejects relative ones)"
                              % uri)
        if errors:
            self.fail("invalid parameters, nothing was requested: " + "; ".join(errors))

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

        self.client = XinferenceClient(params["url"], api_key=params.get("api_key"), username=params.get("username"),
                                       password=params.get("password"), validate_certs=params["validate_certs"],
                                       request_timeout=params["request_timeout"])
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


def main():
    registration = {
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
    argument_spec = {
        "state": {"type": "str", "default": "present", "choices": ["present", "absent", "registered"]},
        "url": {"type": "str", "default": "http://127.0.0.1:9997"},
        "api_key": {"type": "str", "no_log": True},
        "username": {"type": "str"},
        "password": {"type": "str", "no_log": True},
        "validate_certs": {"type": "bool", "default": True},
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
        "envs": {"type": "dict", "default": {}},
        "apply_nccl_env": {"type": "bool", "default": True},
        "engine_kwargs": {"type": "dict", "default": {}},
        "model_path": {"type": "str"},
        "recreate": {"type": "bool", "default": False},
        "single_gpu": {"type": "bool", "default": False},
        "gpu_health": {"type": "dict"},
        "container_gpus": {"type": "int"},
        "container_shm_bytes": {"type": "int"},
        "check_placement": {"type": "bool", "default": True},
        "registration": {"type": "dict", "options": registration},
    }
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[("api_key", "username")],
                           required_together=[("username", "password")])
    ModelManager(module).run()


if __name__ == "__main__":
    main()
