"""Per-command overhead: the persistent session vs one `docker exec` per command (mini-swe-agent's way).

Both run `true` in the same container, interleaved (issue 14): each round times a block of session commands and a
block of `docker exec` commands, the order reversed every other round, so load that comes and goes slows both
alike. Prints p50/p99/mean of each over all rounds, and min/median/max over the rounds of the per-round ratio
(p50 docker exec / p50 session).
Target: session p50 <= 2 ms, ratio >= 30x.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

from harness.images import bootstrap_base
from harness.sandbox import Sandbox
from rounds import describe, interleaved, per_round  # bench/rounds.py


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_calls(call, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10, help="rounds (each times one block of each method)")
    parser.add_argument("-n", type=int, default=30, help="commands per method per round")
    args = parser.parse_args()
    with Sandbox.start(bootstrap_base(), workdir="/tmp") as sandbox:
        with sandbox.session(timeout=30) as session:
            exec_true = ["docker", "exec", sandbox.id, "bash", "-c", "true"]
            methods = {"persistent session": lambda: session.run("true"),
                       "docker exec per command": lambda: subprocess.run(exec_true, check=True, capture_output=True)}
            for call in methods.values():  # warm-up
                time_calls(call, 5)
            blocks = interleaved({name: lambda call=call: time_calls(call, args.n) for name, call in methods.items()},
                                 args.rounds)
    session_blocks, exec_blocks = blocks["persistent session"], blocks["docker exec per command"]
    print(f"{args.rounds} rounds of {args.n} commands per method, interleaved")
    print(f"{'method':<26}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}   per-round p50 ms")
    for name, rounds in blocks.items():
        samples = [ms for block in rounds for ms in block]
        print(f"{name:<26}{percentile(samples, .5):>10.3f}{percentile(samples, .99):>10.3f}"
              f"{statistics.mean(samples):>10.3f}   {describe([percentile(b, .5) for b in rounds], '.3f')}")
    ratios = per_round([percentile(b, .5) for b in exec_blocks], [percentile(b, .5) for b in session_blocks])
    print(f"ratio per round (p50 docker exec / p50 session): {describe(ratios, '.1f', 'x')}   "
          "targets: session p50 <= 2 ms, ratio >= 30x")


if __name__ == "__main__":
    main()
