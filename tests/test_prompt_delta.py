"""Prompt token ids cut by the server (harness/prompt_delta.py): a chat request declares the ids it already has, a
server started by `cwm-eval serve` answers with only the ids after them, and the records rebuild every prompt the
server saw exactly as with vLLM's whole echo. Servers that cut wrongly are server faults, never wrong records."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from asgi_server import served
from scripted_server import ScriptedServer
from token_id_server import EOT, TokenIdServer, drive, rebuilt

from harness.model import ModelClient, ModelServerError
from harness.prompt_delta import HEADER, NONE_HELD, SENT, candidate, digest, with_delta

IDS = b"11,22,333,44,55"


def reply_with(ids: bytes, spaced: bool = False) -> bytes:
    """A chat reply as vLLM's JSON, its content holding the key itself (escaped, as JSON strings hold quotes)."""
    content = json.dumps('say "prompt_token_ids":[9,9]')
    sep = ", " if spaced else ","
    return (b'{"choices":[{"message":{"content":' + content.encode() + b'}}],"usage":{"prompt_tokens":5}'
            + sep.encode() + b'"prompt_token_ids"' + (b": [" if spaced else b":[")
            + (ids.replace(b",", b", ") if spaced else ids) + b'],"z":1}')


def held(ids: bytes) -> str:
    """The candidate for exactly these leading ids."""
    return candidate(len(ids.split(b",")), len(ids), digest(ids))


def cut(raw: bytes) -> tuple[int, list[int]]:
    reply = json.loads(raw)
    assert reply["prompt_token_ids"] is None and reply["z"] == 1
    assert reply["choices"][0]["message"]["content"] == 'say "prompt_token_ids":[9,9]'
    return reply["prompt_token_ids_offset"], reply["prompt_token_ids_delta"]


@pytest.mark.parametrize("spaced", [False, True], ids=["compact", "spaced"])
def test_the_server_cuts_after_the_first_candidate_that_holds(spaced):
    raw = reply_with(IDS, spaced)
    assert cut(with_delta(raw, f"{held(b'11,22,333')};{held(b'11')}")) == (3, [44, 55])
    assert cut(with_delta(raw, held(IDS))) == (5, [])  # nothing new
    wrong = candidate(3, len(b"11,22,334"), digest(b"11,22,334"))  # other ids of the same length
    assert cut(with_delta(raw, f"{wrong};{held(b'11,22')}")) == (2, [333, 44, 55])  # the next one that holds
    # the digest of the right bytes, but they end inside an id (333 -> 33): not a candidate that holds
    inside = candidate(3, len(b"11,22,33"), digest(b"11,22,33"))
    assert cut(with_delta(raw, inside)) == (0, [11, 22, 333, 44, 55])
    longer = candidate(6, len(IDS) + 3, digest(IDS + b",66"))
    for value in (NONE_HELD, "", "garbage", "3,x,abc", "0,0," + digest().hexdigest(), longer, "3,8"):
        assert cut(with_delta(raw, value)) == (0, [11, 22, 333, 44, 55]), value  # the whole prompt, never less
    assert with_delta(b'{"choices":[],"prompt_token_ids":null}', held(IDS)) == b'{"choices":[],"prompt_token_ids":null}'


class TemplateServer(TokenIdServer):
    """A cutting server whose template renders the system turn anew at call `change` (an earlier turn changes, as a
    template that rewrites past turns would): no candidate holds there."""

    def __init__(self, turns, change: int, cuts: bool = True):
        super().__init__(turns, cuts=cuts)
        self.change = change

    def chat_completion(self, request: dict) -> dict:
        reply = super().chat_completion(request)
        if len(self.prompts) >= self.change:
            self.prompts[-1][1] = 7  # the system message's first id, from this call on
            reply["prompt_token_ids"] = self.prompts[-1]
        return reply


def test_an_earlier_turn_rendered_anew_gets_the_whole_prompt_then_cuts_resume():
    replies = []
    with TemplateServer([f"step {i}" for i in range(12)], change=6) as server:
        drive(ModelClient(server.url, model="scripted-model"), 12, lambda turn, reply: replies.append(reply))
    assert rebuilt(replies) == server.prompts
    whole = [n for n, reply in enumerate(replies) if reply.prompt_token_ids is not None]
    assert whole == [0, 5]  # the first call, and the call where the system turn changed
    assert server.declared[5] != NONE_HELD  # it declared the ids it had; none of them held any longer
    assert all(reply.prompt_token_ids_offset for reply in replies[6:])  # cut again after it


def test_a_pool_of_a_cutting_and_a_plain_server_rebuilds_every_prompt():
    """Failover or balancing between a server that cuts and one that echoes the whole prompt, call after call."""
    replies = []
    with TokenIdServer([f"a{i}" for i in range(10)], cuts=True) as cutting, \
            TokenIdServer([f"b{i}" for i in range(10)]) as plain:
        client = ModelClient([cutting.url, plain.url], model="scripted-model")
        drive(client, 12, lambda turn, reply: replies.append(reply))
    assert len(cutting.prompts) >= 4 and len(plain.prompts) >= 4  # both served
    served = sorted(cutting.prompts + plain.prompts, key=len)
    assert rebuilt(replies) == served


class BadCutServer(ScriptedServer):
    """A server that claims to cut but answers wrongly: after ids the request did not declare, or with fewer ids
    than its own prompt-token count."""

    def __init__(self, fault: str):
        super().__init__(["one", "two", "three"])
        self.fault = fault

    def chat_completion(self, request: dict) -> dict:
        reply = super().chat_completion(request)
        prompt = [1, 2, 3] + [7] * (len(request["messages"]) * 4)
        reply["choices"][0]["token_ids"] = [5, EOT]
        reply["usage"]["prompt_tokens"] = len(prompt)
        reply["prompt_token_ids"] = None
        declared = len(self.requests) > 1  # the first call declares nothing
        previous = 3 + 4 * (len(request["messages"]) - 2)  # the previous prompt's ids, which the request declared
        reply["prompt_token_ids_offset"] = (4 if self.fault == "undeclared" else previous) if declared else 0
        reply["prompt_token_ids_delta"] = prompt[reply["prompt_token_ids_offset"]:]
        if self.fault == "short" and declared:
            reply["prompt_token_ids_delta"] = reply["prompt_token_ids_delta"][:-1]
        return reply


@pytest.mark.parametrize("fault, said", [("undeclared", "which the request did not declare"),
                                         ("short", "are not its")])
def test_a_server_that_cuts_wrongly_is_a_server_fault(fault, said):
    with BadCutServer(fault) as server:
        client = ModelClient(server.url, model="scripted-model")
        conversation = [{"role": "user", "content": "hi"}]

        async def two_calls():
            await client.chat(conversation, 8)
            conversation.extend([{"role": "assistant", "content": "one"}, {"role": "user", "content": "more"}])
            await client.chat(conversation, 8)

        with pytest.raises(ModelServerError, match=said) as caught:
            asyncio.run(two_calls())
    assert "\n" not in str(caught.value).split(": b'")[0]


# --- the middleware in a real ASGI server, as vLLM mounts it ----------------------------------------------------

APP = r'''
import json, sys
import uvicorn
from harness.prompt_delta import PromptIdsDelta

PROMPT = list(range(100, 160))


async def read(receive):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    request = json.loads(await read(receive) or b"{}")
    status = 400 if request.get("bad") else 200
    if request.get("stream"):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        chunk = json.dumps({"prompt_token_ids": PROMPT}).encode()
        await send({"type": "http.response.body", "body": b"data: " + chunk + b"\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        return
    if scope["path"] == "/v1/completions":  # vLLM's token-in reply: the prompt's ids in each choice
        reply = {"choices": [{"text": text, "prompt_token_ids": PROMPT, "token_ids": [n]}
                             for n, text in enumerate(("hi", "yo"))]}
    else:
        reply = {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": len(PROMPT)},
                 "prompt_token_ids": PROMPT}
    body = json.dumps(reply, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    half = len(body) // 2  # in two pieces, as a server may send it
    await send({"type": "http.response.body", "body": body[:half], "more_body": True})
    await send({"type": "http.response.body", "body": body[half:]})


uvicorn.run(PromptIdsDelta(app), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
'''


@pytest.fixture(scope="module")
def asgi_url():
    with served(APP) as url:
        yield url


def test_the_middleware_cuts_chat_json_in_a_real_asgi_server(asgi_url):
    prompt = ",".join(map(str, range(100, 160))).encode()
    first = b",".join(prompt.split(b",")[:50])
    answer = httpx.post(f"{asgi_url}/v1/chat/completions", json={}, headers={HEADER: held(first)})
    assert answer.status_code == 200 and int(answer.headers["content-length"]) == len(answer.content)
    reply = answer.json()
    assert reply["prompt_token_ids"] is None and reply["choices"][0]["message"]["content"] == "hi"
    assert (reply["prompt_token_ids_offset"], reply["prompt_token_ids_delta"]) == (50, list(range(150, 160)))
    none = httpx.post(f"{asgi_url}/v1/chat/completions", json={}, headers={HEADER: NONE_HELD}).json()
    assert (none["prompt_token_ids_offset"], none["prompt_token_ids_delta"]) == (0, list(range(100, 160)))


def test_the_middleware_drops_a_token_in_replys_echo_of_the_ids_sent(asgi_url):
    answer = httpx.post(f"{asgi_url}/v1/completions", json={}, headers={HEADER: SENT})
    assert int(answer.headers["content-length"]) == len(answer.content)
    assert answer.json()["choices"] == [{"text": "hi", "prompt_token_ids": None, "token_ids": [0]},
                                        {"text": "yo", "prompt_token_ids": None, "token_ids": [1]}]


@pytest.mark.parametrize("path, request_body, header", [
    ("/v1/chat/completions", {}, None),  # no declaration: vLLM's reply as it is
    ("/v1/chat/completions", {"bad": True}, "set"),  # an error status
    ("/v1/chat/completions", {"stream": True}, "set"),  # a streamed reply
    ("/v1/completions", {}, "set"),  # a token-in request that did not say it sent the prompt
])
def test_the_middleware_leaves_every_other_reply_alone(asgi_url, path, request_body, header):
    headers = {HEADER: held(b"100,101")} if header else {}
    answer = httpx.post(f"{asgi_url}{path}", json=request_body, headers=headers)
    if request_body.get("stream"):
        assert answer.text.startswith("data: ") and json.loads(answer.text.split("\n")[0][6:])["prompt_token_ids"] == \
            list(range(100, 160))
        return
    assert answer.status_code == (400 if request_body.get("bad") else 200)
    reply = answer.json()
    for echoed in reply["choices"] if path == "/v1/completions" else [reply]:
        assert echoed["prompt_token_ids"] == list(range(100, 160)) and "prompt_token_ids_offset" not in echoed
