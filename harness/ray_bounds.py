"""Bounds that every worker of a Ray run shares: model requests in flight across the whole cluster
(`--max-model-requests`) and containers starting at once on each node (`--max-starting-containers`).

One actor on the driver's node keeps the counts; a worker asks it before each model request and each container
start. A permit is held in the name of one try of one trial. A worker that dies holding permits cannot give them
back, so a trial's next try, and the driver once the trial is over, give back whatever its earlier tries held;
a permit granted late to a try that is no longer current is given back at once.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

import ray

MODEL = "model"


def start_pool(node_id: str) -> str:
    return f"start:{node_id}"


@ray.remote(num_cpus=0, max_concurrency=100_000)
class SharedBounds:
    def __init__(self, model_requests: int, starting_containers: int):
        self.sizes = {MODEL: model_requests, "start": starting_containers}
        self.pools: dict[str, asyncio.Semaphore] = {}
        self.held: dict[tuple[str, str], Counter] = defaultdict(Counter)  # (trial, try) -> permits per pool
        self.current: dict[str, str] = {}  # trial -> its current try

    def _pool(self, name: str) -> asyncio.Semaphore:
        if name not in self.pools:
            self.pools[name] = asyncio.Semaphore(self.sizes[name.split(":")[0]])
        return self.pools[name]

    async def begin(self, trial: str, attempt_try: str) -> None:
        """A new try of `trial`: what its earlier tries still hold is given back."""
        await self.end(trial)
        self.current[trial] = attempt_try

    async def end(self, trial: str, attempt_try: str | None = None) -> None:
        """Give back what one try of `trial` holds (every try's, when None)."""
        if attempt_try is None or self.current.get(trial) == attempt_try:
            self.current.pop(trial, None)
        for key in [k for k in self.held if k[0] == trial and attempt_try in (None, k[1])]:
            for pool, count in self.held.pop(key).items():
                for _ in range(count):
                    self._pool(pool).release()

    async def acquire(self, pool: str, trial: str, attempt_try: str) -> bool:
        await self._pool(pool).acquire()
        if self.current.get(trial) != attempt_try:  # a try that died or ended while it waited
            self._pool(pool).release()
            return False
        self.held[(trial, attempt_try)][pool] += 1
        return True

    async def release(self, pool: str, trial: str, attempt_try: str) -> None:
        held = self.held.get((trial, attempt_try))
        if held and held[pool] > 0:
            held[pool] -= 1
            self._pool(pool).release()


class Permit:
    """`async with permit:` holds one permit of `pool` for the duration of the block, in one try's name."""

    def __init__(self, bounds, pool: str, trial: str, attempt_try: str):
        self.bounds, self.args = bounds, (pool, trial, attempt_try)

    async def __aenter__(self) -> Permit:
        await self.bounds.acquire.remote(*self.args)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.bounds.release.remote(*self.args)


def make_bounds(model_requests: int, starting_containers: int):
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return SharedBounds.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote(
        model_requests, starting_containers)
