"""Prompts: the single-turn codegen prompt of each protocol, and the agentic scenario's task text.

The codegen prompt is the reference's own, loaded at run time from the user's checkout
(`tasks.livecodebench.prompt_sources`): CWM's (`--protocol cwm`, from `--cwm-source`, else the installed `cwm`
package's checkout) or lcb_runner's (`--protocol lcb_runner`, from `--lcb-source`, else the installed `lcb_runner`).
Without one, cwm-eval's own wording of the same facts is used and labelled not comparable. The agentic scenario's
texts (`problem_markdown`, `agentic_instruction`) are cwm-eval's for every protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from agents.cwm import cwm_source as cwm_checkout
from agents.cwm.texts import ProjectTexts
from harness.conversation import TokenCounter
from harness.errors import UserError
from tasks.livecodebench import prompt_sources
from tasks.livecodebench.dataset import Problem

PROTOCOLS = ("cwm", "lcb_runner")
CWM_MAX_PROMPT_TOKENS = 2048  # CWM cuts the user prompt from the left to this many tokens (cwm-agent.md s.10)


class LcbTexts(Protocol):
    comparable: bool  # True only for the reference's own texts
    origin: str
    protocol: str
    max_prompt_tokens: int | None  # the user message is cut from the left to this many tokens; None: never cut

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        """System and user message, untruncated."""
        ...


class OwnCwmTexts:
    """cwm-eval's wording of CWM's LiveCodeBench prompt: the same facts in other sentences."""

    comparable = False
    origin = "cwm-eval (own wording of CWM's LiveCodeBench prompt: numbers are not comparable to CWM's)"
    protocol = "cwm"
    max_prompt_tokens: int | None = CWM_MAX_PROMPT_TOKENS

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        user = (f"Write a Python program that solves this programming task.\n\n{problem.question_content}\n\n"
                "Answer with exactly one fenced block (```python ... ```) that holds the whole program, and use "
                "backticks for nothing else.")
        if problem.starter_code:
            user += f" Build on this function signature:\n```python\n{problem.starter_code}\n```"
        else:
            user += " The program takes its input on stdin and prints its answer on stdout."
        return [{"role": "system", "content": ProjectTexts().think_system()}, {"role": "user", "content": user}]


class OwnLcbRunnerTexts:
    """cwm-eval's wording of lcb_runner's generic chat prompt: question, format and answer sections."""

    comparable = False
    origin = "cwm-eval (own wording of lcb_runner's prompt: numbers are not comparable to LiveCodeBench's)"
    protocol = "lcb_runner"
    max_prompt_tokens: int | None = None

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        system = ("You write Python programs. Each task states a problem; reply with a program that does exactly "
                  "what it asks and passes every hidden test.")
        user = f"### Question:\n{problem.question_content}\n\n### Format: "
        if problem.starter_code:
            user += ("Complete the code below and put your whole solution in one fenced block.\n"
                     f"```python\n{problem.starter_code}\n```\n\n")
        else:
            user += ("The program takes its input on stdin and prints the answer on stdout; do not hard-code the "
                     "examples. Put your whole solution in one fenced block, like this one.\n"
                     "```python\n# the program\n```\n\n")
        user += "### Answer: (one fenced python block, as in the format above)\n\n"
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def load_lcb_texts(protocol: str, cwm_source: Path | None = None, lcb_source: Path | None = None) -> LcbTexts:
    """The codegen prompt's texts for `protocol`: from the reference's checkout when there is one, else our own.

    `cwm`: `cwm_source`, else the checkout of an installed `cwm` package; `lcb_runner`: `lcb_source`, else the folder
    of an installed `lcb_runner` package. The other protocol's source is not used. A given path that is not such a
    checkout is a UserError."""
    if protocol == "cwm":
        root = cwm_source if cwm_source is not None else cwm_checkout.find_cwm_source()
        return OwnCwmTexts() if root is None else prompt_sources.load_cwm_lcb_texts(Path(root))
    if protocol == "lcb_runner":
        root = lcb_source if lcb_source is not None else prompt_sources.find_lcb_source()
        return OwnLcbRunnerTexts() if root is None else prompt_sources.load_lcb_runner_texts(Path(root))
    raise UserError(f"unknown protocol {protocol!r}; use {' or '.join(PROTOCOLS)}")


def codegen_messages(problem: Problem, texts: LcbTexts, counter: TokenCounter) -> list[dict[str, str]]:
    """The single-turn conversation. Under CWM's protocol the user message is cut from the left to
    `texts.max_prompt_tokens` tokens as CWM does (`[...]` marks the cut); the server's chat template (or the
    token-exact renderer) adds the `<think>\\n` prefill after it."""
    messages = texts.messages(problem)
    limit = texts.max_prompt_tokens
    if limit is None:
        return messages
    return [{**message, "content": counter.truncate_message("user", message["content"], limit, "left")}
            if message["role"] == "user" else message for message in messages]


def problem_markdown(problem: Problem) -> str:
    """/workspace/problem.md in the agentic scenario."""
    title = problem.question_title or problem.question_id
    text = f"# {title}\n\n{problem.question_content.strip()}\n"
    if problem.starter_code:
        text += f"\n## Starter code\n\n```python\n{problem.starter_code.rstrip()}\n```\n"
    return text


def agentic_instruction(problem: Problem, workdir: str, timeout: float) -> str:
    if problem.fn_name:
        io_rule = (f"Complete the starter code: /workspace/solution.py must define `class Solution` with the method "
                   f"`{problem.fn_name}`; it is called with the arguments of each test and its return value is "
                   "compared with the expected one. Do not read stdin or print the answer.")
        tests = ("`tests/public_tests.json` holds the public tests (each input is one JSON value per argument, one "
                 "per line; each output is the expected JSON value)")
    else:
        io_rule = ("/workspace/solution.py is run as a program: it reads the input from standard input and writes "
                   "the answer to standard output.")
        tests = "`tests/public_N.in` / `tests/public_N.out` hold the public tests (also in `tests/public_tests.json`)"
    return (
        f"{problem_markdown(problem)}\n"
        "## Your task\n\n"
        f"Solve the competitive programming problem above in Python 3. The problem is also in "
        f"{workdir}/problem.md. {io_rule}\n\n"
        f"In {workdir}, {tests}. Run `python3 run_tests.py` to check your solution against them (it stops at "
        f"the first failure). Hidden tests grade /workspace/solution.py in the end, {timeout:g} s per test, so "
        "make it correct on every valid input and fast enough for the constraints.\n\n"
        "When you are done, record your work as a patch: `git add -A && git diff --cached > /tmp/solution.patch`, "
        "and submit /tmp/solution.patch."
    )
