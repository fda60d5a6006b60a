"""Cross-execution: every generated test against the unpatched repo and against every candidate patch.

Each cell runs in a fresh container of the instance image with the network off: the candidate patch is applied as
swebench applies it (its `git apply` chain, tasks/swebench/apply.py), then the test runs exactly as the testgen
scenario grades it (tasks/swebench/repro.py: test_issue.py at the repo root, `python` under a timeout, whatever it
left running killed before its output is read). A test is kept only when the unpatched repo makes it print the
reproduced line and neither other line (CWM's test-generation check); every test that can run (it parses and holds
both markers) runs against each distinct patch too, kept or not, so the matrix is whole (identical patches share one
run; the matrix gets a row for each attempt), and only kept tests count in the selection. A test passes a patch when it prints
the resolved line and neither other line. A cell that times out (on the unpatched repo too), or whose patch does not
apply, does not pass.

Every finished cell is appended to matrix.jsonl at once (one JSON line per (task, test attempt, patch attempt or
"base")), so a run killed half way resumes: cells already in the file are not run again (a cell that failed on the
infrastructure is), and a torn last line is cut off before anything is appended.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable, Literal, Union

from pydantic import BaseModel, ValidationError

from harness.disk_limit import DiskWatchdog, create_bounded, disk_bytes
from harness.sandbox import CURRENT_TRIAL, Limits, docker_client, host_capped, run_labels
from harness.store import warn
from harness.tts_runs import Candidate, GeneratedTest
from tasks.base import Task
from tasks.swebench.repro import MARKERS, REPRODUCED, RESOLVED, TestRun

BASE = "base"
MATRIX_FILE = "matrix.jsonl"
KEPT_OUTPUT = 1_000  # characters of a test's output kept in the matrix (its tail)
Verdict = Literal["reproduced", "resolved", "other", "none", "timeout", "killed", "patch_failed", "error"]
PatchKey = Union[int, Literal["base"]]


class Cell(BaseModel):
    task_id: str
    test_attempt: int
    patch_attempt: PatchKey
    verdict: Verdict
    markers: list[str] = []
    same_patch_as: int | None = None  # an identical patch's cell, run once for both
    exit_code: int | None = None
    seconds: float = 0.0
    output: str = ""  # the output's tail
    error: str | None = None
    at: float = 0.0

    @property
    def key(self) -> tuple[str, int, str]:
        return self.task_id, self.test_attempt, str(self.patch_attempt)


class CrossOptions(BaseModel):
    run_id: str
    concurrency: int = 2
    test_timeout: float = 120.0  # CWM's eval_timeout for a generated test
    limits: Limits = Limits()


def kept(base: Cell | None) -> bool:
    return base is not None and base.verdict == "reproduced"


def passes(cell: Cell | None) -> bool:
    return cell is not None and cell.verdict == "resolved"


class MatrixFile:
    """matrix.jsonl: appended to as cells finish; read back tolerating a torn last line."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict[tuple[str, int, str], Cell]:
        cells: dict[tuple[str, int, str], Cell] = {}
        if not self.path.exists():
            return cells
        for number, line in enumerate(self.path.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                cell = Cell.model_validate_json(line)
            except (ValidationError, ValueError):
                warn(f"skipped unreadable line {number} of {self.path} (cut off by a crash?)")
                continue
            cells[cell.key] = cell  # a cell redone after an infrastructure error: the last line wins
        return cells

    def cut_torn_tail(self) -> None:
        """A crash mid-write leaves a last line without its newline: drop it, so appends start on a fresh line."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)

    def append(self, cells: list[Cell]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write("".join(cell.model_dump_json() + "\n" for cell in cells))
            fh.flush()
            os.fsync(fh.fileno())


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("cwm-eval.tts.apply")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def start_container(task: Task, limits: Limits) -> tuple[object, DiskWatchdog | None]:
    """A container of the instance image with no network, under the run's limits (its disk bound watched as the
    agent's is). Its main process is PID 1 (no init), as in swebench's grading container: the test runner kills
    every other process once the test ends."""
    limits = host_capped(limits)
    disk = disk_bytes(limits.disk)
    container, bounded_by = create_bounded(
        docker_client(), disk, task.image, command="tail -f /dev/null", detach=True, network_mode="none",
        labels=run_labels("tts"), working_dir=task.workdir, nano_cpus=int(limits.cpus * 1e9),
        mem_limit=limits.memory, pids_limit=limits.pids)
    return container, (DiskWatchdog(container, disk, bounded_by).start() if disk else None)


def cell_verdict(run: TestRun) -> tuple[Verdict, list[str]]:
    found = [marker for marker in MARKERS if run.markers.get(marker)]
    if run.timed_out:  # what a test printed before it was killed is no verdict (it could print one and hang)
        return "timeout", found
    if found == [REPRODUCED]:
        return "reproduced", found
    if found == [RESOLVED]:
        return "resolved", found
    return ("other" if found else "none"), found


def execute_cell(task: Task, test: GeneratedTest, patch_attempt: PatchKey, patch: str | None,
                 options: CrossOptions) -> Cell:
    """One cell in a fresh container, network off; an infrastructure failure is a cell in "error" (rerun on resume)."""
    from swebench.harness.constants import CONTAINER_PATCH_FILE

    from tasks.swebench.apply import apply_patch
    from tasks.swebench.containers import put_files, remove_container
    from tasks.swebench.repro import run_test

    CURRENT_TRIAL.set((options.run_id, f"{task.id}/{test.attempt}/{patch_attempt}"))
    cell = dict(task_id=task.id, test_attempt=test.attempt, patch_attempt=patch_attempt)
    started = time.monotonic()
    container = watchdog = None
    try:
        container, watchdog = start_container(task, options.limits)
        if patch is not None:
            put_files(container, {CONTAINER_PATCH_FILE: patch.encode()})
            if not apply_patch(container, _quiet_logger()).applied:
                return Cell(**cell, verdict="patch_failed", seconds=round(time.monotonic() - started, 3),
                            at=time.time())
        run = run_test(container, test.code, task.workdir, task.startup, math.ceil(options.test_timeout))
        verdict, markers = cell_verdict(run)
        return Cell(**cell, verdict=verdict, markers=markers, exit_code=run.exit_code,
                    seconds=round(time.monotonic() - started, 3), output=run.output_tail[-KEPT_OUTPUT:],
                    at=time.time())
    except Exception as exc:  # noqa: BLE001 - Docker or the daemon failed: not the test's doing, redone on resume
        killed = watchdog is not None and watchdog.exceeded  # unless the test wrote past the disk bound
        return Cell(**cell, verdict="killed" if killed else "error", seconds=round(time.monotonic() - started, 3),
                    error="the test wrote past the disk bound" if killed else f"{type(exc).__name__}: {exc}"[:500],
                    at=time.time())
    finally:
        if watchdog is not None:
            watchdog.stop()
        if container is not None:
            try:
                remove_container(container)
            except Exception as exc:  # noqa: BLE001 - the run's clean-up removes it by label
                warn(f"could not remove a cross-execution container: {exc}")
        if watchdog is not None:
            watchdog.join()


def preload() -> None:
    """swebench's modules, imported once here: imported first by several cell threads at once, their circular
    imports find each other half initialised."""
    import swebench.harness.constants  # noqa: F401
    import swebench.harness.docker_utils  # noqa: F401

    import tasks.swebench.apply  # noqa: F401
    import tasks.swebench.containers  # noqa: F401
    import tasks.swebench.grading  # noqa: F401


def distinct_patches(candidates: list[Candidate]) -> dict[str, list[int]]:
    """Non-empty patches by exact text (CWM's majority voting compares patches as they are; empty ones take no
    part), each with its attempts in order."""
    groups: dict[str, list[int]] = {}
    for candidate in candidates:
        if candidate.patch.strip():
            groups.setdefault(candidate.patch, []).append(candidate.attempt)
    return groups


class CrossExecution:
    """The matrix of one tts run: plans, runs and records the cells not yet in matrix.jsonl."""

    def __init__(self, path: Path, options: CrossOptions, on_cell: Callable[[Cell], None] = lambda cell: None):
        self.file = MatrixFile(path)
        self.options = options
        self.on_cell = on_cell
        self.file.cut_torn_tail()
        self.cells = {key: cell for key, cell in self.file.read().items() if cell.verdict != "error"}
        self.ran = 0  # cells run by this call (not found in the file)
        self.errors = 0  # of them, those the infrastructure failed (missing from the matrix; redone on resume)
        self._slots: asyncio.Semaphore | None = None

    async def run(self, work: list[tuple[Task, list[Candidate], list[GeneratedTest]]]) -> dict:
        preload()
        self._slots = asyncio.Semaphore(self.options.concurrency)
        rows = [self._test_row(task, candidates, test)
                for task, candidates, tests in work for test in tests if test.problem is None]
        await asyncio.gather(*rows)
        return self.cells

    async def _cell(self, task: Task, test: GeneratedTest, attempts: list[int] | None, patch: str | None) -> Cell:
        key = (task.id, test.attempt, BASE if attempts is None else str(attempts[0]))
        if key in self.cells:
            return self.cells[key]
        async with self._slots:
            cell = await asyncio.to_thread(execute_cell, task, test, BASE if attempts is None else attempts[0],
                                           patch, self.options)
        self.ran += 1
        self.errors += cell.verdict == "error"
        self.on_cell(cell)
        rows = [cell] + [cell.model_copy(update={"patch_attempt": other, "same_patch_as": attempts[0]})
                         for other in (attempts or [])[1:]]
        self.file.append(rows)
        if cell.verdict != "error":
            self.cells.update({row.key: row for row in rows})
        return cell

    async def _test_row(self, task: Task, candidates: list[Candidate], test: GeneratedTest) -> None:
        """The test on the unpatched repo and on every distinct patch, side by side. A test that does not reproduce
        the issue there is still run on the patches (the matrix is whole) but counts for no patch."""
        groups = distinct_patches(candidates)
        await asyncio.gather(self._cell(task, test, None, None),
                             *(self._cell(task, test, attempts, patch) for patch, attempts in groups.items()))
