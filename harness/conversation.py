"""The agent's conversation with the model, in one of two modes, and the token accounting that goes with it.

- `ChatConversation`: messages to /v1/chat/completions; the server renders them. Tokens are estimated from characters
  (`CharEstimate`).
- `TokenConversation` (token-exact): we render with the model's own tokenizer and chat template and send token
  ids to /v1/completions. Each turn only appends tokens, so the trajectory's token sequence is exactly what was
  sampled and what the trainer will see; the loss mask is 1 on sampled tokens and 0 on everything else. Tokens are
  counted exactly (`RendererTokens`).

With CWM's template the token-exact stream is CWM's own layout (cwm-agent.md section 3):

    BOS H(system) SYS EOT H(user) USER EOT H(assistant) <think>\\n  A1  [EOT] H(tool: NAME) BODY EOT H(assistant) ...

where `<think>\\n` (the prefill) appears exactly once per assistant turn whether the template's generation prompt
injects it or the renderer appends it, A1 are the sampled ids kept verbatim (stop id included), and the EOT after them
is added only when the sampler did not already stop on it.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol

from harness.model import ModelClient, ModelReply

MESSAGE_OVERHEAD = 8  # template tokens around a message, for chat-mode estimates
PLACEHOLDER_USER, PLACEHOLDER_ASSISTANT = "\x00user\x00", "\x00assistant\x00"
THINK_PREFILL = "<think>\n"  # CWM's think-tag prefill: plain text that starts every assistant turn
ABBREV = "[...]"  # what marks a truncated message body, as in CWM


class TokenCounter(Protocol):
    """Token accounting for CWM's budget notice and truncation."""

    def count(self, text: str) -> int:
        """Tokens of a message body."""
        ...

    def message_count(self, role: str, content: str) -> int:
        """Header + body + end-of-turn of one message (no generation prompt, no prefill)."""
        ...

    def truncate_message(self, role: str, content: str, max_tokens: int, where: str) -> str:
        """The content, cut so that the message fits in `max_tokens` (CWM's `maybe_truncate_message`).

        where="left" keeps the end and prefixes `[...]`; where="right" keeps the start and appends `[...]`.
        """
        ...


def _check_where(where: str) -> None:
    if where not in ("left", "right"):
        raise ValueError(f"where must be 'left' or 'right', not {where!r}")


class CharEstimate:
    """Chat mode, no tokenizer: a token is `chars_per_token` characters (rounded up); a message adds a fixed
    `MESSAGE_OVERHEAD`."""

    def __init__(self, chars_per_token: float = 4.0):
        self.chars_per_token = chars_per_token

    def count(self, text: str) -> int:
        return math.ceil(len(text) / self.chars_per_token)

    def message_count(self, role: str, content: str) -> int:
        return self.count(content) + MESSAGE_OVERHEAD

    def truncate_message(self, role: str, content: str, max_tokens: int,
                         where: Literal["left", "right"] | str = "left") -> str:
        _check_where(where)
        total = self.message_count(role, content)
        if total <= max_tokens:
            return content
        keep_tokens = max(0, max_tokens - (total - self.count(content)) - self.count(ABBREV))
        keep = int(keep_tokens * self.chars_per_token)
        if where == "left":
            return ABBREV + (content[-keep:] if keep else "")
        return content[:keep] + ABBREV


class RendererTokens:
    """Token-exact mode: counts with the model's tokenizer and chat template."""

    def __init__(self, renderer: ChatRenderer):
        self.renderer = renderer
        self.abbrev = renderer.encode(ABBREV)

    def count(self, text: str) -> int:
        return len(self.renderer.encode(text))

    def message_count(self, role: str, content: str) -> int:
        return len(self.renderer.message_ids(role, content))

    def truncate_message(self, role: str, content: str, max_tokens: int,
                         where: Literal["left", "right"] | str = "left") -> str:
        _check_where(where)
        total = self.message_count(role, content)
        if total <= max_tokens:
            return content
        body = self.renderer.encode(content)
        # CWM slices with [-n:], which keeps everything when n is 0; we keep nothing then (only reachable when
        # max_tokens is smaller than the header, end-of-turn and `[...]` together)
        keep = max(0, max_tokens - (total - len(body)) - len(self.abbrev))
        while True:
            ids = self.abbrev + body[len(body) - keep:] if where == "left" else body[:keep] + self.abbrev
            text = self.renderer.decode(ids)
            # CWM stops here. Decoded text can re-encode longer (a cut inside a character, a merge with `[...]`);
            # then we cut further, so the message always fits (the text is CWM's whenever CWM's fits)
            excess = self.message_count(role, text) - max_tokens
            if excess <= 0 or keep == 0:
                return text
            keep = max(0, keep - excess)


def constrained(structured: dict[str, Any] | None) -> dict[str, Any]:
    """The client's keyword for a structured-output constraint, only when there is one (so that any client with
    the plain `chat`/`complete` signature serves unconstrained turns)."""
    return {} if structured is None else {"structured": structured}


class Conversation(Protocol):
    messages: list[dict[str, Any]]
    tokens_used: int
    counter: TokenCounter

    def add(self, role: str, content: str) -> None: ...

    async def sample(self, max_tokens: int, structured: dict[str, Any] | None = None) -> ModelReply:
        """The next assistant turn; `structured`: vLLM's structured-output constraint on it (--guided-format)."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def token_record(self) -> dict[str, Any] | None: ...


class ChatConversation:
    """The server renders; earlier assistant turns are replayed as prefill + sampled text, reasoning included (the
    server's template injects the prefill into the generation prompt, so the reply does not contain it)."""

    def __init__(self, client: ModelClient, messages: list[dict[str, Any]], chars_per_token: float = 4.0,
                 prefill: str = THINK_PREFILL):
        self.client = client
        self.messages = list(messages)
        self.chars_per_token = chars_per_token
        self.prefill = prefill
        self.counter: TokenCounter = CharEstimate(chars_per_token)
        self.tokens_used = sum(self.counter.message_count(m["role"], m["content"]) for m in messages)

    def add(self, role: str, content: str) -> None:
        self.messages.append({"role": role, "content": content})
        self.tokens_used += self.counter.message_count(role, content)  # exact again after the next call

    def assistant_content(self, text: str) -> str:
        """What an assistant turn is replayed as: the prefill and the sampled text (unless it starts with the tag)."""
        tag = self.prefill.strip()
        if not self.prefill or (tag and text.startswith(tag)):
            return text
        return self.prefill + text

    async def sample(self, max_tokens: int, structured: dict[str, Any] | None = None) -> ModelReply:
        reply = await self.client.chat(self.messages, max_tokens, **constrained(structured))
        self.messages.append({"role": "assistant", "content": self.assistant_content(reply.text)})
        self.tokens_used = reply.prompt_tokens + reply.completion_tokens
        return reply

    def count_tokens(self, text: str) -> int:
        """An estimate (rounded up): the server does the real tokenization in chat mode."""
        return self.counter.count(text)

    def token_record(self) -> None:
        return None


class ChatRenderer:
    """Renders turns with a tokenizer's chat template as token-id deltas that only ever append.

    `prefill` starts every assistant turn exactly once: when the template's generation prompt already ends with it
    (CWM's HF template under `enable_thinking`), it is not appended again. `template_kwargs` go to the template
    (e.g. `{"enable_thinking": True, "preserve_previous_think": True}` for CWM).
    """

    def __init__(self, tokenizer, prefill: str = THINK_PREFILL, template_kwargs: dict[str, Any] | None = None):
        self.tokenizer = tokenizer
        self.prefill = prefill
        self.template_kwargs = dict(template_kwargs or {})
        base = [{"role": "user", "content": PLACEHOLDER_USER}, {"role": "assistant", "content": PLACEHOLDER_ASSISTANT}]
        self._base = base
        self._base_text = self._render(base, generation_prompt=False)
        self.turn_end = self.encode(self._base_text.split(PLACEHOLDER_ASSISTANT, 1)[1])
        # does the template's generation prompt already end with the prefill?
        probe = self._render(base[:1], generation_prompt=True)
        self.template_prefills = bool(prefill) and probe.endswith(prefill)
        self.appended_prefill = "" if self.template_prefills else prefill

    def _render(self, messages: list[dict[str, Any]], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt,
                                                  **self.template_kwargs)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def prompt(self, messages: list[dict[str, Any]]) -> list[int]:
        """The first prompt: the whole conversation so far, the generation prompt and the think prefill (once)."""
        return self.encode(self._render(messages, generation_prompt=True) + self.appended_prefill)

    def _delta(self, role: str, content: str, generation_prompt: bool) -> str:
        full = self._render([*self._base, {"role": role, "content": content}], generation_prompt=generation_prompt)
        if not full.startswith(self._base_text):
            raise ValueError("this chat template rewrites earlier turns, so token-exact mode cannot use it")
        return full[len(self._base_text):]

    def message(self, role: str, content: str) -> list[int]:
        """A new non-assistant message after an assistant turn, plus the next generation prompt and prefill (once)."""
        return self.encode(self._delta(role, content, generation_prompt=True) + self.appended_prefill)

    def message_ids(self, role: str, content: str) -> list[int]:
        """One message as the template renders it (header, body, end of turn), without generation prompt or
        prefill, and without anything the template puts before the first message (BOS, a default system prompt)."""
        try:
            return self.encode(self._delta(role, content, generation_prompt=False))
        except Exception:  # e.g. a template that refuses a system message after the first one
            alone = self._render([{"role": role, "content": content}], generation_prompt=False)
            try:
                before = self._render([], generation_prompt=False)
            except Exception:
                before = ""
            return self.encode(alone[len(before):] if alone.startswith(before) else alone)

    def close_turn(self, sampled: list[int]) -> list[int]:
        """What the template puts after an assistant message that the sampler did not already emit: nothing more
        when the sampler stopped on the template's end token (CWM: EOT), the whole end otherwise (CWM: EOT after a
        stop on EOM or EOS, or after a reply cut at max_tokens)."""
        if sampled and self.turn_end and sampled[-1] == self.turn_end[0]:
            return self.turn_end[1:]
        return self.turn_end


class TokenConversation:
    def __init__(self, client: ModelClient, renderer: ChatRenderer, messages: list[dict[str, Any]],
                 logprobs: bool = False):
        self.client = client
        self.renderer = renderer
        self.counter: TokenCounter = RendererTokens(renderer)
        self.logprobs = logprobs
        self.messages = list(messages)
        self.ids: list[int] = renderer.prompt(messages)
        self.mask: list[int] = [0] * len(self.ids)
        self.sampled_logprobs: list[float | None] = [None] * len(self.ids)
        self._open_turn: list[int] | None = None  # the last sampled ids, until the next message closes the turn

    @property
    def tokens_used(self) -> int:
        return len(self.ids)

    def count_tokens(self, text: str) -> int:
        return self.counter.count(text)

    def _append(self, ids: list[int], sampled: bool, logprobs: list[float] | None = None) -> None:
        self.ids += ids
        self.mask += [1 if sampled else 0] * len(ids)
        self.sampled_logprobs += logprobs if logprobs else [None] * len(ids)

    async def sample(self, max_tokens: int, structured: dict[str, Any] | None = None) -> ModelReply:
        reply = await self.client.complete(self.ids, max_tokens, logprobs=self.logprobs, **constrained(structured))
        sampled = reply.completion_token_ids or []
        self._append(sampled, sampled=True, logprobs=reply.logprobs)
        self._open_turn = sampled
        # the stream holds the prefill then the sampled ids, so that is the assistant message
        self.messages.append({"role": "assistant", "content": self.renderer.prefill + reply.text})
        return reply

    def add(self, role: str, content: str) -> None:
        if self._open_turn is not None:
            self._append(self.renderer.close_turn(self._open_turn), sampled=False)
            self._open_turn = None
        self._append(self.renderer.message(role, content), sampled=False)
        self.messages.append({"role": role, "content": content})

    def token_record(self) -> dict[str, Any]:
        return {"input_ids": self.ids, "loss_mask": self.mask, "logprobs": self.sampled_logprobs}
