"""Test-time scaling as CWM reached its SWE-bench Verified headline: k candidate patches, k generated tests, one
patch per task selected by executing the tests against the patches, the selection graded by swebench.

results/<run_id>/
    run.json            what was combined: the patch run, the test run, the selector
    matrix.jsonl        every cross-execution cell, appended as it finishes (tts_matrix.py)
    trials/<task>/0/    result.json of the selected patch, graded by the suite (swebench's grading), verifier/ logs
    predictions.jsonl   the selected patches in swebench's prediction format
    tts.json            per task: candidates, tests kept, the matrix, scores, the selection and its verdict; figures
    report.md           pass@1, oracle pass@k and the selected accuracy with 95% intervals; where selection lost
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from harness.errors import UserError
from harness.index import ResultsIndex
from harness.records import ExitStatus, Outcome, TrialResult, Usage
from harness.sandbox import Limits, remove_labelled
from harness.store import RunStore, write_json
from harness.tts_matrix import MATRIX_FILE, Cell, CrossExecution, CrossOptions
from harness.tts_runs import Candidate, GeneratedTest, RunInputs
from harness.tts_report import AGENT, TTS_FILE, markdown
from harness.tts_select import Selector, TaskSelection, figures, select_task
from tasks.base import Task


class TtsOptions(BaseModel):
    run_id: str
    output: Path
    selector: Selector = "cwm"
    concurrency: int = 2
    test_timeout: float = 120.0
    limits: Limits = Limits()


def config_label(options: TtsOptions, patches: RunInputs, k: int, tests: int) -> str:
    return f"tts selector={options.selector} k={k} tests={tests} (patches {patches.run_id})"


def check_run_folder(options: TtsOptions, patches: RunInputs, tests: RunInputs) -> None:
    """A new run id, or this same tts run resumed; never another run's folder."""
    path = options.output / options.run_id / "run.json"
    if not path.exists():
        return
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        info = {}
    recorded = info.get("tts")
    if recorded is None:
        raise UserError(f"--run-id {options.run_id}: {path.parent} holds a run that is not a tts run; "
                        "choose another id")
    if (recorded.get("patches"), recorded.get("tests")) != (patches.run_id, tests.run_id):
        raise UserError(f"--run-id {options.run_id} combined --patches {recorded.get('patches')} and --tests "
                        f"{recorded.get('tests')}; choose another id for other runs")


class TtsRun:
    """One tts run: cross-execution, selection, grading of the selection, and the files that record them."""

    def __init__(self, suite, options: TtsOptions, patches: RunInputs, tests: RunInputs,
                 on_cell: Callable[[Cell], None] = lambda cell: None):
        self.suite, self.options, self.patches, self.tests = suite, options, patches, tests
        self.store = RunStore(options.output, options.run_id)
        self.on_cell = on_cell

    async def run(self, tasks: list[Task], candidates: dict[str, list[Candidate]],
                  tests: dict[str, list[GeneratedTest]]) -> dict:
        started = time.time()
        await asyncio.to_thread(remove_labelled, self.options.run_id)  # left by a killed earlier try
        k = max((len(c) for c in candidates.values()), default=0)
        m = max((len(t) for t in tests.values()), default=0)
        self.label = config_label(self.options, self.patches, k, m)
        self.store.write_run(self.run_info(started))
        for task in tasks:
            await asyncio.to_thread(self.suite.prepare, task)
        cross = CrossExecution(self.store.dir / MATRIX_FILE, CrossOptions(
            run_id=self.options.run_id, concurrency=self.options.concurrency,
            test_timeout=self.options.test_timeout, limits=self.options.limits), self.on_cell)
        try:
            cells = await cross.run([(t, candidates[t.id], tests.get(t.id, [])) for t in tasks])
            slots = asyncio.Semaphore(self.options.concurrency)
            selections = await asyncio.gather(*(self._select(task, candidates[task.id], tests.get(task.id, []),
                                                             cells, slots, started) for task in tasks))
        finally:
            await asyncio.to_thread(remove_labelled, self.options.run_id)
        return self.write_outputs(tasks, list(selections), cross.ran, cross.errors)

    def run_info(self, started: float) -> dict:
        return {"run_id": self.options.run_id, "started_at": started, "model": self.patches.model, "agent": AGENT,
                "config": {"suite": self.patches.suite, "dataset": self.patches.dataset, "scenario": "tts",
                           "concurrency": self.options.concurrency, "label": self.label},
                "tts": {"patches": self.patches.run_id, "tests": self.tests.run_id, "selector": self.options.selector,
                        "test_timeout": self.options.test_timeout}}

    async def _select(self, task: Task, candidates: list[Candidate], tests: list[GeneratedTest], cells: dict,
                      slots: asyncio.Semaphore, started: float) -> TaskSelection:
        selection, chosen = select_task(task.id, candidates, tests, cells, self.options.selector)
        patch = chosen.patch if chosen else ""
        previous = self.store.result(task.id, 0)
        if previous is not None and previous.finished and (previous.patch, previous.config) == (patch, self.label):
            # resumed: graded already
            result = previous
        else:
            async with slots:
                result = await asyncio.to_thread(self.grade, task, chosen, patch, started)
            self.store.write_result(result)
            ResultsIndex(self.options.output).upsert(result, self.store.trial_dir(task.id, 0) / "result.json")
        selection.selected_resolved = result.resolved if result.finished else None
        selection.grading = {"outcome": result.outcome.value, "reason": result.reason, "error": result.error}
        return selection

    def grade(self, task: Task, chosen: Candidate | None, patch: str, started: float) -> TrialResult:
        """The selected patch graded afresh by the suite's own verify path (swebench's grading)."""
        log_dir = self.store.trial_dir(task.id, 0) / "verifier"
        try:
            verdict = self.suite.verify(task, patch, log_dir)
            outcome = Outcome.ERROR if verdict.infra_error else \
                Outcome.RESOLVED if verdict.resolved else Outcome.UNRESOLVED
            details, error = verdict.details, verdict.infra_error
        except Exception as exc:  # noqa: BLE001 - the grader's infrastructure: an error, redone on resume
            outcome, details, error = Outcome.ERROR, {}, f"{type(exc).__name__}: {exc}"
        reason = details.get("reason") if outcome is Outcome.UNRESOLVED else None
        if chosen is None:
            reason = "no candidate patch to select"
        ended = time.time()
        return TrialResult(
            run_id=self.options.run_id, suite=task.suite, task_id=task.id, attempt=0, agent=AGENT,
            model=self.patches.model, config=self.label, labels=task.labels, outcome=outcome,
            reward=1.0 if outcome is Outcome.RESOLVED else 0.0,
            exit_status=chosen.exit_status if chosen else ExitStatus.NO_ACTION, turns=chosen.turns if chosen else 0,
            usage=chosen.usage if chosen else Usage(),
            patch=patch, verifier={**details, "selected_attempt": chosen.attempt if chosen else None,
                                   "patches_run": self.patches.run_id},
            flags=list(details.get("flags") or []), reason=reason, error=error, started_at=started, ended_at=ended,
            wall_seconds=round(ended - started, 3))

    def write_outputs(self, tasks: list[Task], selections: list[TaskSelection], ran: int, errors: int) -> dict:
        results = [self.store.result(task.id, 0) for task in tasks]
        finalize = getattr(self.suite, "finalize", None)
        notes = finalize(self.store.dir, [r for r in results if r is not None], tasks) if finalize else []
        summary = {"run_id": self.options.run_id, "patches": self.patches.run_id, "tests": self.tests.run_id,
                   "selector": self.options.selector, "label": self.label, "cells_run": ran,
                   "cell_errors": errors,
                   "figures": figures(selections), "tasks": [s.model_dump(mode="json") for s in selections],
                   "notes": notes}
        write_json(self.store.dir / TTS_FILE, summary)
        (self.store.dir / "report.md").write_text(markdown(summary))
        return summary
