"""The neural debugger: give a model the real trace up to frame N and compare its continuation, frame by frame.

As CWM's debugger demo does, the model writes one frame per request: the prompt is CWM's trace prompt plus the frames
so far, the reply stops at FRAME_SEP, and END_OF_TEXT (or an empty reply) ends the trace. The model's frames are
appended to the prompt as it wrote them (free running, not corrected), so the comparison shows where its simulation
of the program first leaves the real execution.

    Completer = async (prompt: str) -> (text, finish_reason)
    continue_trace(prompt, given: list[Frame], complete, max_new) -> Continuation
    compare(real, real_finished, given, continuation, marker) -> DebuggerReport
    frame_difference(real, real_locals, predicted, predicted_locals, marker) -> str   ("" when they match)

Frames match when event, source line (trailing spaces and the entry marker left aside), locals (with UNCHANGED
resolved by CWM's look-back) and value are equal; object addresses in reprs (`at 0x7f...`) are left aside.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from harness.traces.format import END_OF_TEXT, FRAME_SEP, START_MARKER, Frame, bad, parse_frame, render, \
    resolve_locals

ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")  # object addresses in default reprs differ from run to run
Completer = Callable[[str], Awaitable[tuple[str, str | None]]]


@dataclass
class Continuation:
    frames: list[Frame] = field(default_factory=list)
    ended: bool = False  # the model ended the trace (END_OF_TEXT, or nothing more)
    replies: list[str] = field(default_factory=list)


@dataclass
class FrameCheck:
    index: int  # the frame's position in the whole trace (0-based)
    real: Frame | None
    predicted: Frame | None
    difference: str  # "" when the frames match

    @property
    def match(self) -> bool:
        return not self.difference

    def to_dict(self) -> dict:
        return {"index": self.index, "match": self.match, "difference": self.difference,
                "real": self.real.to_dict() if self.real else None,
                "predicted": self.predicted.to_dict() if self.predicted else None}


@dataclass
class DebuggerReport:
    given: int
    real_frames: int
    real_finished: bool
    model_ended: bool
    checks: list[FrameCheck]

    @property
    def first_divergence(self) -> int | None:
        """The index of the first frame that differs (a missing or extra frame included), or None."""
        wrong = next((check.index for check in self.checks if not check.match), None)
        if wrong is None and self.real_finished and not self.model_ended and len(self.checks) == self.expected:
            return self.given + len(self.checks)  # right frames, then it did not end where the program did
        return wrong

    @property
    def expected(self) -> int:
        return self.real_frames - self.given

    @property
    def matched(self) -> int:
        return sum(check.match for check in self.checks)

    @property
    def prefix_matched(self) -> int:
        divergence = self.first_divergence
        return self.expected if divergence is None else min(self.expected, divergence - self.given)

    @property
    def exact(self) -> bool:
        return self.first_divergence is None

    def to_dict(self) -> dict:
        return {"given": self.given, "real_frames": self.real_frames, "real_finished": self.real_finished,
                "model_ended": self.model_ended, "first_divergence": self.first_divergence,
                "matched": self.matched, "prefix_matched": self.prefix_matched, "expected": self.expected,
                "exact": self.exact, "frames": [check.to_dict() for check in self.checks]}


def reply_frame(text: str, finish_reason: str | None) -> tuple[Frame | None, bool]:
    """The frame in one reply (None when there is none) and whether the model ended the trace."""
    ended = END_OF_TEXT in text
    text = text.split(END_OF_TEXT, 1)[0]
    text = text[:-len(FRAME_SEP)] if text.endswith(FRAME_SEP) else text
    if not text.strip():
        return None, True
    if finish_reason == "length":
        return bad(text, "cut at the token limit"), False
    return parse_frame(text), ended


async def continue_trace(prompt: str, given: list[Frame], complete: Completer, max_new: int) -> Continuation:
    """Up to `max_new` frames from the model after `given`; stops when it ends the trace or writes a malformed
    frame."""
    text = prompt + render(given)
    result = Continuation()
    while len(result.frames) < max_new:
        reply, finish_reason = await complete(text)
        result.replies.append(reply)
        frame, ended = reply_frame(reply, finish_reason)
        if frame is not None:
            result.frames.append(frame)
            text += render([frame]) if not frame.malformed else ""
        if ended or frame is None or frame.malformed:
            result.ended = ended
            break
    return result


def norm_line(line: str, marker: str) -> str:
    line = line.rstrip()
    return line[:-len(marker.rstrip())].rstrip() if marker.strip() and line.endswith(marker.strip()) else line


def same_repr(real: str | None, predicted: str | None) -> bool:
    if real is None or predicted is None:
        return real is predicted
    return ADDRESS.sub("0x", real) == ADDRESS.sub("0x", predicted)


def frame_difference(real: Frame, real_locals: dict, predicted: Frame, predicted_locals: dict,
                     marker: str = START_MARKER) -> str:
    if predicted.malformed:
        return f"malformed ({predicted.error})"
    if real.event != predicted.event:
        return f"event: {predicted.event} for {real.event}"
    if norm_line(real.line, marker) != norm_line(predicted.line, marker):
        return "line"
    for name in sorted(set(real_locals) | set(predicted_locals)):
        if not same_repr(real_locals.get(name), predicted_locals.get(name)):
            return f"local {name}"
    if not same_repr(real.value, predicted.value):
        return "value"
    return ""


def compare(real: list[Frame], real_finished: bool, given: int, continuation: Continuation,
            marker: str = START_MARKER) -> DebuggerReport:
    predicted = real[:given] + continuation.frames
    real_locals, predicted_locals = resolve_locals(real), resolve_locals(predicted)
    checks = []
    last = max(len(real), len(predicted)) if real_finished else len(real)  # past a cut trace nothing is known
    for index in range(given, last):
        have_real, have_predicted = index < len(real), index < len(predicted)
        if have_real and have_predicted:
            why = frame_difference(real[index], real_locals[index], predicted[index], predicted_locals[index], marker)
        elif have_real:
            why = "missing (the model ended the trace)" if continuation.ended else "missing (no prediction)"
        else:
            why = "extra (the program had ended)"
        checks.append(FrameCheck(index, real[index] if have_real else None,
                                 predicted[index] if have_predicted else None, why))
    return DebuggerReport(given=given, real_frames=len(real), real_finished=real_finished,
                          model_ended=continuation.ended, checks=checks)
