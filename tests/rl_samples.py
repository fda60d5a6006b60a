"""RL test material: a tiny random causal LM and hand-made samples (no server, no container)."""

from __future__ import annotations

import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from harness.records import ExitStatus, Outcome, TrialResult
from trainer.rl.loop import Sample


def tiny_model(vocab: int = 64, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(config).float()


def result(task: str = "t", attempt: int = 0, resolved: bool = False,
           exit_status: ExitStatus = ExitStatus.SUBMITTED) -> TrialResult:
    now = time.time()
    return TrialResult(run_id="r", suite="demo", task_id=task, attempt=attempt, agent="cwm",
                       outcome=Outcome.RESOLVED if resolved else Outcome.UNRESOLVED, exit_status=exit_status,
                       started_at=now, ended_at=now, wall_seconds=0.0)


def sample(ids: list[int], sampled_from: int, *, resolved: bool = False, task: str = "t", attempt: int = 0,
           versions: list[int] | None = None, exit_status: ExitStatus = ExitStatus.SUBMITTED,
           logprob: float | None = -1.0) -> Sample:
    """A trajectory whose tokens from `sampled_from` on were sampled (loss mask 1, behaviour logprob `logprob`)."""
    mask = [0] * sampled_from + [1] * (len(ids) - sampled_from)
    logprobs = [None if m == 0 else logprob for m in mask]
    return Sample(task, result(task, attempt, resolved, exit_status), list(ids), mask, logprobs, versions or [0])
