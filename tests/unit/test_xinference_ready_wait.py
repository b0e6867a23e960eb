"""The xinference role's readiness rule for a worker (roles/xinference/tasks/ready_wait.yml),
rendered from the role's own file with Ansible's templating engine against the supervisor's
GET /status answers it meets.

The supervisor keeps listing a stopped worker until its heartbeat check drops it (about 35 s): a
worker started anew is ready only on a report newer than the entry seen first. The cluster
scenario's rolling upgrade met that race (a restore to a worker "not in the cluster").
"""

import os

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TASKS = os.path.join(REPO, "roles", "xinference", "tasks")
WORKER_IP, WORKER_PORT = "172.18.0.4", 30001
WORKER = "%s:%d" % (WORKER_IP, WORKER_PORT)
OTHER = "172.18.0.3:30001"


def load(name):
    return DataLoader().load_from_file(os.path.join(TASKS, name))


def wait_block():
    (block,) = [t for t in load("ready_wait.yml") if "block" in t]
    first, wait = block["block"]
    return block, first, wait


def status(*entries, code=200):
    """A GET /status result as ansible.builtin.uri registers it: {address: update_time}."""
    workers = dict((address, {"update_time": t, "failure_remaining_count": 5, "status": {}}) for address, t in entries)
    return {"status": code, "json": {"uptime": 60, "workers": workers}}


SKIPPED = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}


def ready(now, first=None, shape="worker"):
    """Whether the wait's until holds for the answer `now`, after `first` was read before the wait
    (None: that read was skipped)."""
    block, wait = wait_block()[0], wait_block()[2]
    variables = {
        "__xinference_shape": shape, "__xinference_advertise": WORKER_IP, "xinference_worker_port": WORKER_PORT,
        "__xinference_status_first": SKIPPED if first is None else first, "__xinference_status": now,
    }
    variables.update(dict((k, trust_as_template(v)) for k, v in block["vars"].items()))
    variables.update(dict((k, trust_as_template(v)) for k, v in wait["vars"].items()))
    templar = Templar(loader=DataLoader(), variables=variables)
    result = templar.template(trust_as_template("{{ (%s) | bool }}" % wait["until"]))
    assert isinstance(result, bool), result
    return result


def test_the_first_read_is_taken_only_for_a_worker_started_anew():
    first = wait_block()[1]
    assert first["register"] == "__xinference_status_first"
    assert set(first["when"]) == {"__xinference_shape == 'worker'", "__xinference_ready_fresh | bool"}
    assert first["failed_when"] is False and first["check_mode"] is False
    # ready.yml: started anew is "the container changed in this run", and always after its restart.
    block = [t for t in load("ready.yml") if "block" in t][0]
    assert block["block"][0]["vars"]["__xinference_ready_fresh"] == "{{ __xinference_container is changed }}"
    restart = [t for t in block["rescue"] if "block" in t][0]
    assert restart["block"][0]["vars"]["__xinference_ready_fresh"] is True


def test_a_stale_entry_of_the_stopped_worker_is_not_ready():
    stale = status((OTHER, 150.0), (WORKER, 100.0))
    assert not ready(stale, first=stale)


def test_a_report_newer_than_the_entry_seen_first_is_ready():
    assert ready(status((OTHER, 150.0), (WORKER, 105.2)), first=status((OTHER, 150.0), (WORKER, 100.0)))


def test_after_the_supervisor_dropped_the_old_entry_only_a_new_listing_is_ready():
    dropped = status((OTHER, 150.0))
    assert not ready(dropped, first=status((OTHER, 140.0), (WORKER, 100.0)))
    assert ready(status((OTHER, 150.0), (WORKER, 160.0)), first=status((OTHER, 140.0), (WORKER, 100.0)))
    # Not listed at the first read (a new worker, or the old entry already gone): any listing will do.
    assert not ready(dropped, first=dropped)
    assert ready(status((WORKER, 1.0)), first=dropped)


@pytest.mark.parametrize("first", [None, {"status": -1, "msg": "Connection refused"}],
                         ids=["container-unchanged", "supervisor-down-at-first-read"])
def test_without_a_first_entry_a_listing_is_ready(first):
    assert ready(status((WORKER, 100.0)), first=first)
    assert not ready(status((OTHER, 100.0)), first=first)
    assert not ready(status(code=-1), first=first)


def test_another_address_with_this_one_as_prefix_does_not_count():
    assert not ready(status(("172.18.0.40:30001", 200.0), (WORKER + "0", 200.0)))


def test_the_supervisor_needs_its_api_only():
    assert ready(status(), shape="supervisor")
    assert not ready(status(code=502), shape="supervisor")
