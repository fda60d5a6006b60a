"""Raw text completions (`/v1/completions`) for trace prediction, as CWM's debugger demo prompts: the prompt is text
holding CWM's special-token strings, the reply is cut at a stop string.

On vLLM the request also asks for the special tokens as text (`skip_special_tokens: false`), the stop string kept in
the reply (so that the end of the trace can be told from the end of a frame) and no second BOS
(`add_special_tokens: false`: the prompt starts with its own `<|begin_of_text|>`); other servers get OpenAI's fields
only. The model client's pool, retries and sampling are used (its request helpers, since it has no text-prompt call).
"""

from __future__ import annotations

import json
import time

from harness.endpoints import body_with, cut_prompt_ids
from harness.model import ModelReply, _parsing

VLLM_TEXT_FIELDS = {"skip_special_tokens": False, "spaces_between_special_tokens": False,
                    "include_stop_str_in_output": True, "add_special_tokens": False}


async def complete_text(client, prompt: str, max_tokens: int, stop: list[str]) -> ModelReply:
    """The model's continuation of `prompt`, up to the first of `stop` (included on vLLM) or `max_tokens`."""
    started = time.monotonic()
    vllm = await client._is_vllm()
    options = {"stop": stop, **(VLLM_TEXT_FIELDS if vllm else {})}
    fields = client._fields(max_tokens, options, vllm, False)
    raw = await client._with_retries("/completions", body_with(fields, "prompt", json.dumps(prompt).encode()))
    with _parsing(raw):
        reply, _ = cut_prompt_ids(raw)
        choice = reply["choices"][0]
        return client._reply(reply, choice, choice.get("text") or "", started, None, max_tokens, None, {})
