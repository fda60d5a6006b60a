"""`cwm-eval train rl`: put the pieces together — server, samplers (the harness's runner), trainer — and resume."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from agents.cwm.agent import CwmAgent, CwmConfig
from harness.config import RunConfig
from harness.conversation import ChatRenderer
from harness.errors import UserError
from harness.model import ModelClient, PolicyClock, Sampling
from harness.runner import Runner
from harness.sandbox import remove_labelled
from harness.serve import VllmServer
from trainer.rl.loop import RLConfig, RLTrainer
from trainer.rl.server_check import PUSH_HINT, START_HINT, check_policy_server
from trainer.rl.weights import WeightSync, rl_preset


@dataclass
class RLRun:
    """Where and how: the model to start from, the output folder, the server and the sampling."""

    model: str
    out: Path
    run_id: str = "rl"
    model_url: str | None = None  # an external vLLM server (default: start one)
    port: int = 8100
    temperature: float = 1.0
    resume: bool = False
    logprob_tolerance: float = 0.05  # the server's logprobs against the trainer's (bf16 servers need room)


def checkpoint_state(out: Path) -> dict | None:
    state = out / "checkpoint" / "state.json"
    return json.loads(state.read_text()) if state.exists() else None


def resume_point(run: RLRun) -> tuple[str, dict | None]:
    """The weights to start from and the checkpoint state: the last pushed weights when resuming."""
    state = checkpoint_state(run.out)
    if run.resume and state is None:
        raise UserError(f"--resume: {run.out} has no RL checkpoint to continue")
    if not run.resume and state is not None:
        raise UserError(f"{run.out} holds an RL run at step {state['step']}: pass --resume to continue it, or "
                        "choose another --out")
    if state is None:
        return run.model, None
    return str(run.out / "weights" / f"v{state['policy_version']}"), state


def train_rl(*, suite, tasks, run: RLRun, config: RLConfig, cwm: CwmConfig, log=print) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run.out.mkdir(parents=True, exist_ok=True)
    start_from, state = resume_point(run)
    tokenizer = AutoTokenizer.from_pretrained(start_from)
    policy = AutoModelForCausalLM.from_pretrained(start_from, torch_dtype=torch.float32)
    version = state["policy_version"] if state else 0
    server, model_url = None, run.model_url
    if model_url is None:  # a server of our own, serving exactly the weights we start from
        server = VllmServer(rl_preset(start_from, Path(start_from).name), port=run.port,
                            log_path=run.out / "vllm.log")
        log(f"starting vLLM for RL on {server.url} (log: {server.log_path})")
        server.start()
        server.wait_ready()
        model_url = server.url
    try:
        clock = PolicyClock(version)
        client = ModelClient(model_url, sampling=Sampling(temperature=run.temperature, top_p=1.0), logprobs=True)
        client.check()
        def verify(hint: str = PUSH_HINT) -> float:
            return check_policy_server(model_url, client.model, policy, tokenizer, run.logprob_tolerance, hint)

        verify(START_HINT)
        client.policy = clock
        agent = CwmAgent(client, cwm.model_copy(update={"token_exact": True, "logprobs": True}),
                         ChatRenderer(tokenizer))
        run_config = RunConfig(suite=suite.name, agent="cwm", model_url=model_url, run_id=run.run_id,
                               output=run.out / "results", concurrency=config.concurrency, cwm=agent.config,
                               reject_test_tampering=config.reject_test_tampering)
        runner = Runner(run_config, suite, agent)
        runner.store.write_run({"run_id": run.run_id, "rl": config.model_dump(), "model": client.model})
        trainer = RLTrainer(config, runner, tasks, policy, tokenizer, WeightSync(model_url, run.out / "weights", clock),
                            run.out, verify=verify)
        if state is not None:
            trainer.restore(state)
            log(f"resuming at step {trainer.step}, policy version {version}")
        asyncio.run(trainer.run())
        final = run.out / "final"
        shutil.rmtree(final, ignore_errors=True)
        policy.save_pretrained(final, safe_serialization=True)
        tokenizer.save_pretrained(final)
        return final
    finally:
        remove_labelled(run.run_id)
        if server is not None:
            server.stop()
