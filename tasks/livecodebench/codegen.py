"""The codegen scenario, CWM's LiveCodeBench protocol: one prompt, n samples, each graded on every test.

Per problem: the n samples are generated concurrently (the model pool bounds requests in flight), their code is
extracted, then ONE container (network off) runs every sample against the public + private tests. Results use the
runner's layout: trials/<question_id>/<sample>/result.json + trajectory.jsonl, run.json, and metrics.json with
pass@k per problem and overall. A re-run with the same run id keeps finished samples.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import RunConfig
from harness.index import ResultsIndex
from harness.conversation import CharEstimate, TokenCounter
from harness.model import ContextLimitExceeded, ModelClient, ModelReply
from harness.records import ExitStatus, Outcome, TrialResult, Usage, event
from harness.runner import environment_info
from harness.sandbox import host_capped
from harness.sandbox import CURRENT_TRIAL, remove_labelled
from harness.store import RunStore, Trajectory
from tasks.base import Task
from tasks.livecodebench.execute import execute_problem
from tasks.livecodebench.extract import extract_code, extraction_failure
from tasks.livecodebench.metrics import default_ks, metrics_line, write_metrics
from tasks.livecodebench.prompts import codegen_messages
from tasks.livecodebench.suite import LiveCodeBenchSuite

AGENT = "codegen"
CWM_MAX_GEN = 65536 - 1024 - 2  # CWM's LCB environment: max_action_len 65536 less its answer-only budget


@dataclass
class Sample:
    index: int
    started: float
    trajectory: Path  # appended to and closed at each event: thousands of samples wait on the model at once
    reply: ModelReply | None = None
    code: str | None = None
    status: ExitStatus = ExitStatus.SUBMITTED
    error: str | None = None  # an infrastructure error: the sample is redone on resume
    phases: dict[str, float] = field(default_factory=dict)

    def log(self, record: dict) -> None:
        with Trajectory(self.trajectory) as trajectory:
            trajectory.write(record)


class CodegenRun:
    def __init__(self, config: RunConfig, suite: LiveCodeBenchSuite, client: ModelClient, on_result=None,
                 counter: TokenCounter | None = None):
        self.config, self.suite, self.client = config, suite, client
        self.counter = counter or CharEstimate(config.cwm.chars_per_token)
        self.store = RunStore(config.output, config.run_id)
        self.index = ResultsIndex(config.output)
        self.on_result = on_result or (lambda result: None)
        self.metrics: dict = {}

    @property
    def label(self) -> str:
        s = self.config.sampling
        return f"codegen T={s.temperature:g} top_p={s.top_p:g} n={self.suite.samples} {self.suite.label}"

    def plan(self, tasks: list[Task]) -> tuple[list[tuple[Task, list[int]]], list[TrialResult]]:
        todo, done = [], []
        for task in tasks:
            missing = []
            for index in range(self.suite.samples):
                previous = self.store.result(task.id, index)
                if previous is not None and previous.finished:
                    done.append(previous)
                else:
                    missing.append(index)
            if missing:
                todo.append((task, missing))
        return todo, done

    async def run(self, tasks: list[Task]) -> list[TrialResult]:
        todo, done = self.plan(tasks)
        await asyncio.to_thread(remove_labelled, self.config.run_id)
        self.store.write_run({
            "run_id": self.config.run_id, "started_at": time.time(), "model": self.client.model, "agent": AGENT,
            "config": self.config.model_dump(mode="json"), "livecodebench": self.suite.describe(),
            **environment_info(),
        })
        for result in done:
            self.on_result(result)
        containers = asyncio.Semaphore(self.config.concurrency)
        try:
            batches = await asyncio.gather(*(self.problem(task, samples, containers) for task, samples in todo))
        finally:
            await asyncio.to_thread(remove_labelled, self.config.run_id)
        results = done + [result for batch in batches for result in batch]
        self.metrics = write_metrics(self.store.dir, results, default_ks(self.suite.samples))
        return results

    async def problem(self, task: Task, indices: list[int], containers: asyncio.Semaphore) -> list[TrialResult]:
        CURRENT_TRIAL.set((self.config.run_id, f"{task.id}/execute"))
        samples = await asyncio.gather(*(self.generate(task, index) for index in indices))
        codes = {str(s.index): s.code for s in samples if s.code is not None and s.error is None}
        executed, failure = {}, None
        if codes:
            async with containers:
                started = time.monotonic()
                try:
                    executed = await asyncio.to_thread(
                        execute_problem, self.suite.problem(task.id), codes, image=self.suite.image,
                        limits=host_capped(self.config.limits), timeout=self.suite.timeout,
                        protocol=self.suite.protocol)
                except Exception as exc:  # noqa: BLE001 - Docker or the runner: the harness's failure
                    failure = f"{type(exc).__name__}: {exc}"
                seconds = round(time.monotonic() - started, 6)
            for sample in samples:
                if str(sample.index) in codes:
                    sample.phases["execute"] = seconds
                    sample.error = sample.error or failure
        return [self.finish(task, sample, executed.get(str(sample.index))) for sample in samples]

    def max_tokens(self, messages: list[dict]) -> int:
        context = min(self.config.cwm.context_size, self.client.max_model_len or self.config.cwm.context_size)
        prompt = sum(self.counter.message_count(m["role"], m["content"]) for m in messages)
        cap = min(self.config.cwm.max_action_len, CWM_MAX_GEN if self.suite.protocol == "cwm" else context)
        return min(cap, context - prompt)

    async def generate(self, task: Task, index: int) -> Sample:
        with self.store.open_trajectory(task.id, index) as trajectory:  # an interrupted try's is kept aside
            sample = Sample(index=index, started=time.time(), trajectory=trajectory.path)
            messages = codegen_messages(self.suite.problem(task.id), self.suite.texts, self.counter)
            for message in messages:
                trajectory.write(event("message", **message))
        max_tokens = self.max_tokens(messages)
        started = time.monotonic()
        try:
            if max_tokens <= 0:
                raise ContextLimitExceeded("the prompt fills the context")
            sample.reply = reply = await self.client.chat(messages, max_tokens)
        except ContextLimitExceeded:
            sample.status = ExitStatus.CONTEXT_LIMIT
            return sample
        except Exception as exc:  # noqa: BLE001 - the model server failed after its retries
            sample.status, sample.error = ExitStatus.INFRA_ERROR, f"{type(exc).__name__}: {exc}"
            return sample
        finally:
            sample.phases["generate"] = round(time.monotonic() - started, 6)
        sample.log(event("message", role="assistant", content=reply.text, turn=1, **reply.model_dump(exclude={"text"}),
                         tokens_per_second=round(reply.tokens_per_second, 2)))
        sample.code = extract_code(reply.text, self.suite.protocol)
        return sample

    def finish(self, task: Task, sample: Sample, executed: dict | None) -> TrialResult:
        reply, usage = sample.reply, Usage()
        if reply is not None:
            usage = Usage(model_calls=1, prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                          model_seconds=reply.latency)
        verifier: dict = {"protocol": self.suite.protocol, "extracted": sample.code is not None,
                          "finish_reason": reply.finish_reason if reply else None}
        note = None
        if sample.error is not None:
            outcome, status = Outcome.ERROR, ExitStatus.INFRA_ERROR
        elif executed is None:  # no code to run: the context was full or the reply had no usable block
            outcome, status = Outcome.UNRESOLVED, sample.status
            note = ("the prompt did not fit the context" if reply is None
                    else extraction_failure(reply.text, self.suite.protocol))
        else:
            verifier.update(executed)
            outcome = Outcome.RESOLVED if executed["passed"] else Outcome.UNRESOLVED
            status = sample.status
        sample.log(event("end", exit_status=status.value, turns=int(reply is not None), outcome=outcome.value,
                         tests_passed=verifier.get("tests_passed"), tests_total=verifier.get("tests_total")))
        ended = time.time()
        result = TrialResult(
            run_id=self.config.run_id, suite=task.suite, task_id=task.id, attempt=sample.index, agent=AGENT,
            model=self.client.model, config=self.label, labels=task.labels, outcome=outcome,
            reward=1.0 if outcome is Outcome.RESOLVED else 0.0, exit_status=status, turns=int(reply is not None),
            usage=usage, patch=sample.code, patch_note=note, verifier=verifier, phases=sample.phases,
            error=sample.error, started_at=sample.started, ended_at=ended,
            wall_seconds=round(ended - sample.started, 3))
        self.store.write_result(result)
        self.index.upsert(result, self.store.trial_dir(task.id, sample.index) / "result.json")
        self.on_result(result)
        return result


def run_codegen(config: RunConfig, suite: LiveCodeBenchSuite, tasks: list[Task], agent, console) -> list[TrialResult]:
    """`cwm-eval run livecodebench --scenario codegen`: progress, summary, metrics and the report."""
    from harness.cli import run_interruptible
    from harness.errors import UserError
    from harness.progress import RunProgress, summary_table
    from harness.report import write_run_report
    from harness.sandbox import docker_client

    client = getattr(agent, "client", None)
    if client is None:
        raise UserError("the codegen scenario samples a model: use --agent cwm (with --model-url), or "
                        "--scenario agentic")
    docker_client()
    run_dir = config.output / config.run_id
    console.print(f"run [bold]{config.run_id}[/]: {len(tasks)} problems x {suite.samples} samples, codegen, "
                  f"model {client.model} -> {run_dir}")
    progress = RunProgress(len(tasks) * suite.samples, console)
    runner = CodegenRun(config, suite, client, on_result=progress.update, counter=agent.counter())

    results = run_interruptible(runner, tasks, progress, config.run_id)
    console.print(summary_table(results, f"{config.run_id} (livecodebench codegen)"))
    console.print(metrics_line(runner.metrics, run_dir / "metrics.json"))
    console.print(f"report: {write_run_report(run_dir)}")
    return results
