"""`--guided-format`: vLLM's structured-output decoding holds every reply to CWM's turn format.

A reply (what follows the `<think>\\n` prefill) is reasoning, `\\n</think>\\n`, then either exactly one
`<tool: NAME>\\n[body]\\n</tool>` with NAME among the run's tools, or, once a submission succeeded, a final answer
without a tool call. The pattern is a regex that vLLM and Python's `re` read alike; a reply it accepts always parses
(`ProjectTexts.parse_tool_calls`, CWM's order of checks), an `edit` body is one SEARCH/REPLACE block the plugin
parses and a `submit` body is one line. Nothing can follow `</tool>`, so the sampler has to stop
there; a final answer stops wherever the model ends it.

Lengths are bounded in characters so that a turn closes within the call's token limit: the text is ASCII (at least
one character per token), the reasoning never holds `<` (one character per repetition) and a body's `<` runs are
short (an edit block's markers). Real models need none of this, so the option is off by default; it changes the
protocol, so `run.json` and the leaderboard label record it.
"""

from __future__ import annotations

# printable ASCII, tab and newline, without `<`: text that can never open or close a tag
PLAIN = r"[\t\n\x20-\x3b\x3d-\x7e]"
LINE = r"[\t\x20-\x3b\x3d-\x7e]"  # the same within one line
# a run of `<` (a shell redirection, an edit block's `<<<<<<< SEARCH`) followed by anything but `<`, `/` or `t`:
# never `</` nor `<t`, so never a tag
AFTER_ANGLE = r"[\t\n\x20-\x2e\x30-\x3b\x3d-\x73\x75-\x7e]"
FIRST = r"[\x21-\x3b\x3d-\x7e]"  # a body's first character: visible, so the body is never blank
PREFILL = r"(?:<think>\n)?"  # chat mode with a template that does not prefill: the model writes the tag itself
THINK_CLOSE, TOOL_CLOSE = r"\n</think>\n", r"\n</tool>"  # as regex: `\n` is a newline
SEARCH, DIVIDER, REPLACE = r"\n<<<<<<< SEARCH\n", r"\n=======\n", r"\n>>>>>>> REPLACE"
EDIT_MARKERS = len("\n<<<<<<< SEARCH\n\n=======\n\n>>>>>>> REPLACE")
PATH_CAP = 128  # characters of a path
REASONING_CAP, BODY_CAP = 4096, 16384  # characters, whatever the token limit (so the grammar stays small)
SMALLEST = 16  # characters each part gets even when the token limit leaves less


def bounds(tools: list[str], max_tokens: int) -> tuple[int, int]:
    """(reasoning, body) character bounds for a reply of at most `max_tokens` tokens: the tags' characters are
    taken off, the rest is split evenly. A body holding `<` may exceed its share."""
    longest = max(len(f"<tool: {name}>\n") for name in tools)
    fixed = len("<think>\n\n</think>\n") + longest + len("\n</tool>") + 1
    room = max_tokens - fixed
    reasoning = min(REASONING_CAP, max(SMALLEST, room // 2))
    return reasoning, min(BODY_CAP, max(SMALLEST, room - reasoning))


def text(count: int, longest_angle: int = 7, least: int = 0) -> str:
    """`least` to `count` characters (and `<` runs) of text without a tag."""
    return f"(?:{PLAIN}|<{{1,{longest_angle}}}{AFTER_ANGLE}){{{least},{count}}}"


def edit_body(count: int) -> str:
    """One SEARCH/REPLACE block, which the edit plugin always parses: a path line, then two non-empty sections
    whose `<` runs are too short to be another SEARCH marker."""
    path = min(PATH_CAP, count // 4)
    section = max(SMALLEST, (count - path - EDIT_MARKERS) // 2)
    block = text(section, longest_angle=6, least=1)  # may start with indentation
    return f"{FIRST}{LINE}{{0,{path}}}{SEARCH}{block}{DIVIDER}{block}{REPLACE}"


def tool_body(name: str, count: int) -> str:
    if name == "edit":
        return edit_body(count)
    if name == "submit":  # one path (or note) on one line
        return f"{FIRST}{LINE}{{0,{count}}}"
    return f"{FIRST}{text(count)}"  # bash: commands; create: a path line, then the content


def turn_pattern(tools: list[str], max_tokens: int, final_answer: bool) -> str:
    """The regex a reply must match: one call to one of `tools`, or (`final_answer`) a reply without a call."""
    reasoning, body = bounds(tools, max_tokens)
    calls = "|".join(f"<tool: {name}>\\n{tool_body(name, body)}" for name in tools)  # names are words (check_tools)
    call = f"(?:{calls}){TOOL_CLOSE}"
    after = f"(?:{call}|{FIRST}{text(body)})" if final_answer else call
    return f"{PREFILL}{PLAIN}{{0,{reasoning}}}{THINK_CLOSE}{after}"


def structured_outputs(pattern: str) -> dict:
    """vLLM's request field for the pattern (`structured_outputs`, vLLM 0.10 and later)."""
    return {"regex": pattern}
