"""harness/traces: the tracer against traces written by hand, its limits, and CWM's format (render, parse, prompt).

The expected traces below were worked out by hand from Python's event semantics (a line frame shows the locals
before its line runs) and CWM's UNCHANGED rule (a value unchanged since the previous frame of the same call is "..";
never in a call frame, nor after a return or another function's frame). Each row is (event, line number, locals as
written or the value). This venv is Python 3.11, so `trace_call` uses sys.settrace here; the sys.monitoring backend
is checked against the same rows when a Python 3.12+ image is present (test_monitoring_backend_in_a_newer_python).
"""

from __future__ import annotations

import re

import pytest

from harness.traces.format import (ACTION_SEP, ARG_SEP, CALL_SEP, END_OF_TEXT, EXCEPTION_SEP, FRAME_SEP, LINE_SEP,
                                   RETURN_SEP, START_MARKER, TOKEN_IDS, TRACE_CONTEXT_START, Frame, TraceTexts,
                                   mark_entry, parse, parse_frame, render, resolve_locals, trace_prompt)
from harness.traces.tracer import TraceLimits, trace_call

SOURCE = '''\
def sum_to(n):
    total = 0
    for i in range(n):
        total += i
    return total


def factorial(n):
    if n <= 1:
        return 1
    return n * factorial(n - 1)


def safe_div(a, b):
    try:
        q = a / b
    except ZeroDivisionError:
        q = None
    return q


def check(x):
    if x < 0:
        raise ValueError("negative")
    return x


def fail(x):
    y = x * 2
    return check(y)


def caller(x):
    try:
        r = check(x)
    except ValueError:
        r = 0
    return r


def evens(n):
    for i in range(n):
        if i % 2 == 0:
            yield i


def use_gen(n):
    total = 0
    for v in evens(n):
        total += v
    return total


def make_adder(k):
    def add(x):
        return x + k
    return add


def closure(x):
    add = make_adder(10)
    return add(x)


def grow(items):
    items.append(len(items))
    items.append(0)
    return items


def count_words(words):
    counts = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    return counts


class Box:
    def __init__(self, v):
        self.v = v

    def bump(self, d):
        self.v += d
        return self.v

    def __repr__(self):
        return f"Box({self.v})"


def use_box(v):
    b = Box(v)
    b.bump(2)
    return b.v


def spin():
    n = 0
    while True:
        n += 1


def big(n):
    s = "x" * n
    return len(s)
'''
U = ".."
ADD = "<function make_adder.<locals>.add at 0x>"  # object addresses are compared as "0x"

# entry, args, end, rows
EXPECTED = {
    "loop": ("sum_to", [3], "returned", [
        ("call", 1, {"n": "3"}), ("line", 2, {"n": U}), ("line", 3, {"n": U, "total": "0"}),
        ("line", 4, {"n": U, "total": U, "i": "0"}), ("line", 3, {"n": U, "total": U, "i": U}),
        ("line", 4, {"n": U, "total": U, "i": "1"}), ("line", 3, {"n": U, "total": "1", "i": U}),
        ("line", 4, {"n": U, "total": U, "i": "2"}), ("line", 3, {"n": U, "total": "3", "i": U}),
        ("line", 5, {"n": U, "total": U, "i": U}), ("return", 5, "3")]),
    "recursion": ("factorial", [3], "returned", [
        ("call", 8, {"n": "3"}), ("line", 9, {"n": U}), ("line", 11, {"n": U}),
        ("call", 8, {"n": "2"}), ("line", 9, {"n": U}), ("line", 11, {"n": U}),
        ("call", 8, {"n": "1"}), ("line", 9, {"n": U}), ("line", 10, {"n": U}), ("return", 10, "1"),
        ("return", 11, "2"), ("return", 11, "6")]),
    "exception caught in the frame": ("safe_div", [7, 0], "returned", [
        ("call", 14, {"a": "7", "b": "0"}), ("line", 15, {"a": U, "b": U}), ("line", 16, {"a": U, "b": U}),
        ("exception", 16, "ZeroDivisionError('division by zero')"), ("line", 17, {"a": U, "b": U}),
        ("line", 18, {"a": U, "b": U}), ("line", 19, {"a": U, "b": U, "q": "None"}), ("return", 19, "None")]),
    "exception uncaught": ("fail", [-1], "raised", [
        ("call", 28, {"x": "-1"}), ("line", 29, {"x": U}), ("line", 30, {"x": U, "y": "-2"}),
        ("call", 22, {"x": "-2"}), ("line", 23, {"x": U}), ("line", 24, {"x": U}),
        ("exception", 24, "ValueError('negative')"), ("exception", 30, "ValueError('negative')")]),
    "exception caught in the caller": ("caller", [-1], "returned", [
        ("call", 33, {"x": "-1"}), ("line", 34, {"x": U}), ("line", 35, {"x": U}),
        ("call", 22, {"x": "-1"}), ("line", 23, {"x": U}), ("line", 24, {"x": U}),
        ("exception", 24, "ValueError('negative')"), ("exception", 35, "ValueError('negative')"),
        ("line", 36, {"x": "-1"}),  # written again: the look-back would cross into check's frames
        ("line", 37, {"x": U}), ("line", 38, {"x": U, "r": "0"}), ("return", 38, "0")]),
    "generator": ("use_gen", [4], "returned", [
        ("call", 47, {"n": "4"}), ("line", 48, {"n": U}), ("line", 49, {"n": U, "total": "0"}),
        ("call", 41, {"n": "4"}), ("line", 42, {"n": U}), ("line", 43, {"n": U, "i": "0"}),
        ("line", 44, {"n": U, "i": U}), ("return", 44, "0"),
        ("line", 50, {"n": "4", "total": "0", "v": "0"}), ("line", 49, {"n": U, "total": U, "v": U}),
        ("call", 44, {"n": "4", "i": "0"}), ("line", 42, {"n": U, "i": U}), ("line", 43, {"n": U, "i": "1"}),
        ("line", 42, {"n": U, "i": U}), ("line", 43, {"n": U, "i": "2"}), ("line", 44, {"n": U, "i": U}),
        ("return", 44, "2"),
        ("line", 50, {"n": "4", "total": "0", "v": "2"}), ("line", 49, {"n": U, "total": "2", "v": U}),
        ("call", 44, {"n": "4", "i": "2"}), ("line", 42, {"n": U, "i": U}), ("line", 43, {"n": U, "i": "3"}),
        ("line", 42, {"n": U, "i": U}), ("return", 42, "None"),
        ("line", 51, {"n": "4", "total": "2", "v": "2"}), ("return", 51, "2")]),
    "closure": ("closure", [1], "returned", [
        ("call", 60, {"x": "1"}), ("line", 61, {"x": U}),
        ("call", 54, {"k": "10"}), ("line", 55, {"k": U}), ("line", 57, {"k": U, "add": ADD}), ("return", 57, ADD),
        ("line", 62, {"x": "1", "add": ADD}),
        ("call", 55, {"x": "1", "k": "10"}), ("line", 56, {"x": U, "k": U}), ("return", 56, "11"),
        ("return", 62, "11")]),
    "list mutation": ("grow", [[5]], "returned", [
        ("call", 65, {"items": "[5]"}), ("line", 66, {"items": U}), ("line", 67, {"items": "[5, 1]"}),
        ("line", 68, {"items": "[5, 1, 0]"}), ("return", 68, "[5, 1, 0]")]),
    "dict mutation": ("count_words", [["a", "b", "a"]], "returned", [
        ("call", 71, {"words": "['a', 'b', 'a']"}), ("line", 72, {"words": U}),
        ("line", 73, {"words": U, "counts": "{}"}), ("line", 74, {"words": U, "counts": U, "w": "'a'"}),
        ("line", 73, {"words": U, "counts": "{'a': 1}", "w": U}), ("line", 74, {"words": U, "counts": U, "w": "'b'"}),
        ("line", 73, {"words": U, "counts": "{'a': 1, 'b': 1}", "w": U}),
        ("line", 74, {"words": U, "counts": U, "w": "'a'"}),
        ("line", 73, {"words": U, "counts": "{'a': 2, 'b': 1}", "w": U}),
        ("line", 75, {"words": U, "counts": U, "w": U}), ("return", 75, "{'a': 2, 'b': 1}")]),
    "class and methods": ("use_box", [1], "returned", [
        ("call", 90, {"v": "1"}), ("line", 91, {"v": U}),
        ("call", 79, {"self": "<repr failed: AttributeError>", "v": "1"}),  # __repr__ before self.v exists
        ("line", 80, {"self": U, "v": U}), ("return", 80, "None"),
        ("line", 92, {"v": "1", "b": "Box(1)"}),
        ("call", 82, {"self": "Box(1)", "d": "2"}), ("line", 83, {"self": U, "d": U}),
        ("line", 84, {"self": "Box(3)", "d": U}), ("return", 84, "3"),
        ("line", 93, {"v": "1", "b": "Box(3)"}), ("return", 93, "3")]),
}
LINES = SOURCE.splitlines()


def rows(frames: list[Frame]) -> list[tuple]:
    def stable(text: str) -> str:
        return re.sub(r"0x[0-9a-f]+", "0x", text)

    return [(f.event, f.lineno, {k: stable(v) for k, v in f.locals.items()} if f.event in ("call", "line")
             else stable(f.value)) for f in frames]


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_trace_matches_the_hand_written_one(case):
    entry, args, end, expected = EXPECTED[case]
    result = trace_call(SOURCE, entry, args)
    assert result.backend == "sys.settrace"
    assert (result.end, rows(result.frames)) == (end, expected)
    assert all(frame.line == LINES[frame.lineno - 1] for frame in result.frames)


def test_end_and_detail_say_how_the_call_ended():
    assert (trace_call(SOURCE, "factorial", [3]).end, trace_call(SOURCE, "factorial", [3]).detail) == ("returned", "6")
    raised = trace_call(SOURCE, "fail", [-1])
    assert (raised.end, raised.detail, raised.finished) == ("raised", "ValueError('negative')", True)
    assert raised.render().endswith(FRAME_SEP + END_OF_TEXT)


def test_unchanged_markers_resolve_to_the_real_values():
    """Every ".." the tracer writes resolves, by CWM's look-back, to the value the variable really had."""
    frames = trace_call(SOURCE, "caller", [-1]).frames
    resolved = resolve_locals(frames)
    assert resolved[2] == {"x": "-1"} and resolved[5] == {"x": "-1"} and resolved[9] == {"x": "-1"}
    assert resolved[10] == {"x": "-1", "r": "0"}
    gen = resolve_locals(trace_call(SOURCE, "use_gen", [4]).frames)
    assert gen[9] == {"n": "4", "total": "0", "v": "0"} and gen[22] == {"n": "4", "i": "3"}
    assert all(U not in values.values() for values in gen)


def test_the_callers_arguments_are_not_mutated():
    args = [[5]]
    trace_call(SOURCE, "grow", args)
    assert args == [[5]]


def test_keyword_arguments():
    assert rows(trace_call(SOURCE, "safe_div", {"b": 2, "a": 8}).frames)[0] == ("call", 14, {"a": "8", "b": "2"})


def test_non_terminating_function_ends_at_the_frame_bound():
    result = trace_call(SOURCE, "spin", limits=TraceLimits(max_frames=25))
    assert (result.end, len(result.frames), result.finished) == ("frame_limit", 25, False)
    assert "frame limit (25 frames)" in result.detail
    assert not result.render().endswith(END_OF_TEXT)
    assert rows(result.frames)[:4] == [("call", 96, {}), ("line", 97, {}), ("line", 98, {"n": "0"}),
                                       ("line", 99, {"n": U})]


def test_non_terminating_function_ends_at_the_timeout():
    result = trace_call(SOURCE, "spin", limits=TraceLimits(max_frames=10**9, timeout=0.3))
    assert result.end == "timeout" and "timeout (0.3 s)" in result.detail
    assert len(result.frames) > 100


def test_a_huge_repr_is_cut():
    result = trace_call(SOURCE, "big", [100_000], limits=TraceLimits(max_repr=40))
    s = result.frames[2].locals["s"]
    assert s == "'" + "x" * 39 + "...<99962 more characters>"
    assert result.detail == "100000"


def test_errors_before_the_call_are_reported_not_raised():
    assert trace_call(SOURCE, "nope").end == "error"
    broken = trace_call("raise SystemExit(3)\ndef f():\n    pass\n", "f")
    assert (broken.end, broken.detail) == ("error", "SystemExit: 3")


# -- the format ---------------------------------------------------------------------------------------------------


def test_token_strings_and_ids_are_cwms():
    assert [FRAME_SEP, ACTION_SEP, RETURN_SEP, CALL_SEP, LINE_SEP, EXCEPTION_SEP, ARG_SEP, TRACE_CONTEXT_START] == [
        f"<|{name}|>" for name in ("frame_sep", "action_sep", "return_sep", "call_sep", "line_sep",
                                   "exception_sep", "arg_sep", "trace_context_start")]
    assert [TOKEN_IDS[t] for t in (FRAME_SEP, ACTION_SEP, RETURN_SEP, CALL_SEP, LINE_SEP, EXCEPTION_SEP, ARG_SEP,
                                   TRACE_CONTEXT_START)] == list(range(128100, 128108))


def test_render_writes_cwms_frame_layout():
    frames = [Frame("call", "def f(x):", {"x": "1"}), Frame("line", "    y = x", {"x": ".."}),
              Frame("exception", "    y = x", value="KeyError('k')"), Frame("return", "    return y", value="'a'")]
    assert render(frames, finished=True) == (
        '<|call_sep|>{"x": "1"}<|action_sep|>def f(x):\n<|frame_sep|>'
        '<|line_sep|>{"x": ".."}<|action_sep|>    y = x\n<|frame_sep|>'
        '<|exception_sep|><|action_sep|>    y = x\n<|arg_sep|>"KeyError(\'k\')"<|frame_sep|>'
        '<|return_sep|><|action_sep|>    return y\n<|arg_sep|>"\'a\'"<|frame_sep|><|end_of_text|>')


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_render_parse_round_trip(case):
    entry, args, _, _ = EXPECTED[case]
    frames = trace_call(SOURCE, entry, args).frames
    for frame in frames:
        frame.lineno = None  # not part of CWM's format
    text = render(frames, finished=True)
    assert parse(text) == frames
    assert parse(trace_prompt(SOURCE, entry) + text) == frames


@pytest.mark.parametrize("chunk,why", [
    ("no event token here", "does not start with an event token"),
    ('<|line_sep|>{"x": "1"}    y = 1', "no action separator"),
    ('<|line_sep|>{x: 1}<|action_sep|>    y = 1', "locals are not JSON"),
    ('<|line_sep|>{"x": 1}<|action_sep|>    y = 1', "locals are not an object of strings"),
    ('<|line_sep|>["x"]<|action_sep|>    y = 1', "locals are not an object of strings"),
    ('<|line_sep|>{}<|action_sep|>    y = 1<|arg_sep|>"1"', "a line frame has a value"),
    ('<|return_sep|>{"x": "1"}<|action_sep|>    return x<|arg_sep|>"1"', "a return frame has locals"),
    ("<|return_sep|><|action_sep|>    return x", "a return frame has no value"),
    ("<|exception_sep|><|action_sep|>    f()<|arg_sep|>KeyError", "the value is not JSON"),
    ("<|return_sep|><|action_sep|>    return x<|arg_sep|>3", "the value is not a JSON string"),
])
def test_a_malformed_frame_becomes_a_marker(chunk, why):
    frame = parse_frame(chunk)
    assert (frame.event, frame.error, frame.line, frame.malformed) == ("malformed", why, chunk, True)


def test_parse_never_raises_and_keeps_the_good_frames():
    text = ('<|call_sep|>{"n": "3"}<|action_sep|>def f(n):\n<|frame_sep|>garbage<|frame_sep|>'
            '<|line_sep|>{"n": ".."}<|action_sep|>    return n\n<|frame_sep|><|end_of_text|><|line_sep|>ignored')
    frames = parse(text)
    assert [f.event for f in frames] == ["call", "malformed", "line"]
    assert frames[2] == Frame("line", "    return n", {"n": ".."})
    for junk in ["", FRAME_SEP * 3, "<|line_sep|><|action_sep|>", "<|arg_sep|>" * 2, "\x00{}", END_OF_TEXT]:
        parse(junk)


def test_the_prompt_marks_the_entry_as_cwm_does():
    prompt = trace_prompt(SOURCE, "closure")
    assert prompt.startswith("<|begin_of_text|><|trace_context_start|>def sum_to(n):\n")
    assert prompt.endswith("    return len(s)\n<|frame_sep|>")
    assert "\ndef closure(x):  # << START_OF_TRACE\n    add = make_adder(10)\n" in prompt
    assert prompt.count(START_MARKER) == 1
    method = mark_entry(SOURCE, "Box.bump", START_MARKER)
    assert "    def bump(self, d):  # << START_OF_TRACE\n" in method
    own = trace_prompt("def f():\n    pass", "f", TraceTexts(marker="  # ENTRY", prefix="<P>", suffix="<S>"))
    assert own == "<P>def f():  # ENTRY\n    pass<S>"
    with pytest.raises(ValueError, match="no function 'nope'"):
        trace_prompt(SOURCE, "nope")


# -- sys.monitoring (Python 3.12+) --------------------------------------------------------------------------------

NEWER_PYTHON_IMAGE = "cwm-eval/trace-check:trixie"  # Debian trixie's python3.13; see the README's trace section


@pytest.fixture(scope="module")
def newer_python_image():
    """Debian trixie's python3.13, built once with debootstrap like the base image (about a minute), then reused:
    the sys.monitoring backend is always tested, never skipped."""
    from harness.images import bootstrap_base

    return bootstrap_base(name=NEWER_PYTHON_IMAGE, suite="trixie")


def test_monitoring_backend_in_a_newer_python(newer_python_image):
    """sys.monitoring on Python 3.13 gives the same hand-written traces (one container, all cases at once)."""
    from harness.traces.run import TraceJob, run_in_container

    program = SOURCE + "\n\ndef all_cases():\n" + "".join(
        f"    try:\n        {entry}(*{args!r})\n    except ValueError:\n        pass\n"
        for entry, args, _, _ in EXPECTED.values())
    result = run_in_container(TraceJob(program, "all_cases", limits=TraceLimits(timeout=20)), newer_python_image)
    assert (result.backend, result.end) == ("sys.monitoring", "returned")
    got = [row for row in rows(result.frames) if row[1] <= len(LINES)]  # all_cases' own frames left out
    want = [row for _, _, _, expected in EXPECTED.values() for row in expected]
    assert got == want
