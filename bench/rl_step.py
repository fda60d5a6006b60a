"""RL step benchmark: tokens/s of the policy update, and how idle the samplers are while the trainer steps (the
point of asynchrony: samplers never wait for the trainer).

A real asynchronous RL run (`trainer.rl.run.train_rl`) on the demo suite: the embedded SmolLM2-135M served by the
CPU vLLM build as RL serves it (fp32, processed logprobs), `--concurrency` trials in flight, G attempts per task,
`--ppo-epochs` passes per batch. Read back from what the run leaves:

- update tokens/s: the batch's tokens over the update's seconds (proximal pass + every PPO epoch), per step;
- sampler idle fraction while the trainer steps: over each step's update + weight push window, the share of the
  `concurrency` sampler slots that run no trial (from each trial's start and end in its result.json); and the
  same over the whole run. Close to 0: the samplers kept working while the trainer stepped.

    python bench/rl_step.py                 # 4 steps, group of 2, 2 trials in flight
    python bench/rl_step.py --steps 8 --concurrency 4 --model-url http://127.0.0.1:8100/v1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rounds import describe  # noqa: E402  (bench/rounds.py)


def busy_seconds(trials: list[tuple[float, float]], start: float, end: float) -> float:
    """Trial-seconds spent inside [start, end]."""
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in trials)


def idle_fraction(trials: list[tuple[float, float]], start: float, end: float, slots: int) -> float:
    return 1.0 - busy_seconds(trials, start, end) / (slots * (end - start)) if end > start else 0.0


def trial_spans(results: Path) -> list[tuple[float, float]]:
    spans = []
    for path in results.glob("*/trials/*/*/result.json"):
        record = json.loads(path.read_text())
        spans.append((record["started_at"], record["ended_at"]))
    return spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--ppo-epochs", type=int, default=2)
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--max-tokens-per-turn", type=int, default=32)
    parser.add_argument("--model-url", default=None, help="an RL vLLM server (default: start one)")
    args = parser.parse_args()

    from agents.cwm.config import CwmConfig
    from harness.serve import embedded_preset, materialise_embedded
    from tasks import load_suite
    from trainer.rl.loop import RLConfig
    from trainer.rl.run import RLRun, train_rl

    preset = embedded_preset()
    materialise_embedded(preset)
    suite = load_suite("demo")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rl"
        config = RLConfig(steps=args.steps, group_size=args.group_size, concurrency=args.concurrency,
                          ppo_epochs=args.ppo_epochs, lr=1e-5, drain_seconds=0)
        run = RLRun(model=preset.model, out=out, run_id="bench-rl", model_url=args.model_url)
        train_rl(suite=suite, tasks=suite.load(), run=run, config=config, log=lambda *_: None,
                 cwm=CwmConfig(tools=["bash", "submit"], max_turns=args.max_turns,
                               max_action_len=args.max_tokens_per_turn))
        metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        spans = trial_spans(out / "results")
    print(f"RL on the demo suite: {args.steps} steps, group {args.group_size}, {args.concurrency} trials in flight, "
          f"{args.ppo_epochs} PPO epochs; {len(spans)} trials")
    idle = []
    for m in metrics:
        window = idle_fraction(spans, m["update_started"], m["update_ended"], args.concurrency)
        idle.append(window)
        print(f"step {m['step']}: update {m['update_tokens']} tokens in {m['update_seconds']:.1f} s = "
              f"{m['tokens_per_s']:.0f} tokens/s; push {m['sync_seconds']:.1f} s; samplers idle {window:.1%}")
    print(f"update tokens/s: {describe([m['tokens_per_s'] for m in metrics], '.0f')}")
    print(f"sampler idle fraction while the trainer steps: {describe(idle, '.1%')}")
    first = min(a for a, _ in spans)
    last = metrics[-1]["update_ended"]
    print(f"sampler idle fraction over the run: {idle_fraction(spans, first, last, args.concurrency):.1%}")


if __name__ == "__main__":
    main()
