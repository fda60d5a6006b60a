"""CWM's execution-trace format: token strings, frames, rendering and tolerant parsing.

Stdlib only (the tracer that imports it is copied into containers and run with their Python).

    FRAME_SEP, ACTION_SEP, RETURN_SEP, CALL_SEP, LINE_SEP, EXCEPTION_SEP, ARG_SEP, TRACE_CONTEXT_START
    BEGIN_OF_TEXT, END_OF_TEXT, UNCHANGED (".."), START_MARKER, TOKEN_IDS
    Frame(event, line, locals={}, value=None, lineno=None, error=None)    event: call | line | return | exception
                                                                            (parse gives "malformed" + error)
    render(frames, finished=False) -> str      frames, each ending in FRAME_SEP; END_OF_TEXT when finished
    parse(text) -> list[Frame]                 never raises; a bad frame becomes Frame(event="malformed", ...)
    parse_frame(chunk) -> Frame                one frame's text (without its FRAME_SEP)
    TraceTexts(marker, prefix, suffix, origin); BUILTIN_TEXTS     the prompt's texts around the source
    trace_prompt(source, entry, texts=BUILTIN_TEXTS) -> str    prefix + source with the entry marked + suffix
    mark_entry(source, entry, marker=START_MARKER) -> str
    resolve_locals(frames) -> list[dict]       each frame's locals with UNCHANGED looked back as CWM's demo does

Format facts (CWM's PROMPTING_GUIDE.md and demos/cwmdbg.py; ../shared/reference/cwm-agent.md section 12):
a call or line frame is `SEP + json.dumps(locals) + ACTION_SEP + line`, a return or exception frame is
`SEP + ACTION_SEP + line + ARG_SEP + json.dumps(value)`; each frame ends in FRAME_SEP; locals map names to repr
strings, UNCHANGED standing for the value last written within the same call (looked back over line and exception
frames, stopping at a call or return frame); VALUE is the repr as a JSON string. The line is the source line with
its indentation; a trailing newline is written after it (inferred: the demo strips one before looking a predicted
line up in the source; see LINE_END).
"""

from __future__ import annotations

import ast
import json
from dataclasses import asdict, dataclass, field

BEGIN_OF_TEXT = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"
FRAME_SEP = "<|frame_sep|>"
ACTION_SEP = "<|action_sep|>"
RETURN_SEP = "<|return_sep|>"
CALL_SEP = "<|call_sep|>"
LINE_SEP = "<|line_sep|>"
EXCEPTION_SEP = "<|exception_sep|>"
ARG_SEP = "<|arg_sep|>"
TRACE_CONTEXT_START = "<|trace_context_start|>"
TOKEN_IDS = {BEGIN_OF_TEXT: 128000, END_OF_TEXT: 128001, FRAME_SEP: 128100, ACTION_SEP: 128101, RETURN_SEP: 128102,
             CALL_SEP: 128103, LINE_SEP: 128104, EXCEPTION_SEP: 128105, ARG_SEP: 128106, TRACE_CONTEXT_START: 128107}

UNCHANGED = ".."
START_MARKER = "  # << START_OF_TRACE"  # appended to the entry function's `def` line
LINE_END = "\n"

EVENTS = ("call", "line", "return", "exception")
EVENT_SEPS = {"call": CALL_SEP, "line": LINE_SEP, "return": RETURN_SEP, "exception": EXCEPTION_SEP}
SEP_EVENTS = {sep: event for event, sep in EVENT_SEPS.items()}
MALFORMED = "malformed"


@dataclass
class Frame:
    """One step of a trace. `locals` (call and line frames) maps names to repr strings or UNCHANGED; `value`
    (return and exception frames) is the repr of the returned value or raised exception. `lineno` is not part of
    CWM's format (the tracer knows it; a parsed frame does not). A frame `parse` could not read has event
    "malformed", its raw text in `line` and the reason in `error`."""

    event: str
    line: str
    locals: dict[str, str] = field(default_factory=dict)
    value: str | None = None
    lineno: int | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict) -> Frame:
        return cls(**{key: data[key] for key in ("event", "line", "locals", "value", "lineno", "error") if key in data})

    @property
    def malformed(self) -> bool:
        return self.event == MALFORMED


def render_frame(frame: Frame) -> str:
    """One frame in CWM's format, without its FRAME_SEP."""
    line = frame.line + LINE_END
    if frame.event in ("call", "line"):
        return f"{EVENT_SEPS[frame.event]}{json.dumps(frame.locals)}{ACTION_SEP}{line}"
    if frame.event in ("return", "exception"):
        return f"{EVENT_SEPS[frame.event]}{ACTION_SEP}{line}{ARG_SEP}{json.dumps(frame.value or '')}"
    raise ValueError(f"cannot render a {frame.event!r} frame")


def render(frames: list[Frame], finished: bool = False) -> str:
    """The frames in CWM's format, each ending in FRAME_SEP; END_OF_TEXT after them when the trace finished."""
    return "".join(render_frame(frame) + FRAME_SEP for frame in frames) + (END_OF_TEXT if finished else "")


def bad(chunk: str, why: str) -> Frame:
    return Frame(event=MALFORMED, line=chunk, error=why)


def parse_frame(chunk: str) -> Frame:
    """One frame's text (its FRAME_SEP left off); a frame that does not fit the format comes back malformed."""
    event = next((SEP_EVENTS[sep] for sep in SEP_EVENTS if chunk.startswith(sep)), None)
    if event is None:
        return bad(chunk, "does not start with an event token")
    body = chunk[len(EVENT_SEPS[event]):]
    if ACTION_SEP not in body:
        return bad(chunk, "no action separator")
    head, line = body.split(ACTION_SEP, 1)
    if event in ("call", "line"):
        if ARG_SEP in line:
            return bad(chunk, f"a {event} frame has a value")
        try:
            local_vars = json.loads(head)
        except ValueError:
            return bad(chunk, "locals are not JSON")
        if not isinstance(local_vars, dict) or not all(isinstance(v, str) for v in local_vars.values()):
            return bad(chunk, "locals are not an object of strings")
        return Frame(event=event, line=strip_line(line), locals=local_vars)
    if head:
        return bad(chunk, f"a {event} frame has locals")
    if ARG_SEP not in line:
        return bad(chunk, f"a {event} frame has no value")
    line, raw = line.split(ARG_SEP, 1)
    try:
        value = json.loads(raw)
    except ValueError:
        return bad(chunk, "the value is not JSON")
    if not isinstance(value, str):
        return bad(chunk, "the value is not a JSON string")
    return Frame(event=event, line=strip_line(line), value=value)


def strip_line(line: str) -> str:
    return line[:-len(LINE_END)] if line.endswith(LINE_END) else line


def parse(text: str) -> list[Frame]:
    """The frames of a trace (a whole prompt and trace, or frames alone); stops at END_OF_TEXT. Never raises."""
    if TRACE_CONTEXT_START in text:  # skip the prompt: source, then the FRAME_SEP that opens the trace
        text = text.split(TRACE_CONTEXT_START, 1)[1]
        text = text.split(FRAME_SEP, 1)[1] if FRAME_SEP in text else ""
    text = text.split(END_OF_TEXT, 1)[0]
    return [parse_frame(chunk) for chunk in text.split(FRAME_SEP) if chunk.strip()]


def entry_line(source: str, entry: str) -> int:
    """The 1-based line of `def entry` (a top-level function, or `Class.method`); ValueError when there is none."""
    tree = ast.parse(source)
    *owners, name = entry.split(".")
    body = tree.body
    for owner in owners:
        cls = next((node for node in body if isinstance(node, ast.ClassDef) and node.name == owner), None)
        if cls is None:
            raise ValueError(f"no class {owner!r} at the top of the source")
        body = cls.body
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node.lineno
    raise ValueError(f"no function {entry!r} in the source")


def mark_entry(source: str, entry: str, marker: str = START_MARKER) -> str:
    """The source with `marker` appended to the entry function's `def` line."""
    number = entry_line(source, entry)
    lines = source.splitlines(keepends=True)
    text = lines[number - 1]
    ending = text[len(text.rstrip("\r\n")):]
    lines[number - 1] = text.rstrip("\r\n") + marker + ending
    return "".join(lines)


@dataclass(frozen=True)
class TraceTexts:
    """What CWM's trace prompt has besides the source: the text before it, the text after it (the FRAME_SEP that
    opens the trace) and the entry marker. Built in: the format facts above; with --cwm-source they are read from
    the checkout's prompting guide and debugger demo (agents/cwm/cwm_source_traces.py: load_trace_texts)."""

    marker: str = START_MARKER
    prefix: str = BEGIN_OF_TEXT + TRACE_CONTEXT_START
    suffix: str = FRAME_SEP
    origin: str = "built-in (CWM's trace format as documented; no text loaded from a CWM checkout)"


BUILTIN_TEXTS = TraceTexts()


def trace_prompt(source: str, entry: str, texts: TraceTexts = BUILTIN_TEXTS) -> str:
    """CWM's trace-prediction prompt: BEGIN_OF_TEXT, TRACE_CONTEXT_START, the source (entry marked), FRAME_SEP."""
    return f"{texts.prefix}{mark_entry(source, entry, texts.marker)}{texts.suffix}"


def resolve_locals(frames: list[Frame]) -> list[dict[str, str]]:
    """Each frame's locals with UNCHANGED replaced by the value last written, looking back as CWM's demo does: over
    earlier frames until a call frame (included) or a return frame (excluded). Return and exception frames have none;
    a value that cannot be resolved stays UNCHANGED."""
    resolved: list[dict[str, str]] = []
    for index, frame in enumerate(frames):
        values = dict(frame.locals)
        for name, value in values.items():
            if value == UNCHANGED:
                values[name] = look_back(frames, resolved, index, name)
        resolved.append(values)
    return resolved


def look_back(frames: list[Frame], resolved: list[dict[str, str]], index: int, name: str) -> str:
    if frames[index].event == "call":
        return UNCHANGED
    for earlier in range(index - 1, -1, -1):
        if frames[earlier].event == "return":
            break
        value = resolved[earlier].get(name, UNCHANGED)
        if value != UNCHANGED:
            return value
        if frames[earlier].event == "call":
            break
    return UNCHANGED
