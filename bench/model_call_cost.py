"""The harness's CPU per model call early and late in a conversation (issue 14, item 1). Target: turn 120 within 20%
of turn 10.

A vLLM-like server runs in a separate process (so its CPU is not counted): it answers chat with the whole prompt's
token ids (`return_token_ids`), about one id per 4 characters of a message. This process's CPU (time.process_time)
is measured per agent step (the call, the trajectory record) at turns 10 and 120, with messages of CWM's size (a
1 KB reply, a 3 KB observation: about 120K tokens by turn 120). Contenders: `new`, the harness's `ModelClient`;
`old`, the previous path (the openai SDK's `chat.completions.create` on one long-lived client, its reply recorded
with the whole prompt's ids), for before/after; `wire`, a bare httpx POST of the same requests, encoded beforehand,
reading the same replies: the floor, what the bytes on the wire alone cost. Each round runs every contender at both
lengths, interleaved (the order reversed every other round), so a busy machine slows the lengths alike; printed are
min/median/max over rounds of the per-round ratio turn120/turn10.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.conversation import THINK_PREFILL, ChatConversation  # noqa: E402
from harness.model import ModelClient, ModelReply  # noqa: E402

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


# --- the two clients --------------------------------------------------------------------------------------------

class OldClient:
    """The previous request path: the openai SDK on one client per endpoint, the reply with the whole prompt."""

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
JSON = {"Content-Type": "application/json"}


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


async def cpu_per_step(client, turn: int) -> float:
    """Seconds of CPU per step over the STEPS steps ending at `turn`, after an untimed first call on the
    conversation so far (as a run's earlier turns would have made)."""
    first = turn - STEPS
    conversation = conversation_at(client, first)
    await conversation.sample(1024)
    conversation.add("tool: bash", OBSERVATIONS[first])
    started = time.process_time()
    for step in range(first + 1, turn + 1):
        reply = await conversation.sample(1024)
        record(reply)
        conversation.add("tool: bash", OBSERVATIONS[step])
    return (time.process_time() - started) / STEPS


async def wire_per_step(http: httpx.AsyncClient, url: str, turn: int) -> float:
    """The floor: CPU per bare httpx POST of the same requests, encoded beforehand, and read of the same replies."""
    conversation = conversation_at(None, turn - STEPS)
    bodies = []
    for step in range(turn - STEPS + 1, turn + 1):
        conversation.messages.append({"role": "assistant", "content": THINK_PREFILL + REPLY + str(step)})
        conversation.messages.append({"role": "tool: bash", "content": OBSERVATIONS[step]})
        bodies.append(json.dumps({"model": MODEL, "messages": conversation.messages, "max_tokens": 1024,
                                  "return_token_ids": True}, separators=(",", ":")).encode())
    started = time.process_time()
    for body in bodies:
        (await http.post(f"{url}/chat/completions", content=body, headers=JSON)).content
    return (time.process_time() - started) / STEPS


def spread(values: list[float]) -> str:
    return f"min {min(values):.2f}  median {statistics.median(values):.2f}  max {max(values):.2f}"


async def measure(url: str, rounds: int, short: int, long: int) -> None:
    new, old, http = ModelClient(url, model=MODEL), OldClient(url), httpx.AsyncClient(timeout=600)
    new.check()
    contenders = {"new": lambda turn: cpu_per_step(new, turn), "old": lambda turn: cpu_per_step(old, turn),
                  "wire": lambda turn: wire_per_step(http, url, turn)}
    runs = [(name, turn) for name in contenders for turn in (short, long)]
    times: dict[tuple[str, int], list[float]] = {run: [] for run in runs}
    for name, turn in runs:  # warm-up: connections, imports, caches
        await contenders[name](turn)
    for number in range(rounds):
        for name, turn in runs if number % 2 == 0 else runs[::-1]:  # interleaved, the order reversed every round
            times[name, turn].append(await contenders[name](turn))
    for name in contenders:
        a, b = times[name, short], times[name, long]
        print(f"{name}: CPU per step at turn {short}: median {1000 * statistics.median(a):.2f} ms; "
              f"at turn {long}: median {1000 * statistics.median(b):.2f} ms")
        print(f"  ratio turn {long} / turn {short} per round: {spread([y / x for x, y in zip(a, b)])}"
              + ("   target <= 1.20" if name == "new" else ""))
    before, after = times["old", long], times["new", long]
    print(f"old / new at turn {long} per round: {spread([x / y for x, y in zip(before, after)])}")


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
