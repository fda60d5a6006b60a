"""The live progress bar of a run (rich) and the warning that closes a run a harness bug hit; the summary table
is harness/summary.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.outcomes import HARNESS_ERROR
from harness.records import Outcome, TrialResult


class RunProgress:
    def __init__(self, total: int, console: Console | None = None):
        self.console = console or Console()
        self.counts: Counter[str] = Counter()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("[green]resolved {task.fields[resolved]}"), TextColumn("[yellow]failed {task.fields[failed]}"),
            TextColumn("[red]errors {task.fields[errors]}"), TimeElapsedColumn(),
            console=self.console, transient=False,
        )
        self.bar = self.progress.add_task("trials", total=total, resolved=0, failed=0, errors=0)

    def update(self, result: TrialResult) -> None:
        self.counts[result.outcome.value] += 1
        self.progress.update(self.bar, advance=1, resolved=self.counts[Outcome.RESOLVED.value],
                             failed=self.counts[Outcome.UNRESOLVED.value], errors=self.counts[Outcome.ERROR.value])

    def __enter__(self) -> RunProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def harness_bug_warning(results: list[TrialResult], run_dir: Path) -> str | None:
    """The end-of-run warning naming the trials a bug in the harness ended (their traceback is in the trajectory)."""
    bugs = sorted((r.task_id, r.attempt) for r in results if HARNESS_ERROR in r.flags)
    if not bugs:
        return None
    listed = ", ".join(f"{task}/{attempt}" for task, attempt in bugs)
    return (f"warning: a bug in cwm-eval ended {len(bugs)} trial{'s' if len(bugs) > 1 else ''} ({listed}); not scored, "
            f"redone on resume. Tracebacks: the `error` events in {run_dir}/trials/<task>/<attempt>/trajectory.jsonl")
