"""Token-exact mode: prefixes never change turn after turn, the loss mask covers exactly the sampled tokens, and with
CWM's template the stream is CWM's layout (cwm-agent.md section 3): one `<think>\\n` prefill per assistant turn, tool
results under a `tool: NAME` header, earlier reasoning kept."""

from __future__ import annotations

import asyncio
import json

import pytest
from scripted_server import ScriptedServer
from tokenizers_for_tests import make_tokenizer
from transformers import AutoTokenizer

from harness.conversation import ChatConversation, ChatRenderer, TokenConversation
from harness.model import ModelClient, ModelReply

PREFILL = "<think>\n"
KINDS = ["chatml", "cwm", "cwm-think"]
TOOL_HEADER = {"chatml": "<|im_start|>tool: bash\n", "cwm": "<|start_header_id|>tool: bash<|end_header_id|>\n\n",
               "cwm-think": "<|start_header_id|>tool: bash<|end_header_id|>\n\n"}
USER_HEADER = {"chatml": "<|im_start|>user\n", "cwm": "<|start_header_id|>user<|end_header_id|>\n\n",
               "cwm-think": "<|start_header_id|>user<|end_header_id|>\n\n"}
ASSISTANT_HEADER = {"chatml": "<|im_start|>assistant\n",
                    "cwm": "<|start_header_id|>assistant<|end_header_id|>\n\n",
                    "cwm-think": "<|start_header_id|>assistant<|end_header_id|>\n\n"}


def turn(thought: str, tool: str | None = None, body: str | None = None) -> str:
    """A reply that writes its own `<think>` tag (as helpers.turn)."""
    return PREFILL + continued(thought, tool, body)


def continued(thought: str, tool: str | None = None, body: str | None = None) -> str:
    """A reply as the model samples it after the `<think>\\n` prefill: reasoning, `</think>`, answer."""
    answer = f"<tool: {tool}>\n{body}\n</tool>" if tool else "## Issue Summary\nDone."
    return f"{thought}\n</think>\n{answer}"


SCRIPT = [
    continued("Look around.", "bash", "ls"),
    "no thinking end here",  # a format error comes back as a user message, also appended
    continued("Check the tests.", "bash", "python3 -m pytest -q 2>&1 | tail -2"),
]
SYSTEM, USER = "You are a coding agent.", "Fix the median function in calc."
OBSERVATION = "<output>\ncalc tests README.md\n</output>\n\n<budget>\n* Remaining turns: 3\n</budget>"
FORMAT_ERROR = "FormatError: Expected exactly one thinking end token."
REPLIES = [continued("Look around.", "bash", "ls -la"), continued("Check the tests.", "bash", "pytest -q"),
           continued("Let me look at the repository.")]


def tokenizer_of(kind, tmp_path):
    return AutoTokenizer.from_pretrained(make_tokenizer(kind, tmp_path / "tok"))


@pytest.mark.parametrize("kind", KINDS)
def test_prefixes_never_change_and_the_mask_covers_the_sampled_tokens(tmp_path, kind):
    """The whole agent, token-exact, against a scripted /v1/completions server."""
    from helpers import run_demo  # imported here: the other tests drive TokenConversation without the agent

    tokenizer = tokenizer_of(kind, tmp_path)
    with ScriptedServer(list(SCRIPT), tokenizer=tokenizer, root=str(tmp_path / "tok")) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=["demo__calc-1"], model_url=server.url, max_turns=3,
                            token_exact=True, logprobs=True)
    prompts = [r["prompt"] for r in server.requests]
    for earlier, later in zip(prompts, prompts[1:]):
        assert later[: len(earlier)] == earlier  # nothing already sent is ever re-tokenized
    events = [json.loads(line) for line in
              (tmp_path / "test-run/trials/demo__calc-1/0/trajectory.jsonl").read_text().splitlines()]
    tokens = next(e for e in events if e["kind"] == "tokens")
    ids, mask, logprobs = tokens["input_ids"], tokens["loss_mask"], tokens["logprobs"]
    assert len(ids) == len(mask) == len(logprobs)
    sampled = [e["completion_token_ids"] for e in events if e.get("role") == "assistant"]
    assert [i for i, m in zip(ids, mask) if m] == [t for turn_ids in sampled for t in turn_ids]
    assert all((lp is not None) == bool(m) for lp, m in zip(logprobs, mask))
    # every later prompt is the stored sequence up to that point
    for prompt, completion in zip(prompts, sampled):
        assert ids[: len(prompt)] == prompt and ids[len(prompt): len(prompt) + len(completion)] == completion
    text = tokenizer.decode(ids)
    assert "<tool: bash>\nls\n</tool>" in text and "<budget>" in text
    # the prefill starts every assistant turn, once (the agent's system prompt may show the tag: skip it)
    dialog = text.split(USER_HEADER[kind], 1)[1]
    opened = dialog.count(ASSISTANT_HEADER[kind])  # the sampled turns, and the open one after the last observation
    assert len(sampled) == 3 and opened in (3, 4)
    assert dialog.count(PREFILL) == dialog.count(ASSISTANT_HEADER[kind] + PREFILL) == opened
    assert TOOL_HEADER[kind] + "<output>" in text
    assert "Look around.\n</think>" in tokenizer.decode(prompts[-1])  # earlier reasoning is never dropped
    assert result.format_errors == 1


async def _drive(conversation: TokenConversation) -> list[int]:
    """Three assistant turns with a tool result and a format error between them; returns the prompt lengths."""
    lengths = []
    for i, (role, content) in enumerate([("tool: bash", OBSERVATION), ("user", FORMAT_ERROR), (None, None)]):
        lengths.append(len(conversation.ids))
        await conversation.sample(256)
        if role:
            conversation.add(role, content)
    return lengths


def _token_conversation(tokenizer, url: str, **kwargs) -> TokenConversation:
    client = ModelClient(url, model="scripted-model", retries=1)
    return TokenConversation(client, ChatRenderer(tokenizer, **kwargs),
                             [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
                             logprobs=True)


@pytest.mark.parametrize("kind", KINDS)
def test_token_conversation_prefills_once_keeps_reasoning_and_uses_tool_headers(tmp_path, kind):
    tokenizer = tokenizer_of(kind, tmp_path)
    with ScriptedServer(list(REPLIES), tokenizer=tokenizer) as server:
        conversation = _token_conversation(tokenizer, server.url)
        asyncio.run(_drive(conversation))
    prompts = [r["prompt"] for r in server.requests]
    assert len(prompts) == 3
    for earlier, later in zip(prompts, prompts[1:]):
        assert later[: len(earlier)] == earlier
    text = tokenizer.decode(conversation.ids)
    assert text.count(PREFILL) == 3  # exactly one per assistant turn, never `<think>\n<think>\n`
    assert PREFILL + PREFILL not in text
    assert TOOL_HEADER[kind] + OBSERVATION in text
    last_prompt = tokenizer.decode(prompts[-1])
    assert "Look around.\n</think>\n<tool: bash>\nls -la\n</tool>" in last_prompt
    assert last_prompt.endswith(PREFILL)
    assert [m["role"] for m in conversation.messages] == ["system", "user", "assistant", "tool: bash", "assistant",
                                                          "user", "assistant"]
    assert conversation.messages[2]["content"] == PREFILL + REPLIES[0]


@pytest.mark.parametrize("kind", ["cwm", "cwm-think"])
def test_token_stream_is_cwm_layout_token_for_token(tmp_path, kind):
    """BOS H(system) SYS EOT H(user) USER EOT H(assistant) <think>\\n A1(incl. stop id) H(tool: bash) BODY EOT
    H(assistant) <think>\\n A2 ... , each piece encoded on its own, as cwm-agent.md section 3 lays it out."""
    tokenizer = tokenizer_of(kind, tmp_path)
    special = tokenizer.convert_tokens_to_ids
    bos, eot = special("<|begin_of_text|>"), special("<|eot_id|>")

    def enc(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    def header(role: str) -> list[int]:
        return [special("<|start_header_id|>"), *enc(role), special("<|end_header_id|>"), *enc("\n\n")]

    with ScriptedServer(list(REPLIES), tokenizer=tokenizer) as server:
        conversation = _token_conversation(tokenizer, server.url)
        asyncio.run(_drive(conversation))
    sampled = [enc(reply) + [eot] for reply in REPLIES]  # the sampler stops on EOT and returns it
    prompt1 = [bos, *header("system"), *enc(SYSTEM), eot, *header("user"), *enc(USER), eot,
               *header("assistant"), *enc(PREFILL)]
    prompt2 = [*prompt1, *sampled[0], *header("tool: bash"), *enc(OBSERVATION), eot,  # no second EOT after A1
               *header("assistant"), *enc(PREFILL)]
    prompt3 = [*prompt2, *sampled[1], *header("user"), *enc(FORMAT_ERROR), eot, *header("assistant"), *enc(PREFILL)]
    expected = [*prompt3, *sampled[2]]
    assert [r["prompt"] for r in server.requests] == [prompt1, prompt2, prompt3]
    assert conversation.ids == expected
    assert conversation.mask == ([0] * len(prompt1) + [1] * len(sampled[0]) + [0] * (len(prompt2) - len(prompt1)
                                 - len(sampled[0])) + [1] * len(sampled[1]) + [0] * (len(prompt3) - len(prompt2)
                                 - len(sampled[1])) + [1] * len(sampled[2]))


class _LengthCutClient:
    """Replies cut at max_tokens: no stop id at the end of the sampled ids."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    async def complete(self, ids, max_tokens, logprobs=False) -> ModelReply:
        text = continued("Look around.", "bash", "ls")
        return ModelReply(text=text, finish_reason="length", model="m",
                          completion_token_ids=self.tokenizer.encode(text, add_special_tokens=False))


@pytest.mark.parametrize("kind", ["cwm", "cwm-think"])
def test_end_of_turn_is_added_only_when_the_sampler_did_not_emit_it(tmp_path, kind):
    tokenizer = tokenizer_of(kind, tmp_path)
    renderer = ChatRenderer(tokenizer)
    eot, eom = tokenizer.convert_tokens_to_ids("<|eot_id|>"), tokenizer.convert_tokens_to_ids("<|start_header_id|>")
    assert renderer.turn_end == [eot]
    assert renderer.close_turn([5, 6, eot]) == []  # stopped on the template's end token: nothing to add
    assert renderer.close_turn([5, 6]) == [eot]  # cut at max_tokens
    assert renderer.close_turn([5, 6, eom]) == [eot]  # stopped on another stop id
    assert renderer.close_turn([]) == [eot]
    conversation = TokenConversation(_LengthCutClient(tokenizer), renderer,
                                     [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}])
    asyncio.run(conversation.sample(10))
    conversation.add("tool: bash", OBSERVATION)
    sampled = tokenizer.encode(continued("Look around.", "bash", "ls"), add_special_tokens=False)
    start = len(conversation.ids) - len(renderer.message("tool: bash", OBSERVATION)) - 1 - len(sampled)
    assert conversation.ids[start:start + len(sampled) + 1] == [*sampled, eot]
    assert conversation.mask[start:start + len(sampled) + 1] == [1] * len(sampled) + [0]


def test_chatml_closes_the_turn_after_its_stop_token(tmp_path):
    tokenizer = tokenizer_of("chatml", tmp_path)
    renderer = ChatRenderer(tokenizer)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    newline = tokenizer.encode("\n", add_special_tokens=False)
    assert renderer.turn_end == [im_end, *newline]
    assert renderer.close_turn([5, im_end]) == newline
    assert renderer.close_turn([5]) == [im_end, *newline]


@pytest.mark.parametrize("kind, template_kwargs, injected", [
    ("chatml", None, False), ("cwm", None, False), ("cwm-think", None, True),
    ("cwm-think", {"enable_thinking": True}, True), ("cwm-think", {"enable_thinking": False}, False)])
def test_the_prefill_is_appended_only_when_the_template_does_not_inject_it(tmp_path, kind, template_kwargs, injected):
    tokenizer = tokenizer_of(kind, tmp_path)
    renderer = ChatRenderer(tokenizer, template_kwargs=template_kwargs)
    assert renderer.template_prefills is injected
    assert renderer.appended_prefill == ("" if injected else PREFILL)
    prompt = tokenizer.decode(renderer.prompt([{"role": "system", "content": SYSTEM},
                                               {"role": "user", "content": USER}]))
    message = tokenizer.decode(renderer.message("tool: bash", OBSERVATION))
    for text in (prompt, message):
        assert text.endswith(PREFILL) and text.count(PREFILL) == 1


def test_chat_mode_replays_the_prefill_and_the_reasoning(tmp_path):
    """Chat mode: the server's template injects the prefill, so the reply lacks it; the replayed assistant message
    is prefill + reply, reasoning included, and a reply that already starts with `<think>` is kept as it is."""
    with_tag = turn("Second thoughts.", "bash", "cat calc.py")
    with ScriptedServer([REPLIES[0], with_tag, REPLIES[2]]) as server:
        conversation = ChatConversation(ModelClient(server.url, model="scripted-model", retries=1),
                                        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}])

        async def drive():
            await conversation.sample(256)
            conversation.add("tool: bash", OBSERVATION)
            await conversation.sample(256)
            conversation.add("tool: bash", OBSERVATION)
            await conversation.sample(256)

        asyncio.run(drive())
    second, third = server.requests[1]["messages"], server.requests[2]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool: bash"]
    assert second[2]["content"] == PREFILL + REPLIES[0]
    assert second[2]["content"].startswith(PREFILL) and "Look around.\n</think>" in second[2]["content"]
    assert third[2] == second[2] and third[4]["content"] == with_tag  # not `<think>\n<think>\n`


def test_renderer_refuses_a_template_that_rewrites_history(tmp_path):
    tokenizer = tokenizer_of("chatml", tmp_path)
    # a template that drops earlier assistant turns (as some thinking models do) cannot be token-exact
    tokenizer.chat_template = ("{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}"
                               "{{ m['role'] + ':' + m['content'] + '\\n' }}{% endif %}{% endfor %}")
    renderer = ChatRenderer(tokenizer)
    with pytest.raises(ValueError, match="rewrites earlier turns"):
        renderer.message("tool: bash", "output")
