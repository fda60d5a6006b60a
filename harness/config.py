"""A run's configuration: what to run, with which agent and model, and under which limits."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr

from agents.cwm.config import CwmConfig
from harness.sampling import Sampling
from harness.sandbox import Limits


def default_run_id(suite: str, agent: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{suite}-{agent}"


class RunConfig(BaseModel):
    suite: str
    dataset: str | None = None
    task_ids: list[str] = Field(default_factory=list)
    agent: str = "cwm"
    model_url: str | list[str] | None = None  # several: requests go to the least loaded healthy one
    model: str | None = None
    attempts: int = Field(1, ge=1)
    concurrency: int = Field(2, ge=1)
    run_id: str
    output: Path = Path("results")
    trial_timeout: float = Field(7200.0, gt=0)  # wall-clock limit of the agent phase (CWM's sandbox lifetime)
    grade_worktree: bool = False  # grade the work tree's diff when nothing was submitted, however the episode ended
    reject_test_tampering: bool = False  # a patch that touches test infrastructure scores unresolved
    api_key: SecretStr | None = Field(None, exclude=True)  # the model endpoint's key: never written to run.json
    agent_timeout_multiplier: float = Field(1.0, gt=0)  # scales a task's own agent timeout
    test_timeout_multiplier: float = Field(1.0, gt=0)  # scales a task's own test timeout
    image_map: dict[str, str] = Field(default_factory=dict)  # FROM=TO rewrites of task images (Terminal-Bench)
    network: bool = False  # let the agent reach the network
    executor: str = "local"  # local | ray
    ray_address: str | None = None  # an existing Ray cluster (default: start a local one)
    max_starting_containers: int = Field(4, ge=1)  # back-pressure on the Docker daemon, apart from concurrency
    max_model_requests: int = Field(64, ge=1)  # requests in flight across all model endpoints
    limits: Limits = Field(default_factory=Limits)
    cwm: CwmConfig = Field(default_factory=CwmConfig)
    sampling: Sampling = Field(default_factory=Sampling)
    scenario: str | None = None  # demo, swebench: "testgen" (the agent writes a reproduction test); None: the patch
