"""Token accounting for CWM's budget and truncation (harness/conversation.py): `CharEstimate` in chat mode,
`RendererTokens` in token-exact mode, and CWM's `maybe_truncate_message` rule (cwm-agent.md section 5)."""

from __future__ import annotations

import pytest
from tokenizers_for_tests import make_tokenizer
from transformers import AutoTokenizer

from harness.conversation import (
    ABBREV,
    MESSAGE_OVERHEAD,
    CharEstimate,
    ChatConversation,
    ChatRenderer,
    RendererTokens,
    TokenConversation,
)
from harness.model import ModelClient

KINDS = ["chatml", "cwm", "cwm-think"]
# code-like ASCII, and text with multi-byte characters that a small byte-level BPE splits into byte pieces
ASCII = "".join(f"def median_{i}(values):\n    ordered = sorted(values)\n    return ordered[len(ordered) // 2]\n"
                for i in range(40))
UNICODE = "".join(f"line {i}: the quick brown fox jumps over the lazy dog; déjà vu ✓ {i * 7}\n" for i in range(60))
MESSAGES = [{"role": "system", "content": "You are a coding agent."},
            {"role": "user", "content": "Fix the median function in calc."}]


@pytest.fixture(scope="module", params=KINDS)
def kind_and_tokenizer(request, tmp_path_factory):
    folder = make_tokenizer(request.param, tmp_path_factory.mktemp(request.param) / "tok")
    return request.param, AutoTokenizer.from_pretrained(folder)


def _client() -> ModelClient:
    return ModelClient("http://127.0.0.1:9/v1", model="unused")  # never called


# --- RendererTokens: exact counts -------------------------------------------------------------------------------

def test_message_count_is_header_body_and_end_of_turn(kind_and_tokenizer):
    kind, tokenizer = kind_and_tokenizer
    counter = RendererTokens(ChatRenderer(tokenizer))

    def enc(text):
        return tokenizer.encode(text, add_special_tokens=False)

    assert counter.count(ASCII) == len(enc(ASCII))
    for role in ("system", "user", "tool: bash"):
        if kind == "chatml":
            expected = len(enc(f"<|im_start|>{role}\n{ASCII}<|im_end|>\n"))
        else:  # CWM: H(role) body EOT, with H(r) = start, enc(r), end, enc("\n\n"); no BOS, no generation prompt
            expected = 2 + len(enc(role)) + len(enc("\n\n")) + len(enc(ASCII)) + 1
        assert counter.message_count(role, ASCII) == expected


@pytest.mark.parametrize("kind", ["cwm", "cwm-think"])
def test_message_counts_add_up_to_the_token_exact_prompt(tmp_path, kind):
    tokenizer = AutoTokenizer.from_pretrained(make_tokenizer(kind, tmp_path / "tok"))
    renderer = ChatRenderer(tokenizer)
    conversation = TokenConversation(_client(), renderer, MESSAGES)
    assert isinstance(conversation.counter, RendererTokens)
    assert conversation.count_tokens(ASCII) == conversation.counter.count(ASCII)
    counter = conversation.counter
    generation = counter.message_count("assistant", "<think>\n") - 1  # H(assistant) + prefill, no EOT
    bos = 1
    assert conversation.tokens_used == bos + sum(counter.message_count(m["role"], m["content"])
                                                 for m in MESSAGES) + generation


# --- RendererTokens: CWM's truncation -----------------------------------------------------------------------------

@pytest.mark.parametrize("body", [ASCII, UNICODE], ids=["ascii", "unicode"])
def test_left_truncation_keeps_the_end_and_fits(kind_and_tokenizer, body):
    _, tokenizer = kind_and_tokenizer
    counter = RendererTokens(ChatRenderer(tokenizer))
    total = counter.message_count("user", body)
    for max_tokens in (40, 97, 250, total // 2, total - 1):
        cut = counter.truncate_message("user", body, max_tokens, "left")
        assert counter.message_count("user", cut) <= max_tokens
        assert counter.message_count("user", cut) >= max_tokens - 6  # and uses the room it has
        assert cut.startswith(ABBREV) and len(cut) < len(body)
        kept = cut[len(ABBREV):].lstrip("\ufffd")  # a cut inside a character decodes as U+FFFD, as in CWM
        assert body.endswith(kept) and len(kept) > 0


@pytest.mark.parametrize("body", [ASCII, UNICODE], ids=["ascii", "unicode"])
def test_right_truncation_keeps_the_start_and_fits(kind_and_tokenizer, body):
    _, tokenizer = kind_and_tokenizer
    counter = RendererTokens(ChatRenderer(tokenizer))
    total = counter.message_count("tool: bash", body)
    for max_tokens in (40, 97, 250, total // 2, total - 1):
        cut = counter.truncate_message("tool: bash", body, max_tokens, "right")
        assert counter.message_count("tool: bash", cut) <= max_tokens
        assert counter.message_count("tool: bash", cut) >= max_tokens - 6
        assert cut.endswith(ABBREV) and len(cut) < len(body)
        kept = cut[: -len(ABBREV)].rstrip("\ufffd")
        assert body.startswith(kept) and len(kept) > 0


def test_truncation_fits_for_every_budget(kind_and_tokenizer):
    _, tokenizer = kind_and_tokenizer
    counter = RendererTokens(ChatRenderer(tokenizer))
    body = UNICODE[:700]
    floor = counter.message_count("tool: bash", "") + counter.count(ABBREV)
    for where in ("left", "right"):
        for max_tokens in range(floor, counter.message_count("tool: bash", body) + 2):
            cut = counter.truncate_message("tool: bash", body, max_tokens, where)
            assert counter.message_count("tool: bash", cut) <= max_tokens, (where, max_tokens)


def test_truncation_is_cwms_rule_when_that_fits(kind_and_tokenizer):
    """body cut to max_tokens - (message_count - count(body)) - count("[...]") tokens, `[...]` added, decoded."""
    _, tokenizer = kind_and_tokenizer
    renderer = ChatRenderer(tokenizer)
    counter = RendererTokens(renderer)
    body, abbrev = renderer.encode(ASCII), renderer.encode(ABBREV)
    total = counter.message_count("user", ASCII)
    compared = 0
    for max_tokens in range(30, total, 7):
        new_len = max_tokens - (total - len(body)) - len(abbrev)
        for where, ids in (("left", abbrev + body[-new_len:]), ("right", body[:new_len] + abbrev)):
            cwm = renderer.decode(ids)
            if counter.message_count("user", cwm) <= max_tokens:
                assert counter.truncate_message("user", ASCII, max_tokens, where) == cwm
                compared += 1
    assert compared > 100


def test_a_message_that_fits_is_unchanged_and_a_tiny_budget_leaves_the_marker(kind_and_tokenizer):
    _, tokenizer = kind_and_tokenizer
    counter = RendererTokens(ChatRenderer(tokenizer))
    total = counter.message_count("tool: bash", ASCII)
    for where in ("left", "right"):
        assert counter.truncate_message("tool: bash", ASCII, total, where) == ASCII
        assert counter.truncate_message("tool: bash", ASCII, 10**6, where) == ASCII
        assert counter.truncate_message("tool: bash", ASCII, 3, where) == ABBREV
    with pytest.raises(ValueError):
        counter.truncate_message("tool: bash", ASCII, 10, "middle")


# --- CharEstimate: chat mode -----------------------------------------------------------------------------------------

def test_char_estimate_counts():
    counter = CharEstimate()
    assert counter.chars_per_token == 4.0 and MESSAGE_OVERHEAD == 8
    assert [counter.count("a" * n) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]
    assert counter.message_count("user", "a" * 9) == 3 + 8
    assert counter.message_count("tool: bash", "") == 8
    assert counter.count(ABBREV) == 2
    assert [CharEstimate(3.5).count("a" * n) for n in (7, 8)] == [2, 3]


def test_char_estimate_truncation():
    counter = CharEstimate(4.0)
    text = "".join(chr(97 + i % 26) for i in range(403))  # 101 tokens, 109 with the message
    # 50 - 8 (message) - 2 ("[...]") = 40 tokens = 160 characters kept
    assert counter.truncate_message("tool: bash", text, 50, "right") == text[:160] + ABBREV
    assert counter.truncate_message("user", text, 50, "left") == ABBREV + text[-160:]
    for where in ("left", "right"):
        assert counter.message_count("user", counter.truncate_message("user", text, 50, where)) == 50
        assert counter.truncate_message("user", text, 109, where) == text  # fits
        assert counter.truncate_message("user", text, 5, where) == ABBREV
    assert CharEstimate(3.5).truncate_message("user", text, 50, "right") == text[:140] + ABBREV  # 40 x 3.5
    short = CharEstimate(3.5).truncate_message("user", text, 50, "left")
    assert CharEstimate(3.5).message_count("user", short) <= 50
    with pytest.raises(ValueError):
        counter.truncate_message("user", text, 50, "both")


def test_chat_conversation_counts_with_char_estimate():
    conversation = ChatConversation(_client(), MESSAGES, chars_per_token=4.0)
    assert isinstance(conversation.counter, CharEstimate)
    expected = sum(-(-len(m["content"]) // 4) + MESSAGE_OVERHEAD for m in MESSAGES)
    assert conversation.tokens_used == expected
    conversation.add("tool: bash", "x" * 10)
    assert conversation.tokens_used == expected + 3 + MESSAGE_OVERHEAD
    assert conversation.count_tokens("x" * 10) == 3
    assert conversation.token_record() is None
