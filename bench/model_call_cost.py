"""The harness's CPU per model call early and late in a conversation (issue 14, item 1). Target: turn 120 within 20%
of turn 10.

vLLM-like servers run in separate processes (so their CPU is not counted): they answer chat with the prompt's token
ids (`return_token_ids`), about one id per 4 characters of a message. `cut`, as the servers `cwm-eval serve` starts
(their middleware is harness/messages_delta.py and prompt_delta.py), keeps each conversation's messages, so that a
request sends only the new ones, and sends back only the prompt ids the request did not declare; `echo`, as plain
vLLM, takes the whole conversation and echoes the whole prompt. This process's CPU (time.process_time) is measured
per model call (`conversation.sample`) and per step (the call, the trajectory record, the next observation), the
median over 3 runs of the 8 steps ending at turns 10 and 120 (every reply 30 ms after its request, as a model takes
its time whatever the length), with messages of CWM's size (a 1 KB reply, a 3 KB observation:
about 120K tokens by turn 120; whole, a 0.5 MB request and a 0.7 MB reply).

Contenders: `new`, the harness's `ModelClient` against the `cut` server; `echo`, the same client against plain
vLLM (the harness before the server's middleware); `old`, the path before that (the openai SDK's
`chat.completions.create` on one long-lived client, its reply recorded with the whole prompt's ids). Floors, the
whole requests encoded beforehand and their whole replies read, nothing else: `socket`, with a blocking socket and
no HTTP library (what those bytes cost by themselves), and `wire`, through aiohttp. Each round runs every contender at both lengths, interleaved (the order reversed every
other round), so a busy machine slows the lengths alike; printed are min/median/max over rounds of the per-round
ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import statistics
import subprocess
import sys
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import endpoints  # noqa: E402
from harness.conversation import THINK_PREFILL, ChatConversation  # noqa: E402
from harness.model import ModelClient, ModelReply  # noqa: E402
from harness.messages_delta import HEADER as MESSAGES_HEADER  # noqa: E402
from harness.messages_delta import UNKNOWN, Kept, parse, whole_body  # noqa: E402
from harness.prompt_delta import HEADER, with_delta  # noqa: E402
from rounds import describe, per_round  # noqa: E402

MODEL, ASSISTANT, EOT = "bench-model", 3, 5
ROLES = {"system": 1, "user": 2, "assistant": ASSISTANT}
STEPS, REPEATS = 8, 3  # timed steps ending at the turn measured, and how many times they are run per measurement
# how long the servers take to answer, early and late alike (a model's time): this server's own work grows with
# the conversation, and on this 2-core machine a client that waits longer spends more CPU on the same call (a server
# that answers 10 ms later costs the client about 0.4 ms more per call), which is not the harness's
LATENCY = 0.03
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
            "prompt_logprobs": None, "prompt_token_ids": prompt if request.get("return_token_ids") else None}


def serve(cuts: bool) -> None:
    """`cuts`: as a server that `cwm-eval serve` starts (its middleware puts back the messages it keeps and cuts the
    prompt ids the request declares); otherwise as plain vLLM, taking whole conversations and echoing whole prompts."""
    cache: dict[str, list[int]] = {}
    count = [0]
    kept = Kept(1 << 30)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as vLLM's server
        # TCP_NODELAY, as vLLM's server (asyncio sets it): otherwise a reply body shorter than a segment waits on the
        # client's delayed ACK of the headers (40 ms), where the whole prompt's ids would not
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def _send(self, body: dict, status: int = 200) -> None:
            data = json.dumps(body, separators=(",", ":")).encode()
            if cuts and status == 200 and self.headers.get(HEADER) is not None:
                data = with_delta(data, self.headers[HEADER])
            self.send_response(status)
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
            answer_at = time.monotonic() + LATENCY
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            declared = parse(self.headers.get(MESSAGES_HEADER) or "")
            if cuts and declared:
                raw = whole_body(raw, declared, kept)
                if raw is None:
                    return self._send({"error": {"type": UNKNOWN}}, 409)
            count[0] += 1
            reply = chat_reply(json.loads(raw), count[0], cache)
            time.sleep(max(0.0, answer_at - time.monotonic()))
            self._send(reply)

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
    """Seconds of CPU per model call and per step, the median over REPEATS runs of the STEPS steps ending at `turn`
    (a step preempted or slowed by the machine does not move it), each after an untimed first call on the
    conversation so far (as a run's earlier turns would have made)."""
    calls, steps = [], []
    for _ in range(REPEATS):
        first = turn - STEPS
        conversation = conversation_at(client, first)
        await conversation.sample(1024)
        conversation.add("tool: bash", OBSERVATIONS[first])
        gc.collect()  # every measurement starts with no collection owed for what came before it
        for step in range(first + 1, turn + 1):
            before = time.process_time()
            reply = await conversation.sample(1024)
            calls.append(time.process_time() - before)
            record(reply)
            conversation.add("tool: bash", OBSERVATIONS[step])
            steps.append(time.process_time() - before)
    return statistics.median(calls), statistics.median(steps)


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
    """The same requests and replies with nothing else done: through aiohttp, and through a blocking socket (the
    bytes' own cost: the kernel's copies, one read buffer, no HTTP library), with and without the prompt's ids."""

    def __init__(self, url: str, turns: tuple[int, int]):
        self.url, self.bodies = url, {turn: bodies_at(turn) for turn in turns}
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


async def cut_sizes(client: ModelClient, turn: int) -> tuple[int, int]:
    """Bytes of a request and of its reply at `turn`, with the cutting server."""
    sizes, post = [], client.pool.post

    async def measured(path, body, headers=None):
        raw = await post(path, body, headers)
        sizes.append((sum(map(len, body)) if isinstance(body, tuple) else len(body), len(raw)))
        return raw

    client.pool.post = measured
    try:
        await cpu_per_step(client, turn)
    finally:
        client.pool.post = post
    return sizes[-1]


async def measure(urls: dict[str, str], rounds: int, short: int, long: int) -> None:
    new, echo, old = ModelClient(urls["cut"], model=MODEL), ModelClient(urls["echo"], model=MODEL), OldClient(
        urls["echo"])
    new.check()
    echo.check()
    floors = Floors(urls["echo"], (short, long))
    request, reply = await cut_sizes(new, long)
    print(f"bytes per call, whole: {sizes(floors, short)}; {sizes(floors, long)}; with the cut server at turn {long}: "
          f"request {request / 1e3:.1f} KB, reply {reply / 1e3:.1f} KB")
    contenders = {"new": lambda turn: cpu_per_step(new, turn), "echo": lambda turn: cpu_per_step(echo, turn),
                  "old": lambda turn: cpu_per_step(old, turn), "wire": floors.aiohttp, "socket": floors.bare}
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
        for part, what in enumerate(("model call", "whole step") if name in ("new", "echo", "old") else ("call",)):
            a, b = series(name, short, part), series(name, long, part)
            print(f"{name:>10} {what:>10}: CPU at turn {short} {1000 * statistics.median(a):.2f} ms, at turn {long} "
                  f"{1000 * statistics.median(b):.2f} ms (+{1000 * (statistics.median(b) - statistics.median(a)):.2f});"
                  f" ratio {long}/{short} per round: {describe(per_round(b, a))}"
                  + ("   target <= 1.20" if name == "new" else ""))
    own = {turn: [x - y for x, y in zip(series("echo", turn, 0), series("socket", turn, 0))] for turn in (short, long)}
    print(f"echo above the whole bytes' own cost (socket), the harness's own CPU per call: turn {short} "
          f"{1000 * statistics.median(own[short]):.2f} ms, turn {long} {1000 * statistics.median(own[long]):.2f} ms")
    for name in ("echo", "old"):
        print(f"{name} / new at turn {long}, whole step, per round: "
              f"{describe(per_round(series(name, long, 1), series('new', long, 1)))}")


def start_server(mode: str) -> tuple[subprocess.Popen, str]:
    """A bench server in its own process (`cut` or `echo`) and its URL."""
    server = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", mode],
                              stdout=subprocess.PIPE, text=True)
    return server, f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--short", type=int, default=10)
    parser.add_argument("--long", type=int, default=120)
    parser.add_argument("--serve", choices=("cut", "echo"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve == "cut")
    servers = {mode: start_server(mode) for mode in ("cut", "echo")}
    try:
        opening_chars = sum(len(m["content"]) for m in opening())
        print(f"messages: opening {opening_chars} chars, reply {len(REPLY) + 60} chars, observation "
              f"{len(observation(60))} chars; {args.rounds} rounds of {STEPS} steps per length and contender")
        asyncio.run(measure({mode: url for mode, (_, url) in servers.items()}, args.rounds, args.short, args.long))
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
