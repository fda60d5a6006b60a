"""One CruxEval-O sample: the runner's trial body. One model call (a chat turn, or a raw trace completion), the
predicted OUTPUT expression taken from the reply (answer.py), then evaluated and graded in a fresh container
(grader.py)."""

from __future__ import annotations

import asyncio

from harness.errors import UserError
from harness.model import ContextLimitExceeded, ModelReply
from harness.records import ExitStatus, Outcome, Usage, event
from harness.store import Trajectory
from harness.traces.format import END_OF_TEXT
from tasks.base import Task
from tasks.cruxeval.answer import Answer, parse_answer, trace_answer
from tasks.cruxeval.grader import grade
from tasks.livecodebench.codegen import CodegenAgent

TRACE_MAX_TOKENS = 16384  # a predicted trace of one CruxEval program is a few thousand tokens


def sampling_agent(runner) -> CodegenAgent:
    if not isinstance(runner.agent, CodegenAgent):
        raise UserError("this suite samples a model: use --agent cwm (with --model-url)")
    return runner.agent


def context_room(agent: CodegenAgent, config, prompt_tokens: int) -> int:
    context = min(config.cwm.context_size, agent.client.max_model_len or config.cwm.context_size)
    return min(config.cwm.max_action_len, context - prompt_tokens)


async def ask(agent: CodegenAgent, config, suite, task: Task, trajectory: Trajectory) -> ModelReply:
    """The one model call: a chat turn (plain) or a raw completion of CWM's trace prompt (trace)."""
    problem = suite.problem(task.id)
    counter = agent.counter()
    if suite.prompt_style == "plain":
        messages = suite.texts.messages(problem)
        for message in messages:
            trajectory.write(event("message", **message))
        limit = context_room(agent, config, sum(counter.message_count(m["role"], m["content"]) for m in messages))
        if limit <= 0:
            raise ContextLimitExceeded("the prompt fills the context")
        return await agent.client.chat(messages, limit)
    prompt = suite.texts.prompt(problem)
    trajectory.write(event("message", role="prompt", content=prompt))
    limit = min(TRACE_MAX_TOKENS, context_room(agent, config, counter.count(prompt)))
    if limit <= 0:
        raise ContextLimitExceeded("the prompt fills the context")
    return await agent.client.complete_text(prompt, limit, stop=[END_OF_TEXT])


async def sample_trial(suite, runner, task: Task, attempt: int, trajectory: Trajectory, phases) -> dict:
    agent = sampling_agent(runner)
    reply, answer, graded, error, status = None, None, None, None, ExitStatus.SUBMITTED
    with phases("generate"):
        try:
            reply = await ask(agent, runner.config, suite, task, trajectory)
        except ContextLimitExceeded:
            status = ExitStatus.CONTEXT_LIMIT
        except Exception as exc:  # noqa: BLE001 - the model server failed after its retries
            status, error = ExitStatus.INFRA_ERROR, f"{type(exc).__name__}: {exc}"
    if reply is not None:
        trajectory.write(event("message", role="assistant", content=reply.text, turn=1,
                               finish_reason=reply.finish_reason, completion_tokens=reply.completion_tokens))
        answer = (parse_answer(reply.text) if suite.prompt_style == "plain" else
                  trace_answer(reply.text, suite.texts.return_line(suite.problem(task.id))))
    if answer is not None and answer.output is not None:
        async with runner.grading_slot():
            with phases("verify"):
                try:
                    graded = await asyncio.to_thread(grade, suite.problem(task.id), answer.output, image=suite.image,
                                                     limits=runner.limits, timeout=suite.timeout)
                except Exception as exc:  # noqa: BLE001 - Docker, or a program of the dataset that fails
                    error = f"{type(exc).__name__}: {exc}"
    return finish(suite, reply, answer, graded, error, status, trajectory)


def finish(suite, reply: ModelReply | None, answer: Answer | None, graded: dict | None, error: str | None,
           status: ExitStatus, trajectory: Trajectory) -> dict:
    usage = Usage()
    if reply is not None:
        usage = Usage(model_calls=1, prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                      model_seconds=reply.latency)
    verifier: dict = {"prompt_style": suite.prompt_style, "finish_reason": reply.finish_reason if reply else None}
    if answer is not None:
        verifier.update(answer.model_dump(exclude_none=True))
    note = None
    if error is not None:
        outcome, status = Outcome.ERROR, ExitStatus.INFRA_ERROR
    elif graded is None:
        outcome = Outcome.UNRESOLVED
        note = "the prompt did not fit the context" if reply is None else answer.note
    else:
        verifier.update(graded)
        outcome = Outcome.RESOLVED if graded["passed"] else Outcome.UNRESOLVED
        note = graded.get("evaluation_error")  # the OUTPUT expression gave no value (grader.py)
    trajectory.write(event("end", exit_status=status.value, turns=int(reply is not None), outcome=outcome.value,
                           predicted=answer.output if answer else None))
    return {"outcome": outcome, "reward": 1.0 if outcome is Outcome.RESOLVED else 0.0, "exit_status": status,
            "turns": int(reply is not None), "usage": usage, "patch": answer.output if answer else None,
            "patch_note": note, "reason": note, "verifier": verifier, "error": error}
