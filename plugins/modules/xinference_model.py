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
extends_documentation_fragment:
  - inferops.gpu.xinference_connection
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
      - The values of names that look secret (C(HF_TOKEN), C(*_KEY), C(*PASSWORD*), C(*SECRET*)...) never
        appear in the module's output; the others stay readable. A failure while the arguments are parsed
        hides them all.
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.gpu.plugins.module_utils.secrets import hide_url_password, plain_values, secret_values
from ansible_collections.inferops.gpu.plugins.module_utils.xinference_model_state import (
    ARGUMENT_SPEC, MUTUALLY_EXCLUSIVE, REQUIRED_TOGETHER, ModelManager)


def main():
    # Spec, validation and desired-state logic live in module_utils.xinference_model_state, which the
    # xinference role's preflight shares (filter xinference_model_errors).
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           mutually_exclusive=MUTUALLY_EXCLUSIVE, required_together=REQUIRED_TOGETHER)
    # envs is no_log in the spec, so a failure while the arguments are parsed shows none of its values.
    # Once parsed, only the values of secret-looking names (HF_TOKEN, ...) stay hidden: Ansible masks a
    # no_log value wherever it occurs in the output, and a hidden NCCL_P2P_DISABLE=1 would mask every "1".
    envs = module.params.get("envs") or {}
    keep = secret_values(envs) | set(str(module.params[name]) for name in ("password", "api_key") if module.params.get(name))
    module.no_log_values.difference_update(plain_values(envs) - keep)
    hide_url_password(module)
    ModelManager(module).run()


if __name__ == "__main__":
    main()
