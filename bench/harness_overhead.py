"""The harness's own overhead on a real-model run: the share of trial wall time that is neither model generation,
command execution, the container's lifecycle nor verification. Target: <= 1%.

Runs the CWM agent on the demo suite against a served model (default: the embedded model, started or reused on
port 8000), then splits every trial's wall time with the timings the runner records: the model's seconds and the
commands' seconds (per call), and the runner's phases. The harness's own share is what is left: the agent's loop
(parsing, prompts, trajectory records), scheduling and result writing. Printed per category and, for the harness's
own share, min/median/max over trials.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from agents import make_agent
from agents.cwm.agent import CwmConfig
from harness.config import RunConfig
from harness.records import TrialResult
from harness.runner import Runner
from harness.serve import ensure_embedded_server
from tasks import load_suite

LIFECYCLE = ("prepare", "start", "setup", "close", "remove")  # image check, start, setup + shell, shell end, removal
VERIFICATION = ("collect", "verify")  # the patch taken from the container, then the fresh verifier container
OWN = "harness's own (loop, parsing, records, scheduling)"


def breakdown(result: TrialResult) -> dict[str, float]:
    phase = result.phases
    parts = {"model generation": result.usage.model_seconds, "agent commands": result.usage.command_seconds,
             "container lifecycle": sum(phase.get(name, 0.0) for name in LIFECYCLE) + result.usage.setup_seconds,
             "verification": sum(phase.get(name, 0.0) for name in VERIFICATION)}
    parts[OWN] = result.wall_seconds - sum(parts.values())
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-url", default=None)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-tokens-per-turn", type=int, default=128)
    parser.add_argument("--attempts", type=int, default=1, help="trials per demo task")
    parser.add_argument("--output", type=Path, default=Path("results"))
    args = parser.parse_args()
    url = args.model_url or ensure_embedded_server()
    config = RunConfig(suite="demo", agent="cwm", model_url=url, run_id=f"bench-overhead-{int(time.time())}",
                       output=args.output, concurrency=1, attempts=args.attempts,
                       cwm=CwmConfig(max_turns=args.max_turns, max_action_len=args.max_tokens_per_turn))
    suite = load_suite("demo")
    agent = make_agent("cwm", model_url=url, cwm_config=config.cwm)
    results = asyncio.run(Runner(config, suite, agent).run(suite.load()))

    parts = [breakdown(r) for r in results]
    total = sum(r.wall_seconds for r in results)
    print(f"{len(results)} trials, {sum(r.turns for r in results)} turns, {total:.2f} s of trial wall time")
    for name in parts[0]:
        seconds = sum(p[name] for p in parts)
        print(f"  {name:<52}{seconds:>9.3f} s {100 * seconds / total:>6.2f}%")
    own = [100 * p[OWN] / r.wall_seconds for p, r in zip(parts, results)]
    print(f"harness's own share per trial: min {min(own):.2f}%  median {statistics.median(own):.2f}%  "
          f"max {max(own):.2f}%   target <= 1%")


if __name__ == "__main__":
    main()
