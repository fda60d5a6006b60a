"""The RL update on a tiny model: proximal logprobs before the first step, PPO epochs x minibatches that move the
ratio so the clip acts and bounds the update, behaviour logprobs required, Dr.GRPO's constant, masked samples."""

from __future__ import annotations

import pytest
import torch
from rl_samples import sample, tiny_model

from harness.records import ExitStatus
from trainer.rl.loop import GroupBuffer, RLConfig
from trainer.rl.objectives import policy_loss, token_logprobs
from trainer.rl.update import MissingBehaviourLogprob, PolicyUpdate

PROMPT = [1, 5, 9, 13, 17, 21]


def pair(good: list[int], bad: list[int], **kw):
    """One group: a resolved and an unresolved trajectory after the same prompt."""
    return [sample(PROMPT + good, len(PROMPT), resolved=True, attempt=0, **kw),
            sample(PROMPT + bad, len(PROMPT), resolved=False, attempt=1, **kw)]


def mean_logprob(model, s) -> float:
    ids = torch.tensor([s.input_ids])
    with torch.no_grad():
        lp = token_logprobs(model(input_ids=ids).logits, ids)
    mask = torch.tensor([s.loss_mask[1:]], dtype=torch.float32)
    return float((lp * mask).sum() / mask.sum())


def test_the_clip_takes_the_gradient_of_tokens_past_their_bound_only():
    proximal = torch.log(torch.full((4,), 0.4))
    ratios = torch.tensor([1.5, 1.5, 0.7, 1.1])  # A>0 past 1.28 | A<0 past 1.28 | A<0 below 0.8 | inside
    advantages = torch.tensor([1.0, -1.0, -1.0, 1.0])
    logprobs = (proximal + ratios.log()).requires_grad_()
    loss, stats = policy_loss(logprobs, proximal, proximal, advantages, torch.ones(4))
    loss.backward()
    assert logprobs.grad[0] == 0 and logprobs.grad[2] == 0  # clipped: no gradient
    assert logprobs.grad[1] != 0 and logprobs.grad[3] != 0  # the pessimistic side keeps its gradient
    assert stats["clip_fraction"] == 0.5


def test_one_step_per_batch_never_clips_more_epochs_do_and_the_proximal_policy_is_the_weights_before():
    torch.manual_seed(0)
    groups = [pair([30, 31, 32, 33, 34, 35], [40, 41, 42, 43, 44, 45])]
    single = PolicyUpdate(tiny_model(), RLConfig(lr=0.05, ppo_epochs=1, minibatches=1))
    stats = single.update(groups)
    assert stats["optimizer_steps"] == 1 and stats["clip_fraction_max"] == 0.0
    assert stats["ratio_max"] == pytest.approx(1.0) and stats["ratio_min"] == pytest.approx(1.0)

    model = tiny_model()
    before = [mean_logprob(model, s) for s in groups[0]]
    update = PolicyUpdate(model, RLConfig(lr=0.05, ppo_epochs=3, minibatches=2))
    prepared = update.prepare(groups)
    for p, s, expected in zip(prepared, groups[0], before):  # proximal = the weights before any step
        assert float((p.proximal * p.mask).sum() / p.mask.sum()) == pytest.approx(expected, abs=1e-6)
    stats = update.update(groups)
    assert stats["optimizer_steps"] == 6 and stats["clip_fraction_max"] > 0
    after = [mean_logprob(model, s) for s in groups[0]]
    assert after[0] > before[0] and after[1] < before[1]


def ratio_reached(eps: float) -> float:
    """The largest ratio pi / pi_before over the advantaged trajectory's tokens after 8 epochs at a high lr."""
    model = tiny_model()
    groups = [pair([30, 31, 32, 33, 34, 35], [40, 41, 42, 43, 44, 45])]
    update = PolicyUpdate(model, RLConfig(lr=0.005, ppo_epochs=8, minibatches=1, eps_low=eps, eps_high=eps))
    before = update.prepare(groups)[0]
    update.update(groups)
    ids = before.input_ids
    with torch.no_grad():
        now = token_logprobs(model(input_ids=ids).logits, ids)
    return float(torch.exp(now - before.proximal)[before.mask.bool()].max())


def test_clipping_bounds_the_update():
    clipped, free = ratio_reached(0.05), ratio_reached(100.0)
    assert free > 4.0  # unclipped, 8 epochs at this lr push the advantaged tokens far
    assert clipped < free / 2  # once past 1 + eps a token has no gradient (Adam's momentum carries it a little)


def test_a_sampled_token_without_a_behaviour_logprob_is_an_error():
    groups = [pair([30, 31], [40, 41], logprob=None)]
    with pytest.raises(MissingBehaviourLogprob, match="sampled token 6 has no behaviour logprob"):
        PolicyUpdate(tiny_model(), RLConfig()).update(groups)
    prompt_only = [sample(PROMPT + [30], len(PROMPT) + 1, attempt=a) for a in (0, 1)]
    prompt_only[0].logprobs[3] = None  # a prompt token has none, as vLLM returns: fine
    PolicyUpdate(tiny_model(), RLConfig()).prepare([prompt_only])


def gradients(update: PolicyUpdate, prepared) -> torch.Tensor:
    update.backward(prepared)
    return torch.cat([p.grad.flatten() for p in update.model.parameters() if p.grad is not None]).clone()


def test_dr_grpo_sums_over_its_constant_and_masked_out_samples_dilute_nothing():
    kept = pair([30, 31, 32], [40, 41, 42])
    truncated = sample(PROMPT + [50] * 12, len(PROMPT), attempt=2, exit_status=ExitStatus.TURN_LIMIT)
    for dr_grpo in (False, True):
        config = RLConfig(dr_grpo=dr_grpo, dr_grpo_norm=1000, mask_truncated=True, group_size=3)
        update = PolicyUpdate(tiny_model(), config)
        with_truncated = update.prepare([kept + [truncated]])
        assert not with_truncated[2].mask.any()  # truncated: masked out
        assert update.normaliser(with_truncated) == (2 * 1000 if dr_grpo else 6)  # the kept samples only
        # the same advantages without the masked-out sample: the same gradient, it dilutes nothing
        alone = [p for p in with_truncated[:2]]
        assert torch.allclose(gradients(update, with_truncated), gradients(update, alone), atol=1e-7)
    # Dr.GRPO: a longer trajectory weighs more (sum over a constant), not the same (mean over its own length)
    update = PolicyUpdate(tiny_model(), RLConfig(dr_grpo=True, dr_grpo_norm=1000))
    short, long = update.prepare([pair([30], [40] * 10)])
    assert update.normaliser([short]) == update.normaliser([long]) == 1000


def test_stale_samples_are_dropped_and_counted_on_arrival_and_when_their_group_completes():
    buffer = GroupBuffer(size=2, max_staleness=1)
    assert buffer.add(sample([1, 2, 3], 1, task="a", versions=[0]), version=2) is None  # 2 versions old
    assert buffer.dropped_stale == 1
    waiting = sample([1, 2, 3], 1, task="b", versions=[0])
    assert buffer.add(waiting, version=1) is None
    # by the time its mate arrives the policy moved on: the waiting sample is dropped, the mate waits
    assert buffer.add(sample([1, 2, 4], 1, task="b", versions=[2]), version=2) is None
    assert buffer.dropped_stale == 2 and len(buffer.waiting["b"]) == 1
    group = buffer.add(sample([1, 2, 5], 1, task="b", versions=[1, 2]), version=2)
    assert group is not None and len(group) == 2
