"""A scripted server that answers chat as vLLM does with `return_token_ids` (the whole prompt's ids and the
reply's, from a fake template), optionally with the middleware `cwm-eval serve` mounts; and a conversation driven
through it."""

from __future__ import annotations

import asyncio
import json

from scripted_server import ScriptedServer

from harness.conversation import THINK_PREFILL, ChatConversation
from harness.messages_delta import HEADER as MESSAGES_HEADER
from harness.messages_delta import Kept, parse, whole_body
from harness.model import ModelClient
from harness.prompt_delta import HEADER, with_delta

OBSERVATION = "<output>\n" + "drwxr-xr-x 2 root root 4096 calc.py\n" * 3 + "</output>"
ROLES, EOT, ASSISTANT = {"system": 1, "user": 2, "assistant": 3}, 5, 3


def chars(text: str) -> list[int]:
    return [ord(c) + 10 for c in text]


class TokenIdServer(ScriptedServer):
    """Answers chat as vLLM does with return_token_ids: the whole prompt's ids and the reply's. Its template is a
    fake one: role id, a character per id, EOT; with `prefill_in_template`, the generation prompt ends with the
    think prefill (CWM's), so the replayed assistant turn extends the previous prompt exactly."""

    def __init__(self, turns, prefill_in_template: bool = True, cuts: bool = False):
        super().__init__(turns)
        self.generation = [ASSISTANT] + (chars(THINK_PREFILL) if prefill_in_template else [])
        self.prompts: list[list[int]] = []
        # as a server `cwm-eval serve` starts: its middleware cuts the prompt ids (harness/prompt_delta.py) and
        # puts back the messages it keeps (harness/messages_delta.py)
        self.cuts, self.kept = cuts, Kept(1 << 30)
        self.received: list[int] = []  # each request's bytes, as sent
        self.deltas: list[bool] = []  # whether each request sent only the messages after those kept
        self.sent: list[int] = []  # each reply's bytes

    def receive(self, raw: bytes, headers) -> bytes | None:
        self.received.append(len(raw))
        self.deltas.append(b'"cwm_eval_messages_after":[' in raw)
        declared = parse(headers.get(MESSAGES_HEADER) or "")
        return whole_body(raw, declared, self.kept) if self.cuts and declared else raw

    def encode(self, body: dict, headers) -> bytes:
        data = json.dumps(body, separators=(",", ":")).encode()
        if "choices" not in body:
            return data
        self.declared.append(headers.get(HEADER))
        if self.cuts and headers.get(HEADER) is not None:
            data = with_delta(data, headers[HEADER])
        self.sent.append(len(data))
        return data

    def chat_completion(self, request: dict) -> dict:
        reply = super().chat_completion(request)
        prompt = [i for m in request["messages"] for i in [ROLES.get(m["role"], 4), *chars(m["content"]), EOT]]
        prompt += self.generation
        self.prompts.append(prompt)
        reply["prompt_token_ids"] = prompt
        reply["choices"][0]["token_ids"] = chars(reply["choices"][0]["message"]["content"]) + [EOT]
        reply["usage"]["prompt_tokens"] = len(prompt)
        return reply


def drive(client: ModelClient, turns: int, each=None) -> ChatConversation:
    conversation = ChatConversation(client, [{"role": "system", "content": "You are a coding agent."},
                                             {"role": "user", "content": "Fix the median function."}])

    async def run():
        for turn in range(turns):
            reply = await conversation.sample(64)
            if each:
                each(turn, reply)
            conversation.add("tool: bash", f"{OBSERVATION} {turn}")

    asyncio.run(run())
    return conversation


def rebuilt(replies) -> list[list[int]]:
    """Each call's prompt ids, rebuilt from the records (whole, or offset into the previous prompt and reply + delta)."""
    prompts, previous = [], []
    for reply in replies:
        prompt = (reply.prompt_token_ids if reply.prompt_token_ids is not None
                  else previous[:reply.prompt_token_ids_offset] + reply.prompt_token_ids_delta)
        prompts.append(prompt)
        previous = prompt + reply.completion_token_ids
    return prompts
