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

Requests go out through one long-lived aiohttp session per endpoint and event loop (its connections and TLS context
are kept), and fail with the openai SDK's exception classes, which the retry policy and the trial outcomes are
written against. Their bodies are built from JSON encoded once per message (`EncodedLists`), and a vLLM reply's
prompt token ids are cut by the server or compared as bytes (harness/prompt_ids.py): what the client does per call
does not grow with the conversation; only the bytes on the wire do (late in a CWM conversation, about 0.5 MB of
messages out, and 0.75 MB of prompt ids back from a server that does not cut them). aiohttp rather than httpx for
these: its C parser hands a reply's pieces over as they came, where httpx's pure-Python h11 copies each piece about
five times; those 1.25 MB cost httpx about twice the extra CPU they cost aiohttp, and each call about twice
aiohttp's fixed CPU (bench/model_call_cost.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlsplit

import httpx
import openai

from harness.prompt_delta import digest as new_digest

if TYPE_CHECKING:
    from harness.prompt_ids import IdsText

STATUS_ERRORS = {400: openai.BadRequestError, 401: openai.AuthenticationError, 403: openai.PermissionDeniedError,
                 404: openai.NotFoundError, 409: openai.ConflictError, 422: openai.UnprocessableEntityError,
                 429: openai.RateLimitError}
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
MAX_CONNECTIONS = 1000  # per endpoint, as the openai SDK's
CONVERSATIONS_KEPT = 128  # conversations whose encoded messages (or prompt ids) are kept, least recently used out
CLOSE = b"]}"  # a request's close: the encoded list is the last value of its JSON object


class EndpointHung(openai.APIConnectionError):
    """The endpoint stopped answering (even its health probe) while a request was outstanding."""

    def __init__(self, url: str, waited: float):
        super().__init__(message=f"{url} stopped answering (no reply, and its /models probe unanswered) after "
                                 f"{waited:.0f} s", request=httpx.Request("POST", url))


FAILOVER = (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError)


def status_error(response: httpx.Response) -> openai.APIStatusError:
    """The openai SDK's exception for an error status, with its message: `Error code: 401 - <the server's>`."""
    try:
        body = json.loads(response.content)
    except ValueError:
        body = response.text.strip() or None
    error = body.get("error", body) if isinstance(body, dict) else body
    said = error.get("message") if isinstance(error, dict) else error
    message = f"Error code: {response.status_code}" + (f" - {said}"[:1000] if isinstance(said, str) and said else "")
    status = response.status_code
    kind = STATUS_ERRORS.get(status) or (openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return kind(message, response=response, body=error)


@cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for the process, with the certificates httpx (and so the openai SDK) trusts."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY), as httpx uses it."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass_environment(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(parts.scheme) or proxies.get("all")


def new_session(url: str, headers: dict, timeout: float):
    """An aiohttp session for `url`. `timeout` bounds connecting and each wait for the reply's next bytes, as httpx's
    timeout did. The environment's proxy is looked up here, once: aiohttp's `trust_env` looks it up on every request,
    which cost more CPU than the rest of a request."""
    import aiohttp

    tls = tls_context() if url.startswith("https:") else True
    return aiohttp.ClientSession(
        headers=headers, proxy=env_proxy(url), connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ssl=tls),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout))


async def _closed_with_loop(session) -> Any:
    """Suspended at once; the event loop's shutdown (asyncio.run's `shutdown_asyncgens`) resumes it, which closes the
    session in its own loop (aiohttp reports a session left open when it is collected)."""
    try:
        yield
    finally:
        await session.close()


@dataclass(eq=False)
class Endpoint:
    url: str
    headers: dict = field(default_factory=dict, repr=False)
    timeout: float = 600.0
    outstanding: int = 0
    healthy: bool = True
    down_since: float = 0.0
    answered_at: float = 0.0  # the last reply or probe answer (monotonic)
    served: int = 0
    # per event loop (a session's connections belong to its loop): its aiohttp session and the generator that
    # closes it when the loop shuts down; loops that have closed are let go when another one comes
    _sessions: dict = field(default_factory=dict, repr=False)

    async def client(self):
        """The endpoint's one session in the running event loop."""
        loop = asyncio.get_running_loop()
        if loop not in self._sessions:
            for closed in [other for other in self._sessions if other.is_closed()]:
                del self._sessions[closed]
            session = new_session(self.url, self.headers, self.timeout)
            closer = _closed_with_loop(session)
            await closer.__anext__()  # runs to its `yield` without suspending, and joins the loop's generators
            self._sessions[loop] = session, closer
        return self._sessions[loop][0]

    async def post(self, path: str, body: bytes | tuple, headers: dict | None = None) -> bytes:
        """The body of the reply to a JSON POST (`body`: bytes, or pieces as `body_with` gives them); an openai
        exception when it fails or answers an error status."""
        import aiohttp

        session, url = await self.client(), f"{self.url}{path}"
        data = pieces_payload()(body) if isinstance(body, tuple) else body
        try:
            async with session.post(url, data=data, headers={**JSON_HEADERS, **headers} if headers else JSON_HEADERS
                                    ) as response:
                status, headers, content = response.status, response.raw_headers, await response.read()
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors (asyncio's is the builtin since 3.11)
            raise openai.APITimeoutError(request=httpx.Request("POST", url)) from exc
        except aiohttp.ClientError as exc:
            raise openai.APIConnectionError(request=httpx.Request("POST", url)) from exc
        if status >= 400:
            raise status_error(httpx.Response(status, headers=list(headers), content=content,
                                              request=httpx.Request("POST", url)))
        return content

    async def probe(self, timeout: float) -> int | None:
        """The status of `GET /models`, None when nothing answers in time."""
        import aiohttp

        session = await self.client()
        try:
            async with session.get(f"{self.url}/models", timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                await response.read()  # so that the connection is kept
                return response.status
        except (TimeoutError, aiohttp.ClientError):
            return None


class EndpointPool:
    def __init__(self, urls: list[str], *, api_key: str = "EMPTY", timeout: float = 600.0,
                 max_inflight: int = 64, cooldown: float = 5.0, probe_interval: float = 30.0,
                 probe_timeout: float = 20.0, probe_misses: int = 2):
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.endpoints = [Endpoint(url.rstrip("/"), self.headers, timeout) for url in urls]
        self.cooldown = cooldown
        self.max_inflight = max_inflight
        self.probe_interval, self.probe_timeout, self.probe_misses = probe_interval, probe_timeout, probe_misses
        self._inflight: asyncio.Semaphore | None = None  # made lazily, in the running event loop
        self._loop: asyncio.AbstractEventLoop | None = None
        # a bound shared with other processes (a Ray run's cluster-wide --max-model-requests): an async context
        # manager held around each request, besides this process's own
        self.shared: contextlib.AbstractAsyncContextManager | None = None

    @property
    def urls(self) -> list[str]:
        return [e.url for e in self.endpoints]

    async def _recheck(self) -> None:
        """Bring back endpoints whose cool-down is over and that answer again."""
        due = [e for e in self.endpoints if not e.healthy and time.monotonic() - e.down_since > self.cooldown]
        for endpoint in due:
            endpoint.down_since = time.monotonic()  # one re-check per cool-down, however many requests wait
        answered = await asyncio.gather(*(e.probe(3.0) for e in due))
        for endpoint, status in zip(due, answered):
            if status == 200:
                endpoint.healthy = True

    def pick(self) -> Endpoint:
        healthy = [e for e in self.endpoints if e.healthy]
        if not healthy:  # all out: try the one that failed longest ago (the client's backoff spaces the tries)
            return min(self.endpoints, key=lambda e: e.down_since)
        return min(healthy, key=lambda e: (e.outstanding, e.served))

    async def post(self, path: str, body: bytes | tuple, headers: dict | None = None) -> bytes:
        """POST `body` to `path` of the least loaded healthy endpoint; the reply's body."""
        return await self.call(lambda endpoint: endpoint.post(path, body, headers))

    async def call(self, request):
        """Run `request(endpoint)` on the least loaded healthy endpoint."""
        loop = asyncio.get_running_loop()
        if self._inflight is None or self._loop is not loop:
            self._inflight, self._loop = asyncio.Semaphore(self.max_inflight), loop
        async with self._inflight, self.shared or contextlib.nullcontext():
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
        call = asyncio.ensure_future(request(endpoint))
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
        status = await endpoint.probe(self.probe_timeout)
        if status is not None and status < 500:
            endpoint.answered_at = time.monotonic()
            return True
        return False


def status_of(url: str, headers: dict | None = None, timeout: float = 3.0,
              client: httpx.Client | None = None) -> int | None:
    """The status of `GET url/models`, blocking (before the event loop runs); None when nothing answers in time.
    With `client`, its connections and headers are used."""
    try:
        if client is not None:
            return client.get(f"{url}/models", timeout=timeout).status_code
        return httpx.get(f"{url}/models", headers=headers or {}, timeout=timeout).status_code
    except httpx.HTTPError:
        return None


def answers(url: str, headers: dict | None = None) -> bool:
    return status_of(url, headers) == 200


# --- request and reply bodies ---------------------------------------------------------------------------------

@dataclass(eq=False)
class Seen:
    """What a client keeps of one conversation: its items' JSON (comma-separated, in one growing buffer) and, in
    chat mode, the token ids of its last prompt and reply, which the next prompt extends."""

    items: list
    variant: object
    count: int = 0
    last: object = None
    data: bytearray = field(default_factory=lambda: bytearray(CLOSE))  # the items' JSON, then the request's close
    prompt: IdsText | None = None  # the last prompt's ids, when its reply had them whole
    completion: bytes = b""  # JSON without brackets
    ids_count: int = 0  # of prompt and completion
    prompt_count: int = 0  # of prompt
    # when the server cuts the prompt ids (harness/prompt_ids.py): the digest of the last prompt's ids as JSON, its
    # length in bytes, and what the last request declared
    digest: Any = None
    length: int = 0
    candidates: list = field(default_factory=list)
    # what a server that keeps messages (harness/messages_delta.py) holds of this list: (bytes of its items' JSON,
    # their digest) as last sent; `keeps` False once a server refused a delta body
    items_digest: Any = field(default_factory=new_digest)
    kept: tuple | None = None
    keeps: bool | None = None


class EncodedLists:
    """The JSON of append-only lists (a conversation's messages, a token-exact prompt), each item encoded once.

    A caller passes the same list object on every call and only appends to it, so a call encodes only the items
    added since the last one. A list cut or replaced (its last encoded item no longer where it was) is encoded again
    from its start. Beyond `size` lists, the least recently used is forgotten, so a long run keeps only live ones.
    """

    def __init__(self, encode: Callable[[list, object], bytes], size: int = CONVERSATIONS_KEPT):
        self._encode = encode
        self._seen: OrderedDict[int, Seen] = OrderedDict()
        self.size = size
        self.encoded = 0  # items encoded so far

    def seen(self, items: list, variant: object = None) -> Seen:
        """The entry of `items`, its `data` covering all of them."""
        entry = self._seen.get(id(items))  # the entry holds the list, so its id is not reused while it is kept
        if entry is None or entry.variant != variant or len(items) < entry.count or (
                entry.count and items[entry.count - 1] is not entry.last):
            entry = self._seen[id(items)] = Seen(items, variant)
            if len(self._seen) > self.size:
                self._seen.popitem(last=False)
        self._seen.move_to_end(id(items))
        if len(items) > entry.count:
            new = items[entry.count:]
            added = (b"," if entry.count else b"") + self._encode(new, variant)
            entry.data = extended(entry.data, added)
            entry.items_digest.update(added)
            entry.count, entry.last = len(items), items[-1]
            self.encoded += len(new)
        return entry


def extended(data: bytearray, items: bytes) -> bytearray:
    """`data` with `items` put before its close, in place; a copy when a request still holds the buffer (one given
    up on while it was being sent), which cannot be resized then."""
    try:
        data[-len(CLOSE):] = items + CLOSE
        return data
    except BufferError:
        return bytearray(data[:-len(CLOSE)]) + items + CLOSE


def fields_head(fields: dict[str, Any]) -> bytes:
    """`fields` as JSON, left open for the request's last value."""
    return json.dumps(fields, separators=(",", ":"))[:-1].encode()


def body_with(fields: dict[str, Any], key: str, closed: bytes | bytearray) -> tuple[bytes, bytes | bytearray]:
    """The request's JSON in two pieces, never joined: `fields` and `key`, then the array's encoded items followed
    by the request's close (`closed`: an `EncodedLists` entry's `data`, or `array(...)`)."""
    return fields_head(fields) + b',"' + key.encode() + b'":[', closed


def array(items: bytes) -> bytes:
    """Encoded items (comma-separated JSON) closed as `body_with` takes them."""
    return items + CLOSE


@cache
def pieces_payload() -> type:
    """aiohttp's payload for a body in pieces: each written as it is, where one bytes body would be copied whole
    twice per call (joined by the harness, then joined with the HTTP headers by aiohttp): a late CWM conversation's
    0.5 MB of messages, into fresh memory each time."""
    from aiohttp import payload

    class Pieces(payload.Payload):
        _autoclose = True  # in memory: can be sent again (a retry)

        def __init__(self, pieces: tuple[bytes | bytearray, ...]):
            super().__init__(pieces, content_type="application/json")
            self._size = sum(len(piece) for piece in pieces)

        def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
            return b"".join(self._value).decode(encoding, errors)

        async def write(self, writer) -> None:
            for piece in self._value:  # the first, small, goes out with the headers; the long one on its own
                await writer.write(memoryview(piece))

        async def write_with_length(self, writer, content_length: int | None) -> None:
            await self.write(writer)

    return Pieces
