"""`cwm-eval train rl`: put the pieces together — server, samplers (the harness's runner), trainer — and resume."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import torch

from agents.cwm.agent import CwmAgent, CwmConfig
from harness.config import RunConfig
from harness.conversation import ChatRenderer
from harness.model import ModelClient, PolicyClock, Sampling
from harness.runner import Runner
from harness.sandbox import remove_labelled
from harness.serve import VllmServer
from trainer.rl.loop import RLConfig, RLTrainer
from trainer.rl.weights import WeightSync, rl_preset


def resume_point(out: Path, model: str) -> tuple[str, int, int]:
    """(weights to start from, step, policy version): the last pushed weights when a checkpoint exists."""
    state = out / "checkpoint" / "state.json"
    if not state.exists():
        return model, 0, 0
    saved = json.loads(state.read_text())
    return str(out / "weights" / f"v{saved['policy_version']}"), saved["step"], saved["policy_version"]


def train_rl(*, suite, tasks, model: str, out: Path, config: RLConfig, cwm: CwmConfig, run_id: str,
             model_url: str | None = None, port: int = 8100, temperature: float = 1.0, log=print) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    start_from, step, version = resume_point(out, model)
    tokenizer = AutoTokenizer.from_pretrained(start_from)
    policy = AutoModelForCausalLM.from_pretrained(start_from, torch_dtype=torch.float32)
    server = None
    if model_url is None:  # a server of our own, serving exactly the weights we start from
        served = Path(start_from).name
        server = VllmServer(rl_preset(start_from, served), port=port, log_path=out / "vllm.log")
        log(f"starting vLLM for RL on {server.url} (log: {server.log_path})")
        server.start()
        server.wait_ready()
        model_url = server.url
    try:
        clock = PolicyClock(version)
        client = ModelClient(model_url, sampling=Sampling(temperature=temperature, top_p=1.0), logprobs=True)
        client.check()
        client.policy = clock
        agent = CwmAgent(client, cwm.model_copy(update={"token_exact": True, "logprobs": True}),
                         ChatRenderer(tokenizer))
        run_config = RunConfig(suite=suite.name, agent="cwm", model_url=model_url, run_id=run_id,
                               output=out / "results", concurrency=config.concurrency, cwm=agent.config,
                               reject_test_tampering=config.reject_test_tampering)
        runner = Runner(run_config, suite, agent)
        runner.store.write_run({"run_id": run_id, "rl": config.model_dump(), "model": client.model})
        trainer = RLTrainer(config, runner, tasks, policy, tokenizer, WeightSync(model_url, out / "weights", clock), out)
        trainer.step = step
        optimizer_state = out / "checkpoint" / "optimizer.pt"
        if optimizer_state.exists():
            trainer.optimizer.load_state_dict(torch.load(optimizer_state))
        asyncio.run(trainer.run())
        final = out / "final"
        shutil.rmtree(final, ignore_errors=True)
        policy.save_pretrained(final, safe_serialization=True)
        tokenizer.save_pretrained(final)
        return final
    finally:
        remove_labelled(run_id)
        if server is not None:
            server.stop()
