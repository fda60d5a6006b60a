"""The codegen scenario, CWM's LiveCodeBench protocol: one prompt, n samples per problem, each graded on every test.

Each (problem, sample) is a trial of the runner, its attempt the sample's index, so resume, progress, executors and
the run's records are the runner's. A sample's trial is one model call with the protocol's prompt (no agent
container), the code extracted from the reply, then the public + private tests in a fresh container (network off)
of the clean image. pass@k over a problem's samples is in metrics.json (the suite's `finalize`) and the report.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from harness.errors import UserError
from harness.model import ContextLimitExceeded, ModelReply
from harness.records import ExitStatus, Outcome, Usage, event
from harness.store import Trajectory
from tasks.base import Task
from tasks.livecodebench.execute import execute_problem
from tasks.livecodebench.extract import extract_code, extraction_failure
from tasks.livecodebench.prompts import codegen_messages

AGENT = "codegen"
CWM_MAX_GEN = 65536 - 1024 - 2  # CWM's LCB environment: max_action_len 65536 less its answer-only budget


class CodegenAgent:
    """The codegen scenario's agent: the model a sample's one call goes to, built from the same options as the cwm
    agent (its client and token counter); it never works in a container."""

    name = AGENT

    def __init__(self, cwm_agent):
        self.client, self.config, self._counter = cwm_agent.client, cwm_agent.config, cwm_agent.counter()

    @property
    def model(self) -> str | None:
        return self.client.model

    def counter(self):
        return self._counter

    async def solve(self, env):
        raise UserError("the codegen agent samples LiveCodeBench problems only (--scenario codegen)")


def run_label(config, suite) -> str:
    s = config.sampling
    return f"codegen T={s.temperature:g} top_p={s.top_p:g} n={suite.samples} {suite.label}"


@dataclass
class Sample:
    reply: ModelReply | None = None
    code: str | None = None
    status: ExitStatus = ExitStatus.SUBMITTED
    error: str | None = None  # an infrastructure error: the sample is redone on resume
    executed: dict | None = None  # the tests' results, when the code ran


async def sample_trial(suite, runner, task: Task, attempt: int, trajectory: Trajectory, phases) -> dict:
    """One sample of `task`: the runner's trial body for the codegen scenario; returns the TrialResult's fields."""
    agent = runner.agent
    if not isinstance(agent, CodegenAgent):
        raise UserError("the codegen scenario samples a model: use --agent cwm (with --model-url), or "
                        "--scenario agentic")
    problem = suite.problem(task.id)
    messages = codegen_messages(problem, suite.texts, agent.counter())
    for message in messages:
        trajectory.write(event("message", **message))
    with phases("generate"):
        sample = await generate(agent, runner.config, suite.protocol, messages)
    if sample.reply is not None:
        reply = sample.reply
        trajectory.write(event("message", role="assistant", content=reply.text, turn=1,
                               **reply.model_dump(exclude={"text"}), tokens_per_second=round(reply.tokens_per_second, 2)))
        sample.code = extract_code(reply.text, suite.protocol)
    if sample.code is not None and sample.error is None:
        async with runner.grading_slot():
            with phases("execute"):
                try:
                    results = await asyncio.to_thread(execute_problem, problem, {str(attempt): sample.code},
                                                      image=suite.image, limits=runner.limits,
                                                      timeout=suite.timeout, protocol=suite.protocol)
                    sample.executed = results[str(attempt)]
                except Exception as exc:  # noqa: BLE001 - Docker or the test runner: the harness's failure
                    sample.error = f"{type(exc).__name__}: {exc}"
    return finish(sample, suite.protocol, trajectory)


def max_tokens(agent: CodegenAgent, config, protocol: str, messages: list[dict]) -> int:
    context = min(config.cwm.context_size, agent.client.max_model_len or config.cwm.context_size)
    prompt = sum(agent.counter().message_count(m["role"], m["content"]) for m in messages)
    cap = min(config.cwm.max_action_len, CWM_MAX_GEN if protocol == "cwm" else context)
    return min(cap, context - prompt)


async def generate(agent: CodegenAgent, config, protocol: str, messages: list[dict]) -> Sample:
    sample = Sample()
    try:
        limit = max_tokens(agent, config, protocol, messages)
        if limit <= 0:
            raise ContextLimitExceeded("the prompt fills the context")
        sample.reply = await agent.client.chat(messages, limit)
    except ContextLimitExceeded:
        sample.status = ExitStatus.CONTEXT_LIMIT
    except Exception as exc:  # noqa: BLE001 - the model server failed after its retries
        sample.status, sample.error = ExitStatus.INFRA_ERROR, f"{type(exc).__name__}: {exc}"
    return sample


def finish(sample: Sample, protocol: str, trajectory: Trajectory) -> dict:
    reply, usage = sample.reply, Usage()
    if reply is not None:
        usage = Usage(model_calls=1, prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                      model_seconds=reply.latency)
    verifier: dict = {"protocol": protocol, "extracted": sample.code is not None,
                      "finish_reason": reply.finish_reason if reply else None}
    note = None
    if sample.error is not None:
        outcome, status = Outcome.ERROR, ExitStatus.INFRA_ERROR
    elif sample.executed is None:  # no code to run: the context was full or the reply had no usable block
        outcome, status = Outcome.UNRESOLVED, sample.status
        note = "the prompt did not fit the context" if reply is None else extraction_failure(reply.text, protocol)
    else:
        verifier.update(sample.executed)
        outcome = Outcome.RESOLVED if sample.executed["passed"] else Outcome.UNRESOLVED
        status = sample.status
    turns = int(reply is not None)
    trajectory.write(event("end", exit_status=status.value, turns=turns, outcome=outcome.value,
                           tests_passed=verifier.get("tests_passed"), tests_total=verifier.get("tests_total")))
    return {"outcome": outcome, "reward": 1.0 if outcome is Outcome.RESOLVED else 0.0, "exit_status": status,
            "turns": turns, "usage": usage, "patch": sample.code, "patch_note": note, "verifier": verifier,
            "error": sample.error}
