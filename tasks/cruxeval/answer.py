"""The model's answer to a CruxEval-O problem, reduced to the one thing it may contribute: the OUTPUT expression.

The answer's last assertion `assert f(...) == OUTPUT` (or `assert OUTPUT == f(...)`) is parsed with `ast`; only
OUTPUT's source text is kept, when it is one Python expression of at most MAX_OUTPUT_CHARS characters that calls
no `f` (CruxEval's own grader likewise fails a generation holding `f(INPUT)`). The call's arguments are the model's
copy of the input and are ignored: the grader calls `f` on the ground-truth input. An assertion of another shape
(`assert f(x) == y or True`, a message, a chain) gives no OUTPUT.

What is executed of the model, and only in the grading container (grader.py): OUTPUT alone, as `(OUTPUT)`, by an
unprivileged process with only the builtins in scope, before the program is there; its value must be plain data
(plain_data.py) and is compared, types exact, with the program's value (sandbox_check.py, which also says how this
differs from CruxEval's grader). The trace style's OUTPUT is the value printed in the entry's return frame, a
repr: it must be a Python literal (`ast.literal_eval`), and is then graded the same way.
"""

from __future__ import annotations

import ast
import re

from pydantic import BaseModel

ENTRY = "f"
MAX_OUTPUT_CHARS = 100_000
THINK_END = "</think>"
ASSERT_LINE = re.compile(r"^[ \t>`]*assert\b", re.M)
MAX_STATEMENT_LINES = 40


class Answer(BaseModel):
    output: str | None = None  # the predicted OUTPUT expression's source text, when there is a usable one
    note: str | None = None  # why there is none
    assertion: str | None = None  # the assertion it came from
    reasoning_closed: bool | None = None  # plain style: the reply closed its <think> block


def answer_text(reply: str) -> tuple[str, bool]:
    """The reply after its last `</think>` (the whole reply when the reasoning was never closed)."""
    if THINK_END in reply:
        return reply.rsplit(THINK_END, 1)[1], True
    return reply, False


def _statement(text: str, start: int) -> ast.Assert | None:
    """The assert statement that starts at `start`: the shortest run of lines from there that parses as one."""
    lines = text[start:].split("\n")
    for count in range(1, min(len(lines), MAX_STATEMENT_LINES) + 1):
        chunk = "\n".join(lines[:count]).strip().lstrip("> `").rstrip("` ")
        try:
            tree = ast.parse(chunk)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert):
            node = tree.body[0]
            node.source = chunk  # type: ignore[attr-defined]
            return node
        return None
    return None


def _calls_entry(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == ENTRY


def _any_call_of_entry(node: ast.AST) -> bool:
    return any(_calls_entry(inner) for inner in ast.walk(node))


def output_of(node: ast.Assert) -> tuple[str | None, str | None]:
    """(OUTPUT source, None) for `assert f(...) == OUTPUT` (or `OUTPUT == f(...)`), else (None, why)."""
    test = node.test
    if node.msg is not None or not isinstance(test, ast.Compare) or len(test.ops) != 1 \
            or not isinstance(test.ops[0], ast.Eq):
        return None, "the assertion is not of the form assert f(...) == OUTPUT"
    left, right = test.left, test.comparators[0]
    if _calls_entry(left) and not _calls_entry(right):
        value = right
    elif _calls_entry(right) and not _calls_entry(left):
        value = left
    else:
        return None, "the assertion does not compare one call of f with a value"
    if _any_call_of_entry(value):
        return None, f"the OUTPUT calls {ENTRY}: CruxEval's grader fails such an answer too"
    source = ast.get_source_segment(node.source, value)  # type: ignore[attr-defined]
    return bounded_output(source or "")


def bounded_output(source: str) -> tuple[str | None, str | None]:
    """(source, None) when `source` is non-empty and at most MAX_OUTPUT_CHARS long, else (None, why)."""
    source = source.strip()
    if not source:
        return None, "no OUTPUT value"
    if len(source) > MAX_OUTPUT_CHARS:
        return None, f"the OUTPUT value is longer than {MAX_OUTPUT_CHARS} characters"
    return source, None


def literal_output(source: str) -> tuple[str | None, str | None]:
    """(source, None) when `source` is a Python literal of bounded size, else (None, why)."""
    source, why = bounded_output(source)
    if source is None:
        return None, why
    try:
        ast.literal_eval(source)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None, f"the OUTPUT value is not a Python literal: {source[:200]}"
    return source, None


def parse_answer(reply: str) -> Answer:
    """The OUTPUT of the last assert statement of the reply's answer part."""
    text, closed = answer_text(reply)
    starts = [m.start() for m in ASSERT_LINE.finditer(text)]
    for start in reversed(starts):  # the last assert statement is the answer, usable or not
        node = _statement(text, start)
        if node is not None:
            output, why = output_of(node)
            return Answer(output=output, note=why, assertion=node.source,  # type: ignore[attr-defined]
                          reasoning_closed=closed)
    return Answer(note="the answer holds no assertion assert f(...) == OUTPUT", reasoning_closed=closed)


def trace_answer(reply: str, entry_return: str) -> Answer:
    """The value of the trace's last return frame at `entry_return` (the entry wrapper's `return f(...)` line: its
    return is the call's value), as the OUTPUT."""
    from harness.traces.format import parse

    returns = [frame for frame in parse(reply) if frame.event == "return" and frame.line == entry_return]
    if not returns:
        return Answer(note="the predicted trace never returns from its entry function")
    value = returns[-1].value or ""
    output, why = literal_output(value)
    return Answer(output=output, note=why, assertion=f"{entry_return.strip()}  # -> {value[:200]}")
