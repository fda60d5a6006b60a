"""A model call costs the same at turn 120 as at turn 10 (issue 14, item 1), shown by counts rather than timings:
each message (and each token-exact prompt id) is encoded once over a whole conversation, a vLLM reply's echo of the
whole prompt is parsed only where it is new, what a call encodes, parses, validates and records is the same late in
a conversation as early, and every call of an endpoint goes through one long-lived HTTP session, closed with its
event loop. `bench/model_call_cost.py` measures the CPU per call."""

from __future__ import annotations

import asyncio
import json
import types

import httpx
import openai
import pytest
from scripted_server import ScriptedServer
from token_id_server import EOT, OBSERVATION, TokenIdServer, chars, drive

import harness.endpoints as endpoints
import harness.model as model
import harness.prompt_ids as prompt_ids
from harness.conversation import ChatConversation
from harness.endpoints import EncodedLists, status_error
from harness.model import ModelClient
from harness.prompt_delta import SENT
from harness.prompt_ids import IdsText, cut_prompt_ids, shared_ids

TURNS = 120
class JsonCount:
    """`json` for harness.model and harness.endpoints, counting the bytes parsed."""

    def __init__(self):
        self.parsed = 0
        self.dumps = json.dumps

    def loads(self, data, **kwargs):
        self.parsed += len(data)
        return json.loads(data, **kwargs)


def test_each_message_is_encoded_once_over_a_120_turn_conversation_through_one_http_client():
    used, encodings = [], []
    with ScriptedServer([f"step {i}" for i in range(TURNS)]) as server:
        client = ModelClient(server.url, model="scripted-model")
        endpoint = client.pool.endpoints[0]

        def each(turn, reply):
            used.append(endpoint._sessions[asyncio.get_running_loop()][0])
            encodings.append(client._messages.encoded)

        conversation = drive(client, TURNS, each)
    sent = [r["messages"] for r in server.requests]
    assert len(sent) == TURNS and sent[-1] == conversation.messages[:len(sent[-1])]
    assert all(later[:len(earlier)] == earlier for earlier, later in zip(sent, sent[1:]))  # bodies as before
    # the first call encodes the two opening messages; every later one only the reply and observation since
    assert encodings[0] == 2 and [b - a for a, b in zip(encodings, encodings[1:])] == [2] * (TURNS - 1)
    assert client._messages.encoded == len(sent[-1])
    assert all(c is used[0] for c in used)


def test_a_new_event_loop_gets_its_own_client_and_keeps_it_and_closes_it_at_its_end():
    with ScriptedServer(["a", "b", "c", "d", "e", "f"]) as server:
        client = ModelClient(server.url, model="scripted-model")
        endpoint = client.pool.endpoints[0]

        async def two_calls():
            await client.chat([{"role": "user", "content": "hi"}], 8)
            first = await endpoint.client()
            await client.chat([{"role": "user", "content": "hi"}], 8)
            assert await endpoint.client() is first and not first.closed
            return first

        one, two = asyncio.run(two_calls()), asyncio.run(two_calls())
        assert one is not two and one.closed and two.closed
        assert len(endpoint._sessions) == 1  # the first loop's, closed, was let go
        loop = asyncio.new_event_loop()  # a loop that is not asyncio.run's ...
        three = loop.run_until_complete(two_calls())
        loop.run_until_complete(loop.shutdown_asyncgens())  # ... closes the session where it shuts down as asyncio.run
        loop.close()
        assert three.closed


def test_check_probes_and_the_model_card_reuse_the_clients(monkeypatch):
    made = {"sync": 0, "async": 0, "session": 0}
    new_session = endpoints.new_session

    class Sync(httpx.Client):
        def __init__(self, *args, **kwargs):
            made["sync"] += 1
            super().__init__(*args, **kwargs)

    class Async(httpx.AsyncClient):
        def __init__(self, *args, **kwargs):
            made["async"] += 1
            super().__init__(*args, **kwargs)

    def session(*args):
        made["session"] += 1
        return new_session(*args)

    def no_one_off(*args, **kwargs):
        raise AssertionError("a one-off request, with a client (and TLS context) made for it")

    monkeypatch.setattr(httpx, "Client", Sync)
    monkeypatch.setattr(httpx, "AsyncClient", Async)
    monkeypatch.setattr(httpx, "get", no_one_off)
    monkeypatch.setattr(endpoints, "new_session", session)
    with ScriptedServer(["a", "b", "c"]) as server:
        client = ModelClient(server.url)
        assert client.check() == client.check() == "scripted-model" and client.vllm
        endpoint = client.pool.endpoints[0]

        async def calls_and_probes():
            for _ in range(3):
                endpoint.healthy, endpoint.down_since, endpoint.answered_at = False, 0.0, 0.0
                await client.chat([{"role": "user", "content": "hi"}], 8)  # the re-check probes first
                assert endpoint.healthy
                endpoint.answered_at = 0.0
                assert await client.pool._alive(endpoint)  # the hang watch's probe

        asyncio.run(calls_and_probes())
    assert made == {"sync": 1, "async": 0, "session": 1} and len(server.requests) == 3
    [(session, _)] = endpoint._sessions.values()
    assert session.closed  # by the event loop's shutdown


@pytest.mark.parametrize("cuts", [False, True], ids=["vllm", "cutting server"])
@pytest.mark.parametrize("prefill_in_template", [True, False])
def test_prompt_ids_are_recorded_as_deltas_that_rebuild_every_prompt(monkeypatch, prefill_in_template, cuts):
    counter = JsonCount()
    monkeypatch.setattr(model, "json", types.SimpleNamespace(loads=counter.loads, dumps=json.dumps))
    monkeypatch.setattr(endpoints, "json", types.SimpleNamespace(loads=counter.loads, dumps=json.dumps))
    monkeypatch.setattr(prompt_ids, "json", types.SimpleNamespace(loads=counter.loads, dumps=json.dumps))
    replies, parsed = [], []
    with TokenIdServer([f"step {i}" for i in range(40)], prefill_in_template, cuts) as server:
        client = ModelClient(server.url, model="scripted-model")

        def each(turn, reply):
            replies.append(reply)
            parsed.append(counter.parsed)
            counter.parsed = 0

        drive(client, 40, each)
    previous: list[int] = []
    for reply, served in zip(replies, server.prompts, strict=True):
        if reply.prompt_token_ids is not None:
            prompt = reply.prompt_token_ids
        else:
            prompt = previous[:reply.prompt_token_ids_offset] + reply.prompt_token_ids_delta
        assert prompt == served
        previous = prompt + reply.completion_token_ids
    assert replies[0].prompt_token_ids is not None and all(r.prompt_token_ids is None for r in replies[1:])
    # what each later call parses is the same however long the conversation: its new ids and the reply
    assert len(server.prompts[-1]) > 10 * len(server.prompts[2])
    assert max(parsed[2:]) < 1.2 * min(parsed[2:])
    # CWM's template injects the prefill, so each prompt extends the previous prompt and reply; without it, the
    # replayed turn (prefill + reply) parts from the sampled one right after the previous prompt
    kept = [len(prompt) + (len(reply.completion_token_ids) if prefill_in_template else 0)
            for reply, prompt in zip(replies[:-1], server.prompts)]
    assert [r.prompt_token_ids_offset for r in replies[1:]] == kept
    # the client declares what it has once it knows the server cuts (vLLM's whole echo: it keeps no digest), and
    # a server that cuts sends the same however long the prompt
    assert server.declared[0] == "none" and all(d.count(",") >= 2 if cuts else d == "none"
                                                for d in server.declared[1:])
    late, early = max(server.sent[-10:]), max(server.sent[2:12])
    assert late < 1.1 * early if cuts else late > 2 * early


class CallCounts:
    """What the client does per call, counted (not timed): bytes it JSON-encodes and JSON-parses, token ids in the
    reply it validates, bytes of the reply's trajectory record, and calls into the openai SDK's request transform (the
    walk over every message that made each call cost more than the one before). `wire` is the request's size: the
    one thing that must grow."""

    FIELDS = ("encoded", "parsed", "ids", "record", "sdk_transforms", "wire")

    def __init__(self, monkeypatch):
        self.now = dict.fromkeys(self.FIELDS, 0)
        self.per_call: dict[str, list[int]] = {name: [] for name in self.FIELDS}
        counting = types.SimpleNamespace(loads=self.loads, dumps=self.dumps)
        monkeypatch.setattr(model, "json", counting)
        monkeypatch.setattr(endpoints, "json", counting)
        monkeypatch.setattr(prompt_ids, "json", counting)
        transform = openai._utils._transform
        for name in ("_transform_recursive", "_async_transform_recursive"):
            monkeypatch.setattr(transform, name, self.counted(getattr(transform, name)))

    def loads(self, data, **kwargs):
        self.now["parsed"] += len(data)
        return json.loads(data, **kwargs)

    def dumps(self, value, **kwargs):
        text = json.dumps(value, **kwargs)
        self.now["encoded"] += len(text)
        return text

    def counted(self, function):
        def wrapper(*args, **kwargs):
            self.now["sdk_transforms"] += 1
            return function(*args, **kwargs)
        return wrapper

    def add(self, reply, request: dict) -> None:
        """Close one call: its reply and the request the server got."""
        self.now["ids"] = sum(len(getattr(reply, name) or []) for name in (
            "prompt_token_ids", "prompt_token_ids_delta", "completion_token_ids"))
        self.now["record"] = len(reply.model_dump_json(exclude={"text"}, exclude_none=True))
        self.now["wire"] = len(json.dumps(request))
        for name in self.FIELDS:
            self.per_call[name].append(self.now[name])
        self.now = dict.fromkeys(self.FIELDS, 0)


def count_calls(monkeypatch, turns: int = TURNS, cuts: bool = False) -> dict[str, list[int]]:
    """Per-call counts over a `turns`-turn chat with a server that echoes the whole prompt's ids, as vLLM does (or,
    with `cuts`, only those the client did not declare, as `cwm-eval serve`'s servers do)."""
    counts = CallCounts(monkeypatch)
    with TokenIdServer([f"step {i:03d}" for i in range(turns)], cuts=cuts) as server:
        client = ModelClient(server.url, model="scripted-model")
        conversation = ChatConversation(client, [{"role": "system", "content": "You are a coding agent."},
                                                 {"role": "user", "content": "Fix the median function."}])

        async def run():
            for turn in range(turns):
                reply = await conversation.sample(64)
                counts.add(reply, server.requests[-1])
                conversation.add("tool: bash", f"{OBSERVATION} {turn:03d}")

        asyncio.run(run())
    counts.per_call["reply"], counts.per_call["request"] = server.sent, server.received
    return counts.per_call


def growth(per_call: list[int]) -> float:
    """The most a call late in the conversation (its last 10) counts, over the most an early one (calls 10-19)."""
    return max(per_call[-10:]) / max(1, max(per_call[10:20]))


@pytest.mark.parametrize("cuts", [False, True], ids=["vllm", "cutting server"])
def test_what_a_call_costs_does_not_grow_with_the_conversation(monkeypatch, cuts):
    per_call = count_calls(monkeypatch, cuts=cuts)
    assert growth(per_call["wire"]) > 5  # the request grew (a 120-turn conversation)...
    for name in ("encoded", "parsed", "ids", "record"):  # ...what the client does per call did not
        assert growth(per_call[name]) <= 1.05, (name, per_call[name][10:20], per_call[name][-10:])
        assert min(per_call[name][1:]) > 0, name
    assert set(per_call["sdk_transforms"]) == {0}
    # on the wire: the whole conversation and the whole prompt's ids with vLLM; with a server that keeps the
    # messages and cuts the ids, the same bytes each way late in the conversation as early
    for name in ("request", "reply"):
        assert growth(per_call[name]) <= 1.05 if cuts else growth(per_call[name]) > 5, (name, per_call[name][-3:])


def test_the_counts_see_a_call_that_grows_with_the_conversation(monkeypatch):
    """The counters above catch the regressions they guard against: every message encoded again on each call, the
    whole prompt's ids parsed and kept on each call, a request through the openai SDK."""
    seen, fields = EncodedLists.seen, model.prompt_fields

    def forgetful(self, items, variant=None):
        self._seen.clear()
        return seen(self, items, variant)

    def whole_prompt(entry, reply, ids, completion):
        entry.prompt = None
        return fields(entry, reply, ids, completion)

    monkeypatch.setattr(EncodedLists, "seen", forgetful)
    monkeypatch.setattr(model, "prompt_fields", whole_prompt)
    per_call = count_calls(monkeypatch)
    assert all(growth(per_call[name]) > 3 for name in ("encoded", "parsed", "ids", "record")), {
        name: growth(values) for name, values in per_call.items()}
    counts = CallCounts(monkeypatch)
    with ScriptedServer(["a"]) as server:
        sdk = openai.AsyncOpenAI(base_url=server.url, api_key="EMPTY", max_retries=0)
        messages = [{"role": "user", "content": f"message {i}"} for i in range(50)]
        asyncio.run(sdk.chat.completions.create(model="scripted-model", messages=messages, max_tokens=8))
    assert counts.now["sdk_transforms"] > len(messages)


def test_token_exact_prompt_ids_are_encoded_once():
    tokenizer = types.SimpleNamespace(encode=lambda text, add_special_tokens=False: chars(text), eos_token_id=EOT)
    with ScriptedServer([f"step {i}" for i in range(30)], tokenizer=tokenizer) as server:
        client = ModelClient(server.url, model="scripted-model")
        ids, snapshots = list(range(100, 400)), []

        async def run():
            for _ in range(30):
                snapshots.append(list(ids))
                reply = await client.complete(ids, 16)
                assert reply.prompt_token_ids is None and reply.completion_token_ids
                ids.extend(reply.completion_token_ids + [7] * 50)  # the reply, then the next observation

        asyncio.run(run())
    assert [r["prompt"] for r in server.requests] == snapshots
    assert client._prompts.encoded == len(snapshots[-1])
    assert set(server.declared) == {SENT}  # a server that cuts sends none of the ids back


def test_a_list_cut_or_replaced_is_encoded_again_and_few_lists_are_kept():
    lists = EncodedLists(lambda items, _: ",".join(map(str, items)).encode(), size=4)
    items = [1, 2, 3]
    assert bytes(lists.seen(items).data) == b"1,2,3]}"  # closed as the request's last value
    items.append(4)
    assert bytes(lists.seen(items).data) == b"1,2,3,4]}" and lists.encoded == 4
    items[3:] = [40, 50]  # cut and grown again
    assert bytes(lists.seen(items).data) == b"1,2,3,40,50]}" and lists.encoded == 9
    held = memoryview(lists.seen(items).data)  # a request given up on while sending still holds the buffer
    items.append(60)
    assert bytes(lists.seen(items).data) == b"1,2,3,40,50,60]}" and bytes(held) == b"1,2,3,40,50]}"
    others = [[i] for i in range(10)]
    for other in others:
        lists.seen(other)
    assert len(lists._seen) == 4


def test_the_prompt_ids_array_is_cut_out_whatever_the_spacing():
    for raw in (b'{"a":"\\"prompt_token_ids\\": [9]","prompt_token_ids":[1,2,3],"z":1}',
                b'{"a": "\\"prompt_token_ids\\": [9]", "prompt_token_ids" : [1, 2,\n 3], "z": 1}'):
        reply, ids = cut_prompt_ids(raw)
        assert reply == {"a": '"prompt_token_ids": [9]', "prompt_token_ids": None, "z": 1}
        assert ids.text() == b"1,2,3" and ids.parse() == [1, 2, 3]
    assert cut_prompt_ids(b'{"prompt_token_ids":null}') == ({"prompt_token_ids": None}, None)


@pytest.mark.parametrize("prompt, completion, array, expected", [
    (b"1,2", b"3", b"1,2,3,4,5", (3, b"4,5")),  # the previous prompt and reply, extended
    (b"1,2", b"3", b"1,2,3", (3, b"")),
    (b"1,2", b"", b"1,2,7", (2, b"7")),
    (b"1,2", b"3", b"1,2,34,5", (2, b"34,5")),  # the reply re-tokenized
    (b"1,2", b"34", b"1,2,3", (2, b"3")),
    (b"1,2,3", b"4", b"1,9,3,4,5", (1, b"9,3,4,5")),  # an earlier turn rendered differently
    (b"12", b"3", b"1,3", (0, b"1,3")),
    (b"", b"", b"7,8", (0, b"7,8")),
])
def test_shared_ids(prompt, completion, array, expected):
    count = len([i for i in (prompt + b"," + completion).split(b",") if i])
    raw = b'{"prompt_token_ids":[' + array + b"]}"  # the new ids are a view into the reply
    offset, rest = shared_ids(IdsText(prompt, 0, len(prompt)), completion, count, IdsText(raw, 21, len(raw) - 2))
    assert (offset, rest.text()) == expected


@pytest.mark.parametrize("status, kind", [(400, openai.BadRequestError), (401, openai.AuthenticationError),
                                          (403, openai.PermissionDeniedError), (429, openai.RateLimitError),
                                          (503, openai.InternalServerError), (418, openai.APIStatusError)])
def test_error_statuses_raise_the_openai_sdk_exceptions(status, kind):
    request = httpx.Request("POST", "http://host/v1/chat/completions", headers={"Authorization": "Bearer sk-x"})
    error = status_error(httpx.Response(status, json={"error": {"message": "no", "code": "c"}}, request=request))
    assert type(error) is kind and error.status_code == status and error.message == f"Error code: {status} - no"
    assert error.code == "c" and "Authorization" not in error.request.headers
    plain = status_error(httpx.Response(status, text="plain", request=request))
    assert plain.message == f"Error code: {status} - plain"
