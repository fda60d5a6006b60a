"""The end-of-run table: per trial the outcome, the exit status and the counts that explain it, sized to the
console (80 columns: the essentials, task ids whole where they fit; wider: tokens, cut-off replies, reasons), and a
one-line diagnosis when every trial failed the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rich import box
from rich.table import Table
from rich.text import Text

from harness.outcomes import HARNESS_ERROR
from harness.records import ExitStatus, Outcome, TrialResult

GAP = 2  # characters between two columns: a blank divider and one of padding
MIN_TASK = 12
COLOUR = {Outcome.RESOLVED: "green", Outcome.UNRESOLVED: "yellow", Outcome.ERROR: "red"}


def _known(value) -> str:
    return "-" if value is None else str(value)


def _submitted(r: TrialResult) -> str:
    return "-" if r.submitted is None else "yes" if r.submitted else "no"


@dataclass
class Column:
    title: str
    cell: Callable[[TrialResult], str]
    justify: str = "right"

    def width(self, results: list[TrialResult]) -> int:
        return max([len(self.title), *(len(self.cell(r)) for r in results)])


ATTEMPT = Column("#", lambda r: str(r.attempt))
ESSENTIAL = [
    Column("outcome", lambda r: r.outcome.value, "left"),
    Column("exit", lambda r: r.exit_status.value, "left"),
    Column("turns", lambda r: str(r.turns)),
    Column("fmt", lambda r: str(r.format_errors)),
    Column("cmds", lambda r: _known(r.commands)),
    Column("sub", _submitted, "left"),
    Column("wall s", lambda r: f"{r.wall_seconds:.1f}"),
]
EMPTY = ("", "0", "-", "0/0")  # an extra column whose cells are all these says nothing
EXTRA = [  # added in this order while the console has room, when they say something
    Column("cut off", lambda r: _known(r.cut_off)),
    Column("tokens in/out", lambda r: f"{r.usage.prompt_tokens}/{r.usage.completion_tokens}"),
    Column("reason", lambda r: r.reason or "", "left"),
]


def shorten(text: str, width: int) -> str:
    """`text` in `width` characters, its middle left out (a task id's number is at its end)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}…{text[len(text) - (width - 1 - head):]}"


def choose_columns(results: list[TrialResult], width: int) -> tuple[list[Column], int]:
    """The columns that fit `width` after the task ids, and the width left for those ids."""
    columns = ([ATTEMPT] if any(r.attempt for r in results) else []) + ESSENTIAL
    task_width = max([len("task"), *(len(r.task_id) for r in results)])

    def total(cols: list[Column]) -> int:
        return task_width + sum(c.width(results) for c in cols) + GAP * len(cols)

    for extra in EXTRA:
        if any(extra.cell(r) not in EMPTY for r in results) and total(columns + [extra]) <= width:
            columns.append(extra)
    room = width - (total(columns) - task_width)
    return columns, max(MIN_TASK, min(task_width, room))


def summary_table(results: list[TrialResult], title: str, width: int = 80) -> Table:
    columns, task_width = choose_columns(results, width)
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, GAP - 1, 0, 0),
                  caption_justify="left")
    table.add_column("task", no_wrap=True)  # its ids already fit: never split, at most shortened in the middle
    for column in columns:
        table.add_column(column.title, justify=column.justify, no_wrap=True)
    for r in sorted(results, key=lambda r: (r.task_id, r.attempt)):
        cells = [Text(column.cell(r), style=COLOUR[r.outcome] if column.title == "outcome" else "")
                 for column in columns]
        table.add_row(Text(shorten(r.task_id, task_width)), *cells)
    table.caption = caption(results)
    return table


def caption(results: list[TrialResult]) -> str:
    scored = [r for r in results if r.outcome is not Outcome.ERROR]
    resolved = sum(r.resolved for r in scored)
    rate = f"{100 * resolved / len(scored):.1f}%" if scored else "n/a"
    bugs = sum(HARNESS_ERROR in r.flags for r in results)
    return (f"resolved {resolved}/{len(scored)} ({rate}); infrastructure errors {len(results) - len(scored)} (not "
            "scored)" + (f", {bugs} of them harness bugs" if bugs else "")
            + "\nfmt: format errors; cmds: commands run; sub: submitted")


def _all_format_errors(r: TrialResult) -> bool:
    """Every reply that was parsed was a format error (the one that reaches the turn limit is never parsed)."""
    return r.commands == 0 and r.format_errors >= max(r.turns - 1, 1)


def diagnosis(results: list[TrialResult]) -> str | None:
    """One line when every trial failed the same way (same outcome and exit status, none resolved), else None."""
    if not results or any(r.resolved for r in results):
        return None
    if len({(r.outcome, r.exit_status) for r in results}) != 1:
        return None
    first, every = results[0], f"all {len(results)} trials" if len(results) > 1 else "the trial"
    if first.outcome is Outcome.ERROR:
        first_line = (first.error or "?").splitlines()[0][:200]
        return f"{every} ended in an infrastructure error (not scored); the first: {first_line}"
    if any(r.submitted is None or r.commands is None for r in results):
        return None  # a suite's own single-call trials (LiveCodeBench codegen), or records without the counts
    if all(_all_format_errors(r) for r in results):
        replies = sum(r.usage.model_calls for r in results)
        cut = sum(r.cut_off or 0 for r in results)
        common = first.common_format_error
        return (f"all turns were format errors, so the model never ran a command ({every}, "
                f"{first.exit_status.value}); {cut} of {replies} replies were cut off at the token limit "
                f"(--max-tokens-per-turn)" + (f"; commonest error: {common}" if common else ""))
    if all(r.commands == 0 for r in results):
        return f"the agent ran no command in {every} (exit status {first.exit_status.value})"
    if first.exit_status is ExitStatus.TIMEOUT:
        return f"{every} ran out of time (--trial-timeout) before the agent finished"
    if first.exit_status is ExitStatus.SUBMITTED:
        return f"{every} submitted a patch and none resolved its task"
    return (f"{every} ended {first.exit_status.value} without a graded submission "
            f"({sum(bool(r.submitted) for r in results)} had submitted)")
