"""CruxEval-O prompts, both ways CWM reports the benchmark: plain reasoning (a chat turn that reasons in <think> and
ends in `assert f(INPUT) == OUTPUT`) and reasoning as a predicted execution trace (a raw completion in CWM's trace
format, the output read off the entry's return frame).

CWM released no CruxEval prompt. The plain style's system prompt is CWM's think-tag prompt when its checkout is given
(`--cwm-source`, else an installed `cwm` package's checkout), cwm-eval's own otherwise; the task wording is always
cwm-eval's, so the plain numbers are labelled not comparable. The trace style has no wording: CWM's format (tokens
and the start-of-trace marker) around the program and a two-line entry function that makes the call.
"""

from __future__ import annotations

import re
from pathlib import Path

from agents.cwm import cwm_source as cwm_checkout
from agents.cwm.texts import ProjectTexts
from harness.errors import UserError
from harness.traces import format as trace_format
from tasks.cruxeval.dataset import Problem

STYLES = ("plain", "trace")
TRACE_ENTRY = "cruxeval_entry"  # the wrapper the trace starts at; it calls f on the problem's input


class PlainTexts:
    """The plain style's system prompt (CWM's, or ours) and cwm-eval's task wording."""

    comparable = False  # the task wording is ours whoever wrote the system prompt

    def __init__(self, cwm_source: Path | None = None):
        root = cwm_source if cwm_source is not None else cwm_checkout.find_cwm_source()
        if root is None:
            self.system = ProjectTexts().think_system()
            self.origin = "cwm-eval (own system prompt and task wording: not comparable to CWM's CruxEval-O)"
        else:
            self.system = cwm_checkout.load_cwm_texts(Path(root)).think_system()
            self.origin = (f"system prompt from CWM's checkout {root}; task wording cwm-eval's own (CWM released no "
                           "CruxEval prompt): not comparable to CWM's CruxEval-O")

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        user = ("Work out what the Python function `f` below returns when it is called with the given arguments."
                f"\n\n```python\n{problem.code.rstrip()}\n```\n\n"
                "Think it through step by step first. Then, after your reasoning, give your answer as this "
                "assertion with ?? replaced by the returned value, written as a Python literal (no calls, names or "
                "operators), in one fenced python block and nothing else:\n\n"
                f"```python\nassert f({problem.input}) == ??\n```")
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


class TraceStyle:
    """The trace style: CWM's trace prompt (its texts from the checkout when given) over the program and an entry
    function that calls `f`."""

    comparable = False  # the entry wrapper is cwm-eval's design: CWM did not release how it prompted CruxEval

    def __init__(self, cwm_source: Path | None = None):
        from tasks.trace_prediction.texts import load_trace_texts

        self.texts = load_trace_texts(cwm_source)
        self.origin = (f"trace texts: {self.texts.origin}; entry wrapper cwm-eval's own (CWM released no CruxEval "
                       "trace prompt): not comparable to CWM's CruxEval-O as traces")

    def source(self, problem: Problem) -> str:
        return f"{problem.code.rstrip()}\n\n\ndef {entry_name(problem)}():\n{self.return_line(problem)}\n"

    def return_line(self, problem: Problem) -> str:
        """The wrapper's one statement: the frame that returns the call's value has this line."""
        return f"    return f({problem.input})"

    def prompt(self, problem: Problem) -> str:
        return trace_format.trace_prompt(self.source(problem), entry_name(problem), self.texts)


def entry_name(problem: Problem) -> str:
    """The wrapper's name: TRACE_ENTRY, with underscores added while the program already uses it."""
    name = TRACE_ENTRY
    while re.search(rf"\b{name}\b", problem.code):
        name += "_"
    return name


def load_texts(style: str, cwm_source: Path | None = None) -> PlainTexts | TraceStyle:
    if style == "plain":
        return PlainTexts(cwm_source)
    if style == "trace":
        return TraceStyle(cwm_source)
    raise UserError(f"unknown --prompt-style {style!r}; use {' or '.join(STYLES)}")
