"""One trace-prediction sample: the runner's trial body.

The real trace comes first, from the tracer in a fresh container with the network off (once per program and
process). Then, as CWM's debugger demo does, one raw completion per frame: the prompt is CWM's trace prompt, the
real entry call frame and every frame predicted so far (re-rendered from its parsed form, as the demo re-encodes
it); each reply is cut at the frame separator. The model stops at the end-of-trace token, a malformed frame or the
frame bound (one more than the real frames left, so a trace that does not end where the real one does shows it).
"""

from __future__ import annotations

import asyncio

from harness.errors import UserError
from harness.model import ContextLimitExceeded, ModelReply
from harness.records import ExitStatus, Outcome, Usage, event
from harness.store import Trajectory
from harness.traces.format import END_OF_TEXT, FRAME_SEP, TOKEN_IDS, Frame, parse_frame, render, render_frame, \
    trace_prompt
from harness.traces.run import TraceJob, run_in_container
from harness.traces.tracer import TraceResult
from tasks.base import Task
from tasks.livecodebench.codegen import CodegenAgent
from tasks.trace_prediction.scoring import GIVEN, score

FRAME_MAX_TOKENS = 2048  # CWM's demo asks for at most this many tokens per frame


def sampling_agent(runner) -> CodegenAgent:
    if not isinstance(runner.agent, CodegenAgent):
        raise UserError("this suite samples a model: use --agent cwm (with --model-url)")
    return runner.agent


def is_end(reply: ModelReply) -> bool:
    """The model ended the trace: the end-of-trace token as text (vLLM keeps the stop string), or as the last id, or
    an empty reply that stopped (a server that drops the stop string)."""
    text = reply.text.strip()
    if text.startswith(END_OF_TEXT):
        return True
    ids = reply.completion_token_ids or []
    return not text and (reply.finish_reason == "stop" or (bool(ids) and ids[-1] == TOKEN_IDS[END_OF_TEXT]))


def read_frame(reply: ModelReply) -> Frame:
    chunk = reply.text.split(FRAME_SEP, 1)[0].split(END_OF_TEXT, 1)[0]
    return parse_frame(chunk)


async def real_trace(suite, runner, task: Task) -> TraceResult:
    cached = suite.real_traces.get(task.id)
    if cached is None:
        program = suite.program(task.id)
        job = TraceJob(source=program.code, entry=program.entry, args=program.args, limits=suite.limits)
        async with runner.grading_slot():
            cached = await asyncio.to_thread(run_in_container, job, suite.image)
        suite.real_traces[task.id] = cached
    return cached


async def predict(agent: CodegenAgent, prompt: str, bound: int, trajectory: Trajectory) -> tuple[list[Frame], bool,
                                                                                                 Usage]:
    """Frames predicted one request at a time from `prompt`; (frames, ended, usage)."""
    frames, usage = [], Usage()
    for step in range(bound):
        try:
            reply = await agent.client.complete_text(prompt, FRAME_MAX_TOKENS, stop=[FRAME_SEP, END_OF_TEXT])
        except ContextLimitExceeded:  # the trace so far fills the context: scored as predicted up to here
            trajectory.write(event("context_limit", frames=len(frames)))
            break
        usage = Usage(model_calls=usage.model_calls + 1, prompt_tokens=usage.prompt_tokens + reply.prompt_tokens,
                      completion_tokens=usage.completion_tokens + reply.completion_tokens,
                      model_seconds=usage.model_seconds + reply.latency)
        trajectory.write(event("message", role="assistant", content=reply.text, turn=step + 1,
                               finish_reason=reply.finish_reason, completion_tokens=reply.completion_tokens))
        if is_end(reply):
            return frames, True, usage
        frame = read_frame(reply)
        frames.append(frame)
        if frame.malformed:
            break
        prompt += render_frame(frame) + FRAME_SEP
    return frames, False, usage


async def sample_trial(suite, runner, task: Task, attempt: int, trajectory: Trajectory, phases) -> dict:
    agent = sampling_agent(runner)
    program = suite.program(task.id)
    with phases("trace"):
        try:
            real = await real_trace(suite, runner, task)
        except Exception as exc:  # noqa: BLE001 - Docker: the harness's failure
            return failed(f"the real trace could not be run: {type(exc).__name__}: {exc}", trajectory)
    if not real.finished or len(real.frames) < GIVEN:
        return failed(f"the program's real trace did not finish ({real.end}: {real.detail})", trajectory)
    prompt = trace_prompt(program.code, program.entry, suite.texts) + render(real.frames[:GIVEN])
    trajectory.write(event("message", role="prompt", content=prompt))
    with phases("generate"):
        try:
            frames, ended, usage = await predict(agent, prompt, len(real.frames) - GIVEN + 1, trajectory)
        except Exception as exc:  # noqa: BLE001 - the model server failed after its retries
            return failed(f"{type(exc).__name__}: {exc}", trajectory)
    details = score(real.frames, frames, ended, suite.texts.marker)
    exact = details["metrics"]["exact_match"] == 1.0
    outcome = Outcome.RESOLVED if exact else Outcome.UNRESOLVED
    reason = None if exact else f"frame {details['divergence']['frame']}: {details['divergence']['why']}"
    trajectory.write(event("end", exit_status=ExitStatus.SUBMITTED.value, turns=usage.model_calls,
                           outcome=outcome.value, **details["metrics"]))
    return {"outcome": outcome, "reward": details["metrics"]["prefix_accuracy"], "exit_status": ExitStatus.SUBMITTED,
            "turns": usage.model_calls, "usage": usage, "patch": predicted_text(frames, ended), "reason": reason,
            "verifier": {**details, "real_end": real.end, "tracer": real.backend}}


def predicted_text(frames: list[Frame], ended: bool) -> str:
    """The predicted trace in CWM's format (a malformed frame as the model wrote it), for the record."""
    text = "".join((f.line if f.malformed else render_frame(f)) + FRAME_SEP for f in frames)
    return text + (END_OF_TEXT if ended else "")


def failed(error: str, trajectory: Trajectory) -> dict:
    trajectory.write(event("end", exit_status=ExitStatus.INFRA_ERROR.value, outcome=Outcome.ERROR.value))
    return {"outcome": Outcome.ERROR, "exit_status": ExitStatus.INFRA_ERROR, "error": error}
