"""Joining or starting the Ray cluster of a run, and checking before the first trial that its nodes can run one.

A trial needs the custom resource `docker` (a node advertises it with `ray start --resources '{"docker": N}'`,
N = trials it may run at once). A local Ray started here advertises `--concurrency`. Before the run starts, every
node that advertises `docker` loads the run's shipped trial code (the suite and the agent), builds the agent and
finds the dataset and a Docker engine; any failure is one line naming the node, never a run of trial errors.
"""

from __future__ import annotations

import os
from pathlib import Path

import ray
from ray import cloudpickle

from harness.errors import UserError

DOCKER_RESOURCE = "docker"
PROBE_TIMEOUT = 300.0  # seconds for every node to answer the check (a node must start a worker to answer)


def connect(address: str | None, concurrency: int) -> None:
    """Join the cluster at `address`, or start a local one whose node advertises `concurrency` Docker slots."""
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(address="local", resources={DOCKER_RESOURCE: concurrency or os.cpu_count() or 1},
                 include_dashboard=False, log_to_driver=False)


def docker_nodes() -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(DOCKER_RESOURCE, 0) >= 1]


def check_schedulable() -> list[dict]:
    """The nodes that can run a trial; none is a UserError (the trial would wait forever)."""
    nodes = docker_nodes()
    if not nodes:
        raise UserError(f"no node of the Ray cluster advertises the `{DOCKER_RESOURCE}` resource, so no trial can "
                        f"ever run there; start its nodes with `ray start --resources '{{\"{DOCKER_RESOURCE}\": N}}'` "
                        "(N = trials at once), or leave out --ray-address to start a local cluster")
    return nodes


def pack(suite, agent_spec: dict) -> bytes:
    """The suite and the agent's spec as a worker receives them; what cannot be shipped is a UserError."""
    try:
        return cloudpickle.dumps((suite, agent_spec))
    except Exception as exc:  # noqa: BLE001 - whatever pickling raises, the run cannot be shipped
        raise UserError(f"cannot ship the {getattr(suite, 'name', 'suite')} suite to Ray workers: "
                        f"{type(exc).__name__}: {exc}".splitlines()[0]) from None


def unpack(payload: bytes):
    return cloudpickle.loads(payload)


def node_problem(payload: bytes, paths: list[str]) -> str | None:
    """Run on a node: what keeps it from running the run's trials, or None."""
    try:
        suite, agent_spec = unpack(payload)
        import harness.runner  # noqa: F401 - the trial code itself
        from agents import make_agent

        make_agent(**agent_spec)
    except Exception as exc:  # noqa: BLE001 - a missing package or module, an unreachable model: all reported
        return f"cannot load the run's trials there ({type(exc).__name__}: {exc})".splitlines()[0]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        return f"the dataset path {missing[0]} does not exist there"
    try:
        from harness.sandbox import docker_client

        docker_client()
    except Exception as exc:  # noqa: BLE001
        return f"no Docker engine there ({exc})".splitlines()[0]
    return None


@ray.remote(num_cpus=0, max_retries=0)
def _probe(payload: bytes, paths: list[str]) -> str | None:
    return node_problem(payload, paths)


def check_nodes(payload: bytes, paths: list[str], timeout: float = PROBE_TIMEOUT) -> None:
    """Every node that may run a trial can: else a UserError naming the first node that cannot, and why."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = check_schedulable()
    data = ray.put(payload)
    probes = {_probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
        data, paths): n for n in nodes}
    done, pending = ray.wait(list(probes), num_returns=len(probes), timeout=timeout)
    for ref in done:
        where = probes[ref].get("NodeManagerAddress", probes[ref]["NodeID"])
        try:
            problem = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - the probe itself could not run there
            problem = f"the check failed there ({type(exc).__name__}: {exc})".splitlines()[0]
        if problem:
            raise UserError(f"Ray node {where} cannot run trials: {problem}")
    if pending:
        where = probes[pending[0]].get("NodeManagerAddress", probes[pending[0]]["NodeID"])
        raise UserError(f"Ray node {where} did not answer the pre-run check within {timeout:.0f} s")


def dataset_paths(dataset: str | None) -> list[str]:
    """The run's dataset, when it is a path here: every node must have it at the same place."""
    if dataset and Path(dataset).exists():
        return [str(Path(dataset).resolve())]
    return []
