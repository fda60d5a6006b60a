"""Several model endpoints behind one client: least outstanding requests, health checks, failover, hang watch.

A request goes to the healthy endpoint with the fewest requests in flight. An endpoint that fails (cannot be
reached, answers 5xx, times out or hangs) is taken out and re-checked after a cool-down; the failed request is
retried elsewhere by the client's retry policy. When every endpoint is out (a single endpoint that just failed, say),
the request still goes to the one that failed longest ago: an endpoint is never shelved for longer than the client's
retry window, so a server that recovers within it is used again. A semaphore bounds the requests in flight across
all endpoints (back-pressure).

Hang watch: while a request is outstanding and its endpoint has not answered anything for `probe_interval` seconds,
the endpoint's `/models` is probed; after `probe_misses` unanswered probes in a row the request is abandoned as
`EndpointHung` (a frozen server is found in about two minutes, however long the request timeout). A server that
answers its probes is alive: its slow replies are the model's time, cut only by the request timeout.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx
import openai


class EndpointHung(openai.APIConnectionError):
    """The endpoint stopped answering (even its health probe) while a request was outstanding."""

    def __init__(self, url: str, waited: float):
        super().__init__(message=f"{url} stopped answering (no reply, and its /models probe unanswered) after "
                                 f"{waited:.0f} s", request=httpx.Request("POST", url))


FAILOVER = (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError)


@dataclass
class Endpoint:
    url: str
    client: openai.AsyncOpenAI
    outstanding: int = 0
    healthy: bool = True
    down_since: float = 0.0
    answered_at: float = 0.0  # the last reply or probe answer (monotonic)
    served: int = field(default=0)


class EndpointPool:
    def __init__(self, urls: list[str], *, api_key: str = "EMPTY", timeout: float = 600.0,
                 max_inflight: int = 64, cooldown: float = 5.0, probe_interval: float = 30.0,
                 probe_timeout: float = 20.0, probe_misses: int = 2):
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.endpoints = [Endpoint(url.rstrip("/"), openai.AsyncOpenAI(base_url=url.rstrip("/"), api_key=api_key,
                                                                        max_retries=0, timeout=timeout))
                          for url in urls]
        self.cooldown = cooldown
        self.max_inflight = max_inflight
        self.probe_interval, self.probe_timeout, self.probe_misses = probe_interval, probe_timeout, probe_misses
        self._inflight: asyncio.Semaphore | None = None  # made lazily, in the running event loop

    @property
    def urls(self) -> list[str]:
        return [e.url for e in self.endpoints]

    async def _recheck(self) -> None:
        """Bring back endpoints whose cool-down is over and that answer again."""
        due = [e for e in self.endpoints if not e.healthy and time.monotonic() - e.down_since > self.cooldown]
        for endpoint in due:
            endpoint.down_since = time.monotonic()  # one re-check per cool-down, however many requests wait
        answered = await asyncio.gather(*(probe(e.url, self.headers, 3.0) for e in due))
        for endpoint, status in zip(due, answered):
            if status == 200:
                endpoint.healthy = True

    def pick(self) -> Endpoint:
        healthy = [e for e in self.endpoints if e.healthy]
        if not healthy:  # all out: try the one that failed longest ago (the client's backoff spaces the tries)
            return min(self.endpoints, key=lambda e: e.down_since)
        return min(healthy, key=lambda e: (e.outstanding, e.served))

    async def call(self, request):
        """Run `request(client)` on the least loaded healthy endpoint."""
        if self._inflight is None:
            self._inflight = asyncio.Semaphore(self.max_inflight)
        async with self._inflight:
            await self._recheck()
            endpoint = self.pick()
            endpoint.outstanding += 1
            try:
                response = await self._watched(endpoint, request)
                endpoint.served += 1
                endpoint.healthy, endpoint.answered_at = True, time.monotonic()
                return response
            except FAILOVER:
                endpoint.healthy, endpoint.down_since = False, time.monotonic()
                raise
            finally:
                endpoint.outstanding -= 1

    async def _watched(self, endpoint: Endpoint, request):
        """The request, abandoned as EndpointHung when its endpoint stops answering probes."""
        started = time.monotonic()
        call = asyncio.ensure_future(request(endpoint.client))
        misses = 0
        try:
            while True:
                done, _ = await asyncio.wait({call}, timeout=self.probe_interval)
                if done:
                    return call.result()
                if await self._alive(endpoint):
                    misses = 0
                    continue
                misses += 1
                if misses >= self.probe_misses:
                    raise EndpointHung(endpoint.url, time.monotonic() - started)
        finally:
            if not call.done():
                call.cancel()

    async def _alive(self, endpoint: Endpoint) -> bool:
        if time.monotonic() - endpoint.answered_at < self.probe_interval:
            return True
        status = await probe(endpoint.url, self.headers, self.probe_timeout)
        if status is not None and status < 500:
            endpoint.answered_at = time.monotonic()
            return True
        return False


async def probe(url: str, headers: dict, timeout: float) -> int | None:
    """The status of `GET url/models`, None when nothing answers in time."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            return (await client.get(f"{url}/models", headers=headers)).status_code
    except httpx.HTTPError:
        return None


def status_of(url: str, headers: dict | None = None, timeout: float = 3.0) -> int | None:
    """`probe`, blocking (before the event loop runs)."""
    try:
        return httpx.get(f"{url}/models", headers=headers or {}, timeout=timeout).status_code
    except httpx.HTTPError:
        return None


def answers(url: str, headers: dict | None = None) -> bool:
    return status_of(url, headers) == 200
