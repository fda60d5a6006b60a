"""A chat request's messages as a delta (harness/messages_delta.py): a server that `cwm-eval serve` starts keeps
each conversation's messages, a request sends only those after the ones it kept, and vLLM gets, byte for byte, the
body a whole request would have had. A prefix the server no longer holds, a server that does not put messages back,
or one that is not ours: the whole conversation is sent, and nothing is ever sampled from part of one."""

from __future__ import annotations

import json

import httpx
import pytest
from asgi_server import served
from token_id_server import TokenIdServer, drive, rebuilt

from harness.messages_delta import DELTA_KEY, HEADER, UNKNOWN, WHOLE_KEY, Kept, whole_body
from harness.model import ModelClient
from harness.prompt_delta import digest

HEAD = b'{"model":"m","max_tokens":8,'
FIRST, SECOND = b'{"role":"system","content":"sys"},{"role":"user","content":"fix it"}', \
    b'{"role":"assistant","content":"ok"},{"role":"tool: bash","content":"a \\"quoted\\" ]} line"}'


def whole(items: bytes) -> bytes:
    return HEAD + WHOLE_KEY + items + b"]}"


def delta(items: bytes) -> bytes:
    return HEAD + DELTA_KEY + items + b"]}"


def held(items: bytes) -> tuple[int, str]:
    return len(items), digest(items).hexdigest()


def test_the_server_puts_the_kept_messages_back_exactly():
    kept = Kept(1 << 20)
    assert whole_body(whole(FIRST), (len(HEAD + WHOLE_KEY), 0, "-"), kept) == whole(FIRST)  # kept as it passes
    body = whole_body(delta(SECOND), (len(HEAD + DELTA_KEY), *held(FIRST)), kept)
    assert body == whole(FIRST + b"," + SECOND)  # what a whole request would have sent
    assert json.loads(body)["messages"][-1]["content"] == 'a "quoted" ]} line'
    # the conversation's earlier messages are superseded by the whole it has now; a retry of the same delta misses
    assert whole_body(delta(SECOND), (len(HEAD + DELTA_KEY), *held(FIRST)), kept) is None
    third = b'{"role":"user","content":"more"}'
    assert whole_body(delta(third), (len(HEAD + DELTA_KEY), *held(FIRST + b"," + SECOND)), kept) == \
        whole(FIRST + b"," + SECOND + b"," + third)
    assert whole_body(delta(b""), (len(HEAD + DELTA_KEY), *held(FIRST + b"," + SECOND + b"," + third)), kept) == \
        whole(FIRST + b"," + SECOND + b"," + third)  # nothing new


@pytest.mark.parametrize("declared", [
    (len(HEAD + DELTA_KEY), len(FIRST), digest(b"other").hexdigest()),  # not a prefix it holds
    (len(HEAD + DELTA_KEY), len(FIRST) - 1, digest(FIRST).hexdigest()),  # the wrong length
])
def test_a_prefix_not_held_is_refused(declared):
    kept = Kept(1 << 20)
    whole_body(whole(FIRST), (len(HEAD + WHOLE_KEY), 0, "-"), kept)
    assert whole_body(delta(SECOND), declared, kept) is None


@pytest.mark.parametrize("body, declared", [
    (delta(SECOND), (len(HEAD + DELTA_KEY) - 1, *held(FIRST))),  # not where the array starts
    (delta(SECOND)[:-1], (len(HEAD + DELTA_KEY), *held(FIRST))),  # not closed as the request's last value
    (whole(SECOND), (len(HEAD + WHOLE_KEY), *held(FIRST))),  # a whole body declared as a delta
    (b"{}", (0, 0, "-")),
])
def test_a_body_not_as_declared_passes_as_it_came(body, declared):
    kept = Kept(1 << 20)
    whole_body(whole(FIRST), (len(HEAD + WHOLE_KEY), 0, "-"), kept)
    assert whole_body(body, declared, kept) == body  # vLLM then refuses a delta body: it has no messages


def test_the_kept_messages_stay_within_the_budget():
    kept = Kept(100)
    for n in range(10):
        items = b'{"role":"user","content":"%d"}' % n * 2
        whole_body(whole(items), (len(HEAD + WHOLE_KEY), 0, "-"), kept)
    assert kept.size <= 100 and len(kept.items) == 100 // len(items)


def conversation_on(server: TokenIdServer, turns: int, each=None) -> list:
    replies = []
    drive(ModelClient(server.url, model="scripted-model"), turns,
          lambda turn, reply: (replies.append(reply), each and each(turn, reply)))
    return replies


def test_a_server_that_forgets_gets_the_whole_conversation_and_deltas_resume():
    """Restarted (or another server, or its memory budget spent): a 409, then the whole body, then deltas again."""
    with TokenIdServer([f"step {i}" for i in range(12)], cuts=True) as server:
        def forget(turn, reply):
            if turn == 5:
                server.kept = Kept(1 << 30)

        replies = conversation_on(server, 12, forget)
    assert rebuilt(replies) == server.prompts  # every prompt sampled from the whole conversation
    # the whole conversation, deltas, the delta it no longer holds (409), the whole conversation, deltas again
    assert server.deltas == [False] + [True] * 6 + [False] + [True] * 5


class PromptIdsOnly(TokenIdServer):
    """Cuts the prompt ids but does not keep messages: a delta body is what vLLM gets, and refuses."""

    def receive(self, raw, headers):
        self.received.append(len(raw))
        self.deltas.append(DELTA_KEY in raw)
        return raw


def test_a_server_that_does_not_put_messages_back_gets_whole_conversations_from_then_on():
    with PromptIdsOnly([f"step {i}" for i in range(8)], cuts=True) as server:
        replies = conversation_on(server, 8)
    assert rebuilt(replies) == server.prompts and len(server.prompts) == 8  # nothing sampled from a delta
    assert server.deltas == [False, True] + [False] * 7  # one delta, refused (400: no messages); then whole
    assert all("messages" in r for r in server.requests)


# --- the middleware in a real ASGI server, as vLLM mounts it ----------------------------------------------------

APP = r'''
import json, sys
import uvicorn
from harness.messages_delta import MessagesDelta


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    length = dict(scope["headers"]).get(b"content-length", b"").decode()
    reply = json.dumps({"got": body.decode(), "content_length": length}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": reply})


uvicorn.run(MessagesDelta(app), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
'''


@pytest.fixture(scope="module")
def asgi_url():
    with served(APP) as url:
        yield f"{url}/v1/chat/completions"


def test_the_app_behind_the_middleware_gets_the_whole_body(asgi_url):
    first = httpx.post(asgi_url, content=whole(FIRST), headers={HEADER: f"{len(HEAD + WHOLE_KEY)},0,-"}).json()
    assert first["got"].encode() == whole(FIRST)
    answer = httpx.post(asgi_url, content=delta(SECOND),
                        headers={HEADER: "%d,%d,%s" % (len(HEAD + DELTA_KEY), *held(FIRST))})
    got = answer.json()
    assert got["got"].encode() == whole(FIRST + b"," + SECOND) and int(got["content_length"]) == len(got["got"])
    missed = httpx.post(asgi_url, content=delta(SECOND), headers={HEADER: "%d,%d,%s" % (
        len(HEAD + DELTA_KEY), *held(b'{"role":"user","content":"never sent"}'))})
    assert missed.status_code == 409 and missed.json()["error"]["type"] == UNKNOWN
    untouched = httpx.post(asgi_url, content=delta(SECOND)).json()  # no declaration: as it came
    assert untouched["got"].encode() == delta(SECOND)


def test_a_pool_of_a_server_that_keeps_and_one_that_refuses_never_samples_from_part_of_a_conversation():
    """Calls alternate between a server that keeps the messages and one that refuses deltas (no messages): every
    prompt is still the whole conversation's."""
    with TokenIdServer([f"a{i}" for i in range(10)], cuts=True) as keeping, \
            PromptIdsOnly([f"b{i}" for i in range(10)], cuts=True) as refusing:
        replies = []
        client = ModelClient([keeping.url, refusing.url], model="scripted-model")
        drive(client, 12, lambda turn, reply: replies.append(reply))
    assert rebuilt(replies) == sorted(keeping.prompts + refusing.prompts, key=len)
