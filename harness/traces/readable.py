"""Traces and debugger comparisons for people: one line per frame, with the values that changed."""

from __future__ import annotations

from harness.traces.format import UNCHANGED, Frame
from harness.traces.predict import DebuggerReport
from harness.traces.tracer import TraceResult

SOURCE_WIDTH = 44


def changes(frame: Frame) -> str:
    """What the frame says beyond its line: new or changed locals, or the returned or raised value."""
    if frame.malformed:
        return f"malformed: {frame.error}"
    if frame.event == "return":
        return f"-> {frame.value}"
    if frame.event == "exception":
        return f"!! {frame.value}"
    return ", ".join(f"{name}={value}" for name, value in frame.locals.items() if value != UNCHANGED)


def frame_line(index: int, frame: Frame) -> str:
    number = "" if frame.lineno is None else str(frame.lineno)
    source = frame.line if not frame.malformed else ""
    if len(source) > SOURCE_WIDTH:
        source = source[:SOURCE_WIDTH - 3] + "..."
    return f"{index:>4}  {frame.event:<9} {number:>4}  {source:<{SOURCE_WIDTH}}  {changes(frame)}".rstrip()


def end_line(result: TraceResult) -> str:
    how = {"returned": "returned", "raised": "raised", "frame_limit": "TRACE CUT: frame limit",
           "timeout": "TRACE CUT: timeout", "error": "error"}.get(result.end, result.end)
    return f"end: {how}: {result.detail}  ({len(result.frames)} frames, {result.backend or 'backend unknown'})"


def trace_text(result: TraceResult) -> str:
    header = f"{'#':>4}  {'event':<9} {'line':>4}  {'source':<{SOURCE_WIDTH}}  locals changed / value"
    return "\n".join([header, *(frame_line(i, f) for i, f in enumerate(result.frames)), end_line(result)])


def report_text(report: DebuggerReport, model: str) -> str:
    """The comparison: each predicted frame against the real one (a run of missing frames on one line), then the
    summary."""
    lines = [f"neural debugger: {model} continued the real trace after frame {report.given} "
             f"(of {report.real_frames}{'' if report.real_finished else ', cut'})"]
    checks = report.checks
    index = 0
    while index < len(checks):
        check = checks[index]
        if check.predicted is None:  # the model wrote no more frames: one line for the rest
            lines.append(f"{check.index:>4}-{checks[-1].index}  {check.difference}")
            break
        if check.match:
            lines.append(f"{check.index:>4}  ok      " + summary(check.index, check.predicted))
        else:
            lines.append(f"{check.index:>4}  DIFFERS ({check.difference})")
            if check.real is not None:
                lines.append("      real : " + summary(check.index, check.real))
            lines.append("      model: " + summary(check.index, check.predicted))
        index += 1
    divergence = report.first_divergence
    lines.append(f"first divergence: {'none' if divergence is None else f'frame {divergence}'}; "
                 f"frames matched: {report.matched}/{report.expected} (prefix {report.prefix_matched}); "
                 f"model ended the trace: {'yes' if report.model_ended else 'no'}; "
                 f"exact: {'yes' if report.exact else 'no'}")
    return "\n".join(lines)


def summary(index: int, frame: Frame) -> str:
    if frame.malformed:
        return f"malformed: {frame.line[:60]!r}"
    return f"{frame.event:<9} {frame.line.strip()[:SOURCE_WIDTH]:<{SOURCE_WIDTH}}  {changes(frame)}".rstrip()
