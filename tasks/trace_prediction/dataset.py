"""Trace-prediction programs: a JSONL of {id, code, entry, args}, the bundled programs.jsonl (a dozen small functions:
loops, recursion, exceptions, a generator, a closure, list and dict mutation) or `--dataset FILE.jsonl`.

`entry` names the function whose call is traced (a top-level function, or `Class.method`); `args` is its argument
list (a JSON array: `entry(*args)`) or keyword arguments (a JSON object: `entry(**args)`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.errors import UserError
from tasks.selection import TaskSelection, select_ids

BUNDLED = Path(__file__).with_name("programs.jsonl")


class Program(BaseModel):
    id: str
    code: str
    entry: str
    args: list[Any] | dict[str, Any] = []


def read_programs(path: Path) -> list[Program]:
    if not path.is_file():
        raise UserError(f"--dataset {path} does not exist (trace-prediction reads a JSONL of id, code, entry, args)")
    programs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            programs.append(Program.model_validate(json.loads(line)))
        except (ValueError, ValidationError) as exc:
            first = exc.errors()[0] if isinstance(exc, ValidationError) else None
            why = f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else str(exc).splitlines()[0]
            raise UserError(f"{path}:{number}: not a trace-prediction program ({why}); fields: id, code, entry, "
                            "args") from None
    return programs


def load_programs(dataset: str | None, selection: TaskSelection) -> list[Program]:
    programs = {p.id: p for p in read_programs(Path(dataset).expanduser() if dataset else BUNDLED)}
    return [programs[pid] for pid in select_ids(list(programs), selection, noun="program id")]
