"""Trials per minute on the demo suite with a scripted instant model, at concurrency 1, 2, 4 and 8 (local executor;
`--levels` adds more): each level is one run of at least 4 x concurrency trials (the three demo tasks times enough
attempts), so the pool stays full; the peak in flight, from the trials' start and end times, is printed.

Per level: trials/min; the speed-up over concurrency 1, per round (min/median/max); the harness process's CPU per
agent step (the scripted model server runs in a child process and is not counted); dockerd + containerd's and the
containers' CPU per step; their sum per trial (a lower bound: containerd's shims and runc exit with their
containers and are not counted), from which the CPU-bound ceiling (cores x 60 / CPU s per trial) is
worked out; and how busy the host's CPUs were, before the bench and during each level (other work on the host slows
every figure). Levels are interleaved over rounds (the order reversed every other round, after one untimed warm-up)."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))
from cpu_meters import background_busy, snapshot, used  # noqa: E402  (bench/cpu_meters.py)
from helpers import run_demo  # noqa: E402
from rounds import interleaved, per_round, spread  # noqa: E402  (bench/rounds.py)

TURNS = 4
LEVELS = (1, 2, 4, 8)
TASKS = ["demo__calc-1", "demo__textutils-2", "demo__inventory-3"]
PER_SLOT = 4  # a level runs at least PER_SLOT x concurrency trials

SERVER = """
import sys
sys.path.insert(0, sys.argv[1])
from helpers import turn
from scripted_server import ScriptedServer
with ScriptedServer([turn("Look around.", "bash", "ls")] * 100_000) as server:
    print(server.url, flush=True)
    sys.stdin.read()
"""


@dataclass
class Batch:
    per_minute: float
    trials: int
    steps: int
    peak_in_flight: int
    errors: int
    cpu: dict  # CPU seconds: process, daemons, containers (None: unreadable); host_busy 0..1

    def per_step_ms(self, key: str) -> float | None:
        value = self.cpu.get(key)
        return None if value is None else 1000 * value / self.steps

    def trial_cpu(self) -> float | None:
        """CPU seconds per trial: harness + Docker daemons + containers."""
        parts = [self.cpu.get(key) for key in ("process", "daemons", "containers")]
        return None if None in parts else sum(parts) / self.trials


def peak_overlap(results) -> int:
    """The most trials that were running at the same moment."""
    edges = sorted([(r.started_at, 1) for r in results] + [(r.ended_at, -1) for r in results])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def measure(tmp: Path, url: str, concurrency: int, runs) -> Batch:
    """One run of >= PER_SLOT x concurrency trials at this concurrency."""
    before, started = snapshot(), time.perf_counter()
    results = run_demo(tmp, "cwm", task_ids=TASKS, model_url=url, concurrency=concurrency,
                       run_id=f"c{concurrency}-{next(runs)}", max_turns=TURNS,
                       run_options={"attempts": math.ceil(PER_SLOT * concurrency / len(TASKS))})
    wall = time.perf_counter() - started
    return Batch(60 * len(results) / wall, len(results), sum(r.turns for r in results) or 1, peak_overlap(results),
                 sum(1 for r in results if r.outcome.value == "error"), used(before, snapshot()))


def start_server() -> tuple[subprocess.Popen, str]:
    """The scripted model in a child process, so its CPU time is not the harness's."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(TESTS)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str, scale: float = 1.0) -> str:
    return "n/a" if value is None else format(scale * value, spec)


HEADER = (f"{'concurrency':>11}{'trials':>7}{'in flight':>10}{'trials/min':>11}{'speed-up min/med/max':>22}"
          f"{'linear %':>9}{'ms/step: harness':>17}{'daemons':>8}{'containers':>11}{'CPU s/trial':>12}"
          f"{'host busy':>10}")


def row(c: int, rows: list[Batch], speedups: list[float], base: int) -> str:
    low, mid, high = spread(speedups)
    return (f"{c:>11}{rows[0].trials:>7}{min(b.peak_in_flight for b in rows):>10}"
            f"{statistics.median(b.per_minute for b in rows):>11.1f}{f'{low:.2f} / {mid:.2f} / {high:.2f}':>22}"
            f"{100 * mid * base / c:>9.0f}{fmt(median(b.per_step_ms('process') for b in rows), '.1f'):>17}"
            f"{fmt(median(b.per_step_ms('daemons') for b in rows), '.0f'):>8}"
            f"{fmt(median(b.per_step_ms('containers') for b in rows), '.0f'):>11}"
            f"{fmt(median(b.trial_cpu() for b in rows), '.2f'):>12}"
            f"{fmt(median(b.cpu['host_busy'] for b in rows), '.0f', 100) + '%':>10}")


def report(rounds: dict[int, list[Batch]], count: int, background: float | None) -> None:
    levels = list(rounds)
    rate = {c: [b.per_minute for b in rows] for c, rows in rounds.items()}
    print(f"{count} rounds, levels interleaved; medians over rounds (speed-up: per round, min/median/max); "
          f"host CPUs busy before the bench: {fmt(background, '.0f', 100)}%")
    print(HEADER)
    for c in levels:
        print(row(c, rounds[c], per_round(rate[c], rate[levels[0]]), levels[0]))
    cost = median(b.trial_cpu() for b in rounds[levels[-1]])
    ceiling = f"{60 * os.cpu_count() / cost:.0f} trials/min" if cost else "n/a"
    errors = sum(b.errors for rows in rounds.values() for b in rows)
    print(f"cores: {os.cpu_count()}; CPU-bound ceiling (cores x 60 / CPU s per trial at the top level): {ceiling}; "
          f"infrastructure errors: {errors}; a trial: {TURNS} scripted bash steps, then grading")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2, help="rounds (each runs every concurrency level once)")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrency levels, e.g. 1,2,4,8,16")
    parser.add_argument("--json", type=Path, help="also write the per-round figures here")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    runs = itertools.count()
    server, url = start_server()
    try:
        background = background_busy()
        with tempfile.TemporaryDirectory() as tmp:
            measure(Path(tmp), url, 1, runs)  # warm-up: imports, first container start
            rounds = interleaved({c: lambda c=c: measure(Path(tmp), url, c, runs) for c in levels}, args.rounds)
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    report(rounds, args.rounds, background)
    if args.json:
        args.json.write_text(json.dumps({c: [vars(b) for b in rows] for c, rows in rounds.items()}, indent=1))


if __name__ == "__main__":
    main()
