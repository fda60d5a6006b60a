"""RL bookkeeping through the real runner (real containers, a scripted vLLM-like model, a tiny trainer model):
limits score -1 with their tokens, no-sample streaks stop the run, --resume continues where the run left off."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch
from helpers import turn
from rl_samples import tiny_model
from scripted_server import ScriptedServer
from tokenizers_for_tests import make_tokenizer
from transformers import AutoTokenizer

from agents import make_agent
from agents.cwm.config import CwmConfig
from harness.config import RunConfig
from harness.model import PolicyClock
from harness.records import ExitStatus
from harness.runner import Runner
from tasks import load_suite
from trainer.rl.loop import NoSamples, RLConfig, RLTrainer, load_sample
from trainer.rl.run import RLRun, checkpoint_state, resume_point
from trainer.rl.weights import WeightSync

TASK = "demo__calc-1"


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    return make_tokenizer("cwm", tmp_path_factory.mktemp("tok"))


def runner_for(server, out, *, token_exact=True, trial_timeout=600.0, **cwm) -> Runner:
    config = CwmConfig(token_exact=token_exact, logprobs=token_exact, tools=["bash", "submit"], **cwm)
    agent = make_agent("cwm", model_url=server.url, cwm_config=config)
    run = RunConfig(suite="demo", agent="cwm", model_url=server.url, run_id="rl-test", output=out, concurrency=2,
                    cwm=config, trial_timeout=trial_timeout)
    return Runner(run, load_suite("demo"), agent)


def one_trial(runner):
    [task] = load_suite("demo").load([TASK])
    result = asyncio.run(runner.run_trial(task, 0))
    return result, load_sample(runner.store.dir, result)


def test_an_agent_timeout_scores_minus_one_with_the_tokens_it_sampled(tmp_path, tokenizer_folder):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    script = [turn("Look around.", "bash", "ls")]
    with ScriptedServer(script, tokenizer=tokenizer, root=str(tokenizer_folder), faults=["ok", "hang"]) as server:
        result, sample = one_trial(runner_for(server, tmp_path, trial_timeout=8.0))
    assert result.exit_status is ExitStatus.TIMEOUT and result.finished
    assert sample is not None and sample.reward("cwm") == -1.0 and sample.truncated
    sampled = [t for t, m in zip(sample.input_ids, sample.loss_mask) if m]
    assert tokenizer.decode(sampled, skip_special_tokens=True) == script[0]  # the turn it sampled before the hang
    assert all(lp is not None for lp, m in zip(sample.logprobs, sample.loss_mask) if m)


def test_a_context_overflow_scores_minus_one_with_its_tokens(tmp_path, tokenizer_folder):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    script = [turn("Print a lot.", "bash", "seq 1 3000")] * 3
    with ScriptedServer(script, tokenizer=tokenizer, root=str(tokenizer_folder)) as server:
        result, sample = one_trial(runner_for(server, tmp_path, context_size=3000, max_action_len=64))
    assert result.exit_status is ExitStatus.CONTEXT_LIMIT
    assert sample is not None and sample.reward("cwm") == -1.0 and sum(sample.loss_mask) > 0


def trainer_for(server, out, tokenizer, model, config: RLConfig, **runner_options) -> RLTrainer:
    runner = runner_for(server, out / "results", **runner_options)
    clock = PolicyClock(0)
    runner.agent.client.policy = clock
    return RLTrainer(config, runner, load_suite("demo").load([TASK]), model, tokenizer,
                     WeightSync(server.url, out / "weights", clock), out)


def test_trials_without_samples_stop_the_run_naming_why(tmp_path, tokenizer_folder):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    with ScriptedServer([], tokenizer=tokenizer, root=str(tokenizer_folder)) as server:
        # not token-exact: the trials run and are scored, but leave no token record to train on
        trainer = trainer_for(server, tmp_path, tokenizer, tiny_model(len(tokenizer)),
                              RLConfig(max_empty_trials=3, concurrency=2, steps=1, drain_seconds=60),
                              token_exact=False, max_turns=1)
        with pytest.raises(NoSamples, match=r"^RL stopped: 3 trials in a row gave no sample; the last .*no token "
                                            r"record"):
            asyncio.run(trainer.run())


def rl_run(server, out, tokenizer_folder, steps: int) -> RLTrainer:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    config = RLConfig(steps=steps, group_size=2, concurrency=2, lr=1e-3, entropy_coef=0.1, drain_seconds=60)
    trainer = trainer_for(server, out, tokenizer, tiny_model(len(tokenizer)), config, max_turns=2)
    asyncio.run(trainer.run())
    return trainer


def test_resume_continues_with_the_same_step_optimizer_state_and_policy_version(tmp_path, tokenizer_folder):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    script = [turn("Look.", "bash", "ls")] * 40
    with ScriptedServer(script, tokenizer=tokenizer, root=str(tokenizer_folder)) as server:
        first = rl_run(server, tmp_path, tokenizer_folder, steps=1)
        saved = {k: v.clone() for k, v in first.optimizer.state_dict()["state"][0].items() if torch.is_tensor(v)}
        state = checkpoint_state(tmp_path)
        assert state["step"] == 1 and state["policy_version"] == 1
        with pytest.raises(Exception, match="pass --resume"):
            resume_point(RLRun(model="m", out=tmp_path))
        start_from, _ = resume_point(RLRun(model="m", out=tmp_path, resume=True))
        assert start_from.endswith("weights/v1")

        tokenizer_b = AutoTokenizer.from_pretrained(tokenizer_folder)
        model = type(first.model).from_pretrained(start_from)
        config = RLConfig(steps=2, group_size=2, concurrency=2, lr=1e-3, entropy_coef=0.1, drain_seconds=60)
        second = trainer_for(server, tmp_path, tokenizer_b, model, config, max_turns=2)
        second.sync.clock.version = state["policy_version"]
        second.restore(state)
        restored = second.optimizer.state_dict()["state"][0]
        assert all(torch.equal(restored[k], v) for k, v in saved.items())  # Adam's moments and step count
        assert second.step == 1
        asyncio.run(second.run())
        reloads = [r for path, r in server.admin if path == "/collective_rpc"]
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(m["step"], m["policy_version"]) for m in metrics] == [(1, 1), (2, 2)]
    assert checkpoint_state(tmp_path)["step"] == 2 and (tmp_path / "weights" / "v2").is_dir()
    assert [r["kwargs"]["weights_path"].rsplit("/", 1)[1] for r in reloads] == ["v1", "v2"]
    assert second.optimizer.state_dict()["state"][0]["step"] == saved["step"] + 2  # two more Adam steps (2 epochs)
    with pytest.raises(Exception, match="no RL checkpoint"):
        resume_point(RLRun(model="m", out=tmp_path / "elsewhere", resume=True))


def test_the_stop_names_an_infrastructure_error_in_one_line():
    from rl_samples import result

    from harness.records import Outcome
    from trainer.rl.loop import no_sample_reason

    errored = result().model_copy(update={"outcome": Outcome.ERROR, "exit_status": ExitStatus.INFRA_ERROR,
                                          "error": "ModelUnavailable: 127.0.0.1:9 refused\nTraceback ..."})
    assert no_sample_reason(errored) == "infrastructure error: ModelUnavailable: 127.0.0.1:9 refused"
