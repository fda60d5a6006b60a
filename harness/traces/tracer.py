"""A tracer that writes CWM's execution traces: one frame per call, line, return and exception event.

Stdlib only, with `format.py` beside it: the two files are copied into a container and run there with its Python
(`python3 -m PKG.tracer REQUEST.json FRAMES.jsonl`; see `main`).

    TraceLimits(max_frames=10_000, max_repr=1_000, timeout=10.0)
    TraceResult(frames: list[Frame], end: str, detail: str = "", backend: str = "")
        end: "returned" | "raised" | "frame_limit" | "timeout" | "error" (the source or entry could not be used);
        detail: the return value's or exception's repr, or what stopped the trace; .finished, .render(), .to_dict()
    trace_call(source: str, entry: str, args: list | dict | None = None, limits: TraceLimits = TraceLimits(),
               filename: str = "<trace>", on_frame=None, backend: str | None = None) -> TraceResult

The source runs as a module (its top level untraced), then `entry(*args)` (a list) or `entry(**args)` (a dict) is
traced: every frame of a function defined in the source, nested calls included, from the entry's call to its
return; code of other files is not traced. Locals are `repr`s cut to max_repr characters; a local unchanged since
the previous frame of the same call is written as UNCHANGED (never after a return frame or another function's
frame, where CWM's look-back stops or would cross into another call). A function left by an exception ends with
its exception frame (no return frame). Events come from `sys.monitoring` on Python 3.12+, else `sys.settrace`.
In-process limits are checked at each event: code that catches BaseException can outlive them under
`sys.settrace`; run untrusted or unruly code through `harness.traces.run` (a container, killed at the timeout).
"""

from __future__ import annotations

import copy
import dis
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

try:
    from .format import UNCHANGED, Frame, render
except ImportError:  # run as a plain script beside format.py
    from format import UNCHANGED, Frame, render  # type: ignore[no-redef]

ENDS = ("returned", "raised", "frame_limit", "timeout", "error")
# The op at a settrace return event that returns or yields (3.12+: the RESUME after a YIELD_VALUE); at any other op
# the frame is unwinding an exception, and its exception frame was its last
NORMAL_EXITS = {"RETURN_VALUE", "RETURN_CONST", "YIELD_VALUE", "RESUME"}


@dataclass
class TraceLimits:
    max_frames: int = 10_000
    max_repr: int = 1_000
    timeout: float = 10.0


@dataclass
class TraceResult:
    frames: list[Frame] = field(default_factory=list)
    end: str = "returned"
    detail: str = ""
    backend: str = ""

    @property
    def finished(self) -> bool:
        return self.end in ("returned", "raised")

    def render(self) -> str:
        return render(self.frames, finished=self.finished)

    def to_dict(self) -> dict:
        return {"end": self.end, "detail": self.detail, "backend": self.backend,
                "frames": [frame.to_dict() for frame in self.frames]}

    @classmethod
    def from_dict(cls, data: dict) -> TraceResult:
        return cls(frames=[Frame.from_dict(f) for f in data.get("frames", [])], end=data["end"],
                   detail=data.get("detail", ""), backend=data.get("backend", ""))


class TraceStop(BaseException):
    """Raised into the traced code when a limit is reached (a BaseException, so `except Exception` lets it pass)."""


def safe_repr(value: object, limit: int) -> str:
    try:
        text = repr(value)
    except BaseException as exc:  # noqa: BLE001 - a user's __repr__ may raise anything
        text = f"<repr failed: {type(exc).__name__}>"
    if len(text) > limit:
        return f"{text[:limit]}...<{len(text) - limit} more characters>"
    return text


class Recorder:
    """Turns events into frames, with UNCHANGED for values unchanged within the current run of one call's frames."""

    def __init__(self, filename: str, source: str, limits: TraceLimits, on_frame: Callable[[Frame], None] | None):
        self.filename = filename
        self.lines = source.splitlines()
        self.limits = limits
        self.on_frame = on_frame
        self.frames: list[Frame] = []
        self.recording = False
        self.deadline = time.monotonic() + limits.timeout
        self.stopped: str | None = None  # the limit that stopped the trace
        self.run_frame = None  # the Python frame of the current run, and its values last written
        self.run_values: dict[str, str] = {}
        self.last_event: str | None = None

    def mine(self, code) -> bool:
        return code.co_filename == self.filename

    def check(self) -> None:
        if self.stopped is None and time.monotonic() > self.deadline:
            self.stopped = "timeout"
        if self.stopped is not None:
            raise TraceStop(self.stopped)

    def text(self, lineno: int | None) -> str:
        return self.lines[lineno - 1] if lineno and 0 < lineno <= len(self.lines) else ""

    def event(self, pyframe, event: str, lineno: int | None, value: object = None) -> None:
        self.check()
        if not self.recording:
            return
        new_run = event == "call" or self.run_frame is not pyframe or self.last_event == "return"
        if new_run:
            self.run_frame, self.run_values = pyframe, {}
        frame = Frame(event=event, line=self.text(lineno), lineno=lineno)
        if event in ("call", "line"):
            full = {name: safe_repr(v, self.limits.max_repr) for name, v in pyframe.f_locals.items()}
            frame.locals = {name: UNCHANGED if self.run_values.get(name) == v else v for name, v in full.items()}
            self.run_values.update(full)
        else:
            frame.value = safe_repr(value, self.limits.max_repr)
        self.last_event = event
        self.frames.append(frame)
        if self.on_frame is not None:
            self.on_frame(frame)
        if len(self.frames) >= self.limits.max_frames:
            self.stopped = "frame_limit"
            raise TraceStop(self.stopped)


# -- sys.settrace -------------------------------------------------------------------------------------------------


class SettraceBackend:
    name = "sys.settrace"

    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    def __enter__(self):
        sys.settrace(self.global_trace)
        return self

    def __exit__(self, *exc) -> None:
        sys.settrace(None)

    def global_trace(self, pyframe, event, arg):
        if not self.recorder.mine(pyframe.f_code):
            return None
        self.recorder.event(pyframe, "call", pyframe.f_lineno)
        return self.local_trace

    def local_trace(self, pyframe, event, arg):
        if event == "line":
            self.recorder.event(pyframe, "line", pyframe.f_lineno)
        elif event == "exception":
            self.recorder.event(pyframe, "exception", pyframe.f_lineno, arg[1])
        elif event == "return":
            code = pyframe.f_code
            if dis.opname[code.co_code[pyframe.f_lasti]] in NORMAL_EXITS:
                self.recorder.event(pyframe, "return", pyframe.f_lineno, arg)
            else:
                self.recorder.check()
        return self.local_trace


# -- sys.monitoring (3.12+) ---------------------------------------------------------------------------------------


class MonitoringBackend:
    name = "sys.monitoring"

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self.mon = sys.monitoring
        self.tool: int | None = None

    def callbacks(self) -> dict:
        events = self.mon.events
        return {events.PY_START: self.on_start, events.PY_RESUME: self.on_start, events.LINE: self.on_line,
                events.PY_RETURN: self.on_return, events.PY_YIELD: self.on_return, events.RAISE: self.on_raise,
                events.PY_UNWIND: self.on_unwind}

    def __enter__(self):
        for tool in (self.mon.DEBUGGER_ID, self.mon.PROFILER_ID, 3, 4):
            if self.mon.get_tool(tool) is None:
                self.tool = tool
                break
        else:
            raise RuntimeError("no free sys.monitoring tool id")
        self.mon.use_tool_id(self.tool, "cwm-eval trace")
        mask = 0
        for event, callback in self.callbacks().items():
            self.mon.register_callback(self.tool, event, callback)
            mask |= event
        self.mon.restart_events()
        self.mon.set_events(self.tool, mask)
        return self

    def __exit__(self, *exc) -> None:
        self.mon.set_events(self.tool, 0)
        for event in self.callbacks():
            self.mon.register_callback(self.tool, event, None)
        self.mon.free_tool_id(self.tool)

    def on_start(self, code, offset):
        if not self.recorder.mine(code):
            return self.mon.DISABLE
        pyframe = sys._getframe(1)
        self.recorder.event(pyframe, "call", pyframe.f_lineno or code.co_firstlineno)

    def on_line(self, code, lineno):
        if not self.recorder.mine(code):
            return self.mon.DISABLE
        self.recorder.event(sys._getframe(1), "line", lineno)

    def on_return(self, code, offset, value):
        if not self.recorder.mine(code):
            return self.mon.DISABLE
        pyframe = sys._getframe(1)
        self.recorder.event(pyframe, "return", pyframe.f_lineno, value)

    def on_raise(self, code, offset, exception):
        if self.recorder.mine(code) and not isinstance(exception, TraceStop):
            pyframe = sys._getframe(1)
            self.recorder.event(pyframe, "exception", pyframe.f_lineno, exception)

    def on_unwind(self, code, offset, exception):
        if self.recorder.mine(code) and not isinstance(exception, TraceStop):
            self.recorder.check()


def pick_backend(name: str | None):
    if name in (None, "sys.monitoring") and hasattr(sys, "monitoring"):
        return MonitoringBackend
    if name == "sys.monitoring":
        raise RuntimeError(f"sys.monitoring needs Python 3.12+, this is {sys.version.split()[0]}")
    return SettraceBackend


# -- the entry call -----------------------------------------------------------------------------------------------


def load_entry(source: str, entry: str, filename: str) -> Callable:
    namespace = {"__name__": "__traced__", "__file__": filename, "__builtins__": __builtins__}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - running the user's program is the point
    target = namespace
    for part in entry.split("."):
        target = target.get(part) if isinstance(target, dict) else getattr(target, part, None)
        if target is None:
            raise LookupError(f"the source defines no {entry!r}")
    if not callable(target):
        raise LookupError(f"{entry!r} is not callable")
    return target


def call_with(function: Callable, args: list | dict | None):
    if args is None:
        return function()
    if isinstance(args, dict):
        return function(**args)
    return function(*args)


def trace_call(source: str, entry: str, args: list | dict | None = None, limits: TraceLimits | None = None,
               filename: str = "<trace>", on_frame: Callable[[Frame], None] | None = None,
               backend: str | None = None) -> TraceResult:
    """Run `entry` of `source` with `args` under the tracer; see the module's docstring."""
    limits = limits or TraceLimits()
    recorder = Recorder(filename, source, limits, on_frame)
    chosen = pick_backend(backend)
    result = TraceResult(frames=recorder.frames, backend=chosen.name)
    with chosen(recorder):
        try:
            function = load_entry(source, entry, filename)
        except TraceStop:
            return stopped(result, recorder, "while the module's top level ran")
        except BaseException as exc:  # noqa: BLE001 - the user's module may raise anything
            result.end, result.detail = "error", f"{type(exc).__name__}: {exc}"
            return result
        args = copy.deepcopy(args)  # the program may mutate them
        recorder.recording = True
        try:
            value = call_with(function, args)
        except TraceStop:
            return stopped(result, recorder)
        except BaseException as exc:  # noqa: BLE001
            if recorder.stopped:
                return stopped(result, recorder)
            result.end, result.detail = "raised", safe_repr(exc, limits.max_repr)
            return result
        finally:
            recorder.recording = False
    if recorder.stopped:  # the program caught TraceStop and went on
        return stopped(result, recorder)
    result.end, result.detail = "returned", safe_repr(value, limits.max_repr)
    return result


def stopped(result: TraceResult, recorder: Recorder, where: str = "") -> TraceResult:
    result.end = recorder.stopped or "timeout"
    limits = recorder.limits
    result.detail = (f"stopped at the frame limit ({limits.max_frames} frames)" if result.end == "frame_limit"
                     else f"stopped at the timeout ({limits.timeout:g} s)") + (f" {where}" if where else "")
    return result


# -- script mode (in a container) ---------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """REQUEST.json ({source, entry, args, limits, filename, backend}) -> FRAMES.jsonl: one frame per line as it is
    recorded, then a last line {"end", "detail", "backend"}. The program's own output goes to stdout/stderr."""
    request_path, out_path = argv
    with open(request_path, encoding="utf-8") as handle:
        request = json.load(handle)
    with open(out_path, "w", encoding="utf-8") as out:
        def write(frame: Frame) -> None:
            out.write(json.dumps({"frame": frame.to_dict()}) + "\n")
            out.flush()

        try:
            result = trace_call(request["source"], request["entry"], request.get("args"),
                                TraceLimits(**request.get("limits", {})), request.get("filename", "<trace>"),
                                on_frame=write, backend=request.get("backend"))
        except RuntimeError as exc:
            result = TraceResult(end="error", detail=str(exc))
        out.write(json.dumps({"end": result.end, "detail": result.detail, "backend": result.backend}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
