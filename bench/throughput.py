"""Trials per minute on the demo suite with a scripted instant model, at concurrency 1, 2, 4 and 8 (local
executor), in one run; the speed-up at each step (target: within 80% of linear until the cores are saturated)
and the harness's CPU time per trial step. The concurrency levels are interleaved over rounds (the order reversed
every other round, after one untimed warm-up run) and the speed-up is taken per round: min/median/max."""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import run_demo, turn  # noqa: E402
from rounds import interleaved, per_round, spread  # noqa: E402  (bench/rounds.py)
from scripted_server import ScriptedServer  # noqa: E402

TURNS = 4
LEVELS = (1, 2, 4, 8)
TASKS = ["demo__calc-1", "demo__textutils-2", "demo__inventory-3"]


def measure(tmp: Path, url: str, concurrency: int, runs) -> tuple[float, float]:
    """One timed batch at this concurrency: (trials per minute, harness CPU ms per trial step)."""
    cpu, started = os.times(), time.perf_counter()
    results = []
    for _ in range(max(1, concurrency // 2 + 1)):
        results += run_demo(tmp, "cwm", task_ids=TASKS, model_url=url, concurrency=concurrency,
                            run_id=f"c{concurrency}-{next(runs)}", max_turns=TURNS)
    wall = time.perf_counter() - started
    used = os.times()
    cpu_seconds = (used.user - cpu.user) + (used.system - cpu.system)
    return 60 * len(results) / wall, 1000 * cpu_seconds / (len(results) * TURNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4, help="rounds (each runs every concurrency level once)")
    args = parser.parse_args()
    script = [turn("Look around.", "bash", "ls")] * 10_000
    runs = itertools.count()
    with ScriptedServer(script) as server, tempfile.TemporaryDirectory() as tmp:
        measure(Path(tmp), server.url, 1, runs)  # warm-up: imports, first container start
        rounds = interleaved({c: lambda c=c: measure(Path(tmp), server.url, c, runs) for c in LEVELS}, args.rounds)
    rate = {c: [per_minute for per_minute, _ in rows] for c, rows in rounds.items()}
    print(f"{args.rounds} rounds, concurrency levels interleaved; medians, and the per-round speed-up's spread")
    print(f"{'concurrency':>11}{'trials/min':>12}{'speed-up min/median/max':>26}{'linear %':>10}"
          f"{'harness CPU ms/step':>21}")
    for c in LEVELS:
        low, mid, high = spread(per_round(rate[c], rate[1]))
        cpu_ms = statistics.median(ms for _, ms in rounds[c])
        print(f"{c:>11}{statistics.median(rate[c]):>12.1f}{f'{low:.2f} / {mid:.2f} / {high:.2f}':>26}"
              f"{100 * mid / c:>10.0f}{cpu_ms:>21.1f}")
    print(f"cores: {os.cpu_count()} (scaling past the core count is not expected)")


if __name__ == "__main__":
    main()
