# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What draining and restoring one Xinference host means, as pure functions over what the REST API
reports (the inferops.gpu.xinference_drain module does the requests). Unit-tested in
tests/unit/test_xinference_drain.py.

A record (one per model the host serves) is what playbooks/upgrade.yml keeps between the drain and
the restore:
    {"model_uid", "model_name", "model_type", "replica": replicas in the cluster,
     "here": [replica ids on this host's worker], "elsewhere": [the worker of each other replica],
     "launch": {launch parameters Xinference reports}}

Xinference 4.x has no call that cordons a worker (research/xinference-day2.md section 0): a worker
is drained by deleting its replicas of models that have a replica elsewhere; a model whose only
replicas are on the worker is terminated (it cannot be served during the upgrade) and launched again
on the same worker afterwards.
"""

from __future__ import annotations

# Launch parameters Xinference reports back (GET /v1/models) that a relaunch sends again.
LAUNCH_KEYS = ("model_name", "model_type", "model_engine", "model_format", "model_size_in_billions",
               "quantization")


def _described_models(listing):
    """GET /v1/models answers {"data": [...]} (4.x, OpenAI style) or {uid: description} (1.x)."""
    if isinstance(listing, dict) and isinstance(listing.get("data"), list):
        return [dict(item, model_uid=item.get("id") or item.get("model_uid")) for item in listing["data"]
                if isinstance(item, dict)]
    if isinstance(listing, dict):
        return [dict(item, model_uid=uid) for uid, item in listing.items() if isinstance(item, dict)]
    if isinstance(listing, list):
        return [dict(item, model_uid=item.get("id") or item.get("model_uid")) for item in listing if isinstance(item, dict)]
    return []


def launch_parameters(description):
    """The launch body a relaunch sends, from a model's description (None values left out)."""
    launch = dict((key, description[key]) for key in LAUNCH_KEYS if description.get(key) not in (None, ""))
    accelerators = description.get("accelerators")
    if isinstance(accelerators, list) and accelerators:
        launch["n_gpu"] = len(accelerators)
    return launch


def records(listing, replicas_by_uid, worker=None):
    """The models a host serves, as records.

    listing: GET /v1/models; replicas_by_uid: {uid: GET /v1/models/{uid}/replicas or None (1.x)};
    worker: the worker's "ip:port" (a worker host: only models with a replica there), or None (the
    supervisor or a local host: every model).
    """
    found = []
    for described in sorted(_described_models(listing), key=lambda item: str(item.get("model_uid"))):
        uid = described.get("model_uid")
        if not uid:
            continue
        replicas = replicas_by_uid.get(uid) or []
        here = sorted(int(r["replica_id"]) for r in replicas
                      if worker is not None and r.get("worker_address") == worker and r.get("replica_id") is not None)
        if worker is not None and not here:
            continue
        total = len(replicas) if replicas else int(described.get("replica") or 1)
        elsewhere = sorted(str(r.get("worker_address")) for r in replicas
                           if worker is not None and r.get("worker_address") != worker)
        found.append({"model_uid": uid, "model_name": described.get("model_name"),
                      "model_type": described.get("model_type"), "replica": total, "here": here,
                      "elsewhere": elsewhere, "launch": launch_parameters(described)})
    return found


def batch_conflicts(models, batch_workers=()):
    """Models whose every other replica is on a worker drained in the same batch: each host of the
    batch would delete its replica counting on the others, and the model would lose them all.
    One sentence per model; the drain refuses them before any request."""
    batch = set(batch_workers or ())
    conflicts = []
    for model in models:
        elsewhere = model.get("elsewhere")
        if not model.get("here") or not elsewhere or int(model.get("replica") or 0) <= len(model["here"]):
            continue
        if all(address in batch for address in elsewhere):
            conflicts.append("%s: its other replica(s) are on %s, upgraded in the same batch" % (
                model["model_uid"], ", ".join(sorted(set(elsewhere)))))
    return conflicts


def drain_actions(models, worker=None):
    """Requests that drain a worker: [{"action", "model_uid", "replica_id"?, "why"}].

    A replica is deleted when the model keeps a replica elsewhere; a model served only here is
    terminated. The supervisor and local hosts (worker None) have nothing to drain through the API:
    the supervisor's models live on the workers, a local host's die with its container. A batch
    that holds every replica of a model is refused first (batch_conflicts).
    """
    if worker is None:
        return []
    actions = []
    for model in models:
        here = list(model.get("here") or [])
        if not here:
            continue
        if int(model.get("replica") or 0) > len(here):
            for replica_id in here:
                actions.append({"action": "delete_replica", "model_uid": model["model_uid"], "replica_id": replica_id,
                                "why": "%d other replica(s) keep serving" % (int(model["replica"]) - len(here))})
        else:
            actions.append({"action": "terminate", "model_uid": model["model_uid"],
                            "why": "only served here: unavailable until this host is back"})
    return actions


def restore_actions(models, current, worker=None):
    """Requests that bring the recorded models back: launch a model that is gone (on this worker),
    add replicas on this worker until it has as many as before. On the supervisor (worker None)
    only a model that is gone altogether is launched again; a missing replica is its worker's to
    report (placement_errors names it).

    current: {uid: GET /v1/models/{uid}/replicas now, or None when the model is not running}.
    """
    actions = []
    for model in models:
        uid = model["model_uid"]
        now = current.get(uid)
        want = len(model.get("here") or []) if worker is not None else int(model.get("replica") or 1)
        if now is None:
            body = dict(model.get("launch") or {}, model_uid=uid, replica=max(want, 1))
            if worker is not None:
                # Launch takes the worker's IP (the role pins a declared model the same way).
                body["worker_ip"] = worker.rsplit(":", 1)[0]
            actions.append({"action": "launch", "model_uid": uid, "body": body})
            continue
        if worker is None:
            # The supervisor: the workers own the placement and report their replicas themselves.
            continue
        have = len([r for r in now if r.get("worker_address") == worker])
        if have < want:
            actions.append({"action": "add_replicas", "model_uid": uid,
                            "body": {"replica": want - have, "replica_config": {"devices": [{"worker_ip": worker}]}}})
    return actions


def placement_errors(models, current, worker=None):
    """What differs from the record once restored: a model missing, fewer replicas (here)."""
    errors = []
    for model in models:
        uid = model["model_uid"]
        now = current.get(uid)
        if now is None:
            errors.append("%s is not running" % uid)
            continue
        if worker is not None:
            have = len([r for r in now if r.get("worker_address") == worker])
            want = len(model.get("here") or [])
            if have != want:
                errors.append("%s has %d replica(s) on %s, %d before" % (uid, have, worker, want))
        elif len(now) < int(model.get("replica") or 1):
            errors.append("%s has %d replica(s), %d before" % (uid, len(now), int(model.get("replica") or 1)))
        not_ready = [str(r.get("replica_id")) for r in now
                     if (worker is None or r.get("worker_address") == worker)
                     and str(r.get("status", "READY")).upper() != "READY"]
        if not_ready:
            errors.append("%s replica(s) %s not READY" % (uid, ", ".join(not_ready)))
    return errors


def answer_request(model):
    """(path, body) of the one request that shows a model answers, or None for a type without one."""
    uid = model["model_uid"]
    kind = str(model.get("model_type") or "").lower()
    if kind == "embedding":
        return "/v1/embeddings", {"model": uid, "input": ["inferops.gpu upgrade check"]}
    if kind == "rerank":
        return "/v1/rerank", {"model": uid, "query": "inferops", "documents": ["inferops.gpu upgrade check"]}
    if kind == "llm":
        return "/v1/chat/completions", {"model": uid, "max_tokens": 1,
                                        "messages": [{"role": "user", "content": "Say OK."}]}
    return None
