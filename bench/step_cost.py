"""The harness's CPU per agent step early and late in a conversation (issue 14, item 1). Target: turn 120 within 20%
of turn 10.

Real steps: the CWM agent on a demo task, in its container, through the runner; each step is the model call, the
reply's record, the tool call's parsing, the command's round trip in the container's shell (`seq`, ~3 KB of
output), the observation. The model is a vLLM-like server of bench/model_call_cost.py in its own process (its CPU
is not counted), answering with a ~1 KB reply; it cuts the prompt's ids after those the request declares, as the
servers `cwm-eval serve` starts do. A trial starts from a conversation that already holds SHORT or LONG earlier
turns of CWM's size (a 1 KB reply, a 3 KB observation: about 120K tokens at turn 120) and runs STEPS + 1 steps on
from there, so that the steps timed are centred on the turn measured. The CPU of the threads that do a step's work
(the event loop's, and the executor's, which runs each command's round trip) is read as each model call starts;
the per-trial background (the verification container started while the agent works, the disk and fault watchers,
which cost per second, not per step) is left out and printed apart. A trial's figure is the median over its last
STEPS steps (the first, which sends the whole history once, is left out). Rounds run a short and a long trial one after the other, the order reversed every other round, so load that
comes and goes slows both alike; printed are min/median/max over rounds of the per-round ratio long / short.
With `--before`, each round also runs both against a server that echoes the whole prompt's ids, as plain vLLM does
(the harness before the server cut).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from agents.cwm.agent import CwmAgent, CwmConfig  # noqa: E402
from harness.config import RunConfig  # noqa: E402
from harness.conversation import THINK_PREFILL  # noqa: E402
from harness.model import ModelClient  # noqa: E402
from harness.runner import Runner  # noqa: E402
from model_call_cost import OBSERVATIONS, REPLY, start_server  # noqa: E402
from rounds import describe, per_round  # noqa: E402
from tasks import load_suite  # noqa: E402

TASK = "demo__calc-1"


def history(turns: int) -> list[dict]:
    """`turns` earlier turns as the agent would have them: its reply (after the think prefill), the observation."""
    earlier = []
    for turn in range(1, turns + 1):
        reply = f"{REPLY}{turn}\n</think>\n<tool: bash>\nseq {turn} {turn + 699}\n</tool>"
        earlier += [{"role": "assistant", "content": THINK_PREFILL + reply},
                    {"role": "tool: bash", "content": OBSERVATIONS[turn]}]
    return earlier


class AgentWithHistory(CwmAgent):
    """The CWM agent, its conversation opened with earlier turns already in it."""

    def __init__(self, client: ModelClient, config: CwmConfig, earlier: list[dict]):
        super().__init__(client, config)
        self.earlier = earlier

    def conversation(self, messages: list[dict]):
        return super().conversation(messages + self.earlier)


def thread_cpu() -> dict[int, tuple[str, float]]:
    """Each live thread's CPU seconds, by thread id: (its name, seconds)."""
    seen = {}
    for thread in threading.enumerate():
        try:
            seen[thread.ident] = thread.name, time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, TypeError):  # ended meanwhile
            pass
    return seen


def spent(before: dict, after: dict, step_work: bool) -> float:
    """CPU seconds between two readings of the step's threads (or, with step_work false, of all the others)."""
    def steps(name: str) -> bool:
        return name == "MainThread" or name.startswith("asyncio_")

    return sum(cpu - before.get(ident, (name, 0.0))[1] for ident, (name, cpu) in after.items()
               if steps(name) == step_work)


class Trials:
    def __init__(self, steps: int, output: Path):
        self.steps, self.output, self.numbers, self.marks = steps, output, itertools.count(), []
        self.cwm = CwmConfig(max_turns=steps + 2, context_size=262144, max_action_len=1024)
        self.suite = load_suite("demo")
        self.background: list[float] = []  # per trial: the other threads' CPU over its timed steps, per step
        chat = ModelClient.chat
        marks = self.marks

        async def timed_chat(client, *args, **kwargs):
            marks.append(thread_cpu())
            return await chat(client, *args, **kwargs)

        ModelClient.chat = timed_chat

    def cpu_per_step(self, url: str, earlier: list[dict]) -> float:
        """Median CPU seconds of a trial's last `steps` steps, its conversation opened with `earlier`."""
        self.marks.clear()
        config = RunConfig(suite="demo", agent="cwm", model_url=url, run_id=f"step-cost-{next(self.numbers)}",
                           output=self.output, concurrency=1, cwm=self.cwm)
        client = ModelClient(url)
        client.check()
        agent = AgentWithHistory(client, self.cwm, earlier)
        [result] = asyncio.run(Runner(config, self.suite, agent).run(self.suite.load([TASK])))
        if result.turns < self.steps + 2:
            raise SystemExit(f"the trial ended after {result.turns} turns ({result.exit_status}): {result.error}")
        timed = self.marks[1:]
        self.background.append(spent(timed[0], timed[-1], False) / (len(timed) - 1))
        return statistics.median(spent(a, b, True) for a, b in zip(timed, timed[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--short", type=int, default=10, help="the turn measured early (about)")
    parser.add_argument("--long", type=int, default=120, help="the turn measured late (about)")
    parser.add_argument("--before", action="store_true",
                        help="also against a server that echoes the whole prompt's ids")
    args = parser.parse_args()
    servers = {"cut": start_server("cut"), **({"echo": start_server("echo")} if args.before else {})}
    # the steps timed are centred on the turn measured (the first can be no earlier than turn 2)
    openings = {name: history(max(0, turn - args.steps // 2 - 1))
                for name, turn in (("short", args.short), ("long", args.long))}
    runs = [(server, length) for server in servers for length in openings]
    cpu: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    try:
        with tempfile.TemporaryDirectory() as output:
            trials = Trials(args.steps, Path(output))
            for server, length in runs:  # warm-up: images, imports, caches
                trials.cpu_per_step(servers[server][1], openings[length])
            for number in range(args.rounds):
                for server, length in runs if number % 2 == 0 else runs[::-1]:
                    cpu[server, length].append(trials.cpu_per_step(servers[server][1], openings[length]))
                print(f"round {number + 1}: " + "; ".join(
                    f"{server} {length} {1000 * cpu[server, length][-1]:.2f} ms" for server, length in runs))
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=10)
    print(f"background threads (verification container, watchers), mean CPU per step over a trial's timed steps: "
          f"{describe([1000 * b for b in trials.background], unit=' ms')}")
    for server in servers:
        short, long = cpu[server, "short"], cpu[server, "long"]
        print(f"{server}: CPU per step, median over rounds: turn {args.short} {1000 * statistics.median(short):.2f} "
              f"ms, turn {args.long} {1000 * statistics.median(long):.2f} ms; ratio turn {args.long} / turn "
              f"{args.short} per round: {describe(per_round(long, short))}"
              + ("   target <= 1.20" if server == "cut" else ""))


if __name__ == "__main__":
    main()
