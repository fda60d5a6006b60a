"""Startup latency of `cwm-eval run`: seconds from spawning the process to the Docker daemon's `create` event of
the run's first container. Target (issue 14): <= 2 s on a warm machine (images built, caches warm).

Each round runs `cwm-eval run demo --agent oracle --task TASK` under a fresh run id (one warm-up round first, not
counted), then reads the run's container `create` events back from `docker events`. Prints the rounds and
min/median/max, then once the biggest imports the same command makes before its first container (under
`python -X importtime`, the process exiting where the container would be created).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from rounds import describe  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "harness.cli"]
OWN = ("harness", "agents", "tasks", "trainer", "bench")
TARGET_S = 2.0


def run_command(task: str, output: Path, run_id: str) -> list[str]:
    return ["run", "demo", "--agent", "oracle", "--task", task, "--output", str(output), "--run-id", run_id]


def first_create(run_id: str, since: float, until: float) -> float:
    """The wall-clock time of the run's first container `create` event."""
    events = subprocess.run(
        ["docker", "events", "--since", f"{since - 1:.3f}", "--until", f"{until + 1:.3f}",
         "--filter", "type=container", "--filter", "event=create", "--filter", f"label=cwm-eval.run={run_id}",
         "--format", "{{.TimeNano}}"], capture_output=True, text=True, check=True).stdout.split()
    if not events:
        raise RuntimeError(f"run {run_id} created no container")
    return min(int(nanos) for nanos in events) / 1e9


def one_round(task: str, output: Path, number: int) -> float:
    run_id = f"bench-startup-{int(time.time())}-{number}"
    started = time.time()
    done = subprocess.run(CLI + run_command(task, output, run_id), cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"round {number} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return first_create(run_id, started, time.time()) - started


# the run as the CLI runs it, up to its first container, where the process exits instead of creating it
UNTIL_FIRST_CONTAINER = """
import os, sys
from harness import sandbox
from harness.cli import main
sandbox.Sandbox.start = staticmethod(lambda *args, **kwargs: os._exit(0))
sys.argv = ["cwm-eval"] + sys.argv[1:]
main()
"""


def parse_importtime(stderr: str) -> list[tuple[int, str, int]]:
    """(depth, module, cumulative µs) in the post-order `-X importtime` prints."""
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative, name = line[len("import time:"):].split("|")
            rows.append(((len(name) - len(name.lstrip())) // 2, name.strip(), int(cumulative)))
    return rows


def import_offenders(task: str, output: Path, top: int) -> tuple[int, list[tuple[int, str, str]]]:
    """All imports' µs before the first container, and (cumulative µs, module, its importer) for the costliest
    third-party top-level packages among them."""
    run_id = f"bench-imports-{int(time.time())}"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", UNTIL_FIRST_CONTAINER]
                          + run_command(task, output, run_id), cwd=ROOT, capture_output=True, text=True)
    rows = parse_importtime(done.stderr)
    best: dict[str, tuple[int, str, str]] = {}
    for index, (depth, name, cumulative) in enumerate(rows):
        root = name.split(".")[0]
        if root in OWN or root in sys.stdlib_module_names or root.startswith("_"):
            continue
        parent = next((n for d, n, _ in rows[index + 1:] if d < depth), "-")
        if cumulative > best.get(root, (0,))[0]:
            best[root] = (cumulative, name, parent)
    total = sum(cumulative for depth, _, cumulative in rows if depth == 0)
    return total, sorted(best.values(), reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5, help="rounds counted (after one warm-up round)")
    parser.add_argument("--task", default="demo__calc-1", help="a demo task id")
    parser.add_argument("--top", type=int, default=12, help="import offenders listed")
    args = parser.parse_args()
    output = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        print(f"warm-up round: {one_round(args.task, output, 0):.2f} s (not counted)")
        seconds = []
        for number in range(1, args.n + 1):
            seconds.append(one_round(args.task, output, number))
            print(f"round {number}: {seconds[-1]:.2f} s to the first container")
        print(f"start -> first container: {describe(seconds, unit=' s')}   target: median <= {TARGET_S:.0f} s")
        total, offenders = import_offenders(args.task, output, args.top)
        print(f"\nimports of `cwm-eval run demo --agent oracle` before its first container: {total / 1e6:.2f} s; "
              "the biggest third-party ones (cumulative, importer):")
        for micros, name, parent in offenders:
            print(f"{micros / 1000:>9.1f} ms  {name:<40} <- {parent}")
    finally:
        shutil.rmtree(output, ignore_errors=True)


if __name__ == "__main__":
    main()
