"""Grading overhead per SWE-bench instance: the wall time of grading (patch apply chain, eval script, swebench's
report) minus the time of the instance's test command alone, measured side by side: each round grades every instance
and times its test command alone, interleaved. Uses the demo suite and its gold patches.

`runner`: grading as the runner does it, in the container the suite started while the agent worked (started here
before the clock, and removed after it, as the runner removes it beside the agent's container). `cold`: `grade()`
alone, its container's start and removal included. Target: runner overhead <= 0.5 s per instance.

    python bench/grading_overhead.py [rounds]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.sandbox import Sandbox
from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT
from tasks import load_suite

TARGET = 0.5


def test_command(eval_script: str) -> str:
    """The lines between swebench's start and end markers: the test command itself."""
    body = eval_script.split(START_TEST_OUTPUT, 1)[1].split("\n", 1)[1].split(END_TEST_OUTPUT, 1)[0]
    return "\n".join(line for line in body.splitlines() if not line.startswith(":"))


def time_test_command_alone(task) -> float:
    row = task.metadata
    with Sandbox.start(task.image, workdir="/testbed") as sandbox:
        for name, patch in (("gold", row["patch"]), ("test", row["test_patch"])):
            sandbox.write_file(f"/tmp/{name}.diff", patch)
            assert sandbox.exec(f"git apply /tmp/{name}.diff").exit_code == 0
        command = test_command(row["eval_script"])
        started = time.perf_counter()
        sandbox.exec(command)
        return time.perf_counter() - started


def time_grading(suite, task, log_dir: Path, warm: bool) -> float:
    verifier = suite.start_verifier(task) if warm else None
    if verifier is not None:
        verifier.wait()  # started while the agent worked
    try:
        started = time.perf_counter()
        extra = {"verifier": verifier} if verifier is not None else {}
        verdict = suite.verify(task, task.metadata["patch"], log_dir, **extra)
        seconds = time.perf_counter() - started
    finally:
        if verifier is not None:
            verifier.close()
    assert verdict.resolved, (task.id, verdict.details)
    return seconds


def spread(values: list[float]) -> str:
    return f"min {min(values):.3f}  median {statistics.median(values):.3f}  max {max(values):.3f}"


def main(rounds: int) -> None:
    suite = load_suite("demo")
    tasks = suite.load()
    for task in tasks:
        suite.prepare(task)
    overheads: dict[str, list[float]] = {"runner": [], "cold": []}
    alone_all: list[float] = []
    print(f"{'round':<7}{'instance':<22}{'runner s':>10}{'cold s':>9}{'test cmd s':>12}"
          f"{'runner ovh':>12}{'cold ovh':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds):
            for task in tasks:
                log_dir = Path(tmp) / f"{task.id}-{round_}"
                runner = time_grading(suite, task, log_dir / "runner", warm=True)
                alone = time_test_command_alone(task)
                cold = time_grading(suite, task, log_dir / "cold", warm=False)
                alone_all.append(alone)
                overheads["runner"].append(runner - alone)
                overheads["cold"].append(cold - alone)
                print(f"{round_:<7}{task.id:<22}{runner:>10.3f}{cold:>9.3f}{alone:>12.3f}"
                      f"{runner - alone:>12.3f}{cold - alone:>10.3f}")
    n = len(alone_all)
    print(f"test command alone  ({n}): {spread(alone_all)} s")
    print(f"cold overhead       ({n}): {spread(overheads['cold'])} s")
    print(f"runner overhead     ({n}): {spread(overheads['runner'])} s   target <= {TARGET} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
