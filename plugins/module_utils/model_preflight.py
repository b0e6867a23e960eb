# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Preflight of one Xinference model launch against the host's gpu_health facts.

Pure Python, no Ansible import, so the xinference_model module and any role (through a filter or
a small script) reuse the same rules. Every refusal is one sentence that says what is wrong and
the fix.

    errors = validate_launch(launch)                   # bad input: stop before any request
    envs = effective_envs(gpu_health, launch["envs"])  # recommendation.nccl_env under the operator's envs
    result = preflight(launch, gpu_health=facts, container_gpus=4, container_shm_bytes=64 << 30)
    result["refusals"], result["warnings"], result["gpus"], result["estimate"]

`launch` keys (all optional but model_name): model_name, model_type, model_engine, model_format,
model_size_in_billions, quantization, n_gpu (int, "auto", "cpu" or None), gpu_idx (list of int),
replica, envs (dict), engine_kwargs (dict), single_gpu (bool).
"""

from __future__ import annotations

import math
import re

from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import format_bytes_docker

MODEL_TYPES = ("LLM", "embedding", "rerank", "image", "audio", "video")
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
GPU_MEMORY_UTILIZATION_WARN = 0.92
GB = 1000 ** 3

_BITS_PATTERNS = (
    re.compile(r"^q(\d+)(?:_|$)"),           # GGUF: Q4_K_M, Q8_0, Q5_1
    re.compile(r"^iq(\d+)(?:_|$)"),          # GGUF i-quants: IQ4_XS
    re.compile(r"^(?:int|uint|fp|bf|float|w)(\d+)"),  # Int4, Int8, fp8, fp16, bf16, W8A8
    re.compile(r"^(\d+)[-_ ]?bits?$"),       # 4-bit, 8bit, 16 bit
)
_FORMAT_BITS = {"awq": 4, "gptq": 4, "fp8": 8, "bnb": 4}


def parse_size_in_billions(value):
    """Xinference's model_size_in_billions: 72, "72", 0.5, "0_5", "1_8" -> float (None stays None)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("model_size_in_billions must be a number, got %r" % (value,))
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().lower().rstrip("b").replace("_", ".")
    return float(text)


def bytes_per_parameter(quantization=None, model_format=None):
    """Bytes one weight takes: 16-bit 2, 8-bit 1, 4-bit 0.5; None when the quantization is unknown."""
    quant = (str(quantization).strip().lower() if quantization is not None else "")
    fmt = (str(model_format).strip().lower() if model_format is not None else "")
    if quant in ("", "none", "null", "fp16", "bf16", "float16", "bfloat16", "16-bit", "16bit"):
        if fmt in _FORMAT_BITS:
            return _FORMAT_BITS[fmt] / 8.0
        if quant in ("", "none", "null") and fmt not in ("", "pytorch", "safetensors", "mlx", "fp16", "bf16"):
            return None
        return 2.0
    for pattern in _BITS_PATTERNS:
        match = pattern.match(quant)
        if match:
            bits = int(match.group(1))
            if 1 <= bits <= 32:
                return bits / 8.0
    if quant in ("awq", "gptq", "bnb"):
        return 0.5
    return None


def estimate_weights_bytes(size_in_billions, quantization=None, model_format=None):
    """Weight bytes of a model (72B at 16 bits -> 144e9); None when size or quantization is unknown."""
    size = parse_size_in_billions(size_in_billions)
    per = bytes_per_parameter(quantization, model_format)
    if size is None or per is None:
        return None
    return int(size * per * GB)


def format_gb(size):
    return "%.1f GB" % (size / float(GB))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def normalize_n_gpu(value):
    """n_gpu option -> int, "auto", "cpu" or None (omitted). Raises ValueError on anything else."""
    if value is None:
        return None
    if _is_int(value):
        return value
    text = str(value).strip().lower()
    if text in ("auto", "cpu"):
        return text
    if re.match(r"^-?\d+\Z", text):
        return int(text)
    raise ValueError("n_gpu must be a whole number of GPUs, 'auto' or 'cpu', got %r" % (value,))


def validate_launch(launch):
    """Bad input, found without any request. Returns a list of messages (empty when fine)."""
    errors = []
    model_type = launch.get("model_type") or "LLM"
    if model_type not in MODEL_TYPES:
        errors.append("model_type %r is not one of %s" % (model_type, ", ".join(MODEL_TYPES)))
    try:
        n_gpu = normalize_n_gpu(launch.get("n_gpu"))
    except ValueError as exc:
        errors.append(str(exc))
        n_gpu = None
    if _is_int(n_gpu) and n_gpu < 1:
        errors.append("n_gpu %d: a model needs at least one GPU; use n_gpu: cpu to run it without a GPU" % n_gpu)
    replica = launch.get("replica")
    if replica is None:
        replica = 1
    if not _is_int(replica) or replica < 1:
        errors.append("replica %r: must be a whole number, 1 or more" % (replica,))
        replica = 1
    gpu_idx = launch.get("gpu_idx")
    if gpu_idx is not None:
        if not isinstance(gpu_idx, (list, tuple)) or not gpu_idx or not all(_is_int(i) for i in gpu_idx):
            errors.append("gpu_idx %r: must be a non-empty list of GPU indexes" % (gpu_idx,))
        else:
            negative = sorted(i for i in gpu_idx if i < 0)
            if negative:
                errors.append("gpu_idx %s: GPU indexes start at 0, %s is negative" % (
                    list(gpu_idx), ", ".join(str(i) for i in negative)))
            duplicated = sorted(set(i for i in gpu_idx if list(gpu_idx).count(i) > 1))
            if duplicated:
                errors.append("gpu_idx %s names GPU %s more than once: list each GPU once" % (
                    list(gpu_idx), ", ".join(str(i) for i in duplicated)))
            if len(gpu_idx) % replica:
                errors.append("gpu_idx has %d GPUs for replica %d: Xinference needs len(gpu_idx) to be a multiple "
                              "of replica (each replica gets len(gpu_idx) / replica GPUs)" % (len(gpu_idx), replica))
            elif _is_int(n_gpu) and n_gpu >= 1 and n_gpu != len(gpu_idx) // replica:
                errors.append("n_gpu %d contradicts gpu_idx %s (%d GPUs per replica): Xinference uses gpu_idx and "
                              "ignores n_gpu, so make them agree or drop n_gpu" % (
                                  n_gpu, list(gpu_idx), len(gpu_idx) // replica))
            if n_gpu == "cpu":
                errors.append("n_gpu: cpu contradicts gpu_idx %s: drop one of them" % (list(gpu_idx),))
    kwargs = launch.get("engine_kwargs") or {}
    gmu = kwargs.get("gpu_memory_utilization")
    if gmu is not None:
        try:
            gmu_value = float(gmu)
        except (TypeError, ValueError):
            gmu_value = None
        if isinstance(gmu, bool) or gmu_value is None or not 0 < gmu_value <= 1:
            errors.append("gpu_memory_utilization %r: must be a fraction in (0, 1], for example 0.9" % (gmu,))
    if launch.get("single_gpu") and ((_is_int(n_gpu) and n_gpu > 1) or (gpu_idx and len(gpu_idx) > replica)):
        errors.append("single_gpu: true contradicts a multi-GPU launch (n_gpu/gpu_idx): drop one of them")
    try:
        size = parse_size_in_billions(launch.get("model_size_in_billions"))
        if size is not None and size <= 0:
            errors.append("model_size_in_billions %r: must be positive" % (launch.get("model_size_in_billions"),))
    except ValueError:
        errors.append("model_size_in_billions %r: must be a number of billions such as 72, 0.5 or \"0_5\"" % (
            launch.get("model_size_in_billions"),))
    if model_type == "LLM" and not launch.get("model_engine") and not launch.get("registration_only"):
        errors.append("model_engine is required for an LLM (Xinference answers 400 without it): "
                      "for example vLLM, SGLang, llama.cpp or Transformers")
    return errors


def effective_envs(gpu_health=None, envs=None, apply_nccl_env=True):
    """Per-model envs: gpu_health's recommendation.nccl_env under the operator's envs (the operator wins)."""
    merged = {}
    if apply_nccl_env and gpu_health:
        for key, value in ((gpu_health.get("recommendation") or {}).get("nccl_env") or {}).items():
            merged[str(key)] = str(value)
    for key, value in (envs or {}).items():
        merged[str(key)] = "" if value is None else str(value)
    return merged


def _truthy(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _gpu_count(gpu_health):
    if not gpu_health:
        return None
    count = gpu_health.get("gpu_count")
    if count is None and gpu_health.get("gpus") is not None:
        count = len(gpu_health["gpus"])
    return count


def gpus_per_replica(launch):
    """GPUs one replica asks for: the int n_gpu, len(gpu_idx)/replica, 1 for auto/omitted, 0 for cpu."""
    n_gpu = normalize_n_gpu(launch.get("n_gpu"))
    replica = launch.get("replica") or 1
    if launch.get("gpu_idx"):
        return len(launch["gpu_idx"]) // replica
    if n_gpu == "cpu":
        return 0
    if _is_int(n_gpu):
        return n_gpu
    return 1


def _suggest_gpus(weights, per_gpu_bytes, gmu, available):
    """Smallest power of two of GPUs (what tensor parallelism accepts) whose memory holds the weights."""
    if not per_gpu_bytes:
        return None
    need = max(1, int(math.ceil(weights / (per_gpu_bytes * gmu))))
    count = 1
    while count < need:
        count *= 2
    if available is not None and count > available:
        return None
    return count


def _pairs_of(indexes):
    ordered = sorted(indexes)
    return [(a, b) for pos, a in enumerate(ordered) for b in ordered[pos + 1:]]


def preflight(launch, gpu_health=None, container_gpus=None, container_shm_bytes=None):
    """Judge one launch. Returns {"refusals": [...], "warnings": [...], "gpus": [...] or None, "estimate": {...}}.

    launch["envs"] must already be the effective envs (see effective_envs). Rules that need facts the
    caller did not give are skipped and say so in warnings only when that matters.
    """
    refusals, warnings = [], []
    model_type = launch.get("model_type") or "LLM"
    n_gpu = normalize_n_gpu(launch.get("n_gpu"))
    gpu_idx = list(launch.get("gpu_idx") or [])
    replica = launch.get("replica") or 1
    envs = launch.get("envs") or {}
    kwargs = launch.get("engine_kwargs") or {}
    engine = str(launch.get("model_engine") or "").lower()
    gpus_by_index = {}
    failed_checks = {}
    pairs = {}
    recommendation = {}
    if gpu_health:
        for gpu in gpu_health.get("gpus") or []:
            gpus_by_index[gpu.get("index")] = gpu
        for check in gpu_health.get("checks") or []:
            if check.get("gpu") is not None and check.get("verdict") in ("fail", "error"):
                failed_checks.setdefault(check["gpu"], []).append(check)
        for pair in gpu_health.get("pairs") or []:
            if pair.get("gpus") and len(pair["gpus"]) == 2:
                pairs[tuple(sorted(pair["gpus"]))] = pair
        recommendation = gpu_health.get("recommendation") or {}
    host_gpus = _gpu_count(gpu_health)
    visible = container_gpus if container_gpus is not None else host_gpus
    per_replica = gpus_per_replica(launch)
    total_gpus = len(gpu_idx) if gpu_idx else per_replica * replica
    healthy = sorted(i for i in gpus_by_index if i not in failed_checks)
    gmu = float(kwargs.get("gpu_memory_utilization") or DEFAULT_GPU_MEMORY_UTILIZATION)
    estimate = {"weights_bytes": None, "capacity_bytes": None, "gpu_memory_utilization": gmu,
                "gpus_per_replica": per_replica, "bytes_per_parameter": None}

    # gpu_memory_utilization close to 1 leaves no room for CUDA graphs, activations, other processes.
    if gmu > GPU_MEMORY_UTILIZATION_WARN:
        warnings.append("gpu_memory_utilization %.2f is above %.2f: vLLM may run out of memory for CUDA graphs "
                        "and activations, or fail to start when another process holds GPU memory; 0.9 is the "
                        "default" % (gmu, GPU_MEMORY_UTILIZATION_WARN))

    # 1. More GPUs than the container sees.
    explicit = bool(gpu_idx) or _is_int(n_gpu)
    if explicit and visible is not None and total_gpus > visible:
        where = ("the container sees %d" % visible if container_gpus is not None
                 else "gpu_health finds %d on the host" % visible)
        fix = ("set n_gpu to at most %d" % (visible // replica) if visible // replica >= 1
               else "run it on a host with GPUs")
        if host_gpus is not None and gpu_health and gpu_health.get("expected_gpu_count") and \
                host_gpus < gpu_health["expected_gpu_count"]:
            fix += (", or bring back the missing GPU (gpu_health expected %d: check lspci -d 10de: and the "
                    "driver)" % gpu_health["expected_gpu_count"])
        elif container_gpus is not None and host_gpus is not None and container_gpus < host_gpus:
            fix += ", or start the container with more of the host's %d GPUs (xinference role gpus)" % host_gpus
        refusals.append("n_gpu: the launch needs %d GPU%s (%d per replica x %d replica%s) but %s: %s" % (
            total_gpus, "" if total_gpus == 1 else "s", per_replica, replica, "" if replica == 1 else "s",
            where, fix))

    # 2. gpu_idx naming a GPU that does not exist or failed its health check.
    if gpu_idx:
        limit = visible
        missing = [i for i in gpu_idx if (limit is not None and i >= limit) or (gpus_by_index and i not in gpus_by_index)]
        if missing:
            candidates = healthy if healthy else list(range(visible or 0))
            refusals.append("gpu_idx %s: GPU %s does not exist (%s): choose from %s" % (
                gpu_idx, ", ".join(str(i) for i in missing),
                "the container sees GPUs 0-%d" % (limit - 1) if limit else "no GPU is visible",
                candidates))
        for index in gpu_idx:
            if index in failed_checks:
                reasons = "; ".join("%s: %s" % (c["id"], c["reason"]) for c in failed_checks[index])
                others = [i for i in healthy if i not in gpu_idx]
                refusals.append("gpu_idx %s: GPU %d failed its health check (%s): choose healthy GPUs%s, or "
                                "repair GPU %d and rerun gpu_health" % (
                                    gpu_idx, index, reasons,
                                    " (healthy and unused here: %s)" % others if others else "", index))

    # 3. Tensor parallel across a pair whose P2P is unsafe.
    if per_replica > 1 and pairs:
        if gpu_idx:
            considered = []
            for start in range(0, len(gpu_idx), per_replica):
                considered.extend(_pairs_of(gpu_idx[start:start + per_replica]))
            scope = "gpu_idx %s" % gpu_idx
        else:
            considered = list(pairs)
            scope = "n_gpu %d without gpu_idx (Xinference may pick any GPUs)" % per_replica
        unsafe = [pairs[p] for p in considered if p in pairs and not pairs[p].get("p2p_safe", True)]
        if unsafe:
            detail = "; ".join("GPU%d-GPU%d (%s)" % (p["gpus"][0], p["gpus"][1],
                                                     ", ".join(p.get("unsafe_reasons") or ["P2P unsafe"]))
                               for p in unsafe)
            if str(envs.get("NCCL_P2P_DISABLE", "")).strip() != "1":
                refusals.append("%s: tensor parallel across pairs whose P2P is unsafe: %s; NCCL hangs while loading "
                                "unless envs sets NCCL_P2P_DISABLE=1: keep the gpu_health recommendation "
                                "(apply_nccl_env: true) or set envs: {NCCL_P2P_DISABLE: '1'}, or choose GPUs whose "
                                "pairs are safe" % (scope, detail))
            if per_replica == 2 and engine in ("vllm", "") and not _truthy(kwargs.get("disable_custom_all_reduce")):
                refusals.append("%s: vLLM's custom all-reduce talks P2P directly on exactly two GPUs and "
                                "NCCL_P2P_DISABLE does not cover it (%s): add disable_custom_all_reduce: true to "
                                "engine_kwargs" % (scope, detail))

    # 4. Container shm below the recommendation for a multi-GPU launch.
    wanted_shm = recommendation.get("container_shm_bytes")
    if per_replica > 1 and container_shm_bytes is not None and wanted_shm and container_shm_bytes < wanted_shm:
        refusals.append("container /dev/shm is %s, below the %s gpu_health recommends for %d-GPU NCCL: NCCL fails "
                        "or hangs creating its shared-memory segments; recreate the container with shm_size: %s "
                        "(xinference role xinference_shm_size) or ipc: host" % (
                            format_bytes_docker(container_shm_bytes), format_bytes_docker(wanted_shm), per_replica,
                            format_bytes_docker(wanted_shm)))

    # 5. Weights larger than the selected GPUs' memory x gpu_memory_utilization.
    weights = None
    if model_type == "LLM" and per_replica >= 1:
        per = bytes_per_parameter(launch.get("quantization"), launch.get("model_format"))
        estimate["bytes_per_parameter"] = per
        try:
            weights = estimate_weights_bytes(launch.get("model_size_in_billions"), launch.get("quantization"),
                                             launch.get("model_format"))
        except ValueError:
            weights = None
        if launch.get("model_size_in_billions") is not None and per is None:
            warnings.append("quantization %r (format %r) has no known bits per weight: the memory preflight is "
                            "skipped" % (launch.get("quantization"), launch.get("model_format")))
        estimate["weights_bytes"] = weights
        if weights is not None and gpus_by_index:
            if gpu_idx:
                selected = [gpus_by_index[i] for i in gpu_idx[:per_replica] if i in gpus_by_index]
            else:
                ordered = sorted(gpus_by_index.values(),
                                 key=lambda gpu: (gpu.get("memory") or {}).get("total_bytes") or 0)
                selected = ordered[:per_replica]
            memories = [(gpu.get("memory") or {}).get("total_bytes") for gpu in selected]
            if memories and all(memories):
                capacity = int(sum(memories) * gmu)
                estimate["capacity_bytes"] = capacity
                if weights > capacity:
                    suggestion = _suggest_gpus(weights, min(memories), gmu, visible)
                    if suggestion:
                        fix = "set n_gpu: %d%s" % (suggestion, " (and gpu_idx with %d GPUs per replica)" % suggestion
                                                   if gpu_idx else "")
                    else:
                        fix = "no GPU count on this host holds it"
                    refusals.append("model_size_in_billions %s at %s bits needs about %s of weights, more than %d GPU%s "
                                    "x %s x gpu_memory_utilization %.2f = %s: %s, or launch a smaller quantization"
                                    % (launch.get("model_size_in_billions"), _bits(per), format_gb(weights),
                                       len(memories), "" if len(memories) == 1 else "s",
                                       format_gb(min(memories)), gmu, format_gb(capacity), fix))

    # 6. Incident 2: an LLM on a multi-GPU host with n_gpu omitted/auto lands on ONE GPU.
    if model_type == "LLM" and visible is not None and visible > 1 and n_gpu in (None, "auto") and not gpu_idx \
            and not launch.get("single_gpu"):
        suggestion = None
        if weights is not None and gpus_by_index:
            smallest = min((gpu.get("memory") or {}).get("total_bytes") or 0 for gpu in gpus_by_index.values())
            suggestion = _suggest_gpus(weights, smallest, gmu, visible)
        hint = "n_gpu: %d" % suggestion if suggestion else "n_gpu: <GPUs for this model, up to %d>" % visible
        refusals.append("n_gpu %s on a host with %d GPUs: Xinference's n_gpu auto means ONE GPU, the others stay "
                        "idle (incident 2): set %s (with gpu_idx to choose them), or single_gpu: true when one GPU "
                        "is intended" % ("omitted" if n_gpu is None else "auto", visible, hint))

    return {"refusals": refusals, "warnings": warnings, "gpus": gpu_idx or None,
            "gpus_per_replica": per_replica, "visible_gpus": visible, "estimate": estimate}


def _bits(per):
    bits = per * 8
    return "%d" % bits if bits == int(bits) else "%.1f" % bits
