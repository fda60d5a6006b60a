"""One policy update on a batch of GRPO groups: proximal logprobs first, then `ppo_epochs` x `minibatches`
optimizer steps on the clipped, importance-weighted objective."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch

from harness.errors import UserError
from trainer.rl.objectives import group_advantages, kl_estimate, masked_entropy, policy_loss, token_logprobs


class MissingBehaviourLogprob(UserError):
    """A sampled token without the server's logprob: its importance weight cannot be computed."""


@dataclass
class Prepared:
    """A sample made ready for the update: ids, loss mask, behaviour and proximal logprobs, advantage."""

    input_ids: torch.Tensor  # (1, seq)
    mask: torch.Tensor  # (1, seq - 1): the positions that carry loss
    behaviour: torch.Tensor  # (1, seq - 1)
    proximal: torch.Tensor  # (1, seq - 1), computed before this batch's first step
    advantage: float


def behaviour_logprobs(sample) -> torch.Tensor:
    """vLLM's logprobs of the sampled tokens, aligned with input_ids[1:]; a sampled token without one is an error."""
    values = sample.logprobs[1:]
    for position, (logprob, sampled) in enumerate(zip(values, sample.loss_mask[1:]), start=1):
        if sampled and logprob is None:
            raise MissingBehaviourLogprob(
                f"{sample.task_id} attempt {sample.result.attempt}: sampled token {position} has no behaviour "
                "logprob (the server must return logprobs for every sampled token)")
    return torch.tensor([[lp if lp is not None else 0.0 for lp in values]])


def loss_mask(sample, config) -> torch.Tensor:
    mask = torch.tensor([sample.loss_mask[1:]], dtype=torch.float32)
    if config.mask_truncated and sample.truncated:
        return torch.zeros_like(mask)
    return mask


class PolicyUpdate:
    def __init__(self, model, config, seed: int = 0):
        self.model, self.config = model, config
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
        self.shuffle = random.Random(seed)

    def prepare(self, groups: list) -> list[Prepared]:
        """Advantages per group and, before any step, the proximal policy's logprobs of every sampled token."""
        rewards = torch.tensor([[s.reward(self.config.reward) for s in g] for g in groups])
        advantages = group_advantages(rewards, normalize_std=not self.config.dr_grpo).flatten().tolist()
        samples = [s for g in groups for s in g]
        prepared = []
        self.model.eval()
        with torch.no_grad():
            for sample, advantage in zip(samples, advantages):
                ids = torch.tensor([sample.input_ids])
                proximal = token_logprobs(self.model(input_ids=ids).logits, ids)
                prepared.append(Prepared(ids, loss_mask(sample, self.config), behaviour_logprobs(sample), proximal,
                                         advantage))
        return prepared

    def normaliser(self, minibatch: list[Prepared]) -> float:
        """Token-level mean over the minibatch's unmasked tokens; Dr.GRPO: a constant per unmasked sample.

        Samples masked out (truncated, with --mask-truncated) count in neither: they do not dilute the others.
        """
        if self.config.dr_grpo:
            return float(sum(1 for p in minibatch if p.mask.any()) * self.config.dr_grpo_norm) or 1.0
        return float(sum(p.mask.sum() for p in minibatch)) or 1.0

    def minibatches(self, prepared: list[Prepared]) -> list[list[Prepared]]:
        order = list(prepared)
        self.shuffle.shuffle(order)
        count = min(self.config.minibatches, len(order))
        return [order[i::count] for i in range(count)]

    def backward(self, minibatch: list[Prepared]) -> dict[str, float]:
        """The minibatch's loss gradients into the weights' .grad; its statistics, token-weighted."""
        self.model.train()
        self.optimizer.zero_grad()
        normaliser = self.normaliser(minibatch)
        weighted: dict[str, float] = {}
        tokens = 0.0
        for p in minibatch:
            logits = self.model(input_ids=p.input_ids).logits
            logprobs = token_logprobs(logits, p.input_ids)
            loss, stats = policy_loss(logprobs, p.proximal, p.behaviour, torch.full_like(logprobs, p.advantage),
                                      p.mask, eps_low=self.config.eps_low, eps_high=self.config.eps_high,
                                      is_cap=self.config.is_cap, normaliser=normaliser)
            if self.config.entropy_coef:
                entropy = masked_entropy(logits, p.mask)
                loss = loss - self.config.entropy_coef * entropy * p.mask.sum() / normaliser
                stats["entropy"] = float(entropy.detach())
            stats["kl_behaviour"] = kl_estimate(logprobs.detach(), p.behaviour, p.mask)
            if p.mask.any():
                loss.backward()
            n = float(p.mask.sum())
            tokens += n
            for key, value in stats.items():
                weighted[key] = weighted.get(key, 0.0) + value * n
        return {k: v / (tokens or 1.0) for k, v in weighted.items()}

    def step(self, minibatch: list[Prepared]) -> dict[str, float]:
        stats = self.backward(minibatch)
        stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0))
        self.optimizer.step()
        return stats

    def update(self, groups: list) -> dict[str, float]:
        started = time.monotonic()
        prepared = self.prepare(groups)
        steps = [self.step(mb) for _ in range(self.config.ppo_epochs) for mb in self.minibatches(prepared)]
        seconds = time.monotonic() - started
        rewards = [s.reward(self.config.reward) for g in groups for s in g]
        summary = {key: sum(s[key] for s in steps) / len(steps) for key in steps[0]}
        return {**summary, "optimizer_steps": len(steps), "clip_fraction_max": max(s["clip_fraction"] for s in steps),
                "clip_fraction_last": steps[-1]["clip_fraction"], "reward_mean": sum(rewards) / len(rewards),
                "resolved_rate": sum(r > 0 for r in rewards) / len(rewards), "update_seconds": seconds,
                "update_tokens": sum(p.input_ids.shape[1] for p in prepared),
                "tokens_per_s": sum(p.input_ids.shape[1] for p in prepared) / seconds}
