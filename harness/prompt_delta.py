"""A chat reply's prompt token ids as a delta, cut by the server.

vLLM's `return_token_ids` echoes a chat request's whole prompt (late in a CWM conversation about 0.75 MB of ids per
call, more than half of what a call moves), though the client holds all of it but the last turn. Servers that
`cwm-eval serve` starts carry `PromptIdsDelta`, an ASGI middleware: a chat request whose `x-cwm-eval-prompt-ids`
header declares which leading ids the client already has gets its reply with only the ids after those. Any other
server ignores the header and echoes the whole prompt, which the client takes as before.

The header holds candidates, `COUNT,LENGTH,DIGEST` separated by ';' (`none` when it has none). A candidate holds when the
prompt's ids, as compact JSON (`1,2,3`), begin with LENGTH bytes whose `digest` is DIGEST and that end on an id's
boundary: those are its first COUNT ids. The reply then has `"prompt_token_ids":null,"prompt_token_ids_offset":
COUNT,"prompt_token_ids_delta":[the ids after them]` for the first candidate that holds, and offset 0 with the whole
prompt when none does: either way the client learns that the server cuts. The digest is content-addressed, so the
server keeps nothing between requests and any of several servers can answer.

A token-in request (`/v1/completions` with the prompt as ids, the token-exact mode) that declares `sent` gets its
reply without the prompt's ids at all: the client sent them.

Standard library only: vLLM's own interpreter imports this module (`--middleware`).
"""

from __future__ import annotations

import hashlib
import re

HEADER = "x-cwm-eval-prompt-ids"
NONE_HELD, SENT = "none", "sent"
CHAT_PATH, COMPLETIONS_PATH = "/v1/chat/completions", "/v1/completions"
PROMPT_IDS = re.compile(rb'"prompt_token_ids"\s*:\s*\[')
SPACES = b" \t\r\n"


def digest(text: bytes | memoryview = b"") -> "hashlib._Hash":
    """The running digest of ids as compact JSON; `.copy()` and `.update()` extend it as the ids grow."""
    return hashlib.blake2b(text, digest_size=16)


def candidate(count: int, length: int, state) -> str:
    """One candidate of the header: the first `count` ids, `length` bytes of compact JSON digested in `state`."""
    return f"{count},{length},{state.hexdigest()}"


def parse_candidates(value: str) -> list[tuple[int, int, str]]:
    """The header's candidates; malformed ones are left out (the reply then holds more ids, never wrong ones)."""
    found = []
    for part in value.split(";"):
        fields = part.strip().split(",")
        if len(fields) == 3 and fields[0].isdigit() and fields[1].isdigit() and int(fields[0]) and int(fields[1]):
            found.append((int(fields[0]), int(fields[1]), fields[2]))
    return found


def with_delta(raw: bytes, value: str) -> bytes:
    """`raw`, a chat reply's JSON, with its `prompt_token_ids` cut after the first candidate of `value` that holds
    (offset 0, the whole prompt, when none does); unchanged when it has no prompt ids."""
    match = PROMPT_IDS.search(raw)
    if match is None:
        return raw
    start, end = match.end(), raw.index(b"]", match.end())
    ids = raw[start:end]
    if any(space in ids for space in SPACES):
        ids = ids.translate(None, SPACES)
    offset, delta = 0, ids
    for count, length, expected in parse_candidates(value):
        boundary = length == len(ids) or (length < len(ids) and ids[length:length + 1] == b",")
        if boundary and digest(memoryview(ids)[:length]).hexdigest() == expected:
            offset, delta = count, ids[length + 1:]
            break
    cut = b'"prompt_token_ids":null,"prompt_token_ids_offset":%d,"prompt_token_ids_delta":[%s]' % (offset, delta)
    return b"".join((raw[:match.start()], cut, raw[end + 1:]))


def without_prompt_ids(raw: bytes) -> bytes:
    """`raw`, a completion reply's JSON, with every choice's `prompt_token_ids` null."""
    parts, at = [], 0
    for match in PROMPT_IDS.finditer(raw):
        if match.start() < at:
            continue
        parts += [raw[at:match.start()], b'"prompt_token_ids":null']
        at = raw.index(b"]", match.end()) + 1
    return b"".join(parts + [raw[at:]]) if parts else raw


def declared(scope: dict) -> str | None:
    """The header's value on a chat request, or `sent` on a completion request that says so; None otherwise."""
    if scope.get("type") != "http" or scope.get("method") != "POST":
        return None
    name = HEADER.encode()
    value = next((value.decode("latin-1") for key, value in scope.get("headers", []) if key.lower() == name), None)
    path = scope.get("path")
    return value if path == CHAT_PATH or (path == COMPLETIONS_PATH and value == SENT) else None


def cut_reply(raw: bytes, value: str) -> bytes:
    return without_prompt_ids(raw) if value == SENT else with_delta(raw, value)


def is_json(start: dict) -> bool:
    return any(key.lower() == b"content-type" and value.startswith(b"application/json")
               for key, value in start.get("headers", []))


class PromptIdsDelta:
    """ASGI middleware: a request that declares what it has gets a JSON reply with the prompt ids cut (see the
    module's text). Streamed replies, error statuses and every other request pass through untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        value = declared(scope)
        if value is None:
            return await self.app(scope, receive, send)
        start: dict | None = None
        parts: list[bytes] = []

        async def deliver(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message.get("status") == 200 and is_json(message):
                start = message  # held until the body is whole
                return
            if message["type"] != "http.response.body" or start is None:
                return await send(message)
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = cut_reply(b"".join(parts), value)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, deliver)
