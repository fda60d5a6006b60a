"""Asynchronous RL: samplers run trials continuously in token-exact mode; the trainer consumes groups, steps,
and pushes weights to the running server after every step. Samplers never wait for the trainer; admission
control drops samples more than `max_staleness` versions old.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, Field

from harness.errors import UserError
from harness.records import ExitStatus, TrialResult
from harness.runner import Runner
from harness.store import write_json
from trainer.rl.update import PolicyUpdate

LIMIT_EXITS = {ExitStatus.TURN_LIMIT, ExitStatus.CONTEXT_LIMIT, ExitStatus.FORMAT_ERROR_LIMIT, ExitStatus.TIMEOUT}


class RLConfig(BaseModel):
    group_size: int = 2
    max_staleness: int = 1
    steps: int = 2
    groups_per_step: int = 1
    lr: float = 1e-5
    ppo_epochs: int = Field(2, ge=1)  # passes over each batch; the ratio against the proximal policy moves after
    minibatches: int = Field(1, ge=1)  # the first optimizer step, so the clip can act
    eps_low: float = 0.2
    eps_high: float = 0.28
    is_cap: float = 2.0
    dr_grpo: bool = False  # no std normalisation of advantages; losses summed over a constant
    dr_grpo_norm: int = Field(4096, ge=1)  # Dr.GRPO's constant: the token budget of one sample
    entropy_coef: float = 0.0  # entropy bonus on sampled positions (keeps a gradient when a group's rewards tie)
    mask_truncated: bool = False  # trajectories that hit a limit carry no gradient
    reward: str = "cwm"  # cwm: +1 resolved / -1 otherwise; suite: the suite's reward value
    # a patch that touches test infrastructure (conftest.py, pytest config, sitecustomize.py) scores as unresolved:
    # the runner's --reject-test-tampering, on by default here so that no reward is paid for rigging the tests
    reject_test_tampering: bool = True
    concurrency: int = 2
    max_empty_trials: int = Field(8, ge=1)  # consecutive trials with no sample before the run stops
    drain_seconds: float = 300.0  # after the last step, let in-flight trials finish (their data is kept on disk)


class NoSamples(UserError):
    """Trial after trial produced nothing to train on: stop, naming why."""


@dataclass
class Sample:
    task_id: str
    result: TrialResult
    input_ids: list[int]
    loss_mask: list[int]
    logprobs: list[float | None]
    versions: list[int]

    def reward(self, kind: str) -> float:
        """From the trial's outcome, as the runner scored it (a rejected tampering patch is unresolved)."""
        if kind == "suite":
            return self.result.reward
        return 1.0 if self.result.resolved else -1.0

    @property
    def truncated(self) -> bool:
        return self.result.exit_status in LIMIT_EXITS

    def staleness(self, version: int) -> int:
        return version - min(self.versions or [version])


def load_sample(run_dir: Path, result: TrialResult) -> Sample | None:
    """The trial's token record as a sample; None for an infrastructure error (not scored, so no reward either)
    or a trial without a token record. A trial the agent ran out of time, turns or context on is a sample: it
    scores as unresolved, with the tokens it sampled."""
    if not result.finished:
        return None
    path = run_dir / "trials" / result.task_id / str(result.attempt) / "trajectory.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    tokens = next((e for e in events if e.get("kind") == "tokens"), None)
    if tokens is None:
        return None
    versions = [e["policy_version"] for e in events if e.get("role") == "assistant" and "policy_version" in e]
    return Sample(result.task_id, result, tokens["input_ids"], tokens["loss_mask"], tokens["logprobs"], versions)


def no_sample_reason(result: TrialResult) -> str:
    if not result.finished:
        detail = (result.error or result.exit_status.value).strip().splitlines()
        return f"infrastructure error: {detail[0] if detail else result.exit_status.value}"
    return "no token record in its trajectory (the agent must run token-exact)"


class GroupBuffer:
    """Samples wait here, per task, until a group of `size` fresh ones is complete. A sample more than
    `max_staleness` policy versions old is dropped (counted) on arrival and again when its group completes."""

    def __init__(self, size: int, max_staleness: int):
        self.size, self.max_staleness = size, max_staleness
        self.waiting: dict[str, list[Sample]] = {}
        self.dropped_stale = 0

    def add(self, sample: Sample, version: int) -> list[Sample] | None:
        """The completed group, or None."""
        if sample.staleness(version) > self.max_staleness:
            self.dropped_stale += 1
            return None
        group = self.waiting.setdefault(sample.task_id, [])
        group.append(sample)
        fresh = [s for s in group if s.staleness(version) <= self.max_staleness]
        self.dropped_stale += len(group) - len(fresh)
        self.waiting[sample.task_id] = fresh
        if len(fresh) < self.size:
            return None
        del self.waiting[sample.task_id]
        return fresh


class RLTrainer:
    def __init__(self, config: RLConfig, runner: Runner, tasks, model, tokenizer, sync, out: Path,
                 verify: Callable[[], float] | None = None):
        """`verify`, after every push: checks that the server now serves the trainer's weights (raises if not),
        returns the largest logprob gap."""
        self.config, self.runner, self.tasks = config, runner, tasks
        self.verify = verify
        self.model, self.tokenizer, self.sync, self.out = model, tokenizer, sync, out
        self.update = PolicyUpdate(model, config)
        self.queue: asyncio.Queue[tuple[TrialResult, Sample | None]] = asyncio.Queue()
        self.metrics = out / "metrics.jsonl"
        self.buffer = GroupBuffer(config.group_size, config.max_staleness)
        self.step = 0
        self.trainer_wait = 0.0
        self.empty_streak = 0
        self.trials = 0

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.update.optimizer

    @property
    def version(self) -> int:
        return self.sync.clock.version

    async def run(self) -> None:
        sampler = asyncio.create_task(self.sample_forever())
        try:
            await self.train()
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)

    async def sample_forever(self) -> None:
        """Launch G attempts per task, round after round, keeping `concurrency` trials in flight."""
        pending: set[asyncio.Task] = set()
        done = len(list(self.runner.store.dir.glob("trials/*/*/result.json")))
        attempts = itertools.count(done // self.config.group_size + 1)  # a resumed run never reuses an attempt
        try:
            for task in itertools.cycle(self.tasks):
                base = next(attempts) * self.config.group_size
                for g in range(self.config.group_size):
                    while len(pending) >= self.config.concurrency:
                        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    pending.add(asyncio.create_task(self.one_trial(task, base + g)))
        except asyncio.CancelledError:
            if pending:  # finish what is running: trajectories that span updates are kept on disk
                await asyncio.wait(pending, timeout=self.config.drain_seconds)
            raise

    async def one_trial(self, task, attempt: int) -> None:
        result = await self.runner.run_trial(task, attempt)
        await self.queue.put((result, load_sample(self.runner.store.dir, result)))

    async def next_group(self) -> list[Sample]:
        while True:
            waited = time.monotonic()
            result, sample = await self.queue.get()
            self.trainer_wait += time.monotonic() - waited
            self.trials += 1
            if sample is None:
                self.empty_streak += 1
                if self.empty_streak >= self.config.max_empty_trials:
                    raise NoSamples(f"RL stopped: {self.empty_streak} trials in a row gave no sample; the last "
                                    f"({result.task_id} attempt {result.attempt}): {no_sample_reason(result)}")
                continue
            self.empty_streak = 0
            group = self.buffer.add(sample, self.version)
            if group is not None:
                return group

    async def train(self) -> None:
        while self.step < self.config.steps:
            batch = [await self.next_group() for _ in range(self.config.groups_per_step)]
            staleness = [s.staleness(self.version) for g in batch for s in g]
            update_started = time.time()
            stats = await asyncio.to_thread(self.update.update, batch)
            started = time.monotonic()
            await asyncio.to_thread(self.sync.push, self.model, self.tokenizer)
            if self.verify is not None:
                stats["served_logprob_gap"] = await asyncio.to_thread(self.verify)
            self.step += 1
            self.log({**stats, "step": self.step, "policy_version": self.version,
                      "staleness": sum(staleness) / len(staleness), "dropped_stale": self.buffer.dropped_stale,
                      "trials": self.trials, "sync_seconds": time.monotonic() - started,
                      "trainer_wait_seconds": self.trainer_wait, "update_started": update_started,
                      "update_ended": time.time()})

    def log(self, record: dict) -> None:
        """Metrics as JSONL; then the checkpoint: the optimizer's state, then the state naming it (the pushed
        weights are the model's), so that a crash between the two leaves the previous checkpoint whole."""
        with open(self.metrics, "a") as fh:
            fh.write(json.dumps({"time": time.time(), **record}) + "\n")
        folder = self.out / "checkpoint"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"optimizer-v{self.version}.pt"
        torch.save(self.optimizer.state_dict(), folder / name)
        write_json(folder / "state.json", {"step": self.step, "policy_version": self.version, "optimizer": name,
                                           "dropped_stale": self.buffer.dropped_stale, "trials": self.trials})
        for old in folder.glob("optimizer-v*.pt"):
            if old.name != name:
                old.unlink()

    def restore(self, state: dict) -> None:
        """Continue a checkpointed run: its step, optimizer state and counters (the policy version is the clock's)."""
        self.step = state["step"]
        self.optimizer.load_state_dict(torch.load(self.out / "checkpoint" / state["optimizer"]))
        self.buffer.dropped_stale = state.get("dropped_stale", 0)
        self.trials = state.get("trials", 0)
