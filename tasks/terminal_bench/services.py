"""A trial's extra compose services: labelled containers on a private, labelled Docker network that the agent's
container joins (under its service name), so each reaches the others by name. `cwm-eval clean` removes them.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import docker.errors

from harness.sandbox import Limits, Sandbox, docker_client, host_capped, run_labels
from tasks.terminal_bench.compose import ServiceSpec

HEALTH_WAIT_CAP = 600.0


@dataclass
class ServiceGroup:
    network: object
    containers: list = field(default_factory=list)
    started: dict[str, str] = field(default_factory=dict)  # service -> status when the agent started

    def remove(self, sandbox: Sandbox | None = None) -> None:
        for container in self.containers:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
        try:
            if sandbox is not None:
                self.network.disconnect(sandbox.container, force=True)
        except docker.errors.APIError:
            pass
        try:
            self.network.remove()
        except docker.errors.APIError:
            pass


def _health_budget(check: dict) -> float:
    interval = check.get("interval", 30e9) / 1e9
    timeout = check.get("timeout", 30e9) / 1e9
    retries = check.get("retries", 3)
    return min(HEALTH_WAIT_CAP, check.get("start_period", 0) / 1e9 + (interval + timeout) * (retries + 1) + 10)


def _wait_ready(containers: list, services: list[ServiceSpec]) -> dict[str, str]:
    """Wait for services with a healthcheck to be healthy; fail if one exits or turns unhealthy."""
    statuses: dict[str, str] = {}
    for container, service in zip(containers, services):
        deadline = time.monotonic() + (_health_budget(service.healthcheck) if service.healthcheck else 0)
        while True:
            container.reload()
            state = container.attrs["State"]
            health = (state.get("Health") or {}).get("Status")
            if state["Status"] == "exited" and service.healthcheck:
                tail = container.logs(tail=5).decode(errors="replace").strip().replace("\n", " | ")
                raise RuntimeError(f"service {service.name} exited with {state.get('ExitCode')}: {tail}")
            if health == "unhealthy":
                raise RuntimeError(f"service {service.name} is unhealthy")
            if not service.healthcheck or health == "healthy":
                statuses[service.name] = health or state["Status"]
                break
            if time.monotonic() > deadline:
                budget = _health_budget(service.healthcheck)
                raise RuntimeError(f"service {service.name} not healthy after {budget:.0f}s")
            time.sleep(0.5)
    return statuses


def start_services(services: list[ServiceSpec], images: dict[str, str], sandbox: Sandbox, alias: str,
                   internet: bool, limits: Limits | None = None) -> ServiceGroup:
    """Start `services` (in dependency order) on a new network and connect the agent's container to it."""
    client = docker_client()
    limits = host_capped(limits or Limits())
    name = f"cwm-eval-tb-{uuid.uuid4().hex[:12]}"
    group = ServiceGroup(network=client.networks.create(name, driver="bridge", internal=not internet,
                                                        labels=run_labels("network")))
    try:
        for service in services:
            endpoint = client.api.create_endpoint_config(aliases=[service.name])
            container = client.containers.run(
                images[service.name], command=service.command, entrypoint=service.entrypoint,
                environment=service.environment, working_dir=service.working_dir, healthcheck=service.healthcheck,
                volumes=service.volumes or None, labels=run_labels(f"service:{service.name}"), detach=True,
                network=name, networking_config={name: endpoint}, hostname=service.name,
                nano_cpus=int(limits.cpus * 1e9), mem_limit=limits.memory, pids_limit=limits.pids,
            )
            group.containers.append(container)
        group.started = _wait_ready(group.containers, services)
        sandbox.container.reload()
        if "none" in sandbox.container.attrs["NetworkSettings"]["Networks"]:
            client.networks.get("none").disconnect(sandbox.container)  # a private-mode container joins nothing else
        group.network.connect(sandbox.container, aliases=[alias])
    except BaseException:
        group.remove(sandbox)
        raise
    return group


def apply_resources(sandbox: Sandbox, cpus: float | None, memory_mb: int | None) -> dict:
    """The task's own CPU and memory limits on the running agent container (Harbor's [environment])."""
    update: dict = {}
    if cpus:
        update["NanoCpus"] = int(cpus * 1e9)
    if memory_mb:
        update["Memory"] = memory_mb * 2**20
        update["MemorySwap"] = 2 * memory_mb * 2**20  # Docker's default when only --memory is given
    if update:
        api = docker_client().api
        api._result(api._post_json(api._url("/containers/{0}/update", sandbox.id), data=update), True)
    return update
