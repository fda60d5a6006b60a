"""The harness's CPU per model call early and late in a conversation (issue 14, item 1). Target: turn 120 within 20%
of turn 10.

A vLLM-like server runs in a separate process (so its CPU is not counted): it answers chat with the whole prompt's
token ids (`return_token_ids`), about one id per 4 characters of a message. This process's CPU (time.process_time)
is measured per model call (`conversation.sample`) and per step (the call, the trajectory record, the next
observation) over the 8 steps ending at turns 10 and 120, with messages of CWM's size (a 1 KB reply, a 3 KB
observation: about 120K tokens by turn 120, a 0.5 MB request and a 0.7 MB reply).

Contenders: `new`, the harness's `ModelClient` (its requests through aiohttp); `httpx`, the same client with its
requests through httpx, as before this change; `old`, the path before that (the openai SDK's
`chat.completions.create` on one long-lived client, its reply recorded with the whole prompt's ids). Floors, the
same requests encoded beforehand and their replies read, nothing else: `wire` through aiohttp, `wire-httpx` through
httpx, and `socket`, a blocking socket writing and reading the bytes with no HTTP library (what the bytes cost by
themselves). Each round runs every contender at both lengths, interleaved (the order reversed every other round), so
a busy machine slows the lengths alike; printed are min/median/max over rounds of the per-round ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
import types
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import endpoints  # noqa: E402
from harness.conversation import THINK_PREFILL, ChatConversation  # noqa: E402
from harness.model import ModelClient, ModelReply  # noqa: E402
from rounds import describe, per_round  # noqa: E402

MODEL, ASSISTANT, EOT = "bench-model", 3, 5
ROLES = {"system": 1, "user": 2, "assistant": ASSISTANT}
STEPS = 8  # timed steps per measurement, ending at the turn measured
REPLY = "I should look at the failing test first, then at the function it calls. " * 14


# --- the server (its own process) -------------------------------------------------------------------------------

def tokens(text: str, cache: dict[str, list[int]]) -> list[int]:
    """A fake tokenizer: an id per 4 characters (so the think prefill, 8 characters, is 2 whole ids)."""
    ids = cache.get(text)
    if ids is None:
        ids = cache[text] = [100 + zlib.crc32(text[i:i + 4].encode()) % 128000 for i in range(0, len(text), 4)]
    return ids


def chat_reply(request: dict, turn: int, cache: dict) -> dict:
    """As vLLM answers with return_token_ids; the generation prompt ends with the prefill (CWM's template)."""
    prompt = [i for m in request["messages"]
              for i in (ROLES.get(m["role"], 4), *tokens(m["content"], cache), EOT)]
    prompt += [ASSISTANT, *tokens(THINK_PREFILL, cache)]
    text = f"{REPLY}{turn}\n</think>\n<tool: bash>\nseq {turn} {turn + 699}\n</tool>"  # about 3 KB of output
    completion = tokens(text, {}) + [EOT]
    return {"id": f"chatcmpl-{turn}", "object": "chat.completion", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": "stop", "token_ids": completion}],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(completion),
                      "total_tokens": len(prompt) + len(completion)},
            "prompt_logprobs": None, "prompt_token_ids": prompt}


def serve() -> None:
    cache: dict[str, list[int]] = {}
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as vLLM's server

        def log_message(self, *args):
            pass

        def _send(self, body: dict) -> None:
            data = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.endswith("/version"):
                return self._send({"version": "bench"})
            self._send({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "vllm",
                                                    "max_model_len": 262144}]})

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            count[0] += 1
            self._send(chat_reply(request, count[0], cache))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# --- the clients ------------------------------------------------------------------------------------------------

class OldClient:
    """The request path before the harness encoded its own requests: the openai SDK on one client per endpoint, the
    reply with the whole prompt."""

    def __init__(self, url: str):
        import openai

        self.client = ModelClient(url, model=MODEL)  # its pool and hang watch, as before
        self.sdk = openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=600)

    async def chat(self, messages: list[dict], max_tokens: int) -> ModelReply:
        started = time.monotonic()
        response = await self.client.pool.call(lambda endpoint: self.sdk.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=max_tokens, temperature=1.0, top_p=0.95,
            extra_body={"return_token_ids": True}))
        choice, usage = response.choices[0], response.usage
        return ModelReply(text=choice.message.content or "", finish_reason=choice.finish_reason, model=response.model,
                          prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                          latency=time.monotonic() - started,
                          prompt_token_ids=(response.model_extra or {}).get("prompt_token_ids"),
                          completion_token_ids=(choice.model_extra or {}).get("token_ids"),
                          sampling={"temperature": 1.0, "top_p": 0.95, "max_tokens": max_tokens})


async def httpx_post(endpoint: endpoints.Endpoint, path: str, body: bytes) -> bytes:
    """An endpoint's POST as it was before aiohttp: one long-lived httpx client (errors left out)."""
    import httpcore

    loop = asyncio.get_running_loop()
    if getattr(endpoint, "httpx_loop", None) is not loop:
        httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = 1 << 20  # as the harness raised it then
        endpoint.httpx, endpoint.httpx_loop = httpx.AsyncClient(headers=endpoint.headers, timeout=600), loop
    return (await endpoint.httpx.post(f"{endpoint.url}{path}", content=body, headers=endpoints.JSON_HEADERS)).content


def httpx_client(url: str) -> ModelClient:
    """The harness's client with its requests through httpx, as before this change."""
    client = ModelClient(url, model=MODEL)
    for endpoint in client.pool.endpoints:
        endpoint.post = types.MethodType(httpx_post, endpoint)
    return client


def observation(turn: int) -> str:
    lines = "".join(f"-rw-r--r-- 1 root root {turn * 37 + i:>6} Jan  1 00:00 src/module_{turn}_{i}.py\n"
                    for i in range(48))
    return f"<output>\n{lines}</output>\n\nYou have {128 - turn} turns left."


OBSERVATIONS = [observation(turn) for turn in range(1000)]


def opening() -> list[dict]:
    return [{"role": "system", "content": "You are a coding agent working in a repository. " * 60},
            {"role": "user", "content": "<issue_description>\nThe median is wrong for even lengths.\n" * 40}]


def record(reply: ModelReply) -> str:
    """The trajectory line of a reply, as the agent writes it."""
    skip = {"text"} | {name for name in ("prompt_token_ids_offset", "prompt_token_ids_delta")
                       if getattr(reply, name) is None}
    return json.dumps({"kind": "message", "role": "assistant", "content": reply.text,
                       **reply.model_dump(exclude=skip)})


def conversation_at(client, turn: int) -> ChatConversation:
    """A conversation that has reached `turn` without model calls (the earlier turns' replies, as the model wrote)."""
    conversation = ChatConversation(client, opening())
    for earlier in range(1, turn):
        conversation.messages.append({"role": "assistant", "content": THINK_PREFILL + REPLY + str(earlier)})
        conversation.messages.append({"role": "tool: bash", "content": OBSERVATIONS[earlier]})
    return conversation


async def cpu_per_step(client, turn: int) -> tuple[float, float]:
    """Seconds of CPU per model call and per step over the STEPS steps ending at `turn`, after an untimed first call
    on the conversation so far (as a run's earlier turns would have made)."""
    first = turn - STEPS
    conversation = conversation_at(client, first)
    await conversation.sample(1024)
    conversation.add("tool: bash", OBSERVATIONS[first])
    calls, started = 0.0, time.process_time()
    for step in range(first + 1, turn + 1):
        before = time.process_time()
        reply = await conversation.sample(1024)
        calls += time.process_time() - before
        record(reply)
        conversation.add("tool: bash", OBSERVATIONS[step])
    return calls / STEPS, (time.process_time() - started) / STEPS


def bodies_at(turn: int) -> list[bytes]:
    """The requests of the STEPS steps ending at `turn`, encoded."""
    conversation, bodies = conversation_at(None, turn - STEPS), []
    for step in range(turn - STEPS + 1, turn + 1):
        conversation.messages.append({"role": "assistant", "content": THINK_PREFILL + REPLY + str(step)})
        conversation.messages.append({"role": "tool: bash", "content": OBSERVATIONS[step]})
        bodies.append(json.dumps({"model": MODEL, "messages": conversation.messages, "max_tokens": 1024,
                                  "return_token_ids": True}, separators=(",", ":")).encode())
    return bodies


class Floors:
    """The same requests and replies with nothing else done: through aiohttp, through httpx, and through a blocking
    socket (the bytes' own cost: the kernel's copies, one read buffer, no HTTP library)."""

    def __init__(self, url: str, turns: tuple[int, int]):
        self.url, self.bodies = url, {turn: bodies_at(turn) for turn in turns}
        self.httpx = httpx.AsyncClient(timeout=600)
        self.session = None
        host, port = url.split("//")[1].split("/")[0].split(":")
        self.socket, self.buffer = socket.create_connection((host, int(port))), bytearray(16 << 20)

    async def aiohttp(self, turn: int) -> tuple[float, float]:
        self.session = self.session or endpoints.new_session(self.url, {}, 600)
        started = time.process_time()
        for body in self.bodies[turn]:
            async with self.session.post(f"{self.url}/chat/completions", data=body,
                                         headers=endpoints.JSON_HEADERS) as response:
                await response.read()
        return ((time.process_time() - started) / STEPS,) * 2

    async def httpx_wire(self, turn: int) -> tuple[float, float]:
        started = time.process_time()
        for body in self.bodies[turn]:
            await self.httpx.post(f"{self.url}/chat/completions", content=body, headers=endpoints.JSON_HEADERS)
        return ((time.process_time() - started) / STEPS,) * 2

    async def bare(self, turn: int) -> tuple[float, float]:
        started = time.process_time()
        for body in self.bodies[turn]:
            self.exchange(body)
        return ((time.process_time() - started) / STEPS,) * 2

    def exchange(self, body: bytes) -> int:
        self.socket.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(body))
        self.socket.sendall(body)
        view, got, need = memoryview(self.buffer), 0, None
        while need is None or got < need:
            got += self.socket.recv_into(view[got:])
            end = self.buffer.find(b"\r\n\r\n", 0, got) if need is None else -1
            if end >= 0:
                at = self.buffer.find(b"Content-Length: ", 0, end) + len(b"Content-Length: ")
                need = end + 4 + int(self.buffer[at:self.buffer.find(b"\r\n", at)])
        return need


def sizes(floors: Floors, turn: int) -> str:
    request = len(floors.bodies[turn][-1])
    reply = floors.exchange(floors.bodies[turn][-1])
    return f"turn {turn}: request {request / 1e3:.0f} KB, reply {reply / 1e3:.0f} KB"


async def measure(url: str, rounds: int, short: int, long: int) -> None:
    new, before, old = ModelClient(url, model=MODEL), httpx_client(url), OldClient(url)
    new.check()
    before.check()
    floors = Floors(url, (short, long))
    print(f"bytes per call: {sizes(floors, short)}; {sizes(floors, long)}")
    contenders = {"new": lambda turn: cpu_per_step(new, turn), "httpx": lambda turn: cpu_per_step(before, turn),
                  "old": lambda turn: cpu_per_step(old, turn), "wire": floors.aiohttp,
                  "wire-httpx": floors.httpx_wire, "socket": floors.bare}
    runs = [(name, turn) for name in contenders for turn in (short, long)]
    times: dict[tuple[str, int], list[tuple[float, float]]] = {run: [] for run in runs}
    for name, turn in runs:  # warm-up: connections, imports, caches
        await contenders[name](turn)
    for number in range(rounds):
        for name, turn in runs if number % 2 == 0 else runs[::-1]:  # interleaved, the order reversed every round
            times[name, turn].append(await contenders[name](turn))
    await floors.session.close()
    report(times, short, long)


def report(times: dict, short: int, long: int) -> None:
    def series(name: str, turn: int, part: int) -> list[float]:
        return [t[part] for t in times[name, turn]]

    for name in dict.fromkeys(name for name, _ in times):
        for part, what in enumerate(("model call", "whole step") if name in ("new", "httpx", "old") else ("call",)):
            a, b = series(name, short, part), series(name, long, part)
            print(f"{name:>10} {what:>10}: CPU at turn {short} {1000 * statistics.median(a):.2f} ms, at turn {long} "
                  f"{1000 * statistics.median(b):.2f} ms (+{1000 * (statistics.median(b) - statistics.median(a)):.2f});"
                  f" ratio {long}/{short} per round: {describe(per_round(b, a))}"
                  + ("   target <= 1.20" if name == "new" else ""))
    for name, floor in (("new", "wire"), ("httpx", "wire-httpx")):
        own = {turn: [x - y for x, y in zip(series(name, turn, 0), series(floor, turn, 0))]
               for turn in (short, long)}
        print(f"{name} above its floor ({floor}), the harness's own CPU per call: turn {short} "
              f"{1000 * statistics.median(own[short]):.2f} ms, "
              f"turn {long} {1000 * statistics.median(own[long]):.2f} ms")
    for name in ("httpx", "old"):
        print(f"{name} / new at turn {long}, whole step, per round: "
              f"{describe(per_round(series(name, long, 1), series('new', long, 1)))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--short", type=int, default=10)
    parser.add_argument("--long", type=int, default=120)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve()
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
        opening_chars = sum(len(m["content"]) for m in opening())
        print(f"messages: opening {opening_chars} chars, reply {len(REPLY) + 60} chars, observation "
              f"{len(observation(60))} chars; {args.rounds} rounds of {STEPS} steps per length and contender")
        asyncio.run(measure(url, args.rounds, args.short, args.long))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
