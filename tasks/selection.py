"""Which of a suite's tasks a run uses: --task, --exclude-file, --filter, --shuffle/--seed and --limit, the same for
every suite. A suite narrows its tasks by its own fields first (LiveCodeBench's dates, difficulty, platform), then
hands their ids here."""

from __future__ import annotations

import random
import re
from pathlib import Path

from pydantic import BaseModel, Field

from harness.errors import UserError

SHOWN_IDS = 20


class TaskSelection(BaseModel):
    task_ids: list[str] = Field(default_factory=list)  # exactly these (--task), in this order
    filter: str | None = None  # regex searched in task ids
    limit: int | None = None
    shuffle: bool = False  # with `seed`, before `limit`
    seed: int = 0
    exclude: list[str] = Field(default_factory=list)  # ids to leave out (--exclude-file)


def select_ids(ids: list[str], selection: TaskSelection, noun: str = "task id") -> list[str]:
    """Named ids (--task) are exactly the run's tasks, each checked against `ids`; otherwise `ids` less the excluded,
    those matching --filter, shuffled with --seed, then the first --limit."""
    if selection.task_ids:
        known = set(ids)
        unknown = [tid for tid in selection.task_ids if tid not in known]
        if unknown:
            shown = ", ".join(ids[:SHOWN_IDS]) + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")
            raise UserError(f"unknown {noun} {unknown[0]}; valid ids: {shown}")
        return list(dict.fromkeys(selection.task_ids))
    excluded = set(selection.exclude)
    chosen = [tid for tid in dict.fromkeys(ids) if tid not in excluded]
    pattern = regex(selection.filter)
    if pattern is not None:
        chosen = [tid for tid in chosen if pattern.search(tid)]
    if selection.shuffle:
        chosen = random.Random(selection.seed).sample(chosen, len(chosen))
    return chosen[: selection.limit] if selection.limit is not None else chosen


def regex(value: str | None) -> re.Pattern | None:
    if not value:
        return None
    try:
        return re.compile(value)
    except re.error as exc:
        raise UserError(f"--filter {value!r} is not a valid regex: {exc}") from None


def read_id_file(path: Path | str | None) -> list[str]:
    """--exclude-file: one task id per line; `#` starts a comment."""
    if path is None:
        return []
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--exclude-file {path} does not exist")
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def selection_from(options: dict) -> TaskSelection:
    """The selection among `load_suite`'s keyword options (taken out of `options`)."""
    return TaskSelection(task_ids=options.pop("task_ids", None) or [], filter=options.pop("filter", None),
                         limit=options.pop("limit", None), shuffle=options.pop("shuffle", False),
                         seed=options.pop("seed", 0), exclude=read_id_file(options.pop("exclude_file", None)))
