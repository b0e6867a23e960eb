"""module_utils/xinference_drain.py: what draining and restoring one Xinference host requests,
on the shapes Xinference 4.1 answers (GET /v1/models, GET /v1/models/{uid}/replicas)."""

import os
import sys

from ansible_collections.inferops.gpu.plugins.module_utils import xinference_drain as d
from ansible_collections.inferops.gpu.plugins.modules import xinference_drain

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_xinference import FakeXinference  # noqa: E402  pylint: disable=wrong-import-position

W1, W2 = "10.0.0.2:30001", "10.0.0.3:30001"
LISTING = {"object": "list", "data": [
    {"id": "minilm", "object": "model", "model_type": "embedding", "model_name": "inferops-minilm",
     "model_format": "pytorch", "quantization": "none", "accelerators": [], "address": "10.0.0.2:30001",
     "dimensions": 384},
    {"id": "qwen", "object": "model", "model_type": "LLM", "model_name": "qwen2.5-instruct",
     "model_engine": "vLLM", "model_format": "pytorch", "model_size_in_billions": 7, "quantization": "none",
     "accelerators": ["0", "1"]},
]}
REPLICAS = {
    "minilm": [{"replica_id": 0, "worker_address": W1, "status": "READY"},
               {"replica_id": 1, "worker_address": W2, "status": "READY"}],
    "qwen": [{"replica_id": 0, "worker_address": W1, "status": "READY"}],
}


def test_records_of_a_worker_and_of_the_supervisor():
    here = d.records(LISTING, REPLICAS, W1)
    assert [(m["model_uid"], m["replica"], m["here"]) for m in here] == [("minilm", 2, [0]), ("qwen", 1, [0])]
    assert here[1]["launch"] == {"model_name": "qwen2.5-instruct", "model_type": "LLM", "model_engine": "vLLM",
                                 "model_format": "pytorch", "model_size_in_billions": 7, "quantization": "none",
                                 "n_gpu": 2}
    assert [m["model_uid"] for m in d.records(LISTING, REPLICAS, W2)] == ["minilm"]
    everything = d.records(LISTING, REPLICAS, None)
    assert [(m["model_uid"], m["replica"], m["here"]) for m in everything] == [("minilm", 2, []), ("qwen", 1, [])]
    # 1.x: {uid: description}, no replica calls.
    legacy = d.records({"m": {"model_type": "embedding", "model_name": "bge", "replica": 1}}, {"m": None}, None)
    assert legacy[0]["replica"] == 1 and legacy[0]["launch"] == {"model_name": "bge", "model_type": "embedding"}


def test_drain_deletes_replicas_served_elsewhere_and_terminates_the_rest():
    actions = d.drain_actions(d.records(LISTING, REPLICAS, W1), W1)
    assert [(a["action"], a["model_uid"], a.get("replica_id")) for a in actions] == [
        ("delete_replica", "minilm", 0), ("terminate", "qwen", None)]
    assert actions[0]["why"] == "1 other replica(s) keep serving"
    # The supervisor and local hosts: nothing to drain through the API.
    assert d.drain_actions(d.records(LISTING, REPLICAS, None), None) == []


def test_a_batch_holding_every_replica_of_a_model_is_refused():
    """Two workers drained at once, each holding one of minilm's two replicas: each alone would delete
    its replica counting on the other's, and minilm would lose both."""
    w1 = d.records(LISTING, REPLICAS, W1)
    assert w1[0]["elsewhere"] == [W2] and w1[1]["elsewhere"] == []
    assert d.batch_conflicts(w1, [W2]) == [
        "minilm: its other replica(s) are on 10.0.0.3:30001, upgraded in the same batch"]
    # Alone in its batch, or with a worker that holds none of minilm's other replicas: no conflict.
    assert d.batch_conflicts(w1, []) == []
    assert d.batch_conflicts(w1, ["10.0.0.9:30001"]) == []
    # A third replica outside the batch keeps the model served.
    three = dict(REPLICAS, minilm=REPLICAS["minilm"] + [{"replica_id": 2, "worker_address": "10.0.0.4:30001"}])
    assert d.batch_conflicts(d.records(LISTING, three, W1), [W2]) == []
    # qwen, served only here, is terminated whatever the batch (not a conflict: nothing else serves it).
    assert all(not c.startswith("qwen") for c in d.batch_conflicts(w1, [W2]))
    # Records from before this field (no "elsewhere") are never refused.
    legacy = [dict(m) for m in w1]
    for m in legacy:
        m.pop("elsewhere")
    assert d.batch_conflicts(legacy, [W2]) == []


def test_the_module_refuses_such_a_batch_before_any_request(module_main):
    with FakeXinference(gpus=0) as fake:
        fake.launch_direct({"model_uid": "minilm", "model_name": "inferops-minilm", "model_type": "embedding",
                            "replica": 2})
        fake.replica_workers["minilm"] = [W1, W2]
        params = {"url": fake.url, "username": fake.username, "password": fake.password, "state": "drained",
                  "worker": W1, "_ansible_check_mode": False}
        refused = module_main(xinference_drain.main, dict(params, batch_workers=[W2]))
        assert refused.failed and "minilm: its other replica(s) are on 10.0.0.3:30001" in refused.result["msg"]
        assert "nothing was requested" in refused.result["msg"]
        assert not [r for r in fake.requests if r[0] == "DELETE"]
        # The same worker alone in its batch deletes its replica.
        drained = module_main(xinference_drain.main, params)
        assert not drained.failed and drained.result["actions"] == [
            "minilm: delete replica 0 (1 other replica(s) keep serving)"]
        assert [r[1] for r in fake.requests if r[0] == "DELETE"] == ["/v1/models/minilm/replicas/0"]


def test_restore_adds_replicas_here_or_launches_what_is_gone():
    record = d.records(LISTING, REPLICAS, W1)
    drained = {"minilm": [REPLICAS["minilm"][1]], "qwen": None}
    actions = d.restore_actions(record, drained, W1)
    assert actions == [
        {"action": "add_replicas", "model_uid": "minilm",
         "body": {"replica": 1, "replica_config": {"devices": [{"worker_ip": W1}]}}},
        {"action": "launch", "model_uid": "qwen",
         "body": {"model_name": "qwen2.5-instruct", "model_type": "LLM", "model_engine": "vLLM",
                  "model_format": "pytorch", "model_size_in_billions": 7, "quantization": "none", "n_gpu": 2,
                  "model_uid": "qwen", "replica": 1, "worker_ip": "10.0.0.2"}}]
    # Back as before: nothing to do, placement as recorded.
    assert d.restore_actions(record, REPLICAS, W1) == []
    assert d.placement_errors(record, REPLICAS, W1) == []


def test_restore_on_the_supervisor_waits_for_the_workers_models():
    record = d.records(LISTING, REPLICAS, None)
    assert d.restore_actions(record, REPLICAS, None) == []
    one_short = {"minilm": REPLICAS["minilm"][:1], "qwen": REPLICAS["qwen"]}
    # A replica is its worker's to report: nothing is added blindly (it could land anywhere).
    assert d.restore_actions(record, one_short, None) == []
    assert d.restore_actions(record, {"minilm": None, "qwen": REPLICAS["qwen"]}, None)[0]["body"]["replica"] == 2
    assert d.placement_errors(record, one_short, None) == ["minilm has 1 replica(s), 2 before"]


def test_placement_errors_name_what_differs():
    record = d.records(LISTING, REPLICAS, W1)
    moved = {"minilm": [dict(REPLICAS["minilm"][0], worker_address=W2), REPLICAS["minilm"][1]],
             "qwen": [dict(REPLICAS["qwen"][0], status="CREATING")]}
    assert d.placement_errors(record, moved, W1) == [
        "minilm has 0 replica(s) on %s, 1 before" % W1, "qwen replica(s) 0 not READY"]
    assert d.placement_errors(record, {"minilm": None, "qwen": REPLICAS["qwen"]}, W1) == ["minilm is not running"]


def test_one_answer_per_model_type():
    assert d.answer_request({"model_uid": "m", "model_type": "embedding"})[0] == "/v1/embeddings"
    assert d.answer_request({"model_uid": "m", "model_type": "rerank"})[0] == "/v1/rerank"
    path, body = d.answer_request({"model_uid": "m", "model_type": "LLM"})
    assert path == "/v1/chat/completions" and body["max_tokens"] == 1
    assert d.answer_request({"model_uid": "m", "model_type": "image"}) is None
