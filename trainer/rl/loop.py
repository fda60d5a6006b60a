"""Asynchronous RL: samplers run trials continuously in token-exact mode; the trainer consumes groups, steps,
and pushes weights to the running server after every step. Samplers never wait for the trainer; admission
control drops samples more than `max_staleness` versions old.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel

from harness.records import ExitStatus, TrialResult
from harness.runner import Runner
from harness.store import write_json
from trainer.rl.objectives import group_advantages, kl_estimate, masked_entropy, policy_loss, token_logprobs

LIMIT_EXITS = {ExitStatus.TURN_LIMIT, ExitStatus.CONTEXT_LIMIT, ExitStatus.FORMAT_ERROR_LIMIT, ExitStatus.TIMEOUT}


class RLConfig(BaseModel):
    group_size: int = 2
    max_staleness: int = 1
    steps: int = 2
    groups_per_step: int = 1
    lr: float = 1e-5
    eps_low: float = 0.2
    eps_high: float = 0.28
    is_cap: float = 2.0
    dr_grpo: bool = False  # no std normalisation of advantages
    entropy_coef: float = 0.0  # entropy bonus on sampled positions (keeps a gradient when a group's rewards tie)
    mask_truncated: bool = False  # trajectories that hit a limit carry no gradient
    reward: str = "cwm"  # cwm: +1 resolved / -1 otherwise; suite: the suite's reward value
    # a patch that touches test infrastructure (conftest.py, pytest config, sitecustomize.py) scores as unresolved:
    # the runner's --reject-test-tampering, on by default here so that no reward is paid for rigging the tests
    reject_test_tampering: bool = True
    concurrency: int = 2
    drain_seconds: float = 300.0  # after the last step, let in-flight trials finish (their data is kept on disk)


@dataclass
class Sample:
    task_id: str
    result: TrialResult
    input_ids: list[int]
    loss_mask: list[int]
    logprobs: list[float | None]
    versions: list[int]

    def reward(self, kind: str) -> float:
        """From the trial's outcome, as the runner scored it (a rejected tampering patch is unresolved, reward 0)."""
        if kind == "suite":
            return self.result.reward
        return 1.0 if self.result.resolved else -1.0


def load_sample(run_dir: Path, result: TrialResult) -> Sample | None:
    if not result.finished:
        return None  # an error (infrastructure or harness bug) is not scored, so it pays no reward either
    path = run_dir / "trials" / result.task_id / str(result.attempt) / "trajectory.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    tokens = next((e for e in events if e.get("kind") == "tokens"), None)
    if tokens is None or not any(tokens["loss_mask"]):
        return None  # an infrastructure error, or nothing sampled
    versions = [e["policy_version"] for e in events if e.get("role") == "assistant" and "policy_version" in e]
    return Sample(result.task_id, result, tokens["input_ids"], tokens["loss_mask"], tokens["logprobs"], versions)


class RLTrainer:
    def __init__(self, config: RLConfig, runner: Runner, tasks, model, tokenizer, sync, out: Path):
        self.config, self.runner, self.tasks = config, runner, tasks
        self.model, self.tokenizer, self.sync, self.out = model, tokenizer, sync, out
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
        self.queue: asyncio.Queue[Sample | None] = asyncio.Queue()
        self.metrics = out / "metrics.jsonl"
        self.step = 0
        self.trainer_wait = 0.0

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
        await self.queue.put(load_sample(self.runner.store.dir, result))

    async def train(self) -> None:
        groups: dict[str, list[Sample]] = {}
        ready: list[list[Sample]] = []
        dropped = 0
        while self.step < self.config.steps:
            waited = time.monotonic()
            sample = await self.queue.get()
            self.trainer_wait += time.monotonic() - waited
            if sample is None:
                continue
            if self.version - min(sample.versions or [self.version]) > self.config.max_staleness:
                dropped += 1  # admission control: too stale
                continue
            group = groups.setdefault(sample.task_id, [])
            group.append(sample)
            if len(group) == self.config.group_size:
                ready.append(groups.pop(sample.task_id))
            if len(ready) >= self.config.groups_per_step:
                batch, ready = ready[: self.config.groups_per_step], ready[self.config.groups_per_step:]
                stats = await asyncio.to_thread(self.optimize, batch)
                started = time.monotonic()
                await asyncio.to_thread(self.sync.push, self.model, self.tokenizer)
                self.step += 1
                self.log({**stats, "step": self.step, "policy_version": self.version, "dropped_stale": dropped,
                          "sync_seconds": time.monotonic() - started, "trainer_wait_seconds": self.trainer_wait})

    def optimize(self, groups: list[list[Sample]]) -> dict:
        started = time.monotonic()
        rewards = torch.tensor([[s.reward(self.config.reward) for s in g] for g in groups])
        advantages = group_advantages(rewards, normalize_std=not self.config.dr_grpo)
        samples = [s for g in groups for s in g]
        total_tokens = sum(sum(s.loss_mask[1:]) for s in samples) or 1
        self.model.train()
        self.optimizer.zero_grad()
        collected: dict[str, list[float]] = {}
        for sample, advantage in zip(samples, advantages.flatten().tolist()):
            ids = torch.tensor([sample.input_ids])
            mask = torch.tensor([sample.loss_mask[1:]], dtype=torch.float32)
            if self.config.mask_truncated and sample.result.exit_status in LIMIT_EXITS:
                mask = torch.zeros_like(mask)
            behaviour = torch.tensor([[lp if lp is not None else 0.0 for lp in sample.logprobs[1:]]])
            logits = self.model(input_ids=ids).logits
            logprobs = token_logprobs(logits, ids)
            loss, stats = policy_loss(logprobs, logprobs.detach(), behaviour, torch.full_like(logprobs, advantage),
                                      mask, eps_low=self.config.eps_low, eps_high=self.config.eps_high,
                                      is_cap=self.config.is_cap)
            if self.config.entropy_coef:
                entropy = masked_entropy(logits, mask)
                loss = loss - self.config.entropy_coef * entropy
                stats["entropy"] = float(entropy.detach())
            (loss * mask.sum() / total_tokens).backward()
            stats["kl_behaviour"] = kl_estimate(logprobs.detach(), behaviour, mask)
            for key, value in stats.items():
                collected.setdefault(key, []).append(value)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0))
        self.optimizer.step()
        seconds = time.monotonic() - started
        return {"reward_mean": float(rewards.mean()), "resolved_rate": float((rewards > 0).float().mean()),
                "staleness": sum(self.version - min(s.versions or [self.version]) for s in samples) / len(samples),
                "grad_norm": grad_norm, "tokens_per_s": sum(len(s.input_ids) for s in samples) / seconds,
                "optimize_seconds": seconds, **{k: sum(v) / len(v) for k, v in collected.items()}}

    def log(self, record: dict) -> None:
        """Metrics as JSONL; then the checkpoint (the pushed weights are the model's)."""
        with open(self.metrics, "a") as fh:
            fh.write(json.dumps({"time": time.time(), **record}) + "\n")
        (self.out / "checkpoint").mkdir(parents=True, exist_ok=True)
        torch.save(self.optimizer.state_dict(), self.out / "checkpoint" / "optimizer.pt")
        write_json(self.out / "checkpoint" / "state.json", {"step": self.step, "policy_version": self.version})
