"""The runner: trials = tasks x attempts, each in its own container, under a concurrency limit.

A trial's result and trajectory are on disk as they happen; a re-run with the same run id skips
finished trials and redoes those that ended in an infrastructure error.
"""

from __future__ import annotations

import asyncio
import platform
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Callable

from agents.base import Agent, AgentResult, TrialEnv
from harness.config import RunConfig
from harness.index import ResultsIndex
from harness.outcomes import HARNESS_ERROR, Failure, FaultWatch, WatchedSession, classify
from harness.progress import harness_bug_warning
from harness.records import ExitStatus, Outcome, TrialResult, event
from harness.sandbox import CURRENT_TRIAL, Sandbox, host_capped, remove_labelled
from harness.session import BashSession, find_plugin_python, start_script
from harness.store import RunStore, Trajectory
from tasks.base import Suite, Task, Verdict

TAMPERING = "test_tampering"  # the verifier's flag of a patch that touches test infrastructure

MAX_PATCH_BYTES = 5_000_000


def environment_info() -> dict:
    versions = {}
    for package in ("cwm-eval", "swebench", "openai", "docker"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    return {"versions": versions, "git_sha": sha.stdout.strip() or None, "host": platform.node(),
            "python": platform.python_version()}


def patch_note(patch: str) -> str | None:
    if not patch.strip():
        return "empty patch"
    if "Binary files " in patch and " differ" in patch:
        return "the diff holds binary files, which git diff does not carry"
    if len(patch.encode()) > MAX_PATCH_BYTES:
        return f"patch is larger than {MAX_PATCH_BYTES} bytes"
    return None


def config_label(config: RunConfig, suite=None) -> str:
    """What distinguishes one agent configuration from another, in a few words."""
    own = getattr(suite, "run_label", None)  # a suite that samples the model itself (LiveCodeBench codegen)
    if callable(own) and own(config):
        return own(config)
    scoring = [name for name, on in (("grade-worktree", config.grade_worktree),
                                     ("reject-test-tampering", config.reject_test_tampering)) if on]
    if getattr(suite, "label", None):  # how the suite itself prompts or grades (LiveCodeBench's protocol)
        scoring.append(suite.label)
    if config.agent != "cwm":
        return " ".join([config.agent, *scoring])
    cwm, sampling = config.cwm, config.sampling
    parts = [f"cwm T={sampling.temperature:g} top_p={sampling.top_p:g} turns={cwm.max_turns}"]
    if cwm.tools != ["bash", "edit", "create", "submit"]:
        parts.append(f"tools={','.join(cwm.tools)}")
    if cwm.token_exact:
        parts.append("token-exact")
    if cwm.strict_format:
        parts.append("strict-format")
    if cwm.guided_format:
        parts.append("guided-format")
    parts += scoring
    parts.append("texts=cwm" if cwm.cwm_source else "texts=cwm-eval (not comparable to CWM)")
    return " ".join(parts)


def suite_info(suite) -> dict:
    """What run.json records about a suite that describes its own protocol (LiveCodeBench)."""
    describe = getattr(suite, "describe", None)
    return {getattr(suite, "name", "suite"): describe()} if callable(describe) else {}


def texts_info(agent) -> dict | None:
    """Whose prompts and messages the agent used: only CWM's own make the numbers comparable to CWM's."""
    texts = getattr(agent, "texts", None)
    if texts is None:
        return None
    return {"origin": texts.origin, "comparable_to_cwm": texts.comparable}


async def remove_containers(sandbox: Sandbox, verifier) -> None:
    """The agent's container and the grading container started for the trial (if any), removed side by side."""
    removals = [asyncio.to_thread(sandbox.remove)] + ([asyncio.to_thread(verifier.close)] if verifier else [])
    for outcome in await asyncio.gather(*removals, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


class Phases:
    """Wall-clock seconds per phase of a trial: `with phases("agent"): ...`."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.monotonic() - started, 6)


class Runner:
    def __init__(self, config: RunConfig, suite: Suite, agent: Agent,
                 on_result: Callable[[TrialResult], None] | None = None, executor=None):
        self.config = config
        self.executor = executor  # None: trials run here; else an async callable (task, attempt) -> TrialResult
        self.suite = suite
        self.agent = agent
        self.store = RunStore(config.output, config.run_id)
        self.index = ResultsIndex(config.output)
        self.on_result = on_result or (lambda result: None)
        self._image_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._starting: asyncio.Semaphore | None = None  # containers starting at once (made in the loop)
        self._grading: asyncio.Semaphore | None = None  # grading containers of trials without an agent container
        self.limits = host_capped(config.limits)

    def plan(self, tasks: list[Task]) -> tuple[list[tuple[Task, int]], list[TrialResult]]:
        """Trials still to run, and the results of those already finished (resume)."""
        todo, done = [], []
        for task in tasks:
            for attempt in range(self.config.attempts):
                previous = self.store.result(task.id, attempt)
                if previous is not None and previous.finished:
                    done.append(previous)
                else:
                    todo.append((task, attempt))
        return todo, done

    async def run(self, tasks: list[Task]) -> list[TrialResult]:
        todo, done = self.plan(tasks)
        await asyncio.to_thread(remove_labelled, self.config.run_id)  # left over by a killed earlier run
        self.store.write_run({
            "run_id": self.config.run_id, "started_at": time.time(), "model": self.agent.model,
            "agent": self.agent.name, "config": self.config.model_dump(mode="json"), **environment_info(),
            "texts": texts_info(self.agent), "grade_worktree": self.grades_worktree,
            "resources": {"trial_timeout": self.config.trial_timeout, **self.limits.model_dump()},
            **suite_info(self.suite),
        })
        for result in done:
            self.on_result(result)
        semaphore = asyncio.Semaphore(self.trials_at_once)

        async def limited(task: Task, attempt: int) -> TrialResult:
            async with semaphore:
                return await self.dispatch(task, attempt)

        try:
            results = await asyncio.gather(*(limited(task, attempt) for task, attempt in todo))
        finally:
            await asyncio.to_thread(remove_labelled, self.config.run_id, 60)
        warning = harness_bug_warning(results, self.store.dir)
        if warning:
            print(warning, file=sys.stderr)
        return done + list(results)

    async def dispatch(self, task: Task, attempt: int) -> TrialResult:
        """A trial here, or through the executor; either way its result is recorded here."""
        if self.executor is None:
            return await self.run_trial(task, attempt)
        started = time.time()
        try:
            result = await self.executor(task, attempt)
        except Exception as exc:  # noqa: BLE001 - a lost worker or node: the harness's failure, retried on resume
            result = self._result(task, attempt, started, outcome=Outcome.ERROR, exit_status=ExitStatus.INFRA_ERROR,
                                  error=f"{type(exc).__name__}: {exc}")
        self.record(result)
        return result

    def record(self, result: TrialResult) -> None:
        self.store.write_result(result)
        self.index.upsert(result, self.store.trial_dir(result.task_id, result.attempt) / "result.json")
        self.on_result(result)

    async def run_trial(self, task: Task, attempt: int) -> TrialResult:
        CURRENT_TRIAL.set((self.config.run_id, f"{task.id}/{attempt}"))
        started = time.time()
        trajectory = self.store.open_trajectory(task.id, attempt)
        phases = Phases()
        try:
            async with self._image_locks[task.image]:
                with phases("prepare"):
                    await asyncio.to_thread(self.suite.prepare, task)
            body = self._attempt if self.own_trial is None else self._own_trial
            result = await body(task, attempt, trajectory, started, phases)
        except Exception as exc:  # noqa: BLE001 - before the agent acted: never the model's fault
            result = self._failed(task, attempt, started, phases, trajectory, classify(exc), None)
        finally:
            trajectory.close()
        result = result.model_copy(update=trajectory.tally.fields())  # what its trajectory showed: commands run, ...
        self.record(result)
        return result

    async def _attempt(self, task: Task, attempt: int, trajectory: Trajectory, started: float,
                       phases: Phases) -> TrialResult:
        if self._starting is None:
            self._starting = asyncio.Semaphore(self.config.max_starting_containers)
        with phases("start"):
            async with self._starting:
                sandbox = await asyncio.to_thread(Sandbox.start, task.image, workdir=task.workdir,
                                                  limits=self.limits,
                                                  network=task.network or self.config.network)
        watch = FaultWatch(sandbox, trajectory)
        session, agent_result, verifying, verifier = None, None, False, None
        watch.start()
        try:
            verifier = self.start_verifier(task)  # the grading container starts while the agent works
            with phases("setup"):
                state = await asyncio.to_thread(self.suite.setup, task, sandbox)  # the trial's, for verify
                session = WatchedSession(await asyncio.to_thread(self.start_session, task, sandbox), watch)
            env = TrialEnv(task=task, suite=self.suite, sandbox=sandbox, session=session, trajectory=trajectory)
            with phases("agent"):
                try:
                    agent_result = await asyncio.wait_for(self.agent.solve(env), self.agent_timeout(task))
                except TimeoutError:
                    agent_result = AgentResult(exit_status=ExitStatus.TIMEOUT)
            with phases("close"):  # the shell's end: its stream, and the processes its last command left
                session.close()
            with phases("collect"):
                patch = agent_result.submitted_patch or ""
                if not patch and self.grades_worktree:
                    patch = await asyncio.to_thread(sandbox.git_diff, task.base_commit)
                await asyncio.to_thread(watch.check_container)
            verifying = True
            log_dir = self.store.trial_dir(task.id, attempt) / "verifier"
            with phases("verify"):  # a suite that grades in place uses the agent's container, still running
                verdict = await asyncio.to_thread(self.grade, task, agent_result, patch, log_dir, sandbox, verifier,
                                                  state)
        except Exception as exc:  # noqa: BLE001 - classified: the agent's doing, the infrastructure's, or a bug
            # once the agent ran a command, a step in its container may fail because of what the agent did there
            in_agent_container = watch.acted and (self.grades_in_place or not verifying)
            failure = await asyncio.to_thread(classify, exc, watch if in_agent_container else None)
            return self._failed(task, attempt, started, phases, trajectory, failure, agent_result)
        finally:
            with phases("remove"):  # the container's watch, its shell if still open, then the containers
                watch.stop()
                if session is not None:
                    session.close()
                await remove_containers(sandbox, verifier)
        return self._scored(task, attempt, started, phases, agent_result, patch, verdict, watch.reason())

    @property
    def grades_in_place(self) -> bool:
        """The suite verifies in the agent's container (Terminal-Bench), where the agent may have broken things."""
        return getattr(self.suite, "grading", "submission") == "final_state"

    def _scored(self, task: Task, attempt: int, started: float, phases: Phases, agent_result: AgentResult,
                patch: str, verdict: Verdict, faults: str | None) -> TrialResult:
        details = verdict.details
        flags = list(dict.fromkeys(details.get("flags") or []))
        rejected = self.config.reject_test_tampering and TAMPERING in flags
        if verdict.infra_error:
            outcome = Outcome.ERROR
        else:
            outcome = Outcome.RESOLVED if verdict.resolved and not rejected else Outcome.UNRESOLVED
        reason = None
        if outcome is Outcome.UNRESOLVED:
            parts = [faults, details.get("reason"), "test tampering" if rejected else None]
            reason = "; ".join(dict.fromkeys(p for p in parts if p)) or None
        return self._result(task, attempt, started, outcome=outcome, exit_status=agent_result.exit_status,
                            reward=0.0 if rejected else verdict.reward, turns=agent_result.turns,
                            format_errors=agent_result.format_errors, usage=agent_result.usage, patch=patch,
                            submitted=agent_result.submitted_patch is not None,
                            patch_note=patch_note(patch), verifier=details, reason=reason, flags=flags,
                            error=verdict.infra_error, phases=phases.seconds)

    def _failed(self, task: Task, attempt: int, started: float, phases: Phases, trajectory: Trajectory,
                failure: Failure, agent_result: AgentResult | None) -> TrialResult:
        """A trial ended by an exception: unresolved when the agent caused it, else an error (logged in full)."""
        if failure.outcome is Outcome.ERROR:
            trajectory.write(event("error", error=failure.error, harness_bug=HARNESS_ERROR in failure.flags))
        fields = {}
        if agent_result is not None:
            fields = {"turns": agent_result.turns, "format_errors": agent_result.format_errors,
                      "usage": agent_result.usage, "patch": agent_result.submitted_patch,
                      "submitted": agent_result.submitted_patch is not None}
        if failure.outcome is Outcome.ERROR:
            status = ExitStatus.INFRA_ERROR
        else:  # the agent broke its environment; NO_ACTION only when the agent itself did not return
            status = agent_result.exit_status if agent_result is not None else ExitStatus.NO_ACTION
        return self._result(task, attempt, started, outcome=failure.outcome, exit_status=status,
                            reason=failure.reason, flags=failure.flags, error=failure.error,
                            phases=phases.seconds, **fields)

    @property
    def grades_worktree(self) -> bool:
        """The work tree's diff stands in for a missing submission: opted in, or an agent that edits in place."""
        return self.config.grade_worktree or getattr(self.agent, "grades_worktree", False)

    def start_verifier(self, task: Task):
        """The suite's grading container, started now so that grading does not wait for one (SWE-bench); else None."""
        start = getattr(self.suite, "start_verifier", None)
        return start(task) if start is not None else None

    def grade(self, task: Task, agent_result: AgentResult, patch: str, log_dir: Path, sandbox: Sandbox,
              verifier=None, state=None) -> Verdict:
        """CWM's protocol: a submission is graded only when the episode ended after it as CWM ends it.

        Suites graded on the container's final state (Terminal-Bench) are graded however the episode ended, as their
        own harness does. An empty patch fails without running the tests; an oversized one is recorded, not graded.
        """
        final_state = getattr(self.suite, "grading", "submission") == "final_state"
        if not (final_state or agent_result.graded or self.grades_worktree):
            return Verdict(resolved=False, reward=0.0, details={
                "graded": False, "reason": f"the episode ended with {agent_result.exit_status.value}, not with a "
                                           "final reply after a submission"})
        if not final_state and not patch.strip():
            return Verdict(resolved=False, reward=0.0, details={"graded": False, "reason": "empty patch"})
        graded = "" if len(patch.encode()) > MAX_PATCH_BYTES else patch  # recorded with its note, not graded
        extra = {name: value for name, value in (("verifier", verifier), ("state", state)) if value is not None}
        return self.suite.verify(task, graded, log_dir, sandbox, **extra)

    def start_session(self, task: Task, sandbox: Sandbox) -> BashSession:
        """The agent's shell, started as CWM starts it (the same script again at every restart)."""
        script = start_script(task.workdir, task.startup, find_plugin_python(sandbox))
        return sandbox.session(self.config.cwm.command_timeout, start_script=script)

    def agent_timeout(self, task: Task) -> float:
        """The task's own agent limit (scaled), capped by the run's per-trial limit."""
        if task.agent_timeout is None:
            return self.config.trial_timeout
        return min(self.config.trial_timeout, task.agent_timeout * self.config.agent_timeout_multiplier)

    def _result(self, task: Task, attempt: int, started: float, **fields) -> TrialResult:
        ended = time.time()
        return TrialResult(run_id=self.config.run_id, suite=task.suite, task_id=task.id, attempt=attempt,
                           agent=self.agent.name, model=self.agent.model, config=config_label(self.config, self.suite),
                           labels=task.labels, started_at=started, ended_at=ended,
                           wall_seconds=round(ended - started, 3), **fields)

    # --- trials that are not an agent in a container (LiveCodeBench codegen: one model call per sample) ---------

    @property
    def own_trial(self):
        """The suite's own trial body, `await body(runner, task, attempt, trajectory, phases) -> TrialResult fields`,
        or None: the agent works in a container. Such a trial holds a container only to grade (`grading_slot`)."""
        return getattr(self.suite, "trial", None)

    @property
    def trials_at_once(self) -> int:
        """--concurrency trials; trials of the suite's own body hold no container while the model samples, so up
        to --max-model-requests more are sampling meanwhile (their containers stay bounded by --concurrency)."""
        extra = self.config.max_model_requests if self.own_trial is not None else 0
        return self.config.concurrency + extra

    def grading_slot(self) -> asyncio.Semaphore:
        if self._grading is None:
            self._grading = asyncio.Semaphore(self.config.concurrency)
        return self._grading

    async def _own_trial(self, task: Task, attempt: int, trajectory: Trajectory, started: float,
                         phases: Phases) -> TrialResult:
        fields = await self.own_trial(self, task, attempt, trajectory, phases)
        return self._result(task, attempt, started, **{"phases": phases.seconds, **fields})
