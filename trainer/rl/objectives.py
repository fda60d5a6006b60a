"""The RL objective: group-relative advantages, a token-level clipped policy-gradient loss with asymmetric
clipping, truncated importance sampling against the behaviour policy, and a KL estimate.

Decoupled PPO (as AReaL): the behaviour policy sampled the tokens (its logprobs come back from vLLM, maybe from
older weights); the proximal policy is the trainer's weights before this batch's first optimizer step. The PPO
ratio is taken against the proximal policy and clipped to [1 - eps_low, 1 + eps_high] (clip-higher); the
proximal/behaviour ratio corrects for staleness and is truncated at `is_cap`.
"""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, normalize_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO: each reward minus its group's mean, over the group's std (Dr.GRPO: no std division).

    `rewards` has shape (groups, group_size).
    """
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not normalize_std:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True, unbiased=False) + eps)


def importance_weights(proximal: torch.Tensor, behaviour: torch.Tensor, cap: float) -> torch.Tensor:
    """Truncated IS weights min(pi_prox / pi_behav, cap), detached: the correction for stale samples."""
    return torch.exp(proximal - behaviour).clamp(max=cap).detach()


def clipped_token_losses(logprobs: torch.Tensor, proximal: torch.Tensor, behaviour: torch.Tensor,
                         advantages: torch.Tensor, *, eps_low: float = 0.2, eps_high: float = 0.28,
                         is_cap: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token loss -w * min(r A, clip(r) A) and the ratio r = pi / pi_prox; all tensors the same shape.

    Where the clipped term is the smaller one (r beyond its bound in the advantage's direction) the token's loss is
    constant in the weights: it carries no gradient, which is what bounds the update.
    """
    ratio = torch.exp(logprobs - proximal)
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high)
    weights = importance_weights(proximal, behaviour, is_cap)
    return -weights * torch.minimum(ratio * advantages, clipped * advantages), ratio


def policy_loss(logprobs: torch.Tensor, proximal: torch.Tensor, behaviour: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, *, eps_low: float = 0.2, eps_high: float = 0.28, is_cap: float = 2.0,
                normaliser: float | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The masked token losses summed over `normaliser`: by default the unmasked tokens (token-level mean, not per
    sequence); Dr.GRPO passes its constant (samples x the token budget per sample) instead.

    All tensors are per token, same shape; `advantages` is the trajectory's advantage broadcast over its tokens.
    """
    per_token, ratio = clipped_token_losses(logprobs, proximal, behaviour, advantages, eps_low=eps_low,
                                            eps_high=eps_high, is_cap=is_cap)
    tokens = mask.sum().clamp(min=1)
    loss = (per_token * mask).sum() / (tokens if normaliser is None else normaliser)
    raw_is = torch.exp(proximal - behaviour)[mask.bool()]
    outside = ((ratio < 1 - eps_low) & (advantages < 0)) | ((ratio > 1 + eps_high) & (advantages > 0))
    stats = {
        "clip_fraction": float((outside.float() * mask).sum() / tokens),  # tokens whose gradient the clip removed
        "ratio_max": float(ratio.detach()[mask.bool()].max()) if mask.any() else 1.0,
        "ratio_min": float(ratio.detach()[mask.bool()].min()) if mask.any() else 1.0,
        "is_weight_mean": float(raw_is.mean()) if raw_is.numel() else 1.0,
        "is_weight_max": float(raw_is.max()) if raw_is.numel() else 1.0,
        "is_truncated_fraction": float((raw_is > is_cap).float().mean()) if raw_is.numel() else 0.0,
    }
    return loss, stats


def kl_estimate(logprobs: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> float:
    """k3 estimator of KL(pi || ref) on the sampled tokens: E[exp(r) - r - 1], r = ref - logprobs."""
    r = (reference - logprobs)[mask.bool()]
    return float((torch.exp(r) - r - 1).mean()) if r.numel() else 0.0


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(token_t | tokens_<t) for t >= 1, aligned with input_ids[1:]; shape (..., seq - 1)."""
    logprobs = torch.log_softmax(logits[..., :-1, :].float(), dim=-1)
    return logprobs.gather(-1, input_ids[..., 1:].unsqueeze(-1)).squeeze(-1)


def masked_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the next-token distributions at the sampled (masked-in) positions."""
    logprobs = torch.log_softmax(logits[..., :-1, :].float(), dim=-1)
    entropy = -(logprobs.exp() * logprobs).sum(-1)
    return (entropy * mask).sum() / mask.sum().clamp(min=1)
