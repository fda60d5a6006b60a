"""Trials across a Ray cluster. Each trial is a Ray task that needs a Docker engine on its node (the custom
resource `docker`, see ray_cluster.py). The task runs the same trial code as the local executor, under the run's
shared bounds (ray_bounds.py); its trajectory streams back, line by line, to an actor on the driver's node that
writes the driver's results folder, and its result, trajectory and verifier files come back whole with the task's
return value, each with its SHA-256: a reply that does not match them is tried again, then is an infrastructure
error. A worker or node lost mid-trial is retried by Ray elsewhere; when the retries run out the trial is an
infrastructure error, retried on resume like any other.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from harness.ray_bounds import MODEL, Permit, make_bounds, start_pool
from harness.ray_cluster import DOCKER_RESOURCE, check_nodes, connect, dataset_paths, pack, unpack
from harness.records import TrialResult
from harness.store import RunStore, Trajectory

RETRIES = 3  # Ray's, for a lost worker or node
SHIP_TRIES = 3  # a reply that did not arrive whole is run again this many times in all
TRAJECTORY = "trajectory.jsonl"


class IncompleteReply(RuntimeError):
    """A trial's files did not arrive as the worker sent them."""


@ray.remote(num_cpus=0)
class TrajectorySink:
    """Lives on the driver's node; owns the run's trajectory files there. Lines of a try that is no longer the
    trial's current one (a worker that died with lines still on their way) are dropped."""

    def __init__(self, output: str, run_id: str):
        self.store = RunStore(Path(output), run_id)
        self.open_files: dict[tuple[str, int], tuple[str, Trajectory]] = {}

    def open(self, task_id: str, attempt: int, attempt_try: str) -> None:
        self._close((task_id, attempt))
        self.open_files[(task_id, attempt)] = attempt_try, self.store.open_trajectory(task_id, attempt)

    def append(self, task_id: str, attempt: int, attempt_try: str, record: dict) -> None:
        current = self.open_files.get((task_id, attempt))
        if current is not None and current[0] == attempt_try:
            current[1].write(record)

    def close(self, task_id: str, attempt: int, attempt_try: str) -> None:
        current = self.open_files.get((task_id, attempt))
        if current is not None and current[0] == attempt_try:
            self._close((task_id, attempt))

    def _close(self, key: tuple[str, int]) -> None:
        current = self.open_files.pop(key, None)
        if current is not None:
            current[1].close()


class StreamedTrajectory(Trajectory):
    """A worker-side trajectory: kept locally and sent to the driver's sink as each line is written."""

    def __init__(self, path: Path, sink, task_id: str, attempt: int, attempt_try: str):
        super().__init__(path)
        self.sink, self.key = sink, (task_id, attempt, attempt_try)
        ray.get(sink.open.remote(*self.key))

    def write(self, record: dict) -> None:
        super().write(record)
        self.sink.append.remote(*self.key, json.loads(json.dumps(record, default=str)))

    def close(self) -> None:
        super().close()
        ray.get(self.sink.close.remote(*self.key))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack_reply(result: TrialResult, trial_dir: Path) -> dict:
    """What goes back to the driver: the result and every file of the trial, with their digests."""
    files = {str(p.relative_to(trial_dir)): p.read_bytes() for p in sorted(trial_dir.rglob("*"))
             if p.is_file() and p.name != "result.json"}
    body = result.model_dump_json().encode()
    return {"result": body, "files": files, "digests": {name: digest(data) for name, data in files.items()},
            "result_digest": digest(body)}


def receive(reply: dict, trial_dir: Path) -> TrialResult:
    """The trial's files written under `trial_dir` and its result, once all arrived as sent; else IncompleteReply."""
    files, digests = reply.get("files") or {}, reply.get("digests") or {}
    if set(files) != set(digests):
        raise IncompleteReply(f"files sent {sorted(digests)} but received {sorted(files)}")
    for name, data in [("result", reply.get("result") or b"")] + sorted(files.items()):
        wanted = reply.get("result_digest") if name == "result" else digests[name]
        if digest(data) != wanted:
            raise IncompleteReply(f"{name} did not arrive whole ({len(data)} bytes, digest mismatch)")
    result = TrialResult.model_validate_json(reply["result"])
    for name, data in files.items():
        write_whole(trial_dir / name, data)
    return result


def write_whole(path: Path, data: bytes) -> None:
    """Atomic, and read back: a file on the driver's disk is exactly what the worker sent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    if path.stat().st_size != len(data):
        raise IncompleteReply(f"{path} was not written whole")


def mark_started(run_id: str, task_id: str, attempt: int) -> None:
    pid_dir = os.environ.get("CWM_EVAL_TRIAL_PID_DIR")  # lets tests find, and kill, the worker of a trial
    if pid_dir:
        Path(pid_dir, f"{run_id}.{task_id}.{attempt}.{os.getpid()}").touch()


def bounded_runner(config, suite, agent_spec: dict, bounds, trial: str, attempt_try: str):
    """A Runner for one try, whose model requests and container starts hold the run's shared permits."""
    from agents import make_agent
    from harness.runner import Runner

    agent = make_agent(**agent_spec)
    client = getattr(agent, "client", None)
    if client is not None:
        client.pool.shared = Permit(bounds, MODEL, trial, attempt_try)
    runner = Runner(config, suite, agent)
    node = ray.get_runtime_context().get_node_id()
    runner._starting = Permit(bounds, start_pool(node), trial, attempt_try)  # in place of the per-process one
    return runner


@ray.remote(num_cpus=0, resources={DOCKER_RESOURCE: 1}, max_retries=RETRIES)
def remote_trial(config_data: dict, payload: bytes, task_data: dict, attempt: int, sink, bounds) -> dict:
    import asyncio

    from harness.config import RunConfig
    from tasks.base import Task

    suite, agent_spec = unpack(payload)
    task = Task.model_validate(task_data)
    trial, attempt_try = f"{task.id}/{attempt}", uuid.uuid4().hex
    ray.get(bounds.begin.remote(trial, attempt_try))
    mark_started(config_data["run_id"], task.id, attempt)
    try:
        with tempfile.TemporaryDirectory(prefix="cwm-eval-trial-") as local:
            config = RunConfig.model_validate({**config_data, "output": local, "executor": "local"})
            runner = bounded_runner(config, suite, agent_spec, bounds, trial, attempt_try)
            runner.store.open_trajectory = lambda task_id, n: StreamedTrajectory(
                runner.store.trial_dir(task_id, n) / TRAJECTORY, sink, task_id, n, attempt_try)
            result = asyncio.run(runner.run_trial(task, attempt))
            return pack_reply(result, runner.store.trial_dir(task.id, attempt))
    finally:
        ray.get(bounds.end.remote(trial, attempt_try))


class RayExecutor:
    """Runs a Runner's trials as Ray tasks; results land in the driver's store as they finish.

    Made before the run starts: it joins (or starts) the cluster and checks that its nodes can run the trials."""

    def __init__(self, runner, agent_spec: dict, address: str | None = None):
        config = runner.config
        connect(address or config.ray_address, config.concurrency)
        self.runner = runner
        self.payload = pack(runner.suite, agent_spec)
        check_nodes(self.payload, dataset_paths(config.dataset))
        self.payload_ref = ray.put(self.payload)
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.sink = TrajectorySink.options(scheduling_strategy=here).remote(str(config.output.resolve()),
                                                                           config.run_id)
        self.bounds = make_bounds(config.max_model_requests, config.max_starting_containers)

    async def __call__(self, task, attempt: int) -> TrialResult:
        config = self.runner.config.model_dump(mode="json")
        trial_dir = self.runner.store.trial_dir(task.id, attempt)
        problem = None
        try:
            for _ in range(SHIP_TRIES):
                reply = await remote_trial.remote(config, self.payload_ref, task.model_dump(mode="json"), attempt,
                                                  self.sink, self.bounds)
                try:
                    return self.receive(reply, trial_dir)
                except IncompleteReply as exc:
                    problem = exc
            raise problem
        finally:
            await self.bounds.end.remote(f"{task.id}/{attempt}")

    def receive(self, reply: dict, trial_dir: Path) -> TrialResult:
        return receive(reply, trial_dir)
