"""RL: the objective against hand-computed values; two asynchronous steps against the real CPU vLLM server."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys

import httpx
import pytest
import torch

from trainer.rl.objectives import group_advantages, importance_weights, kl_estimate, policy_loss


def test_group_advantages():
    rewards = torch.tensor([[1.0, -1.0], [1.0, 1.0], [3.0, 1.0]])
    # mean 0, std 1 -> +-1; a tie carries no signal; mean 2, std 1 -> +-1
    assert torch.allclose(group_advantages(rewards), torch.tensor([[1.0, -1.0], [0.0, 0.0], [1.0, -1.0]]), atol=1e-5)
    dr = group_advantages(torch.tensor([[2.0, 0.0, 1.0]]), normalize_std=False)  # Dr.GRPO: centred only
    assert dr.tolist() == [[1.0, -1.0, 0.0]]


def test_clip_higher_is_asymmetric_and_pessimistic():
    p = torch.tensor([[math.log(0.4)]])
    new = torch.log(torch.tensor([[0.4 * 1.5]]))  # ratio 1.5 against the proximal policy
    mask = torch.ones(1, 1)
    # clipped at 1 + 0.28 up (no gradient: counted as clipped); unclipped when worse (the gradient stays)
    for advantage, expected, clipped in ((1.0, -1.28, 1.0), (-1.0, 1.5, 0.0)):
        loss, stats = policy_loss(new, p, p, torch.tensor([[advantage]]), mask, eps_low=0.2, eps_high=0.28)
        assert float(loss) == pytest.approx(expected, rel=1e-5) and stats["clip_fraction"] == clipped
    low = torch.log(torch.tensor([[0.4 * 0.7]]))  # ratio 0.7: below 1 - 0.2
    loss, _ = policy_loss(low, p, p, torch.tensor([[-1.0]]), mask, eps_low=0.2, eps_high=0.28)
    assert float(loss) == pytest.approx(0.8, rel=1e-5)


def test_truncated_importance_weights_and_kl():
    proximal, behaviour = torch.log(torch.tensor([0.5, 0.5])), torch.log(torch.tensor([0.25, 0.4]))
    assert importance_weights(proximal, behaviour, cap=1.5).tolist() == pytest.approx([1.5, 1.25])
    loss, stats = policy_loss(proximal, proximal, behaviour, torch.tensor([1.0, 1.0]), torch.ones(2), is_cap=1.5)
    assert float(loss) == pytest.approx(-(1.5 + 1.25) / 2) and stats["is_truncated_fraction"] == 0.5
    # k3: exp(r) - r - 1 with r = log(0.5)
    value = kl_estimate(torch.log(torch.tensor([1.0])), torch.log(torch.tensor([0.5])), torch.ones(1))
    assert value == pytest.approx(0.5 - math.log(0.5) - 1, rel=1e-5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe(url: str, ids: list[int]) -> list[float]:
    """The served policy's logprob of each token after the first (teacher-forced, as vLLM scores a prompt)."""
    response = httpx.post(f"{url}/completions", timeout=120, json={
        "model": "rl-model", "prompt": ids, "max_tokens": 1, "temperature": 1.0, "prompt_logprobs": 0})
    return [next(iter(x.values()))["logprob"] for x in response.json()["choices"][0]["prompt_logprobs"][1:]]


@pytest.fixture(scope="module")
def rl_server(tmp_path_factory):
    """The embedded model served as RL serves it (fp32, processed logprobs, dev mode), from a copy of its folder."""
    from harness.serve import VllmServer, embedded_preset, materialise_embedded
    from trainer.rl.weights import rl_preset

    python = os.environ.get("CWM_EVAL_VLLM_PYTHON", sys.executable)
    if subprocess.run([python, "-c", "import vllm"], capture_output=True).returncode != 0:
        pytest.fail(f"{python} has no vLLM: `make test` installs it and sets CWM_EVAL_VLLM_PYTHON")
    materialise_embedded(embedded_preset())
    folder = tmp_path_factory.mktemp("rl")
    model = folder / "rl-model"
    shutil.copytree(embedded_preset().model, model)
    server = VllmServer(rl_preset(str(model), "rl-model"), port=free_port(), log_path=folder / "vllm.log")
    server.start()
    try:
        server.wait_ready(900)
        yield server.url, model
    finally:
        server.stop()


def token_exact_trial(url: str, model, out, run_id: str, cwm: dict, logprobs: bool = True):
    """One demo trial through the real runner, token-exact with the embedded model's tokenizer."""
    import asyncio

    from agents import make_agent
    from agents.cwm.config import CwmConfig
    from harness.config import RunConfig
    from harness.runner import Runner
    from tasks import load_suite
    from trainer.rl.loop import load_sample

    config = CwmConfig(token_exact=True, logprobs=logprobs, tokenizer=str(model), **cwm)
    agent = make_agent("cwm", model_url=url, cwm_config=config)
    runner = Runner(RunConfig(suite="demo", agent="cwm", model_url=url, run_id=run_id, output=out, cwm=config),
                    load_suite("demo"), agent)
    [task] = load_suite("demo").load(["demo__calc-1"])
    result = asyncio.run(runner.run_trial(task, 0))
    return load_sample(runner.store.dir, result)


def sampled_mean(policy, sample) -> float:
    from trainer.rl.objectives import token_logprobs

    ids = torch.tensor([sample.input_ids])
    with torch.no_grad():
        logprobs = token_logprobs(policy(input_ids=ids).logits, ids)
    mask = torch.tensor([sample.loss_mask[1:]], dtype=torch.float32)
    return float((logprobs * mask).sum() / mask.sum())


@pytest.mark.e2e
def test_the_policy_gradient_raises_the_advantaged_trajectory_and_lowers_the_other(rl_server, tmp_path):
    """A group with different rewards on the real small model: a scripted trial that resolves the task beside the
    model's own trial, which fails. One update must raise the logprobs of the resolved trajectory's sampled tokens
    and lower the failed one's."""
    from helpers import run_demo
    from scripted_server import ScriptedServer
    from test_agent import SUMMARY, fix_and_submit
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.rl.loop import RLConfig
    from trainer.rl.update import PolicyUpdate

    url, model = rl_server
    failed = token_exact_trial(url, model, tmp_path, "model-trial", {"tools": ["bash", "submit"], "max_turns": 2,
                                                                     "max_action_len": 48})
    assert failed is not None and not failed.result.resolved and sum(failed.loss_mask) > 0
    # vLLM's behaviour logprobs: one per sampled token, none missing
    assert all(lp is not None for lp, m in zip(failed.logprobs, failed.loss_mask) if m)

    tokenizer = AutoTokenizer.from_pretrained(model)
    with ScriptedServer(fix_and_submit() + [SUMMARY], tokenizer=tokenizer, root=str(model)) as scripted:
        passed = token_exact_trial(scripted.url, model, tmp_path, "scripted-trial", {"max_turns": 8})
    assert passed is not None and passed.result.resolved
    # its tokens were not sampled by the policy: their behaviour logprobs are the served policy's, teacher-forced
    scored = probe(url, passed.input_ids)
    passed.logprobs = [None] + [lp if m else None for lp, m in zip(scored, passed.loss_mask[1:])]

    policy = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    before = [sampled_mean(policy, s) for s in (passed, failed)]
    stats = PolicyUpdate(policy, RLConfig(lr=1e-5, ppo_epochs=1, minibatches=1)).update([[passed, failed]])
    after = [sampled_mean(policy, s) for s in (passed, failed)]
    assert stats["kl_behaviour"] < 0.01  # the trainer's policy is the one vLLM sampled from
    assert after[0] > before[0], (before, after)  # advantage +1: its tokens more likely
    assert after[1] < before[1], (before, after)  # advantage -1: less likely


@pytest.mark.e2e
def test_a_server_with_other_weights_is_refused_with_one_line(rl_server):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.rl.server_check import PolicyMismatch, check_policy_server

    url, model = rl_server
    tokenizer = AutoTokenizer.from_pretrained(model)
    policy = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    assert check_policy_server(url, "rl-model", policy, tokenizer, tolerance=0.01) < 1e-3  # the same weights
    with torch.no_grad():
        policy.model.norm.weight.mul_(1.5)  # other weights
    with pytest.raises(PolicyMismatch, match="^http.* serves other weights than the trainer's") as refused:
        check_policy_server(url, "rl-model", policy, tokenizer, tolerance=0.01)
    assert "\n" not in str(refused.value)


@pytest.mark.e2e
def test_a_pushed_policy_is_what_the_server_serves_then(rl_server, tmp_path):
    """vLLM's own in-place reload keeps a tied lm_head's packed kernel from the old embeddings (the embedded model
    ties them): the server would sample from a mix of old and new weights. The probe after a push catches it;
    the worker extension's reload_policy serves exactly the pushed weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.model import PolicyClock
    from trainer.rl.server_check import PUSH_HINT, PolicyMismatch, check_policy_server
    from trainer.rl.weights import WeightSync

    url, model = rl_server
    tokenizer = AutoTokenizer.from_pretrained(model)
    policy = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    original = policy.model.embed_tokens.weight.detach().clone()
    sync = WeightSync(url, tmp_path / "weights", PolicyClock(0))
    try:
        for method in ("reload_weights", "reload_policy"):
            with torch.no_grad():
                policy.model.embed_tokens.weight.add_(0.05 * torch.randn_like(original))  # the tied lm_head too
            sync.method = method
            sync.push(policy, tokenizer)
            if method == "reload_weights":
                with pytest.raises(PolicyMismatch, match="in-place reload after a weight push did not take"):
                    check_policy_server(url, "rl-model", policy, tokenizer, 1e-3, PUSH_HINT)
            else:
                assert check_policy_server(url, "rl-model", policy, tokenizer, 1e-3, PUSH_HINT) < 1e-3
    finally:  # the next tests start from the model's own weights
        with torch.no_grad():
            policy.model.embed_tokens.weight.copy_(original)
        sync.method = "reload_policy"
        sync.push(policy, tokenizer)
    assert check_policy_server(url, "rl-model", policy, tokenizer, 1e-3) < 1e-3


@pytest.mark.e2e
def test_two_async_steps_update_the_running_server_and_resume_continues(rl_server, tmp_path):
    from agents.cwm.agent import CwmConfig
    from tasks import load_suite
    from trainer.rl.loop import RLConfig
    from trainer.rl.run import RLRun, train_rl

    url, model = rl_server
    fixed = [1, 9690, 198, 2683, 359, 253, 5356, 5646]
    before = probe(url, fixed)
    suite = load_suite("demo")
    out = tmp_path / "rl"
    # trials long enough that one is still sampling when the trainer pushes (the async sampler never waits for it);
    # with 3 turns a whole trial could fit inside one training step, and no turn spanned an update
    cwm = CwmConfig(tools=["bash", "submit"], max_turns=8, max_action_len=16)

    def train(steps: int, resume: bool) -> None:
        train_rl(suite=suite, tasks=suite.load(["demo__calc-1"]), cwm=cwm,
                 run=RLRun(model=str(model), out=out, run_id="rl-test", model_url=url, resume=resume),
                 config=RLConfig(group_size=2, steps=steps, lr=1e-4, entropy_coef=0.05))

    train(2, resume=False)
    after = probe(url, fixed)
    assert max(abs(a - b) for a, b in zip(before, after)) > 1e-4  # the running server serves new weights
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2] and metrics[-1]["policy_version"] == 2
    assert all(m["optimizer_steps"] == 2 for m in metrics)  # two PPO epochs per batch
    versions = []
    for path in (out / "results" / "rl-test" / "trials").glob("*/*/trajectory.jsonl"):
        events = [json.loads(line) for line in path.read_text().splitlines()]
        versions.append({e["policy_version"] for e in events if e.get("role") == "assistant"})
    assert set().union(*versions) >= {0, 1}
    assert any(len(v) >= 2 for v in versions), versions  # a trajectory whose turns span an update

    # --resume on the same server: the trainer starts from the pushed v2 weights, which the server serves
    train(3, resume=True)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(m["step"], m["policy_version"]) for m in metrics] == [(1, 1), (2, 2), (3, 3)]
