"""Model client for any OpenAI-compatible endpoint (vLLM, another server, or a scripted server in tests)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import httpx
import openai
from pydantic import BaseModel

from harness.endpoints import EncodedLists, EndpointHung, EndpointPool, array, body_with, fields_head, status_of
from harness.errors import UserError
from harness.messages_delta import HEADER as MESSAGES_HEADER
from harness.messages_delta import WHOLE_KEY, answered, delta_request, whole_declaration
from harness.prompt_delta import HEADER as PROMPT_IDS_HEADER
from harness.prompt_delta import SENT as PROMPT_IDS_SENT
from harness.prompt_ids import cut_prompt_ids, declaration, encode_ids, prompt_fields
from harness.sampling import Sampling  # defined apart: a run's config needs it without the openai SDK

RETRYABLE = (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError, openai.RateLimitError,
             EndpointHung)
REQUEST_TIMEOUT = 600.0  # seconds for one request: a reply not received by then is a server fault
RETRY_WINDOW = 120.0  # seconds after a request's first failure during which it is retried
BACKOFF_BASE, BACKOFF_CAP = 0.5, 15.0
OPENAI_ROLES = ("system", "developer", "user", "assistant")


class ModelServerError(RuntimeError):
    """The model endpoint failed after the client's retries, or refused the request or the key: the trial is an
    infrastructure error (`error`, retried on resume), never the model's failure."""


def _env_seconds(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise UserError(f"${name} must be a number of seconds, not {value!r}") from None
    if seconds <= 0:
        raise UserError(f"${name} must be greater than 0")
    return seconds


def _describe(exc: openai.OpenAIError) -> str:
    """What the server said, in one line: `HTTP 401 from http://host/v1/chat/completions: message`."""
    request = getattr(exc, "request", None)
    where = f" from {request.url}" if request is not None else ""
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}{where}: {exc.message}"[:500]
    if isinstance(exc, openai.APITimeoutError):
        return f"no reply{where} within the request timeout"
    return f"{type(exc).__name__}{where}: {exc}"[:500]


def openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with OpenAI's roles only: CWM's tool observations (`tool: bash`) go as user messages."""
    return [m if m.get("role") in OPENAI_ROLES else {**m, "role": "user"} for m in messages]


def _encode_messages(messages: list[dict[str, Any]], vllm: bool) -> bytes:
    sent = messages if vllm else openai_messages(messages)
    return ",".join(json.dumps(m, separators=(",", ":")) for m in sent).encode()


# vLLM's text-completion fields for prompts written with special-token strings: keep them as text both ways, keep the
# stop string, and add no second BOS
VLLM_TEXT_FIELDS = {"skip_special_tokens": False, "spaces_between_special_tokens": False,
                    "include_stop_str_in_output": True, "add_special_tokens": False}


class ContextLimitExceeded(Exception):
    """The server refused the prompt as longer than the model's context."""


class ModelReply(BaseModel):
    text: str
    finish_reason: str | None
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    # chat with vLLM: a conversation's first call has its whole prompt; each later call has only how many leading
    # ids of the previous call's prompt + completion it keeps (offset) and its ids after those (delta), so that
    # prompt = (previous prompt + previous completion_token_ids)[:offset] + delta (a call that has the whole prompt
    # again starts afresh). Token-exact mode: none of them (the caller sent the ids)
    prompt_token_ids: list[int] | None = None
    prompt_token_ids_offset: int | None = None
    prompt_token_ids_delta: list[int] | None = None
    completion_token_ids: list[int] | None = None
    logprobs: list[float] | None = None  # of the sampled tokens, when asked for
    sampling: dict[str, Any] = {}
    server_version: str | None = None
    policy_version: int | None = None  # RL: the weights version the server had when the request was sent

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.latency if self.latency > 0 else 0.0


class PolicyClock:
    """The version of the weights the server is serving; the RL trainer increments it after each update."""

    def __init__(self, version: int = 0):
        self.version = version


class ModelClient:
    """A client of one or more OpenAI-compatible endpoints.

    Faults of the server are infrastructure, never the model's: each request gets `timeout` seconds (a reply not
    received by then is a server fault) and the pool abandons it sooner when the server stops answering its probes;
    timeouts, connection errors, 5xx and 429 are retried with exponential backoff for `retry_window` seconds after
    the first failure (or `retries` attempts), then `ModelServerError` is raised. A refused key or request (4xx)
    raises it at once; a prompt longer than the context raises `ContextLimitExceeded` (the model's limit).

    Trial timeout (the choice made: the request timeout is kept well below it; model time is not paused): a failing
    call raises within about 2 x timeout + retry window (1,320 s with the defaults: 600 s, $CWM_EVAL_MODEL_TIMEOUT;
    120 s, $CWM_EVAL_MODEL_RETRY_WINDOW), well inside CWM's 7,200 s, so a hung server ends the trial as an error
    before the agent's limit. A frozen server (its /models unanswered too) is found by the probes in about two
    minutes, inside even Terminal-Bench's shorter per-task limits; only a server that answers its probes yet never
    finishes a request, under a task limit shorter than the request timeout, meets the trial timeout first (lower
    $CWM_EVAL_MODEL_TIMEOUT there). Time spent on replies the server does deliver counts toward the limit, as in
    CWM's and Terminal-Bench's own harnesses; a single reply slower than the request timeout is a server fault.

    vLLM-only request fields (`return_token_ids`, the preset's `request_defaults` such as CWM's `stop_token_ids` and
    `chat_template_kwargs`) are sent only when the server is vLLM (its /models card says `owned_by: vllm`); other
    servers get OpenAI's fields only, and roles outside OpenAI's (CWM's `tool: bash`) are sent as `user`.
    """

    def __init__(self, base_url: str | list[str], model: str | None = None, *, api_key: str | None = None,
                 sampling: Sampling | None = None, retries: int = 100, timeout: float | None = None,
                 retry_window: float | None = None, logprobs: bool = False,
                 request_defaults: dict[str, Any] | None = None, max_inflight: int = 64, **probes: float):
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.timeout = timeout if timeout is not None else _env_seconds("CWM_EVAL_MODEL_TIMEOUT", REQUEST_TIMEOUT)
        self.retry_window = retry_window if retry_window is not None else _env_seconds(
            "CWM_EVAL_MODEL_RETRY_WINDOW", RETRY_WINDOW)
        self.pool = EndpointPool(urls, api_key=api_key, timeout=self.timeout, max_inflight=max_inflight, **probes)
        self.base_url = self.pool.urls[0]
        self.model = model
        self.model_root: str | None = None  # where the server loaded the model from (vLLM's `root`)
        self.max_model_len: int | None = None  # the server's context length, when it says
        self.server_version: str | None = None
        self.vllm: bool | None = None  # None until the server was asked (check, or the first request)
        self.sampling = sampling or Sampling()
        self.retries = retries
        self.logprobs = logprobs
        self.request_defaults = request_defaults or {}
        self.policy: PolicyClock | None = None  # set by the RL trainer, which bumps it after each weight update
        self._messages = EncodedLists(_encode_messages)
        self._prompts = EncodedLists(encode_ids)

    @cached_property
    def http(self) -> httpx.Client:
        """The client's one blocking HTTP client (check, the model card, the version), made on first use."""
        return httpx.Client(headers=self.pool.headers, timeout=10)

    def check(self) -> str:
        """Fail fast, before any container starts, if no endpoint answers; returns the model name."""
        statuses = {e.url: status_of(e.url, client=self.http) for e in self.pool.endpoints}
        for endpoint in self.pool.endpoints:
            endpoint.healthy = statuses[endpoint.url] == 200
        refused = [url for url, status in statuses.items() if status in (401, 403)]
        if refused and not any(e.healthy for e in self.pool.endpoints):
            raise UserError(f"the model endpoint {refused[0]} refused the API key (HTTP {statuses[refused[0]]}); "
                            "pass the right one with --api-key or OPENAI_API_KEY")
        if not any(e.healthy for e in self.pool.endpoints):
            where = ", ".join(self.pool.urls)
            raise UserError(f"the model endpoint {where} is unreachable; start a server (`cwm-eval serve`) or "
                            "pass --model-url")
        self.base_url = next(e.url for e in self.pool.endpoints if e.healthy)
        models = self._models()
        served = [m["id"] for m in models]
        if self.model is None:
            if not served:
                raise UserError(f"the model endpoint {self.base_url} serves no model")
            self.model = served[0]
        elif served and self.model not in served:
            raise UserError(f"model {self.model!r} is not served at {self.base_url}; it serves: {', '.join(served)}")
        self._learn(models)
        return self.model

    def _models(self) -> list[dict]:
        try:
            response = self.http.get(f"{self.base_url}/models", timeout=10)
            response.raise_for_status()
            return [m for m in response.json().get("data", []) if isinstance(m, dict) and "id" in m]
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise UserError(f"the model endpoint {self.base_url} answered badly: {exc}") from None

    def _learn(self, models: list[dict]) -> None:
        """What the server's model card says: where it loaded from, its context, whether the server is vLLM."""
        card = next((m for m in models if m["id"] == self.model), models[0] if models else {})
        self.model_root, self.max_model_len = card.get("root"), card.get("max_model_len")
        self.server_version = self._version()
        owner = card.get("owned_by")
        self.vllm = owner == "vllm" or (owner is None and self.server_version is not None)

    def _version(self) -> str | None:
        try:
            answer = self.http.get(self.base_url.removesuffix("/v1") + "/version", timeout=5)
            return answer.json().get("version") if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None

    async def _is_vllm(self) -> bool:
        if self.vllm is None:  # a client used without check(): ask once the server answers
            try:
                await asyncio.to_thread(self._learn, await asyncio.to_thread(self._models))
            except UserError:
                return False
        return bool(self.vllm)

    def _sampling(self) -> dict[str, Any]:
        return self.sampling.model_dump(exclude_none=True)

    def _extra(self, vllm: bool, chat: bool) -> dict[str, Any]:
        if not vllm:
            return {}
        extra = {"return_token_ids": True, **self.request_defaults}
        if not chat:
            extra.pop("chat_template_kwargs", None)
        return extra

    async def _with_retries(self, path: str, body: bytes | tuple, headers: dict | None = None,
                            refusals: tuple = ()) -> bytes:
        """The reply's body to `body` from the pool, retried on server faults within the retry window; ModelServerError
        after that. The `refusals` (openai exception classes) are raised as they come."""
        started, first_failure, attempt = time.monotonic(), None, 0
        while True:
            attempt += 1
            try:
                return await self.pool.post(path, body, headers)
            except refusals:
                raise
            except openai.BadRequestError as exc:
                if "context" in str(exc).lower() or "too long" in str(exc).lower():
                    raise ContextLimitExceeded(str(exc)) from None
                raise ModelServerError(f"the model endpoint refused the request: {_describe(exc)}") from exc
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise ModelServerError(f"the model endpoint refused the API key ({_describe(exc)}); pass the right "
                                       "one with --api-key or OPENAI_API_KEY") from exc
            except RETRYABLE as exc:
                now = time.monotonic()
                first_failure = first_failure or now
                delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)) * random.uniform(0.75, 1.0)
                if attempt >= self.retries or now + delay - first_failure > self.retry_window:
                    raise ModelServerError(
                        f"gave up after {attempt} attempt(s) over {now - started:.0f} s (request timeout "
                        f"{self.timeout:g} s, retry window {self.retry_window:g} s): {_describe(exc)}") from exc
                await asyncio.sleep(delay)
            except openai.APIStatusError as exc:  # another 4xx: the server will not take this request
                raise ModelServerError(f"the model endpoint refused the request: {_describe(exc)}") from exc

    def _fields(self, max_tokens: int, options: dict[str, Any], vllm: bool, chat: bool) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": max_tokens, **options, **self._sampling(),
                **self._extra(vllm, chat)}

    def _structured(self, structured: dict[str, Any] | None, vllm: bool) -> dict[str, Any]:
        """vLLM's `structured_outputs` field (a regex or grammar the reply must match), when asked for."""
        if structured is None:
            return {}
        if not vllm:
            raise ModelServerError(f"{self.base_url} is not a vLLM server: it cannot constrain replies "
                                   "(structured_outputs)")
        return {"structured_outputs": structured}

    async def chat(self, messages: list[dict[str, Any]], max_tokens: int,
                   structured: dict[str, Any] | None = None) -> ModelReply:
        """A reply to `messages`; pass a conversation as the same list on every call, only ever appended to, so
        that each message is encoded once and the prompt ids come back as deltas. `structured`: vLLM's
        structured-output constraint on the reply."""
        started, version = time.monotonic(), self.policy.version if self.policy else None
        vllm = await self._is_vllm()
        seen = self._messages.seen(messages, vllm)
        options = {"logprobs": True, "top_logprobs": 0} if self.logprobs else {}
        options.update(self._structured(structured, vllm))
        head = fields_head(self._fields(max_tokens, options, vllm, True))
        raw = await self._chat_raw(seen, head, vllm)
        with _parsing(raw):
            reply, prompt_ids = cut_prompt_ids(raw)
            choice = reply["choices"][0]
            content = (choice.get("logprobs") or {}).get("content")
            logprobs = [t["logprob"] for t in content] if content else None
            text = choice["message"].get("content") or ""
            ids = prompt_fields(seen, reply, prompt_ids, choice.get("token_ids"))
            answered(seen)
            return self._reply(reply, choice, text, started, logprobs, max_tokens, version, ids)

    async def _chat_raw(self, seen, head: bytes, vllm: bool) -> bytes:
        """The reply to a chat request: only the messages the server does not keep yet when it keeps them
        (harness/messages_delta.py), all of them otherwise or when it no longer has the rest."""
        headers = {PROMPT_IDS_HEADER: declaration(seen)} if vllm else {}
        delta = delta_request(seen, head) if vllm else None
        if delta is not None:
            body, declared = delta
            try:
                return await self._with_retries("/chat/completions", body, {**headers, MESSAGES_HEADER: declared},
                                                refusals=(openai.BadRequestError, openai.ConflictError))
            except openai.ConflictError:  # it no longer keeps them (restarted, another server, its memory budget)
                pass
            except openai.BadRequestError:  # it does not put them back: all of them, from now on
                seen.keeps = False
        whole = (head + b"," + WHOLE_KEY, seen.data)
        if vllm:
            headers[MESSAGES_HEADER] = whole_declaration(whole[0])
        return await self._with_retries("/chat/completions", whole, headers or None)

    async def complete(self, prompt_ids: list[int], max_tokens: int, logprobs: bool = False,
                       structured: dict[str, Any] | None = None) -> ModelReply:
        """Token ids in, token ids out (token-exact mode); pass the prompt as the same growing list on every call,
        so that each id is encoded once."""
        started, version = time.monotonic(), self.policy.version if self.policy else None
        vllm = await self._is_vllm()
        options = {"logprobs": 0} if logprobs else {}
        options.update(self._structured(structured, vllm))
        raw = await self._with_retries("/completions", body_with(self._fields(max_tokens, options, vllm, False),
                                                            "prompt", self._prompts.seen(prompt_ids).data),
                                       {PROMPT_IDS_HEADER: PROMPT_IDS_SENT} if vllm else None)
        with _parsing(raw):
            reply, _ = cut_prompt_ids(raw)  # the prompt as sent (a server that cuts sends none back)
            choice = reply["choices"][0]
            sampled = (choice.get("logprobs") or {}).get("token_logprobs")
            text = choice.get("text") or ""
            return self._reply(reply, choice, text, started, sampled, max_tokens, version, {})

    async def complete_text(self, prompt: str, max_tokens: int, stop: list[str]) -> ModelReply:
        """A raw text completion (`/v1/completions`) cut at the first of `stop`, as CWM's trace demo prompts: the
        prompt holds special-token strings and begins with its own BOS. On vLLM the special tokens come back as text
        and the stop string stays in the reply (so that the end of a trace can be told from the end of a frame)."""
        started, version = time.monotonic(), self.policy.version if self.policy else None
        vllm = await self._is_vllm()
        options = {"stop": stop, **(VLLM_TEXT_FIELDS if vllm else {})}
        raw = await self._with_retries("/completions", body_with(self._fields(max_tokens, options, vllm, False),
                                                            "prompt", array(json.dumps(prompt).encode())))
        with _parsing(raw):
            reply, _ = cut_prompt_ids(raw)
            choice = reply["choices"][0]
            return self._reply(reply, choice, choice.get("text") or "", started, None, max_tokens, version, {})

    def _reply(self, reply: dict[str, Any], choice: dict[str, Any], text: str, started: float, logprobs,
               max_tokens: int, version: int | None, ids: dict[str, Any]) -> ModelReply:
        usage = reply.get("usage") or {}
        return ModelReply(
            text=text, finish_reason=choice.get("finish_reason"), model=reply.get("model") or self.model or "",
            prompt_tokens=usage.get("prompt_tokens") or 0, completion_tokens=usage.get("completion_tokens") or 0,
            latency=time.monotonic() - started, completion_token_ids=choice.get("token_ids"), logprobs=logprobs,
            sampling={**self._sampling(), "max_tokens": max_tokens}, server_version=self.server_version,
            policy_version=version, **ids,
        )


@contextmanager
def _parsing(raw: bytes):
    """A reply that is not what an OpenAI-compatible server sends is the server's fault."""
    try:
        yield
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ModelServerError(f"the model endpoint answered badly ({type(exc).__name__}: {exc}): "
                               f"{raw[:300]!r}") from exc
