"""The suite interface: every benchmark is a plugin that loads tasks, prepares them and verifies a result."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from harness.sandbox import Sandbox


class Task(BaseModel):
    id: str
    suite: str
    instruction: str  # what the agent is asked (the issue text)
    image: str
    workdir: str = "/testbed"
    startup: str = ""  # bash run at every (re)start of the agent's shell, after CWM's start line, before `cd workdir`
    base_commit: str | None = None
    network: bool = False  # may the agent reach the network
    agent_timeout: float | None = None  # the task's own limit on the agent phase (seconds)
    verify_timeout: float | None = None  # the task's own limit on the tests
    labels: dict[str, str] = Field(default_factory=dict)  # for report breakdowns: repo, category, difficulty...
    metadata: dict[str, Any] = Field(default_factory=dict)  # the suite's own record of the task


class Verdict(BaseModel):
    resolved: bool
    reward: float
    details: dict[str, Any] = Field(default_factory=dict)  # the grader's report, as it wrote it
    infra_error: str | None = None  # set when the verifier could not run: not the model's fault


class Reference(BaseModel):
    """A task's reference solution: a patch to apply, or a script to run in the agent's container."""

    kind: Literal["patch", "script"]
    content: str
    timeout: float = 600.0


class Suite(Protocol):
    name: str
    # optional: agent_prompt = "issue" (default: fix and submit a patch) | "task" (do it in the container);
    # grading = "submission" (default: CWM's protocol) | "final_state" (graded however the episode ended);
    # start_verifier(task) -> a grading container starting while the agent works (its `close()` removes it), passed
    # to verify as `verifier=` (SWE-bench); trial = an async body `(runner, task, attempt, trajectory, phases) ->
    # TrialResult fields` that replaces the agent in a container (LiveCodeBench codegen: one model call per sample).
    # A suite holds no per-trial state (it is pickled to Ray workers): what a trial needs travels with it.

    def load(self, task_ids: list[str] | None = None) -> list[Task]:
        """The tasks, or exactly those named (unknown ids are an error)."""

    def prepare(self, task: Task) -> None:
        """Make sure the task's image exists (build or pull it)."""

    def setup(self, task: Task, sandbox: Sandbox) -> Any:
        """Ready a fresh agent container (e.g. scrub git history). What it returns, if not None, is the trial's own
        state (Terminal-Bench: its extra services), which the runner passes to `verify` as `state=`."""

    def reference_solution(self, task: Task) -> Reference:
        """The reference solution, for the oracle agent."""

    def verify(self, task: Task, patch: str, log_dir: Path, sandbox: Sandbox | None = None) -> Verdict:
        """Grade the trial, writing the grader's logs under `log_dir`.

        `sandbox` is the agent's container, still running, for suites that grade in place (Terminal-Bench);
        SWE-bench grades `patch` in a fresh container of the task image instead.
        """
