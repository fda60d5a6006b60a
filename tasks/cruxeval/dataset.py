"""CruxEval problems: the hub's `cruxeval-org/cruxeval` (split `test`; columns code, input, output, id) or a local
file or folder in the same schema.

`--dataset` may be a .jsonl/.json/.parquet file (read with `datasets`' json/parquet builders), a folder laid out like
the hub repository (its `test.jsonl`), which goes through the very `datasets.load_dataset(name, split=...)` call
that loads the hub, or another hub id. `input` is the argument list of `f` as Python source (`'abc', 3`) and `output`
the repr of its value.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from harness.errors import UserError
from tasks.selection import TaskSelection, select_ids

HUB_DATASET = "cruxeval-org/cruxeval"
FIELDS = ("code", "input", "output", "id")
SAMPLE = Path(__file__).with_name("sample.jsonl")


class Problem(BaseModel):
    id: str
    code: str  # defines `f`
    input: str  # f's arguments, as Python source
    output: str  # repr of f(input)


class Selection(TaskSelection):
    dataset: str | None = None  # None: the hub; else a file, a folder laid out like the hub repo, or a hub id
    split: str = "test"


def _load_files(files: list[str], split: str):
    import datasets

    builder = "parquet" if all(f.endswith(".parquet") for f in files) else "json"
    return datasets.load_dataset(builder, data_files={split: files}, split=split)


def _load_hub(name: str, split: str):
    """The hub dataset (or a local folder laid out like it): `datasets` finds its data files by their names."""
    import datasets

    return datasets.load_dataset(name, split=split)


def load_rows(selection: Selection):
    source = selection.dataset
    path = Path(source).expanduser() if source else None
    try:
        if path is not None and path.is_file():
            return _load_files([str(path)], selection.split)
        if path is not None and path.is_dir():
            return _load_hub(str(path), selection.split)
        if path is not None and (source.startswith((".", "/", "~")) or path.suffix):
            raise UserError(f"--dataset {source} does not exist")
        return _load_hub(source or HUB_DATASET, selection.split)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the hub, the network or the file
        where = source or HUB_DATASET
        raise UserError(f"cannot load CruxEval from {where} ({type(exc).__name__}: {str(exc)[:300]}); offline, pass "
                        "--dataset FILE.jsonl in the hub's schema (code, input, output, id)") from None


def decode_row(row: dict) -> Problem:
    missing = [name for name in FIELDS if row.get(name) is None]
    if missing:
        raise UserError(f"a CruxEval row lacks {', '.join(missing)} (fields: {', '.join(FIELDS)})")
    return Problem(**{name: str(row[name]) for name in FIELDS})


def load_problems(selection: Selection) -> list[Problem]:
    problems: dict[str, Problem] = {}
    for row in load_rows(selection):
        problem = decode_row(row)
        problems.setdefault(problem.id, problem)
    chosen = select_ids(list(problems), selection, noun="CruxEval id")
    return [problems[pid] for pid in chosen]
