"""The harness's CPU per agent step over a whole 128-turn trial (issue 14, item 1, measured as the issue measured it:
CPU per step of a real trial, early against late). Target: turn 120 within 20% of turn 10.

A real trial: the CWM agent on a demo task, in its container, through the runner; the model is the vLLM-like
server of bench/model_call_cost.py in its own process (its CPU is not counted), answering every turn with a ~1 KB
reply and a command printing ~3 KB, so that the prompt reaches about 120K tokens by turn 120, CWM's size. This
process's CPU (time.process_time, all its threads) is read as each model call starts: a step's CPU is the
difference between two calls (the reply's handling, the tool call's parsing, the command's round trip in the
container's shell, the trajectory record, the next request). Printed per trial: the median CPU per step over the
8 steps ending at each turn measured; then min/median/max over trials of the ratio turn 120 / turn 10. With
`--before`, trials alternate (ABBA...) with trials whose model requests go through httpx, as before aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from agents import make_agent  # noqa: E402
from agents.cwm.agent import CwmConfig  # noqa: E402
from harness.config import RunConfig  # noqa: E402
from harness.endpoints import Endpoint  # noqa: E402
from harness.model import ModelClient  # noqa: E402
from harness.runner import Runner  # noqa: E402
from tasks import load_suite  # noqa: E402
from model_call_cost import httpx_post  # noqa: E402

STEPS = 8
TURNS = 128
TASK = "demo__calc-1"


def step_cpu(marks: list[float], turn: int) -> float:
    """Median CPU seconds of the STEPS steps ending at `turn` (step k runs from call k to call k + 1)."""
    return statistics.median(marks[k + 1] - marks[k] for k in range(turn - STEPS, turn))


def trial(url: str, output: Path, number: int, marks: list[float]) -> None:
    marks.clear()
    cwm = CwmConfig(max_turns=TURNS, context_size=262144, max_action_len=1024)
    config = RunConfig(suite="demo", agent="cwm", model_url=url, run_id=f"step-cost-{number}", output=output,
                       concurrency=1, cwm=cwm)
    suite = load_suite("demo")
    agent = make_agent("cwm", model_url=url, cwm_config=cwm)
    [result] = asyncio.run(Runner(config, suite, agent).run(suite.load([TASK])))
    if result.turns < TURNS - 1:
        raise SystemExit(f"the trial ended after {result.turns} turns ({result.exit_status}): {result.error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--short", type=int, default=10)
    parser.add_argument("--long", type=int, default=120)
    parser.add_argument("--before", action="store_true", help="alternate with trials through httpx")
    args = parser.parse_args()
    marks: list[float] = []
    chat = ModelClient.chat

    async def timed_chat(self, *call_args, **kwargs):
        marks.append(time.process_time())
        return await chat(self, *call_args, **kwargs)

    ModelClient.chat = timed_chat
    server = subprocess.Popen([sys.executable, str(Path(__file__).parent / "model_call_cost.py"), "--serve"],
                              stdout=subprocess.PIPE, text=True)
    paths = {"aiohttp": Endpoint.post, **({"httpx": httpx_post} if args.before else {})}
    ratios: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    run_ids = itertools.count(1)
    try:
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
        with tempfile.TemporaryDirectory() as output:
            trial(url, Path(output), 0, marks)  # warm-up: images, imports, caches
            for number in range(1, args.trials + 1):
                for name in paths if number % 2 else reversed(paths):
                    Endpoint.post = paths[name]
                    trial(url, Path(output), next(run_ids), marks)
                    short, long = step_cpu(marks, args.short), step_cpu(marks, args.long)
                    ratios[name].append(long / short)
                    cpu[name].append((short, long))
                    print(f"trial {number} ({name}): {len(marks)} model calls; CPU per step at turn {args.short}: "
                          f"{1000 * short:.2f} ms, at turn {args.long}: {1000 * long:.2f} ms; ratio {long / short:.2f}")
    finally:
        Endpoint.post = paths["aiohttp"]
        server.terminate()
        server.wait(timeout=10)
    for name, values in ratios.items():
        short, long = (1000 * statistics.median(x[i] for x in cpu[name]) for i in (0, 1))
        print(f"{name}: CPU per step, median over trials: turn {args.short} {short:.2f} ms, turn {args.long} "
              f"{long:.2f} ms; ratio turn {args.long} / turn {args.short} per trial: min {min(values):.2f}  "
              f"median {statistics.median(values):.2f}  max {max(values):.2f}   target <= 1.20")


if __name__ == "__main__":
    main()
