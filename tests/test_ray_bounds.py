"""Under Ray, --max-model-requests bounds the requests in flight across the whole cluster (counted at the model
server) and --max-starting-containers the containers starting at once on each node (counted at the Docker daemon);
a permit held by a worker that died comes back when its trial is tried again."""

from __future__ import annotations

import json
import subprocess
import time

import ray
from helpers import run_demo, turn
from ray_fixture import ray_cluster  # noqa: F401 (fixture)
from scripted_server import ScriptedServer

from harness.ray_bounds import MODEL, make_bounds
from harness.records import Outcome
from harness.sandbox import PHASE_LABEL, RUN_LABEL

TASKS = ["demo__calc-1", "demo__inventory-3", "demo__textutils-2"]


def most_starting_at_once(since: float, until: float, run_id: str) -> int:
    """From the daemon's own events: the most agent containers of the run created and not yet started at once."""
    listing = subprocess.run(["docker", "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}", "--filter",
                              "type=container", "--filter", f"label={RUN_LABEL}={run_id}", "--format",
                              "{{json .}}"], capture_output=True, text=True, check=True, timeout=120).stdout
    starting, most = set(), 0
    for event in map(json.loads, listing.splitlines()):
        attributes = event.get("Actor", {}).get("Attributes", {})
        if attributes.get(PHASE_LABEL) != "agent":
            continue
        if event["Action"] == "create":
            starting.add(event["Actor"]["ID"])
        elif event["Action"] in ("start", "die", "destroy"):
            starting.discard(event["Actor"]["ID"])
        most = max(most, len(starting))
    return most


def test_model_requests_are_bounded_across_the_cluster_and_container_starts_per_node(ray_cluster, tmp_path):
    script = [turn("Look around.", "bash", "ls")] * 20
    since = time.time()
    with ScriptedServer(script, hold=0.3) as server:  # each answer takes a while, so that two trials would overlap
        results = run_demo(tmp_path, "cwm", task_ids=TASKS, model_url=server.url, concurrency=2, executor="ray",
                           max_turns=3, run_id=f"bounded-{tmp_path.name}",
                           run_options={"max_model_requests": 1, "max_starting_containers": 1})
    assert all(r.outcome is Outcome.UNRESOLVED and r.turns == 3 for r in results), [r.error for r in results]
    assert len(server.requests) == 9 and server.most_in_flight == 1
    assert most_starting_at_once(since, time.time() + 1, f"bounded-{tmp_path.name}") == 1


def test_a_dead_tries_permits_come_back_when_its_trial_is_tried_again(ray_cluster):
    bounds = make_bounds(1, 1)
    ray.get(bounds.begin.remote("t/0", "first"))
    assert ray.get(bounds.acquire.remote(MODEL, "t/0", "first"))  # then its worker dies, holding the permit
    ray.get(bounds.begin.remote("u/0", "only"))
    waiting = bounds.acquire.remote(MODEL, "u/0", "only")
    assert not ray.wait([waiting], timeout=0.5)[0]  # the bound holds while the dead try's permit is out
    ray.get(bounds.begin.remote("t/0", "retry"))  # the trial's next try gives it back
    assert ray.get(waiting, timeout=60)
    late = bounds.acquire.remote(MODEL, "t/0", "first")  # the dead try's late request: granted, given back at once
    ray.get(bounds.release.remote(MODEL, "u/0", "only"))
    assert ray.get(late, timeout=60) is False
    assert ray.get(bounds.acquire.remote(MODEL, "t/0", "retry"), timeout=60)
