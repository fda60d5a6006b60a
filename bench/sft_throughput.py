"""SFT throughput: tokens/s of our SFT step (`trainer.sft`) and of TRL's `SFTTrainer`, in one run, on the embedded
SmolLM2-135M, the same CWM-style trajectories, the same packed batch (sequences x max length) and the same loss
(assistant tokens only: TRL gets the model's own template with `{% generation %}` markers, so it masks exactly
the tokens we mask). Target: ratio (ours / TRL) >= 1.0. On a GPU it also prints our step's MFU:
6 * parameters * tokens/s / peak bf16 FLOP/s.

The two are interleaved (issue 14): each trainer is built once and runs in its own thread, which trains only while
it has the turn; each round gives ours and TRL a turn of `--steps-per-turn` optimizer steps, the order reversed
every other round, so load that comes and goes slows both alike. A turn is timed from the hand-over to the end of
its last step; the first turn of each (model loading and `--warmup` steps) is left out. Printed: each round's
tokens/s of both and their ratio, and min/median/max of the per-round ratio.

    python bench/sft_throughput.py                       # CPU: short sequences, few steps
    python bench/sft_throughput.py --max-len 4096 --seqs 8 --rounds 8 --steps-per-turn 5 --peak-flops 989e12  # H100
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from harness.serve import EMBEDDED, embedded_preset, materialise_embedded
from rounds import describe, interleaved, per_round  # bench/rounds.py
from trainer import metrics
from trainer.sft import SftConfig, run_sft

SYSTEM = ("You are a helpful assistant that solves software engineering tasks in a bash environment. Think step by "
          "step inside <think> tags, then call exactly one tool.\n\n# Environment\n- working directory: /testbed")
# SmolLM2's template, with the assistant part marked for TRL's assistant_only_loss (renders the same text)
MARKED_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}"
    "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def trajectory(rng: random.Random, turns: int) -> dict:
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"<issue_description>\nmodule_{rng.randrange(99)}.py fails on empty "
                                            "input.\n</issue_description>"}]
    for turn in range(turns):
        path = f"/testbed/pkg/module_{rng.randrange(99)}.py"
        messages.append({"role": "assistant", "content": f"<think>\nTurn {turn}: look at {path} next; the failing "
                         f"branch is probably near line {rng.randrange(400)}.\n</think>\n<tool: bash>\n"
                         f"sed -n {rng.randrange(100)},{rng.randrange(100, 200)}p {path}\n</tool>"})
        body = "\n".join(f"    value_{i} = compute(value_{i - 1}, {rng.randrange(1000)})" for i in range(1, 12))
        messages.append({"role": "tool: bash", "content": f"<output>\ndef handler(value_0):\n{body}\n</output>"})
    messages.append({"role": "assistant",
                     "content": "<think>\nFixed.\n</think>\n<tool: submit>\n/testbed/p.diff\n</tool>"})
    return {"messages": messages}


def make_rows(path: Path, count: int, max_turns: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    path.write_text("".join(json.dumps(trajectory(rng, rng.randint(1, max_turns))) + "\n" for _ in range(count)))


class Stop(Exception):
    """Raised inside a trainer's step hook to end its loop once the rounds are over."""


class Turns:
    """A training loop in its own thread that trains only while it has the turn. `loop(step_done)` must call
    `step_done(tokens)` at the end of each optimizer step; `turn(steps)` lets it run that many steps and returns
    (tokens, seconds) timed from the hand-over to the end of the last one."""

    def __init__(self, loop):
        self.go, self.back = threading.Semaphore(0), threading.Semaphore(0)
        self.left = self.tokens = 0
        self.closing = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, args=(loop,), daemon=True)
        self.thread.start()

    def _main(self, loop) -> None:
        self.go.acquire()
        if self.closing:  # closed before its first turn
            return
        try:
            loop(self.step_done)
            self.error = RuntimeError("the training loop ended before the rounds did")
        except Stop:
            pass
        except BaseException as exc:  # handed to the main thread by turn()
            self.error = exc
        finally:
            self.back.release()

    def step_done(self, tokens: int) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.tokens += tokens
        self.left -= 1
        if self.left == 0:
            self.back.release()
            self.go.acquire()
            if self.closing:
                raise Stop

    def turn(self, steps: int) -> tuple[int, float]:
        self.left, self.tokens = steps, 0
        started = time.perf_counter()
        self.go.release()
        self.back.acquire()
        seconds = time.perf_counter() - started
        if self.error is not None:
            raise self.error
        return self.tokens, seconds

    def close(self) -> None:
        self.closing = True
        self.go.release()
        self.thread.join()


def ours(data: Path, out: Path, args, steps: int):
    """Our SFT loop, its steps reported through its log (the metrics line of a step is written before its log)."""
    config = SftConfig(model=EMBEDDED, data=[data], out=out, lr=1e-5, max_len=args.max_len,
                       batch_tokens=args.max_len * args.seqs, max_steps=steps, save_every=0)

    def loop(step_done) -> None:
        def log(message: str) -> None:
            if message.startswith("step "):
                step_done(metrics.read(out)[-1]["tokens"])

        run_sft(config, log=log)

    return loop


def trl(data: Path, out: Path, model_path: str, args, steps: int):
    """TRL's SFTTrainer with the same model, data, packed batch, loss mask, optimizer and schedule."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    def loop(step_done) -> None:
        class Clock(TrainerCallback):
            seen = 0

            def on_step_end(self, args, state, control, **kwargs):
                tokens, self.seen = state.num_input_tokens_seen - self.seen, state.num_input_tokens_seen
                step_done(tokens)

        tokenizer = AutoTokenizer.from_pretrained(model_path)
        tokenizer.chat_template = MARKED_TEMPLATE
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, attn_implementation="sdpa")
        config = SFTConfig(output_dir=str(out), max_length=args.max_len, packing=True,
                           per_device_train_batch_size=args.seqs, gradient_accumulation_steps=1, max_steps=steps,
                           learning_rate=1e-5, lr_scheduler_type="cosine", max_grad_norm=1.0,
                           bf16=torch.cuda.is_available(), assistant_only_loss=True,
                           activation_checkpointing=False,  # TRL's default is on; ours is off
                           include_num_input_tokens_seen="non_padding", logging_steps=1, save_strategy="no",
                           report_to="none", dataloader_num_workers=0, seed=0, disable_tqdm=True)
        dataset = load_dataset("json", data_files=str(data))["train"]
        SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                   callbacks=[Clock()]).train()

    return loop


def measure(contenders: dict[str, Turns], args) -> dict[str, list[float]]:
    """Warm each up in its own first turn (untimed), then the interleaved rounds; tokens/s per round."""
    for turns in contenders.values():
        turns.turn(args.warmup)
    results = interleaved({name: lambda t=turns: t.turn(args.steps_per_turn) for name, turns in contenders.items()},
                          args.rounds)
    return {name: [tokens / seconds for tokens, seconds in runs] for name, runs in results.items()}


def report(rates: dict[str, list[float]], args, device: str) -> float:
    """Prints the rounds and the spread of the ratio; returns our median tokens/s."""
    ratios = per_round(rates["ours"], rates["TRL"])
    print(f"SFT throughput on {device}: SmolLM2-135M, {args.seqs} x {args.max_len} tokens per step, "
          f"{args.rounds} rounds of {args.steps_per_turn} steps each, interleaved (after {args.warmup} warm-up steps)")
    print(f"{'round':>7}{'ours tokens/s':>15}{'TRL tokens/s':>15}{'ratio':>8}")
    for number, (a, b, ratio) in enumerate(zip(rates["ours"], rates["TRL"], ratios), 1):
        print(f"{number:>7}{a:>15,.0f}{b:>15,.0f}{ratio:>7.2f}x")
    for name, values in rates.items():
        print(f"  {name}: tokens/s {describe(values, ',.0f')}")
    print(f"  ratio ours/TRL per round: {describe(ratios, '.2f', 'x')}   (target >= 1.0)")
    return statistics.median(rates["ours"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    gpu = torch.cuda.is_available()
    parser.add_argument("--max-len", type=int, default=4096 if gpu else 512, help="tokens per packed sequence")
    parser.add_argument("--seqs", type=int, default=8 if gpu else 2, help="packed sequences per step")
    parser.add_argument("--rounds", type=int, default=8 if gpu else 6, help="turns of each trainer, interleaved")
    parser.add_argument("--steps-per-turn", type=int, default=5 if gpu else 2, help="optimizer steps per turn")
    parser.add_argument("--warmup", type=int, default=3 if gpu else 2, help="steps left out of the measurement")
    parser.add_argument("--peak-flops", type=float, default=989e12, help="peak bf16 FLOP/s (H100 SXM: 989e12)")
    args = parser.parse_args()
    preset = embedded_preset()
    materialise_embedded(preset)
    max_turns = max(1, args.max_len // 250)
    steps = args.warmup + args.rounds * args.steps_per_turn
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.jsonl"
        make_rows(data, count=args.seqs * steps * 4, max_turns=max_turns)
        contenders = {"ours": Turns(ours(data, Path(tmp) / "ours", args, steps)),
                      "TRL": Turns(trl(data, Path(tmp) / "trl", preset.model, args, steps))}
        try:
            rates = measure(contenders, args)
        finally:
            for contender in contenders.values():
                contender.close()
    device = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    ours_rate = report(rates, args, device)
    if gpu:
        from transformers import AutoConfig, AutoModelForCausalLM

        with torch.device("meta"):
            params = sum(p.numel() for p in AutoModelForCausalLM.from_config(
                AutoConfig.from_pretrained(preset.model)).parameters())
        print(f"  MFU (ours, median round): {6 * params * ours_rate / args.peak_flops:.1%} of "
              f"{args.peak_flops:.3g} FLOP/s")


if __name__ == "__main__":
    main()
