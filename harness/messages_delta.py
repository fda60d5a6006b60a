"""A chat request's messages as a delta, put back whole by the server.

A stateless chat API takes the whole conversation on every call: late in a CWM conversation 0.5 MB of messages,
all but the last turn of which the server got on the call before. Servers that `cwm-eval serve` starts carry
`MessagesDelta`, an ASGI middleware that keeps the messages of the last request of each conversation (by the
digest of their JSON, within a memory budget). A request may then send only the messages after a prefix it
declares: header `x-cwm-eval-messages: START,LENGTH,DIGEST`, its body `{...,"cwm_eval_messages_after":[ITEMS]}`
with that array last and its items starting at byte START, ITEMS being what follows the first LENGTH bytes (and
their comma) of the whole array's items. The middleware puts the kept prefix back in front of ITEMS under
`messages` and hands vLLM exactly the body a whole request would have had. A prefix it does not hold gets 409
(`cwm_eval_messages_unknown`) and the client sends the whole body; a whole body declares `START,0,-` so that its
messages are kept. A server without the middleware refuses a delta body (it has no `messages`), so nothing is
ever sampled from part of a conversation.

Standard library only: vLLM's own interpreter imports this module (`--middleware`).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict

from harness.prompt_delta import CHAT_PATH, digest

HEADER = "x-cwm-eval-messages"
DELTA_KEY, WHOLE_KEY, CLOSE = b'"cwm_eval_messages_after":[', b'"messages":[', b"]}"
UNKNOWN = "cwm_eval_messages_unknown"
BUDGET_MB = int(os.environ.get("CWM_EVAL_MESSAGES_KEPT_MB", "1024"))


class Kept:
    """Messages JSON by digest, least recently used out beyond `budget` bytes."""

    def __init__(self, budget: int):
        self.items: OrderedDict[str, bytes] = OrderedDict()
        self.size, self.budget = 0, budget

    def get(self, key: str) -> bytes | None:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: str, value: bytes, replaces: str | None = None) -> None:
        if replaces is not None and replaces in self.items:  # a conversation's earlier messages: superseded
            self.size -= len(self.items.pop(replaces))
        if key not in self.items:
            self.items[key] = value
            self.size += len(value)
        while self.size > self.budget and self.items:
            self.size -= len(self.items.popitem(last=False)[1])


def parse(value: str) -> tuple[int, int, str] | None:
    fields = value.split(",")
    if len(fields) != 3 or not fields[0].isdigit() or not fields[1].isdigit():
        return None
    return int(fields[0]), int(fields[1]), fields[2]


def whole_body(body: bytes, declared: tuple[int, int, str], kept: Kept) -> bytes | None:
    """The body vLLM gets: a delta body with its kept prefix put back (None when that prefix is not kept), a whole
    body as it came; either way its messages are kept for the conversation's next request. A body that is not as
    declared passes as it came."""
    start, length, expected = declared
    if not body.endswith(CLOSE) or not 0 < start <= len(body) - len(CLOSE):
        return body
    items = body[start:-len(CLOSE)]
    if length == 0:
        if body[start - len(WHOLE_KEY):start] == WHOLE_KEY:
            kept.put(digest(items).hexdigest(), items)
        return body
    if body[start - len(DELTA_KEY):start] != DELTA_KEY:
        return body
    prefix = kept.get(expected)
    if prefix is None or len(prefix) != length:
        return None
    whole = prefix + b"," + items if items else prefix
    kept.put(digest(whole).hexdigest(), whole, replaces=expected)
    return b"".join((body[:start - len(DELTA_KEY)], WHOLE_KEY, whole, CLOSE))


def declared(scope: dict) -> tuple[int, int, str] | None:
    if scope.get("type") != "http" or scope.get("method") != "POST" or scope.get("path") != CHAT_PATH:
        return None
    name = HEADER.encode()
    value = next((value.decode("latin-1") for key, value in scope.get("headers", []) if key.lower() == name), None)
    return parse(value) if value is not None else None


async def read_body(receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


class MessagesDelta:
    """ASGI middleware: chat requests that declare a kept prefix get it back in front of their new messages (see
    the module's text); every other request passes through untouched."""

    def __init__(self, app):
        self.app = app
        self.kept = Kept(BUDGET_MB << 20)

    async def __call__(self, scope, receive, send):
        declaration = declared(scope)
        if declaration is None:
            return await self.app(scope, receive, send)
        body = whole_body(await read_body(receive), declaration, self.kept)
        if body is None:
            return await refuse(send)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()  # what follows the body: a disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        await self.app(scope, replay, send)


async def refuse(send) -> None:
    body = json.dumps({"error": {"message": "the messages before this request's are not kept here: send them all",
                                 "type": UNKNOWN, "code": 409}}).encode()
    await send({"type": "http.response.start", "status": 409,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# --- the client's side ------------------------------------------------------------------------------------------

def whole_declaration(head: bytes) -> str:
    """The header of a whole request whose messages array's items start after `head`."""
    return f"{len(head)},0,-"


def delta_request(seen, fields_head: bytes) -> tuple[tuple, str] | None:
    """The body (pieces, as `body_with` gives them) and header of a request with only the messages after those the
    server keeps for this conversation; None unless its replies show the middleware (their prompt ids come cut)
    and it was sent this conversation's messages before."""
    if seen.kept is None or seen.keeps is False or seen.digest is None:
        return None
    length, kept_digest = seen.kept
    items = len(seen.data) - len(CLOSE)
    if length > items:
        return None
    head = fields_head + b',' + DELTA_KEY
    rest = memoryview(seen.data)[length + 1 if items > length else length:]
    return (head, rest), f"{len(head)},{length},{kept_digest}"


def answered(seen) -> None:
    """A request was answered: the server keeps the conversation's messages as they were sent (if it keeps any)."""
    seen.kept = len(seen.data) - len(CLOSE), seen.items_digest.hexdigest()
