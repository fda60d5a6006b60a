"""What every agent gets (the trial's environment) and gives back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, Field

from harness.records import ExitStatus, Usage
from harness.sandbox import Sandbox
from harness.session import BashSession
from harness.store import Trajectory
from tasks.base import Suite, Task


@dataclass
class TrialEnv:
    task: Task
    suite: Suite
    sandbox: Sandbox
    session: BashSession
    trajectory: Trajectory


class AgentResult(BaseModel):
    exit_status: ExitStatus
    submitted_patch: str | None = None  # the last successful submission
    graded: bool = False  # the episode ended so that its submission is graded (CWM: a final reply after a submit)
    turns: int = 0
    format_errors: int = 0
    usage: Usage = Field(default_factory=Usage)


class Agent(Protocol):
    name: str
    model: str | None

    async def solve(self, env: TrialEnv) -> AgentResult: ...
