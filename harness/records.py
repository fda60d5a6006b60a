"""Records that leave a trial: the result and the trajectory's events (JSON, readable by pandas)."""

from __future__ import annotations

import time
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field


class ExitStatus(str, Enum):
    """Why the agent stopped."""

    SUBMITTED = "submitted"  # submitted, then ended with a final response: the only ending that is graded
    SUBMITTED_NO_SUMMARY = "submitted_no_summary"  # (records of earlier versions only)
    TURN_LIMIT = "turn_limit"
    CONTEXT_LIMIT = "context_limit"
    FORMAT_ERROR_LIMIT = "format_error_limit"  # (records of earlier versions only)
    FORMAT_ERROR = "format_error"  # --strict-format (CWM's training mode): the first format error ends it
    TIMEOUT = "timeout"  # the trial's wall-clock limit
    ORACLE = "oracle"  # the reference solution was applied
    NO_ACTION = "no_action"  # an agent that does nothing
    INFRA_ERROR = "infra_error"  # the harness, Docker or the model server failed: not the model's fault


class Outcome(str, Enum):
    RESOLVED = "resolved"
    UNRESOLVED = "unresolved"
    ERROR = "error"  # infrastructure error: excluded from scores, retried on resume


class Usage(BaseModel):
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_seconds: float = 0.0
    command_seconds: float = 0.0
    setup_seconds: float = 0.0  # the agent's own setup in its container (CWM's tool plugins)


class TrialResult(BaseModel):
    run_id: str
    suite: str
    task_id: str
    attempt: int
    agent: str
    model: str | None = None
    config: str | None = None  # the agent configuration, as one readable label (report rows group by it)
    labels: dict[str, str] = Field(default_factory=dict)  # the task's labels: repo, category, difficulty...
    outcome: Outcome
    reward: float = 0.0
    exit_status: ExitStatus
    turns: int = 0
    format_errors: int = 0
    # counted by the runner (harness/tally.py); None in records written before they were
    commands: int | None = None  # tool calls the agent ran in its container
    submitted: bool | None = None  # the agent made a submission (graded only when the episode then ended properly)
    cut_off: int | None = None  # model replies that stopped at the token limit
    common_format_error: str | None = None  # the trial's most frequent format error
    usage: Usage = Field(default_factory=Usage)
    patch: str | None = None
    patch_note: str | None = None  # why a patch was not graded as-is (binary, too large, empty)
    reason: str | None = None  # why the trial is unresolved when the agent or its patch caused it (oom, pids, ...)
    flags: list[str] = Field(default_factory=list)  # e.g. "test_tampering": the patch touches test infrastructure
    verifier: dict[str, Any] = Field(default_factory=dict)
    phases: dict[str, float] = Field(default_factory=dict)  # seconds: prepare, start, setup, agent, close, collect, verify, remove
    error: str | None = None
    started_at: float
    ended_at: float
    wall_seconds: float

    @property
    def resolved(self) -> bool:
        return self.outcome is Outcome.RESOLVED

    @property
    def finished(self) -> bool:
        """A trial that ended in an infrastructure error is redone on resume."""
        return self.outcome is not Outcome.ERROR


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """One trajectory line: what happened, when."""
    return {"kind": kind, "time": round(time.time(), 6), **fields}
