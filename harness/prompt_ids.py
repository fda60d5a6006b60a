"""A chat conversation's prompt token ids, recorded per call as what each prompt adds to the one before.

vLLM answers `return_token_ids` with the whole prompt. Either it comes whole, and is compared as bytes with the
previous call's prompt and reply, never parsed whole (`cut_prompt_ids`, `shared_ids`); or the server cuts it
itself (harness/prompt_delta.py, on servers `cwm-eval serve` starts) after the leading ids the request declares
it has, so that a call's reply no longer grows with the conversation. Both give the same records: the first call's
whole prompt, then each call's offset (how many leading ids of the previous prompt and reply it keeps) and delta.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from harness.prompt_delta import NONE_HELD, candidate, digest

PROMPT_IDS_ARRAY = re.compile(rb'"prompt_token_ids(_delta)?"\s*:\s*\[')


def encode_ids(ids: list[int], _variant: object = None) -> bytes:
    return ",".join(map(str, ids)).encode()


@dataclass(frozen=True)
class IdsText:
    """Token ids as JSON (comma-separated, no brackets or spaces) in `buf` from `start` to `end`: a view into the
    reply that carried them, never copied."""

    buf: bytes
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start

    def text(self) -> bytes:
        return self.buf[self.start:self.end]

    def parse(self) -> list[int]:
        return json.loads(b"[" + self.text() + b"]")


def cut_prompt_ids(raw: bytes) -> tuple[dict[str, Any], IdsText | None]:
    """A vLLM reply parsed without its prompt ids array (`prompt_token_ids`, the whole prompt: long, and mostly known
    already; or `prompt_token_ids_delta`, what a server that cuts sent), and that array (None when there is none)."""
    match = PROMPT_IDS_ARRAY.search(raw)
    if match is None:
        return json.loads(raw), None
    start, end = match.end(), raw.index(b"]", match.end())
    key = b'"prompt_token_ids_delta"' if match.group(1) else b'"prompt_token_ids"'
    reply = json.loads(raw[:match.start()] + key + b":null" + raw[end + 1:])
    comma = raw.find(b",", start, end)
    if raw[start:start + 1].isspace() or (comma >= 0 and raw[comma + 1:comma + 2].isspace()):  # spaced JSON
        compact = raw[start:end].translate(None, b" \t\r\n")
        return reply, IdsText(compact, 0, len(compact))
    return reply, IdsText(raw, start, end)


def _common_prefix(a: bytes, b: bytes) -> int:
    lo, hi = 0, min(len(a), len(b))  # the shared length is in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if b.startswith(a[lo:mid], lo):
            lo = mid
        else:
            hi = mid - 1
    return lo


def shared_ids(prompt: IdsText, completion: bytes, count: int, new: IdsText) -> tuple[int, IdsText]:
    """How many leading ids `new` shares with `prompt` then `completion` (`count` ids in all), and the ids after
    those. Usually `new` extends them: that costs one comparison, in C, and no copy."""
    buf, start, end = new.buf, new.start, new.end
    tail = b"," + completion if completion and len(prompt) else completion
    joint = start + len(prompt) + len(tail)
    if (buf.startswith(memoryview(prompt.buf)[prompt.start:prompt.end], start, end)
            and buf.startswith(tail, joint - len(tail), end) and (joint == end or buf[joint:joint + 1] == b",")):
        return count, IdsText(buf, min(joint + 1, end), end)
    base, array = prompt.text() + tail, new.text()
    cut = array.rfind(b",", 0, _common_prefix(base, array))  # the last id boundary inside the shared bytes
    if cut < 0:
        return 0, new
    return array.count(b",", 0, cut) + 1, IdsText(array, cut + 1, len(array))


def declaration(seen) -> str:
    """The header a chat request carries (harness/prompt_delta.py): the ids the client has, longest first: the
    previous prompt and reply, then the previous prompt alone (a template may render a replayed reply otherwise).
    `none` when the conversation has no digest yet: its first call, or one whose server sent the whole prompt."""
    if seen.digest is None:
        seen.candidates = []
        return NONE_HELD
    held = [(seen.prompt_count, seen.length, seen.digest)]
    if seen.completion:
        joint = seen.digest.copy()
        joint.update(b"," + seen.completion)
        held.insert(0, (seen.ids_count, seen.length + 1 + len(seen.completion), joint))
    seen.candidates = held
    return ";".join(candidate(*held_ids) for held_ids in held)


def _from_server_cut(seen, offset: int, new: IdsText | None, prompt_tokens: int) -> dict[str, Any]:
    """Fields of a reply whose server cut the prompt after `offset` ids (0: it sent the whole prompt), `new` the ids
    after those as the reply had them."""
    text = new.text() if new is not None else b""
    delta = new.parse() if text else []
    if offset == 0:
        state, length, fields = digest(text), len(text), {"prompt_token_ids": delta}
    else:
        base = next((held for held in seen.candidates if held[0] == offset), None)
        if base is None:
            raise ValueError(f"the server cut the prompt after {offset} ids, which the request did not declare")
        _, length, state = base
        state = state.copy()
        if text:
            state.update(b"," + text)
            length += 1 + len(text)
        fields = {"prompt_token_ids_offset": offset, "prompt_token_ids_delta": delta}
    if prompt_tokens and offset + len(delta) != prompt_tokens:
        raise ValueError(f"the server's prompt ids ({offset} kept + {len(delta)} new) are not its "
                         f"{prompt_tokens} prompt tokens")
    seen.digest, seen.length, seen.prompt_count, seen.prompt = state, length, offset + len(delta), None
    return fields


def _from_whole(seen, ids: IdsText) -> dict[str, Any]:
    """Fields of a reply with the whole prompt, relative to the conversation's previous call when there was one."""
    if seen.prompt is None:
        whole = ids.parse()
        fields, count = {"prompt_token_ids": whole}, len(whole)
    else:
        offset, rest = shared_ids(seen.prompt, seen.completion, seen.ids_count, ids)
        delta = rest.parse()
        fields, count = {"prompt_token_ids_offset": offset, "prompt_token_ids_delta": delta}, offset + len(delta)
    seen.prompt, seen.prompt_count, seen.digest = ids, count, None
    return fields


def prompt_fields(seen, reply: dict[str, Any], ids: IdsText | None, completion: list[int] | None) -> dict[str, Any]:
    """The reply's prompt ids as record fields (whole on the conversation's first call, else offset + delta); keeps
    what the next call will be relative to."""
    if "prompt_token_ids_offset" in reply:
        fields = _from_server_cut(seen, reply["prompt_token_ids_offset"], ids,
                                  (reply.get("usage") or {}).get("prompt_tokens") or 0)
    elif ids is not None:
        fields = _from_whole(seen, ids)
    else:
        return {}
    completion = completion or []
    seen.completion, seen.ids_count = encode_ids(completion), seen.prompt_count + len(completion)
    return fields
