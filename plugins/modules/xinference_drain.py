#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: xinference_drain
short_description: Record, drain and restore the models one Xinference host serves (rolling upgrades)
version_added: 0.2.0
description:
  - The per-host model steps of the rolling upgrade (C(playbooks/upgrade.yml)), through Xinference's
    REST API (4.x replica calls; 1.x has no per-replica calls and only the supervisor and local shapes apply).
  - V(query) reads the models the host serves and their launch parameters. With O(worker) (a worker host) only the
    models with a replica on that worker, with the replica ids there; without it (the supervisor or a local
    host) every model.
  - V(drained) removes the worker's replicas from routing. Xinference has no cordon call, so a replica of a model
    that has another replica elsewhere is deleted (the others keep serving), and a model served only on this
    worker is terminated (unavailable until the host is back). Without O(worker) nothing is requested.
  - V(restored) brings the recorded models (O(models), the V(query) result taken before) back - a model that
    is gone is launched again with its recorded parameters (on this worker), a model that lost its replicas
    here gets as many replicas pinned to this worker as it had - then waits until each is V(READY), checks
    the placement against the record and sends one request per model (embedding, rerank, LLM).
author:
  - inferops.gpu maintainers (@inferops)
extends_documentation_fragment:
  - inferops.gpu.xinference_connection
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Only reads (and logs in); reports the replicas it would delete and the launches it would make.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
options:
  state:
    description: V(query), V(drained) or V(restored), see the description.
    type: str
    default: query
    choices: [query, drained, restored]
  request_timeout:
    description: Seconds one HTTP request may take (adding a replica waits until it is loaded).
    type: int
    default: 600
  worker:
    description: The worker's address as Xinference lists it (C(ip:port)). Omitted on the supervisor and local hosts.
    type: str
  batch_workers:
    description:
      - V(drained), the addresses (C(ip:port)) of the other workers drained at the same time (the rest of
        the rolling upgrade's batch). A model whose every other replica is on one of them would lose all its
        replicas; the drain then fails before any request, naming the models.
    type: list
    elements: str
    default: []
  models:
    description: The V(query) result taken before the drain (required for V(restored)).
    type: list
    elements: dict
  timeout:
    description:
      - V(restored), seconds to wait for the models to be V(READY). On the supervisor it is also how long the
        workers get to report their models again (about 15 s in Xinference 4.x) before a missing model is
        launched anew.
    type: int
    default: 600
  answer:
    description: V(restored), send one request per model and fail unless it answers.
    type: bool
    default: true
seealso:
  - module: inferops.gpu.xinference_model
notes:
  - A deleted replica's in-flight requests may fail; clients should retry (Xinference does not retry on
    another replica).
"""

EXAMPLES = r"""
- name: Record the models this worker serves
  inferops.gpu.xinference_drain:
    url: http://10.0.0.1:9997
    username: admin
    password: "{{ xinference_admin_password }}"
    worker: 10.0.0.2:30001
  register: before

- name: Drain it
  inferops.gpu.xinference_drain:
    state: drained
    url: http://10.0.0.1:9997
    username: admin
    password: "{{ xinference_admin_password }}"
    worker: 10.0.0.2:30001

- name: Bring its models back after the upgrade
  inferops.gpu.xinference_drain:
    state: restored
    url: http://10.0.0.1:9997
    username: admin
    password: "{{ xinference_admin_password }}"
    worker: 10.0.0.2:30001
    models: "{{ before.models }}"
"""

RETURN = r"""
models:
  description: The models the host serves now (V(query)), or the record it was given.
  returned: always
  type: list
  elements: dict
  sample: [{"model_uid": "minilm", "model_name": "inferops-minilm", "model_type": "embedding", "replica": 2,
            "here": [1], "launch": {"model_name": "inferops-minilm", "model_type": "embedding"}}]
actions:
  description: What was (or in check mode would be) requested, one line each.
  returned: always
  type: list
  elements: str
  sample: ["minilm: delete replica 1 (1 other replica(s) keep serving)"]
answers:
  description: V(restored), per model the request sent and whether it answered.
  returned: when state is restored
  type: list
  elements: dict
  sample: [{"model_uid": "minilm", "path": "/v1/embeddings", "ok": true}]
"""

import time
from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.gpu.plugins.module_utils.secrets import hide_url_password
from ansible_collections.inferops.gpu.plugins.module_utils.xinference_api import (
    CONNECTION_SPEC, XinferenceError, client_from_params)
from ansible_collections.inferops.gpu.plugins.module_utils import xinference_drain as drain


def _current(client, uids):
    """{uid: its replicas, or None when the model is not running}."""
    return dict((uid, client.replicas(uid)) for uid in uids)


def _query(client, worker):
    listing = client.request("GET", "/v1/models")[1]
    uids = [item["model_uid"] for item in drain._described_models(listing) if item.get("model_uid")]
    return drain.records(listing, dict((uid, client.replicas(uid)) for uid in uids), worker)


def _line(action):
    if action["action"] == "delete_replica":
        return "%s: delete replica %s (%s)" % (action["model_uid"], action["replica_id"], action["why"])
    if action["action"] == "terminate":
        return "%s: terminate (%s)" % (action["model_uid"], action["why"])
    body = action["body"]
    if action["action"] == "launch":
        where = " on " + body["worker_ip"] if "worker_ip" in body else ""
        return "%s: launch %d replica(s)%s" % (action["model_uid"], body["replica"], where)
    where = " on " + body["replica_config"]["devices"][0]["worker_ip"] if "replica_config" in body else ""
    return "%s: add %d replica(s)%s" % (action["model_uid"], body["replica"], where)


def _drain(module, client, worker):
    models = _query(client, worker)
    conflicts = drain.batch_conflicts(models, module.params["batch_workers"]) if worker else []
    if conflicts:
        module.fail_json(msg="draining %s now would leave models without a replica (%s); nothing was requested. "
                         "Upgrade fewer workers at once (upgrade_batch_percent) or place the replicas on workers "
                         "of different batches." % (worker, "; ".join(conflicts)), models=models)
    actions = drain.drain_actions(models, worker)
    if not module.check_mode:
        for action in actions:
            uid = quote(action["model_uid"], safe="")
            if action["action"] == "delete_replica":
                client.request("DELETE", "/v1/models/%s/replicas/%s" % (uid, action["replica_id"]))
            else:
                client.terminate(action["model_uid"])
    return models, actions


def _restore(module, client, worker, models):
    uids = [model["model_uid"] for model in models]
    deadline = time.monotonic() + module.params["timeout"]
    current = _current(client, uids)
    if worker is None and not module.check_mode:
        # The supervisor: its workers report their running models again once they reach it.
        adopted_by = min(deadline, time.monotonic() + 120)
        while any(current[uid] is None for uid in uids) and time.monotonic() < adopted_by:
            time.sleep(3)
            current = _current(client, uids)
    actions = drain.restore_actions(models, current, worker)
    answers = []
    if module.check_mode:
        return actions, answers
    for action in actions:
        if action["action"] == "launch":
            client.launch(action["body"])
        else:
            client.request("POST", "/v1/models/%s/replicas" % quote(action["model_uid"], safe=""), body=action["body"])
    while True:
        current = _current(client, uids)
        errors = drain.placement_errors(models, current, worker)
        if not errors or time.monotonic() >= deadline:
            break
        time.sleep(3)
    if errors:
        module.fail_json(msg="models not back as before the upgrade: %s" % "; ".join(errors),
                         models=models, actions=[_line(a) for a in actions])
    if module.params["answer"]:
        for model in models:
            request = drain.answer_request(model)
            if request is None:
                answers.append({"model_uid": model["model_uid"], "path": None, "ok": None})
                continue
            status = client.request("POST", request[0], body=request[1], ok_statuses=(400, 404, 500, 503))[0]
            answers.append({"model_uid": model["model_uid"], "path": request[0], "ok": status == 200})
        failed = [a["model_uid"] for a in answers if a["ok"] is False]
        if failed:
            module.fail_json(msg="no answer from %s after the upgrade" % ", ".join(failed),
                             models=models, actions=[_line(a) for a in actions], answers=answers)
    return actions, answers


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="query", choices=["query", "drained", "restored"]),
            **CONNECTION_SPEC,
            request_timeout=dict(type="int", default=600),
            worker=dict(type="str"),
            batch_workers=dict(type="list", elements="str", default=[]),
            models=dict(type="list", elements="dict"),
            timeout=dict(type="int", default=600),
            answer=dict(type="bool", default=True),
        ),
        required_if=[("state", "restored", ["models"])],
        supports_check_mode=True,
    )
    params = module.params
    worker = params["worker"] or None
    hide_url_password(module)
    client = client_from_params(params)
    try:
        client.login()
        if params["state"] == "query":
            module.exit_json(changed=False, models=_query(client, worker), actions=[])
        if params["state"] == "drained":
            models, actions = _drain(module, client, worker)
            module.exit_json(changed=bool(actions), models=models, actions=[_line(a) for a in actions])
        actions, answers = _restore(module, client, worker, params["models"])
        module.exit_json(changed=bool(actions), models=params["models"], actions=[_line(a) for a in actions],
                         answers=answers)
    except XinferenceError as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
