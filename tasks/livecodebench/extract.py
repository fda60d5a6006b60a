"""Pulling the program out of a model reply, as each protocol does.

- cwm (CWM's LCB environment): the answer is the text after the FIRST `</think>`, stripped; a reply without
  `</think>` has no answer and fails. From the answer, exactly one ```python / ```py block, or, when there is
  none, exactly one fenced block of any kind (its language word stays in the code); any other count fails.
- lcb_runner (lcb_runner's extract_code for chat models): the whole reply, reasoning included; the lines between
  the last two lines that hold ``` ; fewer than two such lines give no code.
"""

from __future__ import annotations

import re

THINK_END = "</think>"
PYTHON_BLOCK = re.compile(r"``` *(python|py)(.*?)```", re.DOTALL)
ANY_BLOCK = re.compile(r"``` *(.*?)```", re.DOTALL)


def cwm_answer(text: str) -> str | None:
    """The part after the first `</think>`, stripped; None when the reasoning never ended."""
    if THINK_END not in text:
        return None
    return text.split(THINK_END, 1)[1].strip()


def single_block(text: str) -> str | None:
    """Exactly one python block (or, when there is none, exactly one fenced block); else None."""
    blocks = [code for _, code in PYTHON_BLOCK.findall(text)] or ANY_BLOCK.findall(text)
    return blocks[0] if len(blocks) == 1 else None


def last_block(text: str) -> str | None:
    lines = text.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return None
    return "\n".join(lines[fences[-2] + 1: fences[-1]])


def extract_code(text: str, protocol: str = "cwm") -> str | None:
    """The program in a reply, or None when the protocol finds none (the sample then fails ungraded)."""
    if protocol == "cwm":
        answer = cwm_answer(text)
        return None if answer is None else single_block(answer)
    if protocol == "lcb_runner":
        return last_block(text)
    raise ValueError(f"unknown protocol {protocol!r}; use cwm or lcb_runner")


def extraction_failure(text: str, protocol: str) -> str:
    """Why no code came out of a reply, in words."""
    if protocol == "cwm" and THINK_END not in text:
        return f"the reply never closed its reasoning with {THINK_END} (CWM grades that as a failure)"
    if protocol == "cwm":
        return "the answer after </think> does not hold exactly one fenced code block"
    return "the reply holds fewer than two ``` lines"
