"""A scripted OpenAI-compatible server: replays assistant turns in order, for deterministic agent tests.

By default it answers as vLLM does (`owned_by: vllm`, token ids on /v1/completions). Fault modes for the model
client's tests:

- `faults`: one entry per completion request, in order, before the script goes on: `"500"` (an internal error),
  `"401"` (the key refused), `"hang"` (no answer until the server stops), `"freeze"` (this request and everything
  after it, /v1/models included, hangs), `"ok"` (answered normally);
- `die_after=N`: stop serving (connections refused) after N completions;
- `api_key`: every request must carry `Authorization: Bearer <api_key>`, else 401 as OpenAI answers it;
- `strict`: a non-vLLM server that answers 400 to any field outside OpenAI's API (and to roles outside OpenAI's);
- `hold`: seconds each completion is held before its answer, so that concurrent clients overlap; the most
  completions ever in flight at once is `most_in_flight`.

Like vLLM served with VLLM_SERVER_DEV_MODE=1 it accepts `/collective_rpc` and `/reset_prefix_cache` (recorded in
`admin`), so that an RL trainer can push weights to it.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# OpenAI's request fields (chat completions; legacy completions) and message fields and roles
CHAT_FIELDS = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop",
               "seed", "logprobs", "top_logprobs", "stream", "stream_options", "presence_penalty",
               "frequency_penalty", "logit_bias", "user", "response_format", "tools", "tool_choice",
               "parallel_tool_calls", "metadata", "store", "service_tier", "reasoning_effort", "modalities"}
COMPLETION_FIELDS = {"model", "prompt", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "logprobs", "echo",
                     "best_of", "suffix", "stream", "stream_options", "presence_penalty", "frequency_penalty",
                     "logit_bias", "user"}
MESSAGE_FIELDS = {"role", "content", "name", "tool_call_id", "tool_calls", "refusal"}
ROLES = {"system", "developer", "user", "assistant"}  # `tool` needs a tool_call_id, which CWM's turns never have


def openai_error(message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def strict_problem(path: str, request: dict) -> str | None:
    """What OpenAI's API would refuse in this request, or None."""
    allowed = COMPLETION_FIELDS if path.endswith("/v1/completions") else CHAT_FIELDS
    unknown = sorted(set(request) - allowed)
    if unknown:
        return f"Unrecognized request argument supplied: {unknown[0]}"
    for message in request.get("messages", []):
        if set(message) - MESSAGE_FIELDS:
            return f"Unrecognized message field: {sorted(set(message) - MESSAGE_FIELDS)[0]}"
        if message.get("role") not in ROLES:
            return f"Invalid value: {message.get('role')!r}. Supported values are: {', '.join(sorted(ROLES))}."
    return None


class ScriptedServer:
    """Serves /v1/models and /v1/chat/completions on 127.0.0.1; each completion is the next scripted turn."""

    def __init__(self, turns: list[str], model: str = "scripted-model", tokenizer=None, root: str | None = None,
                 die_after: int | None = None, faults: list[str] | None = None, api_key: str | None = None,
                 strict: bool = False, hold: float = 0.0):
        self.hold = hold
        self.in_flight = self.most_in_flight = 0
        self.turns = list(turns)
        self.die_after = die_after  # stop serving (connections refused) after this many completions
        self.faults = list(faults or [])
        self.api_key = api_key
        self.strict = strict
        self.model = model
        self.tokenizer = tokenizer  # needed for /v1/completions (token ids in, token ids out)
        self.root = root
        self.requests: list[dict] = []  # the requests answered with a scripted turn
        self.faulted: list[str] = []  # the fault modes used, in order
        self.rejected: list[str] = []  # why requests were refused (strict, or the key)
        self.admin: list[tuple[str, dict]] = []  # dev-mode calls: weight reloads, prefix-cache resets
        self.declared: list[str | None] = []  # each completion request's prompt-ids declaration (prompt_delta.py)
        self.frozen = False
        self._released = threading.Event()  # hung requests return once the server stops
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.handle_error = lambda request, address: None  # a client that gave up on a hung request
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def next_fault(self) -> str:
        with self._lock:
            fault = self.faults.pop(0) if self.faults else "ok"
            if fault != "ok":
                self.faulted.append(fault)
            if fault == "freeze":
                self.frozen = True
            return fault

    def next_turn(self, request: dict) -> str:
        with self._lock:
            self.requests.append(request)
            if self.die_after is not None and len(self.requests) == self.die_after:
                threading.Thread(target=self.__exit__, daemon=True).start()
            # past the end of the script the model keeps rambling without a tool call
            return self.turns.pop(0) if self.turns else "I am not sure what to do next."

    def completion(self, request: dict) -> dict:
        """Token ids in, token ids out, as vLLM answers /v1/completions with return_token_ids; a text prompt
        (a string, or a list of one) gets the scripted text back, with token ids only when there is a tokenizer."""
        text = self.next_turn(request)
        if self.tokenizer is None and not all(isinstance(i, int) for i in request["prompt"]):
            return self.text_completion(request, text)
        ids = self.tokenizer.encode(text, add_special_tokens=False) + [self.tokenizer.eos_token_id]
        logprobs = {"token_logprobs": [-0.5] * len(ids), "tokens": [str(i) for i in ids]} if request.get(
            "logprobs") is not None else None
        return {
            "id": f"cmpl-{len(self.requests)}", "object": "text_completion", "created": 0, "model": self.model,
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "token_ids": ids, "logprobs": logprobs,
                         "prompt_token_ids": request["prompt"]}],
            "usage": {"prompt_tokens": len(request["prompt"]), "completion_tokens": len(ids),
                      "total_tokens": len(request["prompt"]) + len(ids)},
        }

    def text_completion(self, request: dict, text: str) -> dict:
        prompt_tokens, completion_tokens = len(str(request["prompt"])) // 4, max(1, len(text) // 4)
        return {
            "id": f"cmpl-{len(self.requests)}", "object": "text_completion", "created": 0, "model": self.model,
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def chat_completion(self, request: dict) -> dict:
        text = self.next_turn(request)
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in request["messages"]) // 4
        completion_tokens = max(1, len(text) // 4)
        return {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": 0, "model": self.model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def receive(self, raw: bytes, headers) -> bytes | None:
        """A request's bytes as the server takes them (None: refused as a delta of messages it does not keep)."""
        return raw

    def encode(self, body: dict, headers) -> bytes:
        """A successful reply's bytes (`headers`: the request's, whose prompt-ids declaration is kept)."""
        if "choices" in body:
            self.declared.append(headers.get("x-cwm-eval-prompt-ids"))
        return json.dumps(body).encode()

    @contextmanager
    def counting(self):
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict) -> None:
                data = server.encode(body, self.headers) if status == 200 else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up
                    pass

            def _refused_key(self) -> bool:
                if server.api_key is None or self.headers.get("Authorization") == f"Bearer {server.api_key}":
                    return False
                server.rejected.append("api key")
                self._send(401, openai_error("Incorrect API key provided.", code="invalid_api_key"))
                return True

            def _hang(self) -> None:
                server._released.wait()

            def do_GET(self):
                if server.frozen:
                    return self._hang()
                if self._refused_key():
                    return
                if self.path.rstrip("/").endswith("/models"):
                    card = {"id": server.model, "object": "model", "created": 0,
                            "owned_by": "scripted" if server.strict else "vllm"}
                    if not server.strict:
                        card["root"] = server.root
                    self._send(200, {"object": "list", "data": [card]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = server.receive(self.rfile.read(length) if length else b"", self.headers)
                if raw is None:  # a delta of messages it does not keep (harness/messages_delta.py)
                    return self._send(409, openai_error("messages not kept", kind="cwm_eval_messages_unknown"))
                request = json.loads(raw) if raw else {}
                if server.frozen:
                    return self._hang()
                if self._refused_key():
                    return
                if self.path in ("/collective_rpc", "/reset_prefix_cache"):  # vLLM's dev-mode endpoints (RL)
                    server.admin.append((self.path, request))
                    return self._send(200, {"results": [None]})
                completions = self.path.endswith("/v1/completions")
                if not completions and not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": "not found"})
                if not completions and "messages" not in request:  # as vLLM's validation answers
                    return self._send(400, openai_error("messages: Field required", param="messages"))
                problem = strict_problem(self.path, request) if server.strict else None
                if problem:
                    server.rejected.append(problem)
                    return self._send(400, openai_error(problem))
                with server.counting():
                    self._complete(request, completions)

            def _complete(self, request: dict, completions: bool) -> None:
                fault = server.next_fault()
                if server.hold:
                    server._released.wait(server.hold)
                if fault in ("hang", "freeze"):
                    return self._hang()
                if fault == "500":
                    return self._send(500, openai_error("internal server error", kind="server_error"))
                if fault == "401":
                    return self._send(401, openai_error("Incorrect API key provided.", code="invalid_api_key"))
                self._send(200, server.completion(request) if completions else server.chat_completion(request))

        return Handler

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
